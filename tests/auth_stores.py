"""A small store of sshd failures, ingested through the CLI with generous caps, for tests of the
report, pin and catch-up paths that need a real store but not its contents."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.privacy.ledger import Ledger


def failures_store(tmp_path: Path, name: str = "st", *, days: range = range(1, 6), hosts: int = 1) -> Path:
    """Store ``tmp_path/name``: on each of March ``days`` 2026, four invalid users failing once each
    from their own address, on ``hosts`` hosts (``host`` alone, else ``web-0``, ``web-1``, ...);
    caps ε 100, δ 1e-4 per month."""
    log = tmp_path / f"{name}.log"
    host = (lambda i: "host") if hosts == 1 else (lambda i: f"web-{i % hosts}")
    log.write_text("".join(f"Mar {d:2d} 10:00:0{i} {host(i)} sshd[1]: Failed password for invalid user u{i} from "
                           f"198.51.100.{i} port 22 ssh2\n" for d in days for i in range(4)))
    path = tmp_path / name
    res = CliRunner().invoke(cli, ["ingest", str(log), "--store", str(path), "--year", "2026"])
    assert res.exit_code == 0, res.output
    Ledger.open(path / "ledger.sqlite", create=True).set_caps(window_policy="month", epsilon=100.0, delta=1e-4)
    return path
