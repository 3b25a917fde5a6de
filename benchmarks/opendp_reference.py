"""OpenDP 0.16 reference for benchmarks/query.py. Runs in benchmarks/.venv-opendp (OpenDP pins its
own polars), never imported by dplogs. Prints one JSON line: planning and execution seconds (wall and CPU).

usage: python opendp_reference.py DATA.parquet MAX_GROUPS MAX_ROWS_PER_GROUP EPSILON HI [scan]

With ``scan``, the data is scanned from the Parquet file inside the clock (``pl.scan_parquet``:
what reading a store costs OpenDP); otherwise it is read into memory before the clock starts.
The public (action, day) grid and the row bound are read before the clock either way.
"""

import json
import warnings
import sys
import time

import opendp.prelude as dp
import polars as pl

dp.enable_features("contrib")
warnings.simplefilter("ignore", FutureWarning)


def main() -> None:
    path, l0, linf, epsilon, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    keys = ["event.action", "day"]
    scan = len(sys.argv) > 6 and sys.argv[6] == "scan"

    def prepared(frame):
        return frame.with_columns(
            day=pl.col("@timestamp").dt.truncate("1d"), bytes=pl.col("http.response.body.bytes").fill_null(0)
        ).select("user.name", *keys, "bytes")

    lazy = pl.scan_parquet(path)
    public_keys = prepared(lazy).select(keys).unique().collect()
    height = lazy.select(pl.len()).collect().item()
    data = None if scan else prepared(pl.read_parquet(path)).lazy()
    t0, c0 = time.perf_counter(), time.process_time()
    context = dp.Context.compositor(
        data=prepared(lazy) if scan else data,
        privacy_unit=dp.unit_of(
            contributions=[dp.polars.Bound(per_group=linf), dp.polars.Bound(by=keys, num_groups=l0)],
            identifier="user.name",
        ),
        privacy_loss=dp.loss_of(epsilon=epsilon),
        split_evenly_over=1,
        margins=[dp.polars.Margin(by=keys, max_length=height)],
    )
    query = (
        context.query()
        .truncate_per_group(linf, by=keys)
        # keep="sample" fails in 0.16 (its struct(hash, struct) has duplicate field names), so the
        # group choice is "first" by key order, which ranks over the unit just the same
        .truncate_num_groups(l0, by=keys, keep="first")
        .group_by(keys)
        .agg(dp.len(), pl.col("bytes").dp.sum((0, hi)))
        # the (action, day) grid is public: releasing through a join on it needs no threshold
        .join(public_keys.lazy(), on=keys, how="right")
    )
    release = query.release()
    t1, c1 = time.perf_counter(), time.process_time()
    out = release.collect()
    t2, c2 = time.perf_counter(), time.process_time()
    print(json.dumps({"plan_s": t1 - t0, "exec_s": t2 - t1, "plan_cpu": c1 - c0, "exec_cpu": c2 - c1, "groups": out.height}))


if __name__ == "__main__":
    main()
