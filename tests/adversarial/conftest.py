"""A small store with a budget ledger that already holds one committed release, for tests that
check hostile input is refused with the documented exit code and charges nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dplogs.cli import cli

REPO = Path(__file__).resolve().parents[2]
GOOD = ["--sql", "SELECT event.outcome, COUNT(*) FROM logs GROUP BY event.outcome", "--epsilon", "0.1",
        "--max-groups", "1", "--max-rows-per-group", "2", "--start", "2024-03-01", "--end", "2024-04-01"]


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def auth_store(path: Path, *, epsilon: float = 50) -> Path:
    """The sample auth.log ingested into a new store at ``path`` with caps of ``epsilon`` (δ 1e-5)."""
    assert invoke("ingest", "--store", path, "--year", "2024", REPO / "sample_logs" / "auth.log").exit_code == 0
    assert invoke("budget", "set", "--store", path, "--epsilon", epsilon, "--delta", "1e-5").exit_code == 0
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = auth_store(tmp_path_factory.mktemp("adv") / "store")
    res = invoke("query", "--store", path, *GOOD, "--format", "json")
    assert res.exit_code == 0, res.output
    return path


def ledger_state(store: Path) -> list[dict]:
    from dplogs.privacy.ledger import Ledger

    led = Ledger.open(store / "ledger.sqlite")
    try:
        return [e.to_json() for e in led.history()]
    finally:
        led.close()
