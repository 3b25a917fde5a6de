"""PipelineDP (local backend) reference for benchmarks/query.py. Runs in benchmarks/.venv-pipelinedp,
never imported by dplogs. Prints one JSON line: seconds to build the rows and to aggregate (wall and CPU),
and the total from opening the Parquet file (read + rows + aggregate).

usage: python pipelinedp_reference.py DATA.parquet MAX_GROUPS MAX_ROWS_PER_GROUP EPSILON HI
"""

import json
import sys
import time

import pipeline_dp
import pyarrow.compute as pc
import pyarrow.parquet as pq


def main() -> None:
    path, l0, linf, epsilon, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    start, start_cpu = time.perf_counter(), time.process_time()
    t = pq.read_table(path)
    t0 = time.perf_counter()
    day = pc.floor_temporal(t["@timestamp"], unit="day")
    rows = list(
        zip(
            t["user.name"].to_pylist(),
            t["event.action"].to_pylist(),
            day.to_pylist(),
            (0 if b is None else b for b in t["http.response.body.bytes"].to_pylist()),
        )
    )
    public = sorted(set((a, d) for _, a, d, _ in rows))
    t1, c1 = time.perf_counter(), time.process_time()
    accountant = pipeline_dp.NaiveBudgetAccountant(total_epsilon=epsilon, total_delta=0)
    engine = pipeline_dp.DPEngine(accountant, pipeline_dp.LocalBackend())
    params = pipeline_dp.AggregateParams(
        noise_kind=pipeline_dp.NoiseKind.LAPLACE,
        metrics=[pipeline_dp.Metrics.COUNT, pipeline_dp.Metrics.SUM],
        max_partitions_contributed=l0,
        max_contributions_per_partition=linf,
        min_value=0,
        max_value=hi,
    )
    extractors = pipeline_dp.DataExtractors(
        privacy_id_extractor=lambda r: r[0],
        partition_extractor=lambda r: (r[1], r[2]),
        value_extractor=lambda r: r[3],
    )
    result = engine.aggregate(rows, params, extractors, public_partitions=public)
    accountant.compute_budgets()
    out = list(result)
    t2, c2 = time.perf_counter(), time.process_time()
    print(json.dumps({"prepare_s": t1 - t0, "exec_s": t2 - t1, "exec_cpu": c2 - c1, "total_s": t2 - start,
                      "total_cpu": c2 - start_cpu, "groups": len(out)}))


if __name__ == "__main__":
    main()
