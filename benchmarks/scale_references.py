"""Spark references for benchmarks/scale.py: the same query in Tumult Analytics and in PipelineDP's
SparkRDDBackend. Runs in their own venvs (never imported by dplogs); prints one JSON line like
scale.py's workers: session start, one warm-up run, then the timed runs.

usage: python scale_references.py tumult|pipelinedp DATA.parquet REPS MASTER

Both read the Parquet file the dplogs store was made from, with the same public keys (12 declared
actions x the 31 days of October), the same bounds (10 groups per user, 5 rows per group), the
same clamp [0, 1e6] and ε = 1 split evenly between the count and the sum (pure DP, Laplace-type
noise). Each timed run is the whole release: read, bound, aggregate, noise, collect to the driver.
"""

import datetime as dt
import json
import sys
import time

ACTIONS = [
    "ssh_login", "logon-failed", "sudo", "http_get", "http_post", "file_read", "file_write",
    "dns_query", "process_start", "process_end", "user_add", "password_change",
]
L0, LINF, EPSILON, HI = 10, 5, 1.0, 1_000_000
DAYS = [dt.datetime(2026, 10, 1) + dt.timedelta(days=i) for i in range(31)]


def session(master):
    import os

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # local Python workers need this venv

    import tempfile

    # Tumult keeps temporary tables in the warehouse directory (the working directory by default)
    warehouse = tempfile.mkdtemp(prefix="scale-reference-warehouse-")
    s = (SparkSession.builder.master(master).appName("scale-reference").config("spark.ui.enabled", "false")
         .config("spark.sql.warehouse.dir", warehouse)
         .config("spark.ui.showConsoleProgress", "false").config("spark.sql.session.timeZone", "UTC")
         .config("spark.driver.memory", "6g").getOrCreate())
    s.sparkContext.setLogLevel("ERROR")
    return s


def rows(spark, path):
    from pyspark.sql import functions as F

    df = spark.read.parquet(path)
    return df.select(
        F.col("`user.name`").alias("user"), F.col("`event.action`").alias("action"),
        F.date_format(F.date_trunc("day", F.col("`@timestamp`")), "yyyy-MM-dd").alias("day"),
        F.coalesce(F.col("`http.response.body.bytes`"), F.lit(0)).cast("long").alias("bytes"),
    )


def tumult(spark, path):
    from pyspark.sql import functions as F
    from tmlt.analytics import AddRowsWithID, KeySet, MaxGroupsPerID, MaxRowsPerGroupPerID, PureDPBudget, QueryBuilder, Session

    # Tumult bounds groups per ID on one column: the cell (action, day) as one key
    data = rows(spark, path).withColumn("cell", F.concat_ws("|", "action", "day"))
    cells = [f"{a}|{d:%Y-%m-%d}" for a in ACTIONS for d in DAYS]

    def run():
        sess = Session.from_dataframe(privacy_budget=PureDPBudget(EPSILON), source_id="logs", dataframe=data,
                                      protected_change=AddRowsWithID(id_column="user"))
        keys = KeySet.from_dict({"cell": cells})
        bounded = (QueryBuilder("logs").enforce(MaxGroupsPerID("cell", L0))
                   .enforce(MaxRowsPerGroupPerID("cell", LINF)).groupby(keys))
        count = sess.evaluate(bounded.count(), PureDPBudget(EPSILON / 2)).collect()
        bounded = (QueryBuilder("logs").enforce(MaxGroupsPerID("cell", L0))
                   .enforce(MaxRowsPerGroupPerID("cell", LINF)).groupby(keys))
        total = sess.evaluate(bounded.sum("bytes", low=0, high=HI), PureDPBudget(EPSILON / 2)).collect()
        return len(count) + len(total)

    return run


def pipelinedp(spark, path):
    import pipeline_dp

    data = rows(spark, path)
    public = [(a, f"{d:%Y-%m-%d}") for a in ACTIONS for d in DAYS]

    def run():
        accountant = pipeline_dp.NaiveBudgetAccountant(total_epsilon=EPSILON, total_delta=0)
        engine = pipeline_dp.DPEngine(accountant, pipeline_dp.SparkRDDBackend(spark.sparkContext))
        params = pipeline_dp.AggregateParams(
            noise_kind=pipeline_dp.NoiseKind.LAPLACE, metrics=[pipeline_dp.Metrics.COUNT, pipeline_dp.Metrics.SUM],
            max_partitions_contributed=L0, max_contributions_per_partition=LINF, min_value=0, max_value=HI)
        extractors = pipeline_dp.DataExtractors(privacy_id_extractor=lambda r: r[0],
                                                partition_extractor=lambda r: (r[1], r[2]),
                                                value_extractor=lambda r: r[3])
        result = engine.aggregate(data.rdd.map(tuple), params, extractors, public_partitions=public)
        accountant.compute_budgets()
        return len(result.collect())

    return run


def main():
    name, path, reps, master = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    t0 = time.perf_counter()
    spark = session(master)
    spark.range(1).collect()
    start = time.perf_counter() - t0
    run = {"tumult": tumult, "pipelinedp": pipelinedp}[name](spark, path)

    def timed():
        t = time.perf_counter()
        run()
        return time.perf_counter() - t

    warm = timed()
    print(json.dumps({"start_s": start, "warmup_s": warm, "times": [timed() for _ in range(reps)]}))


if __name__ == "__main__":
    main()
