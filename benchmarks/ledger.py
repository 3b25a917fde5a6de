"""What verification adds to a release on a big ledger: build a ledger of ``--entries`` committed
releases (default 100k, spread over 12 month windows), then time ``Ledger.charge`` with the
integrity check every reservation runs, the same charge with the check switched off, the check
alone, and a full ``verify()``.

    .venv/bin/python benchmarks/ledger.py [--entries 100000] [--charges 30] [--path /tmp/ledger.sqlite]

The ledger is built in one transaction through the ledger's own insert path (hash chain, seals,
write counter and state seal as in real use), so building 100k entries takes a few seconds rather
than the hours 100k separate releases would. Timings are medians (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from dplogs.privacy.ledger import Ledger, _now, _seal
from dplogs.privacy.loss import PrivacyLoss


def build(path: Path, entries: int) -> None:
    with Ledger.open(path, create=True, store_id="bench") as led:
        led.set_caps(window_policy="month", epsilon=1e9, delta=1e-3)
        with led._tx("fill") as c:
            led._guard(c)
            for i in range(entries):
                window = f"2026-{i % 12 + 1:02d}"
                eid = led._insert(c, PrivacyLoss(epsilon=1e-3), (window,), "month", "cli",
                                  f"SELECT COUNT(*) FROM logs -- {i}", None, ("discrete laplace",))
                entry_hash = c.execute("SELECT entry_hash FROM entries WHERE id = ?", (eid,)).fetchone()[0]
                now, payload = _now(), json.dumps({"values": [i, i + 1, i + 2], "ci": [1.0, 2.0]})
                c.execute("UPDATE entries SET status = 'committed', updated_at = ?, payload = ?, seal = ? WHERE id = ?",
                          (now, payload, _seal(entry_hash, "committed", now, payload), eid))
            led._seal_state(c)


def median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--charges", type=int, default=30)
    ap.add_argument("--path", type=Path, default=None, help="where to build the ledger (default: a temp dir)")
    args = ap.parse_args()
    path = args.path or Path(tempfile.mkdtemp()) / "ledger.sqlite"
    for old in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        old.unlink(missing_ok=True)  # always a fresh ledger of exactly --entries
    start = time.perf_counter()
    build(path, args.entries)
    print(f"built {args.entries} entries in {time.perf_counter() - start:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")

    start = time.perf_counter()
    led = Ledger.open(path, store_id="bench")
    print(f"open (includes SQLite quick_check): {(time.perf_counter() - start) * 1e3:.1f} ms")

    def charge() -> None:
        with led.charge(PrivacyLoss(epsilon=1e-3), windows=["2026-11"], caller="cli", query="q") as c:
            c.record({"v": 1})

    def check() -> None:
        with led._tx("check") as c:
            led._guard(c)

    checked = median_ms(charge, args.charges)
    guard = Ledger._guard
    Ledger._guard = lambda self, c, bind=False: None  # the same charge without the integrity check
    try:
        unchecked = median_ms(charge, args.charges)
    finally:
        Ledger._guard = guard
    alone = median_ms(check, args.charges)
    start = time.perf_counter()
    report = led.verify()
    full = time.perf_counter() - start
    assert report.ok, report.problems
    print(f"charge with the integrity check:    {checked:8.2f} ms per release (median of {args.charges})")
    print(f"charge without it:                  {unchecked:8.2f} ms per release")
    print(f"the check alone (in its own tx):    {alone:8.2f} ms")
    print(f"full verify() of {report.entries} entries: {full * 1e3:8.0f} ms (what re-hashing per release would cost)")


if __name__ == "__main__":
    main()
