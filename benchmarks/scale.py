"""Scale benchmark (issue 15): the harness query on Spark, from the store, against the polars
backend and the DP libraries that also run on Spark.

    .venv/bin/python benchmarks/scale.py [--rows 1e7] [--reps 3] [--skip tumult,pipelinedp]

The query is benchmarks/query.py's: count and clamped-bytes sum per (event.action, day) over the
generated logs of ``query.dataset`` (~50k Zipf users, 12 actions, 30 days), declared actions and
day buckets public (12 x 31 = 372 cells; October has 31 days), max_groups 10, max_rows_per_group 5,
clamp [0, 1e6], ε = 1. The rows are written once into a dplogs store (``benchmarks/.data/store_N``,
day partitions) and every dplogs figure is a full release read from that store (plan, read,
bounding, ledger charge, noise).

Each configuration runs in its own process, so a Spark master is fixed per process and the JVM
starts once per configuration (its start is reported apart): the first release warms up, then
``--reps`` releases are timed and the best is reported (the steadier figure on a shared machine;
every time is printed to stderr too). Ratios are computed from the best times of this one run.

- dplogs polars: ``Engine.open(store)``;
- dplogs Spark local[1] / local[2]: ``Engine.open(store, backend="spark", spark_master=...)``;
- Tumult Analytics (``tmlt.analytics``, own venv ``benchmarks/.venv-tumult``, pyspark 3.5) and
  PipelineDP's ``SparkRDDBackend`` (own venv ``benchmarks/.venv-pipelinedp-spark``) on local[2],
  reading the same rows from the Parquet file the store was made from (they cannot read a dplogs
  store); the workers are ``benchmarks/scale_references.py``. Both venvs are created on first use.

Results go to stdout as a Markdown table; progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from query import ACTIONS, DATA, EPSILON, HI, L0, LINF, VALUE, dataset, ensure_venv, log  # noqa: E402

SQL = ('SELECT event.action, date_trunc(\'day\', "@timestamp") AS day, COUNT(*), '
       "SUM(http.response.body.bytes) FROM logs GROUP BY 1, 2")
REFERENCE_VENVS = {
    "tumult": (HERE / ".venv-tumult", ["tmlt.analytics"]),
    "pipelinedp": (HERE / ".venv-pipelinedp-spark", ["pipeline-dp==0.3.*", "pyarrow", "pyspark>=3.5"]),
}


def store_for(n: int) -> Path:
    """The generated rows of ``dataset(n)`` as a dplogs store (cached)."""
    import polars as pl

    from dplogs.ingest.store import Store
    from dplogs.privacy.ledger import Ledger
    from dplogs.schema import conform

    path = DATA / f"store_{n}"
    if (path / "manifest.json").exists():
        return path
    log(f"writing {n:,} rows into the store {path}")
    store = Store.init(path, dataset="benchmark", privacy_unit="user.name", budget_window="month")
    store.write_events(conform(pl.read_parquet(dataset(n))), stem="bench")
    Ledger.open(store.ledger_path, create=True, store_id=store.identity).set_caps(window_policy="month", epsilon=1e9)
    return path


def worker(engine: str, master: str | None, store: Path, reps: int) -> None:
    """Run in a fresh process: one warm-up release, then ``reps`` timed ones; one JSON line out."""
    from dplogs.engine.api import Engine

    t0 = time.perf_counter()
    if engine == "spark":
        # the session dplogs then uses (the active one): the same driver memory as the references'
        from pyspark.sql import SparkSession

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        (SparkSession.builder.master(master).appName("dplogs-scale").config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false").config("spark.driver.memory", "6g").getOrCreate()
         .sparkContext.setLogLevel("ERROR"))
    eng = Engine.open(store, backend=engine)
    if engine == "spark":
        eng.backend.session.range(1).collect()  # the JVM is up before timing
    start = time.perf_counter() - t0

    def release() -> float:
        t = time.perf_counter()
        eng.sql(SQL, epsilon=EPSILON, max_groups=L0, max_rows_per_group=LINF, clamp={VALUE: (0, HI)},
                declared={"event.action": ACTIONS}, start="2026-10-01", end="2026-11-01").release(caller="benchmark")
        return time.perf_counter() - t

    warm = release()
    times = [release() for _ in range(reps)]
    print(json.dumps({"start_s": start, "warmup_s": warm, "times": times}))


def run_worker(args: list[str], python: str = sys.executable, script: Path = Path(__file__)) -> dict:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    out = subprocess.run([python, str(script), *args], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1e7")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma-separated: tumult, pipelinedp, polars, spark")
    ap.add_argument("--worker", nargs=3, metavar=("ENGINE", "MASTER", "STORE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        engine, master, store = args.worker
        worker(engine, None if master == "-" else master, Path(store), args.reps)
        return
    n, skip = int(float(args.rows)), set(filter(None, args.skip.split(",")))
    store = store_for(n)
    rows: dict[str, dict] = {}
    configs = [("dplogs polars", ["polars", "-"]), ("dplogs Spark local[1]", ["spark", "local[1]"]),
               ("dplogs Spark local[2]", ["spark", "local[2]"])]
    for label, (engine, master) in configs:
        if engine in skip:
            continue
        log(f"{label} ...")
        rows[label] = run_worker(["--reps", str(args.reps), "--worker", engine, master, str(store)])
        log(f"  {label}: {rows[label]}")
    parquet = dataset(n)
    for name in ("tumult", "pipelinedp"):
        if name in skip:
            continue
        label = {"tumult": "Tumult Analytics (Spark local[2])", "pipelinedp": "PipelineDP SparkRDDBackend (local[2])"}[name]
        log(f"{label} ...")
        try:
            rows[label] = run_worker([name, str(parquet), str(args.reps), "local[2]"], python=str(ensure_venv(name, REFERENCE_VENVS)),
                                     script=HERE / "scale_references.py")
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            rows[label] = {"error": str(exc).splitlines()[-1][:200]}
        log(f"  {label}: {rows[label]}")
    best = {k: min(v["times"]) for k, v in rows.items() if "times" in v}
    print(f"\n{n:,} rows, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
          f"best of {args.reps} timed runs after one warm-up, seconds\n")
    print("| configuration | JVM/session start | warm-up run | best | all runs | vs Spark local[2] |")
    print("|---|---|---|---|---|---|")
    ref = best.get("dplogs Spark local[2]")
    for label, r in rows.items():
        if "times" not in r:
            print(f"| {label} | | | failed: {r['error']} | | |")
            continue
        ratio = f"{best[label] / ref:.2f}x" if ref else ""
        print(f"| {label} | {r['start_s']:.1f} | {r['warmup_s']:.2f} | {best[label]:.2f} | "
              f"{', '.join(f'{t:.2f}' for t in r['times'])} | {ratio} |")
    if "dplogs Spark local[1]" in best and ref:
        print(f"\nSpark local[2] vs local[1] speed-up: {best['dplogs Spark local[1]'] / ref:.2f}x (target >= 1.6x)")
    if "dplogs polars" in best and ref:
        print(f"Spark local[2] vs the polars backend: {ref / best['dplogs polars']:.2f}x the polars time")


if __name__ == "__main__":
    main()
