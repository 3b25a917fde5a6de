"""Query `formats` and the store's coverage metadata under attack (found by faults4): odd values
in a query file, a coverage record edited to impossible days, report days at the calendar's end.
Every case: a specific message, a documented exit code (never 70), nothing charged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.adversarial.conftest import auth_store, ledger_state
from tests.adversarial.conftest import invoke as run

REPO = Path(__file__).resolve().parents[2]
NIGHTLY = REPO / "queries" / "reports" / "nightly.toml"
COUNT = ["--sql", "SELECT COUNT(*) AS n FROM logs", "--epsilon", "0.1"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return auth_store(tmp_path_factory.mktemp("coverage") / "store")


@pytest.fixture
def store(base, tmp_path) -> Path:
    shutil.copytree(base, tmp_path / "store")
    return tmp_path / "store"


def _query_file(tmp_path: Path, formats: str) -> Path:
    path = tmp_path / "q.toml"
    path.write_text(f'name = "q"\nsql = "SELECT COUNT(*) AS n FROM logs"\nformats = {formats}\n[privacy]\nepsilon = 0.1\n')
    return path


@pytest.mark.parametrize("formats, says", [
    ('["Syslog"]', "unknown format(s) 'Syslog' in"), ("[]", "non-empty list"), ('"syslog"', "non-empty list"),
    ("[1]", "non-empty list"), ('[["syslog"]]', "non-empty list"), ("{ a = 1 }", "non-empty list"),
    ('[" syslog"]', "unknown format(s)"),
])
def test_odd_formats_in_a_query_file_are_refused_before_the_charge(store, tmp_path, formats, says):
    before = ledger_state(store)
    res = run("query", _query_file(tmp_path, formats), "--store", store, "--start", "2024-03-01", "--end", "2024-04-01")
    assert res.exit_code == 64 and says in res.output, res.output
    assert ledger_state(store) == before


def test_a_huge_formats_list_gets_a_short_message(store, tmp_path):
    """200,000 unknown names were all repeated in the message (3.2 MB of error text)."""
    names = ", ".join(f'"x{i}"' for i in range(200_000))
    res = run("query", _query_file(tmp_path, f"[{names}]"), "--store", store, "--start", "2024-03-01", "--end", "2024-04-01")
    assert res.exit_code == 64 and "unknown format(s)" in res.output
    assert len(res.output) < 2_000 and "200,000" in res.output
    res = run("query", _query_file(tmp_path, "[" + ", ".join(["1"] * 200_000) + "]"), "--store", store)
    assert res.exit_code == 64 and len(res.output) < 2_000


@pytest.mark.parametrize("first, last, code, says", [
    ("9999-12-30", "9999-12-30", 64, "holds no ingested data"),  # as ingest --time-range 1970-01-01:9999-12-31 writes it
    ("9999-12-31", "9999-12-31", 64, "holds no ingested data"),
    ("0001-01-01", "0001-01-02", 64, "outside the supported range"),
    ("2024-03-20", "2024-03-01", 66, "ends (2024-03-01) before it begins"),
])
def test_coverage_at_the_calendars_ends_or_reversed_is_refused_before_the_charge(store, first, last, code, says):
    """Coverage in year 9999 made the default window end in year 10000 (ValueError, exit 70) and
    the refusal's hint overflowed (OverflowError, exit 70); a record ending before it begins is damage."""
    registry = json.loads((store / "ingested.json").read_text())
    for record in registry.values():
        record.update(first_day=first, last_day=last)
    (store / "ingested.json").write_text(json.dumps(registry))
    before = ledger_state(store)
    for args in (("query", "--store", store, *COUNT), ("query", "--store", store, *COUNT, "--start", "2024-03-01",
                                                        "--end", "2024-04-01")):
        res = run(*args)
        assert res.exit_code == code, res.output
        assert says in res.output or (code == 64 and "holds no ingested data" in res.output), res.output
    assert ledger_state(store) == before


@pytest.mark.parametrize("args", [["--date", "9999-12-31"], ["--date", "0001-01-01"],
                                  ["--catch-up", "--since", "9999-12-30", "--until", "9999-12-31", "--out-dir", "OUT"]])
def test_report_days_outside_the_supported_range_are_usage_errors(store, tmp_path, args):
    """--date 9999-12-31 (and a catch-up there) crashed with OverflowError: exit 70."""
    before = ledger_state(store)
    res = run("report", NIGHTLY, "--store", store, *[str(tmp_path / "out") if a == "OUT" else a for a in args])
    assert res.exit_code == 64, res.output
    assert "outside the supported range" in res.output
    assert ledger_state(store) == before
