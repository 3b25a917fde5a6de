"""Fault injection: an ingest SIGKILLed at random points, then run again, leaves exactly the store
a clean run makes (events and quarantine), and no temporary files."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from dplogs.ingest.ingest import ingest
from tests.ingest.test_ingest_safety import INPUT_OPTS, _inputs, snapshot, stray_files

# The child counts the store's file operations (Parquet writes, renames, JSON writes) and kills
# itself with SIGKILL just before or just after the N-th one: every point between two durable
# steps, including a written but not yet renamed temporary file, is a possible crash point.
CHILD = r"""
import os, signal, sys
import pyarrow.parquet as pq
from pathlib import Path
from dplogs.ingest import store as s
from dplogs.ingest.base import IngestOptions
from dplogs.ingest.ingest import ingest

kill_at, after = int(sys.argv[1]), sys.argv[2] == "after"
calls = 0

def counted(real):
    def op(*args, **kw):
        global calls
        calls += 1
        if calls == kill_at and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*args, **kw)
        if calls == kill_at and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    return op

s.pq.write_table = counted(pq.write_table)
s.os.replace = counted(os.replace)
ingest(sys.argv[4:], sys.argv[3], options=IngestOptions(year=2024, chunk_lines=37))
print("OPS", calls)
"""


def _child(kill_at: int, when: str, store: Path, inputs: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHILD, str(kill_at), when, str(store), *map(str, inputs)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_sigkill_at_random_points_then_rerun_is_exact(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    ingest(inputs, tmp_path / "reference", options=INPUT_OPTS)
    expected = snapshot(tmp_path / "reference")
    clean = _child(0, "before", tmp_path / "clean", inputs)  # no kill: counts the operations
    ops = int(clean.stdout.split("OPS")[-1])
    assert snapshot(tmp_path / "clean") == expected and ops > 20
    rng = random.Random(12)
    trials, rows_right, quarantine_right, stray = 24, 0, 0, 0
    for trial in range(trials):
        store = tmp_path / f"s{trial}"
        killed = _child(rng.randint(1, ops), rng.choice(["before", "after"]), store, inputs)
        assert killed.returncode == -9, killed.stderr
        ingest(inputs, store, options=INPUT_OPTS)  # the rerun
        events, quarantine = snapshot(store)
        rows_right += events == expected[0]
        quarantine_right += quarantine == expected[1]
        stray += len(stray_files(store))
    print(f"\n{trials} kills: rows right {rows_right}/{trials}, quarantine right {quarantine_right}/{trials}, "
          f"stray files {stray}")
    assert (rows_right, quarantine_right, stray) == (trials, trials, 0)
