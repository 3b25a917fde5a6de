"""`dplogs audit` end to end on a store built from sample_logs/: the verdict, the exit code when
the claim is broken, the detector audit, that auditing never touches the budget ledger, that a
query audit runs only with --inside-trust-boundary, and that it never prints a unit's value."""

import re
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


def _unit_values(store: Path) -> list[str]:
    """The audit's default victim (the heaviest contributor) and the store's user names of the form
    first.last (short ones like "test" are words the output may contain for other reasons)."""
    from dplogs.audit.engine import heaviest_unit
    from dplogs.engine import Engine

    engine = Engine.open(store)
    names = engine.scan().select("user.name").unique().collect()["user.name"].drop_nulls().to_list()
    names = [n for n in names if "." in n]
    assert "anna.ito" in names and len(names) >= 10
    plan = engine.sql(SQL, epsilon=1.0, max_groups=3, max_rows_per_group=5, start="2024-03-01", end="2024-04-01").plan
    victim = heaviest_unit(plan, engine.scan()).unit  # Binary; the shared unit is b"\xff"
    value = engine.unit.text(victim)
    return [*([value] if victim != engine.unit.shared_value else []), *names]


def _names_no_unit(text: str, units: list[str]) -> None:
    shown = [u for u in units if u in text]
    assert not shown, f"audit output names units {shown}"


def test_audit_of_a_correct_query_passes_and_spends_nothing(store):
    before = _ledger_rows(store)
    res = CliRunner().invoke(cli, ["audit", "--store", str(store), "--inside-trust-boundary", "--sql", SQL, *OPTS, "--trials", "2000",
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert '"verdict": "ok"' in out and '"claimed_epsilon": 1.0' in out
    assert "the heaviest contributor removed" in out
    _names_no_unit(res.output, _unit_values(store))
    assert _ledger_rows(store) == before


def test_query_audit_is_refused_outside_the_trust_boundary(store, monkeypatch):
    """Without --inside-trust-boundary: exit 64 before the store is even opened, nothing on stdout."""
    from dplogs.engine.api import Engine

    def no_read(*args, **kwargs):
        raise AssertionError("the store was opened")

    before = _ledger_rows(store)
    monkeypatch.setattr(Engine, "open", no_read)
    for extra in ([], ["--unit", "anna.ito"]):
        res = CliRunner().invoke(cli, ["audit", "--store", str(store), "--sql", SQL, *OPTS, "--trials", "200", *extra])
        assert res.exit_code == 64, res.output
        assert res.stdout == "" and "--inside-trust-boundary" in res.stderr
        assert "nothing was read" in res.stderr and "anna.ito" not in res.stderr
    assert _ledger_rows(store) == before


def test_audit_text_output_never_names_the_unit(store):
    units = _unit_values(store)
    for extra in ([], ["--unit", "anna.ito"]):
        res = CliRunner().invoke(cli, ["audit", "--store", str(store), "--inside-trust-boundary", "--sql", SQL, *OPTS,
                                       "--trials", "200", *extra])
        assert res.exit_code == 0, res.output
        assert ("the given unit removed" if extra else "the heaviest contributor removed") in res.stdout
        _names_no_unit(res.output, units)


def test_audit_of_a_private_key_never_names_the_unit_or_its_key(store):
    """A private key is audited by following the victim's most frequent key: neither is printed."""
    units = _unit_values(store)
    res = CliRunner().invoke(cli, ["audit", "--store", str(store), "--inside-trust-boundary", "--sql",
                                   "SELECT source.ip, COUNT(*) FROM logs GROUP BY source.ip", "--epsilon", "1",
                                   "--delta", "1e-5", "--max-groups", "1", "--max-rows-per-group", "1",
                                   "--start", "2024-03-01", "--end", "2024-04-01", "--trials", "200", "--format", "json"])
    assert res.exit_code == 0, res.output
    _names_no_unit(res.output, units)
    assert not re.search(r"\d+\.\d+\.\d+\.\d+", res.output), "an IP key was printed"


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
    assert "anna.ito" not in res.output and "the given unit removed" in res.stdout


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
