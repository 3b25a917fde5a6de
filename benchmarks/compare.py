"""From-store A/B against another checkout of dplogs (e.g. main), alternating in one run.

    .venv/bin/python benchmarks/compare.py --base ../main [--rows 1e7] [--reps 5]

Times ``benchmarks/query.py``'s from-store release (its SQL, bounds and store layout) with this
checkout's code and with ``--base``'s, one contender after the other in every repetition (the
machine may be shared), each in a fresh process: the API path (one release to warm imports and
the page cache, then one timed release, CPU seconds of the process and its peak RSS) and the
``dplogs query`` command as a whole (CPU seconds of the child, interpreter start-up included).
Each checkout reads a store written by its own code (``benchmarks/.data/store_N`` and
``benchmarks/.data/base/store_N``); this checkout also reads the base's store, which shows how it
reads stores written before its layout. Prints best and median per contender as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import query  # noqa: E402  (this directory's benchmark: SQL, store layout, CLI arguments)

_API = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
import query
from pathlib import Path
path = Path(sys.argv[1])
query.store_release(path)
cpu, wall = time.process_time(), time.perf_counter()
query.store_release(path)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
import dplogs
print(json.dumps({"cpu": cpu, "wall": wall, "peak": peak / 1024, "dplogs": dplogs.__file__}))
"""
_STORE = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import query; "
          "query.DATA = Path(sys.argv[2]); query.store({n}, data=query.DATA)")  # nothing written into the base
_CLI = "import sys; from dplogs.cli import main; sys.argv[0] = 'dplogs'; main()"


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root)}


def _run(args: list[str], root: Path) -> str:
    # run in root: ``python -c`` puts the working directory first on sys.path, ahead of
    # PYTHONPATH, so from another checkout's directory it would import that checkout's dplogs
    out = subprocess.run(args, env=_env(root), cwd=root, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{args[2:4]} with {root} failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return out.stdout


def api(root: Path, store: Path) -> dict[str, float]:
    out = json.loads(_run([sys.executable, "-c", _API, str(store), str(HERE)], root).strip().splitlines()[-1])
    if not Path(out.pop("dplogs")).is_relative_to(root):
        raise SystemExit(f"the run for {root} imported another checkout's dplogs")
    return out


def cli(root: Path, store: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-c", _CLI, *query.cli_args(store, Path(tmp) / "release.json")[1:]]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter()
        _run(args, root)
        wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cpu": after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, default=ROOT.parent / "main", help="the other checkout (default ../main)")
    ap.add_argument("--rows", default="1e7")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    n, base = int(float(args.rows)), args.base.resolve()
    ours = query.store(n)
    base_data = query.DATA / "base"
    subprocess.run([sys.executable, "-c", _STORE.format(n=n), str(base / "benchmarks"), str(base_data)],
                   env=_env(base), cwd=base, check=True)
    theirs = base_data / f"store_{n}"
    contenders = {
        "base API (its store)": (api, base, theirs),
        "this API (its store)": (api, ROOT, ours),
        "this API (the base's store)": (api, ROOT, theirs),
        "base CLI (its store)": (cli, base, theirs),
        "this CLI (its store)": (cli, ROOT, ours),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    for rep in range(args.reps):
        for name, (fn, root, store) in contenders.items():
            runs[name].append(fn(root, store))
            query.log(f"rep {rep}: {name}: {runs[name][-1]}")
    print(f"\n{n:.0e} rows from the store, {args.reps} alternating reps; base = {base}\n")
    print("| contender | CPU s best | CPU s median | wall s best | wall s median | peak RSS MiB (API) |")
    print("|---|---|---|---|---|---|")
    for name, rs in runs.items():
        cpu, wall = [r["cpu"] for r in rs], [r["wall"] for r in rs]
        peak = f"{max(r['peak'] for r in rs):.0f}" if "peak" in rs[0] else ""
        print(f"| {name} | {min(cpu):.2f} | {statistics.median(cpu):.2f} | {min(wall):.2f} | {statistics.median(wall):.2f} "
              f"| {peak} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end")


if __name__ == "__main__":
    main()
