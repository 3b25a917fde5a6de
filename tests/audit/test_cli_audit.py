"""`dplogs audit` end to end on a store built from sample_logs/: the verdict, the exit code when
the claim is broken, the detector audit, and that auditing never touches the budget ledger."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.privacy.sensitivity import Sensitivity

REPO = Path(__file__).resolve().parents[2]
SQL = "SELECT event.outcome, COUNT(*) FROM logs GROUP BY event.outcome"
OPTS = ["--epsilon", "1", "--max-groups", "3", "--max-rows-per-group", "5", "--start", "2024-03-01", "--end", "2024-04-01"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("audit") / "store"
    res = CliRunner().invoke(cli, ["ingest", "--store", str(path), "--year", "2024", str(REPO / "sample_logs" / "auth.log")])
    assert res.exit_code == 0, res.output
    return path


def _ledger_rows(store: Path) -> list:
    from dplogs.privacy.ledger import Ledger

    path = store / "ledger.sqlite"
    if not path.exists():
        return []
    led = Ledger.open(path)
    try:
        return [e.to_json() for e in led.history()]
    finally:
        led.close()


def test_audit_of_a_correct_query_passes_and_spends_nothing(store):
    before = _ledger_rows(store)
    res = CliRunner().invoke(cli, ["audit", "--store", str(store), "--inside-trust-boundary", "--sql", SQL, *OPTS, "--trials", "2000",
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert '"verdict": "ok"' in out and '"claimed_epsilon": 1.0' in out
    assert _ledger_rows(store) == before


def test_audit_exits_70_when_the_engine_understates_the_sensitivity(store, monkeypatch):
    """Broken fixture at the CLI level: the planner's count sensitivity halved."""
    from dplogs.engine import planner
    from dplogs.privacy.sensitivity import count_sensitivity

    def half(bounds):
        s = count_sensitivity(bounds)
        return Sensitivity(l1=s.l1 / 2, l2=s.l2 / 2)

    monkeypatch.setattr(planner, "count_sensitivity", half)
    # L0 = 2 covers both outcomes of every user, so bounding is seed-independent (fast path);
    # anna.ito has ≥ 2 successes and 2 failures: removing her moves the counts by the full L0·L∞
    res = CliRunner().invoke(cli, ["audit", "--store", str(store), "--inside-trust-boundary", "--sql", SQL, "--epsilon", "1", "--max-groups", "2",
                                   "--max-rows-per-group", "2", "--start", "2024-03-01", "--end", "2024-04-01",
                                   "--trials", "20000", "--unit", "anna.ito"])
    assert res.exit_code == 70, res.output
    assert "VIOLATION" in res.stdout and "privacy bug" in res.stderr


def test_detector_audit():
    res = CliRunner().invoke(cli, ["audit", "--detector", "kmeans", "--canaries", "1000"])
    assert res.exit_code == 0, res.output
    assert "dp k-means" in res.stdout and "→ ok" in res.stdout


def test_dpsgd_audit():
    res = CliRunner().invoke(cli, ["audit", "--detector", "dpsgd", "--canaries", "500", "--epsilon", "2"])
    assert res.exit_code == 0, res.output
    assert "DP-SGD step" in res.stdout and "→ ok" in res.stdout


def test_query_audit_needs_a_store():
    res = CliRunner().invoke(cli, ["audit", "--sql", SQL, *OPTS])
    assert res.exit_code == 64 and "--store" in res.stderr


def test_detector_audit_refuses_a_query_too(store):
    res = CliRunner().invoke(cli, ["audit", "--store", str(store), "--detector", "kmeans", "--sql", SQL])
    assert res.exit_code == 64 and "drop QUERYFILE" in res.stderr
