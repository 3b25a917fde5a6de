"""Ingest throughput and memory, next to polars' own readers on the same bytes, in the same run.

    python benchmarks/ingest.py                 # 1M lines each: syslog/auth, auditd, combined access, ECS JSON
    python benchmarks/ingest.py --lines 200000  # quicker
    python benchmarks/ingest.py --big           # also a ~2 GB auth.log: peak RSS must stay <= 1.5 GB
    python benchmarks/ingest.py --compare /tmp/old . --reps 8   # source trees, alternating runs

``--compare`` runs only the dplogs ingest, from each source tree in turn (``git worktree add
/tmp/old <commit>`` makes one; it must import as ``dplogs``), rep after rep, so every tree sees
the same machine load, and reports the median and best wall and CPU seconds per tree with the
ratio to the first tree. CPU seconds there are the worker's whole process (start-up and imports
included: they are part of the command).

Inputs are generated deterministically into benchmarks/.data/ (gitignored). Every measurement runs
in its own worker process; a small monitor process starts the worker and reads the worker's peak
RSS with ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``. "dplogs" is the whole ingest (read,
parse, hash, dedup check, write the Parquet store); the references only read: ``pl.read_csv`` of
the lines as one column for the text logs, ``pl.read_ndjson`` for JSON. Ratios are
reference time / dplogs time (wall clock), so 1.0 means as fast as the plain polars reader; CPU
seconds (user + system, including interpreter start-up) are shown too because machines shared with
other work give noisy wall-clock figures. The load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / ".data"
USERS = [f"user{i:03d}" for i in range(300)]
AGENTS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0 Safari/537.36",
          "curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _ip(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def _syslog_line(i: int) -> str:
    # Deterministic mix resembling a busy bastion host's auth.log.
    day, sec = 1 + (i // 400_000) % 28, (i * 7) % 86400
    ts = f"Mar {day:2d} {sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}"
    user, ip, pid, port = USERS[i % 300], _ip((i * 2654435761) % 16_777_216), 1000 + i % 60000, 1024 + i % 60000
    kind = i % 10
    if kind < 3:
        msg = f"sshd[{pid}]: Failed password for {user} from {ip} port {port} ssh2"
    elif kind < 5:
        msg = f"sshd[{pid}]: Accepted publickey for {user} from {ip} port {port} ssh2: RSA SHA256:abcdef{i % 997}"
    elif kind < 7:
        msg = f"sshd[{pid}]: pam_unix(sshd:session): session opened for user {user} by (uid=0)"
    elif kind == 7:
        msg = f"sudo:   {user} : TTY=pts/{i % 9} ; PWD=/home/{user} ; USER=root ; COMMAND=/usr/bin/systemctl status nginx"
    elif kind == 8:
        msg = f"sshd[{pid}]: Invalid user admin{i % 50} from {ip} port {port}"
    else:
        msg = f"systemd[1]: Started Session {i} of user {user}."
    return f"{ts} bastion01 {msg}\n"


def _access_line(i: int) -> str:
    day, sec = 1 + (i // 400_000) % 28, (i * 7) % 86400
    ts = f"{day:02d}/Mar/2024:{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d} +0000"
    status = (200, 200, 200, 304, 404, 500)[i % 6]
    return (f'{_ip((i * 40503) % 16_777_216)} - {USERS[i % 300]} [{ts}] "GET /app/page/{i % 5000}?q={i % 77} HTTP/1.1" '
            f'{status} {(i * 7919) % 200_000} "https://intranet.example.com/" "{AGENTS[i % 3]}"\n')


def _ecs_line(i: int) -> str:
    sec = (i * 7) % 86400
    doc = {
        "@timestamp": f"2024-03-{1 + (i // 400_000) % 28:02d}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}.000Z",
        "event": {"category": "authentication", "action": "logon", "outcome": "failure" if i % 4 == 0 else "success",
                  "dataset": "bench.ecs"},
        "user": {"name": USERS[i % 300]},
        "source": {"ip": _ip((i * 2654435761) % 16_777_216), "port": 1024 + i % 60000},
        "host": {"name": f"host{i % 40}"},
        "message": f"logon {i}",
    }
    return json.dumps(doc, separators=(",", ":")) + "\n"


def _audit_line(i: int) -> str:
    # A login host's audit.log: PAM/login records (inner msg='…'), then a kernel event's records
    # (SYSCALL, EXECVE with a hex argument, PROCTITLE) as the execve audit rules write them.
    stamp, user, ip, pid = f"{1709251200 + (i * 7) % 2_400_000}.{i % 1000:03d}:{i}", USERS[i % 300], _ip((i * 2654435761) % 16_777_216), 1000 + i % 60000
    kind = i % 8
    if kind < 4:
        record = ("USER_AUTH", "PAM:authentication grantors=pam_unix", "failed" if kind < 2 else "success") if kind < 3 else \
            ("USER_LOGIN", "login", "success")
        return (f"type={record[0]} msg=audit({stamp}): pid={pid} uid=0 auid=4294967295 ses=4294967295 "
                f"subj=system_u:system_r:sshd_t:s0-s0:c0.c1023 msg='op={record[1]} acct=\"{user}\" exe=\"/usr/sbin/sshd\" "
                f"hostname={ip} addr={ip} terminal=ssh res={record[2]}'\n")
    if kind == 4:
        return (f"type=USER_START msg=audit({stamp}): pid={pid} uid=0 auid={1000 + i % 300} ses={i % 5000} "
                f"msg='op=PAM:session_open grantors=pam_unix acct=\"{user}\" exe=\"/usr/bin/sudo\" hostname=? addr=? "
                "terminal=/dev/pts/0 res=success'\n")
    if kind == 5:
        return (f"type=SYSCALL msg=audit({stamp}): arch=c000003e syscall=59 success=yes exit=0 a0=55d0 a1=55d1 a2=55d2 a3=0 "
                f"items=2 ppid=1 pid={pid} auid={1000 + i % 300} uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 "
                f"tty=pts0 ses={i % 5000} comm=\"systemctl\" exe=\"/usr/bin/systemctl\" key=\"exec\"\n")
    if kind == 6:
        return f"type=EXECVE msg=audit({stamp}): argc=3 a0=\"systemctl\" a1=\"status\" a2=6E67696E78202D7420{0x30 + i % 10:02X}\n"
    return f"type=PROCTITLE msg=audit({stamp}): proctitle=73797374656D63746C0073746174757300{0x30 + i % 10:02X}\n"


GENERATORS = {"syslog": (_syslog_line, "auth.log"), "access": (_access_line, "access.log"), "jsonl": (_ecs_line, "ecs.jsonl"),
              "auditd": (_audit_line, "audit.log")}


def generate(kind: str, lines: int, name: str | None = None) -> Path:
    make, default = GENERATORS[kind]
    path = DATA / (name or f"{lines}-{default}")
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        block = 100_000
        for start in range(0, lines, block):
            out.write("".join(make(i) for i in range(start, min(lines, start + block))))
    tmp.rename(path)
    return path


def work(kind: str, path: str) -> None:
    """Worker process: one measurement, prints elapsed seconds and the row count."""
    import polars as pl

    from dplogs.ingest.ingest import ingest  # imported before the clock starts, like polars
    from dplogs.ingest.reader import check_format_name

    if kind.startswith("dplogs_"):  # and the format's module, which ingest() imports on first use of it
        check_format_name(kind.removeprefix("dplogs_"))

    start, quarantined = time.perf_counter(), 0
    if kind == "startup":  # interpreter + imports only: subtracted from the CPU figures
        rows = 0
    elif kind == "polars_csv":
        rows = pl.read_csv(path, has_header=False, separator="\x1f", quote_char=None, new_columns=["line"]).height
    elif kind == "polars_ndjson":
        rows = pl.read_ndjson(path).height
    else:
        store = tempfile.mkdtemp(prefix="dplogs-bench-", dir=DATA)
        try:
            summary = ingest([path], store, format=kind.removeprefix("dplogs_"))
            rows, quarantined = summary.parsed, summary.quarantined
        finally:
            shutil.rmtree(store, ignore_errors=True)
    print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows, "quarantined": quarantined}))


def measure(kind: str, path: str) -> None:
    """Monitor process: run one worker and report its time and peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--work", kind, path], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime  # includes interpreter start-up and imports
    print(json.dumps(result))


def _run(kind: str, path: Path, tree: str | None = None) -> dict:
    """One measurement in a fresh monitor process; ``tree``: import dplogs from that source tree."""
    env = None if tree is None else {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    out = subprocess.run([sys.executable, __file__, "--measure", kind, str(path)], check=True, capture_output=True, text=True,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(trees: list[str], lines: int, reps: int, kinds: list[str]) -> None:
    """Alternating runs of each tree's ingest; the order of trees rotates every rep."""
    for tree in trees:
        if not (Path(tree) / "dplogs" / "__init__.py").is_file():
            raise SystemExit(f"{tree} is not a dplogs source tree")
    print("| input | tree | wall s median | wall s best | CPU s median | CPU s best | lines/s (median wall) "
          "| wall median / first tree's | CPU median / first tree's |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind in kinds:
        path = generate(kind, lines)
        runs: dict[str, list[dict]] = {tree: [] for tree in trees}
        for rep in range(reps):
            print(f"{kind}: rep {rep + 1}/{reps}", file=sys.stderr)
            for tree in trees[rep % len(trees):] + trees[:rep % len(trees)]:
                result = _run(f"dplogs_{kind}", path, tree)
                assert result["rows"] == lines and not result["quarantined"], result
                runs[tree].append(result)
        first = None
        for tree in trees:
            wall = sorted(r["seconds"] for r in runs[tree])
            cpu = sorted(r["cpu_seconds"] for r in runs[tree])
            medians = statistics.median(wall), statistics.median(cpu)
            first = first or medians
            print(f"| {kind} | {tree} | {medians[0]:.2f} | {wall[0]:.2f} | {medians[1]:.2f} | {cpu[0]:.2f} "
                  f"| {lines / medians[0]:,.0f} | {medians[0] / first[0]:.3f} | {medians[1] / first[1]:.3f} |")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (after the runs); {reps} reps per tree")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--big", action="store_true", help="also ingest a ~2 GB auth.log and check peak RSS <= 1.5 GB")
    parser.add_argument("--compare", nargs="+", metavar="TREE", help="dplogs source trees to time against each other")
    parser.add_argument("--reps", type=int, default=8, help="repetitions per tree with --compare")
    parser.add_argument("--kinds", default="syslog,access,jsonl", help="inputs measured with --compare")
    parser.add_argument("--work", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work:
        return work(*args.work)
    if args.measure:
        return measure(*args.measure)
    if args.compare:
        return compare(args.compare, args.lines, args.reps, args.kinds.split(","))

    startup = _run("startup", Path(__file__))["cpu_seconds"]
    rows = []
    for kind, reference in (("syslog", "polars_csv"), ("auditd", "polars_csv"), ("access", "polars_csv"), ("jsonl", "polars_ndjson")):
        print(f"generating and measuring {kind} ({args.lines:,} lines)...", file=sys.stderr)
        path = generate(kind, args.lines)
        ours, ref = _run(f"dplogs_{kind}", path), _run(reference, path)
        assert ours["rows"] == ref["rows"] == args.lines and not ours["quarantined"], (ours, ref)
        rows.append((kind, path, ours, reference, ref))
    if args.big:
        lines = 20_000_000  # ~2 GB of auth.log-style text
        print(f"generating and measuring big syslog ({lines:,} lines)...", file=sys.stderr)
        path = generate("syslog", lines, name="big-auth.log")
        rows.append(("syslog (big)", path, _run("dplogs_syslog", path), "polars_csv", _run("polars_csv", path)))

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; CPU s are net of {startup:.1f} s start-up")
    print("| input | lines | MB | dplogs lines/s (wall) | dplogs CPU s | dplogs lines per CPU s | dplogs peak RSS MB "
          "| reference | ref lines/s (wall) | ref CPU s | ref peak RSS MB | wall ratio ref/dplogs | CPU ratio ref/dplogs |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for kind, path, ours, reference, ref in rows:
        n = ours["rows"]
        cpu, ref_cpu = max(ours["cpu_seconds"] - startup, 1e-3), max(ref["cpu_seconds"] - startup, 1e-3)
        print(f"| {kind} | {n:,} | {path.stat().st_size / 1e6:,.0f} | {n / ours['seconds']:,.0f} | {cpu:.1f} | {n / cpu:,.0f} "
              f"| {ours['peak_rss_mb']:,.0f} | {reference} | {n / ref['seconds']:,.0f} | {ref_cpu:.1f} "
              f"| {ref['peak_rss_mb']:,.0f} | {ref['seconds'] / ours['seconds']:.2f} | {ref_cpu / cpu:.2f} |")
    if args.big:
        big = rows[-1][2]
        verdict = "OK" if big["peak_rss_mb"] <= 1536 else "OVER"
        print(f"big input peak RSS {big['peak_rss_mb']:,.0f} MB (limit 1,536 MB): {verdict}")


if __name__ == "__main__":
    main()
