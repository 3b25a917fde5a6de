"""A query file's ``formats``: a window whose inputs hold none of the logs a query reads is refused
before the charge, and a report shows such a section as not applicable instead of spending on noise.

The input formats are public store metadata (docs/privacy.md), like the coverage spans.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.engine import Engine
from dplogs.errors import NoDataInWindow, NoLogsOfKind, QueryError
from dplogs.privacy.ledger import Ledger
from dplogs.report.render import SCHEMA_PATH

REPO = Path(__file__).resolve().parents[2]
WINDOWS_QUERY = str(REPO / "queries" / "windows_logon_failures_by_type.toml")
SUDO_QUERY = str(REPO / "queries" / "sudo_per_day.toml")
NIGHTLY = str(REPO / "queries" / "reports" / "nightly.toml")


def _auth_lines(days=(2, 3)) -> str:
    return "".join(
        f"Mar {d:2d} 10:00:0{i} host sshd[1]: Failed password for invalid user u{i} from 198.51.100.{i} port 22 ssh2\n"
        f"Mar {d:2d} 11:00:0{i} host sudo:    ann : TTY=pts/0 ; PWD=/home/ann ; USER=root ; COMMAND=/bin/ls\n"
        for d in days for i in range(4)
    )


def _windows_lines(day: str) -> str:
    return "".join(
        json.dumps({"@timestamp": f"{day}T08:30:0{i}Z", "Hostname": "DC1", "Channel": "security", "EventID": 4625,
                    "EventType": "AUDIT_FAILURE", "TargetUserName": f"u{i}", "IpAddress": "10.0.0.5", "LogonType": "3"})
        + "\n" for i in range(4)
    )


def _entries(store: Path) -> int:
    return len(Ledger.open(store / "ledger.sqlite").history())


def _store(tmp_path: Path, *inputs: tuple[str, str], name: str = "st") -> Path:
    paths = []
    for file, text in inputs:
        path = tmp_path / file
        path.write_text(text)
        paths.append(str(path))
    store = tmp_path / name
    res = CliRunner().invoke(cli, ["ingest", *paths, "--store", str(store), "--year", "2026"])
    assert res.exit_code == 0, res.output
    Ledger.open(store / "ledger.sqlite", create=True).set_caps(window_policy="month", epsilon=100.0, delta=1e-4)
    return store


@pytest.fixture
def linux_store(tmp_path: Path) -> Path:
    return _store(tmp_path, ("auth.log", _auth_lines()))


def test_a_query_for_logs_the_store_lacks_is_refused_before_the_charge(linux_store):
    res = CliRunner().invoke(cli, ["query", WINDOWS_QUERY, "--store", str(linux_store), "--day", "2026-03-02"])
    assert res.exit_code == 64, res.output
    assert "holds no logs this query reads" in res.output and "windows, evtx" in res.output
    assert _entries(linux_store) == 0
    # the same window with logs the query can read is released
    res = CliRunner().invoke(cli, ["query", SUDO_QUERY, "--store", str(linux_store), "--day", "2026-03-02"])
    assert res.exit_code == 0, res.output


def test_no_logs_at_all_is_still_reported_as_an_empty_window(linux_store):
    with pytest.raises(NoDataInWindow) as caught:
        Engine.open(linux_store).query_file(WINDOWS_QUERY, start="2026-05-01", end="2026-05-02").release(caller="t")
    assert not isinstance(caught.value, NoLogsOfKind)


def test_inputs_of_a_format_that_may_hold_any_events_count(linux_store, tmp_path):
    """An ECS JSON (jsonl) input over the window may hold Windows events: the query runs."""
    ecs = tmp_path / "ecs.json"
    ecs.write_text(json.dumps({"@timestamp": "2026-03-02T09:00:00Z", "event": {"code": "4625"},
                               "user": {"name": "bob"}}) + "\n")
    res = CliRunner().invoke(cli, ["ingest", str(ecs), "--store", str(linux_store), "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    rel = Engine.open(linux_store).query_file(WINDOWS_QUERY, start="2026-03-02", end="2026-03-03").release(caller="t")
    assert rel.privacy["coverage"]["covered_days"] == 1


def test_inputs_recorded_without_a_format_count(linux_store):
    """Records from before formats were read here (or edited) cannot tell: nothing is refused."""
    path = linux_store / "ingested.json"
    records = json.loads(path.read_text())
    for record in records.values():
        record.pop("format")
    path.write_text(json.dumps(records))
    rel = Engine.open(linux_store).query_file(WINDOWS_QUERY, start="2026-03-02", end="2026-03-03").release(caller="t")
    assert rel.privacy["coverage"]["covered_days"] == 1


def test_the_default_window_is_the_latest_one_holding_the_querys_logs(tmp_path):
    """Windows logs in January, Linux logs in March: a query reading Windows logs defaults to January."""
    store = _store(tmp_path, ("auth.log", _auth_lines()), ("security.json", _windows_lines("2026-01-20")))
    eng = Engine.open(store)
    windows = eng.sql("SELECT COUNT(*) FROM logs WHERE event.code = '4625'", formats=["windows", "evtx"])
    assert windows.plan.start.date().isoformat() == "2026-01-01"
    assert "window" in windows.plan.defaults_used
    assert eng.sql("SELECT COUNT(*) FROM logs").plan.start.date().isoformat() == "2026-03-01"


def test_the_python_api_takes_formats(linux_store):
    eng = Engine.open(linux_store)
    with pytest.raises(NoLogsOfKind):
        eng.sql("SELECT COUNT(*) FROM logs", formats=["windows"], max_rows_per_group=1,
                start="2026-03-02", end="2026-03-03").release(caller="t")
    assert eng.sql("SELECT COUNT(*) FROM logs", formats=["syslog"], max_rows_per_group=1,
                   start="2026-03-02", end="2026-03-03").release(caller="t").privacy["coverage"]["covered_days"] == 1
    with pytest.raises(QueryError, match="unknown format"):
        eng.sql("SELECT COUNT(*) FROM logs", formats=["winlog"])


@pytest.mark.parametrize("value, message", [('["winlog"]', "unknown format"), ('"windows"', "non-empty list"),
                                            ("[]", "non-empty list"), ("[1]", "non-empty list")])
def test_a_bad_formats_entry_is_refused_before_anything_is_charged(linux_store, tmp_path, value, message):
    spec = tmp_path / "q.toml"
    spec.write_text(f'name = "q"\nformats = {value}\nsql = "SELECT COUNT(*) FROM logs"\n')
    res = CliRunner().invoke(cli, ["query", str(spec), "--store", str(linux_store), "--day", "2026-03-02"])
    assert res.exit_code == 64, res.output
    assert message in res.output and str(spec) in res.output
    assert _entries(linux_store) == 0


def test_a_report_shows_a_section_for_logs_the_store_lacks_as_not_applicable(linux_store, tmp_path):
    out = tmp_path / "night.json"
    res = CliRunner().invoke(cli, ["report", NIGHTLY, "--store", str(linux_store), "--date", "2026-03-02",
                                   "--output", str(out)])
    assert res.exit_code == 0, res.output  # a Linux store's nightly report does not fail every night
    doc = json.loads(out.read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(doc)
    windows = next(s for s in doc["sections"] if "Windows" in s["title"])
    assert windows["not_applicable"] is True and "data" not in windows
    assert all("data" in s for s in doc["sections"] if s is not windows)
    assert doc["summary"]["not_applicable"] == [windows["title"]] and doc["summary"]["not_released"] == []
    # charged for the three sections it released, not the fourth
    entries = Ledger.open(linux_store / "ledger.sqlite").history()
    assert sorted(e.idempotency_key.rsplit(":", 1)[1] for e in entries) == sorted(
        s["query"] for s in doc["sections"] if s is not windows)
    md = tmp_path / "night.md"
    res = CliRunner().invoke(cli, ["report", NIGHTLY, "--store", str(linux_store), "--date", "2026-03-02",
                                   "--output", str(md)])
    assert res.exit_code == 0 and "**Not applicable:**" in md.read_text()


def test_a_report_none_of_whose_sections_applies_exits_64_and_says_so(tmp_path):
    """A web-only store: every nightly section reads authentication or Windows logs."""
    log = tmp_path / "access.log"
    log.write_text("".join(f'198.51.100.{i} - - [02/Mar/2026:10:00:0{i} +0000] "GET / HTTP/1.1" 200 512 "-" "curl"\n'
                           for i in range(5)))
    store = tmp_path / "web"
    assert CliRunner().invoke(cli, ["ingest", str(log), "--store", str(store)]).exit_code == 0
    Ledger.open(store / "ledger.sqlite", create=True).set_caps(window_policy="month", epsilon=100.0, delta=1e-4)
    out = tmp_path / "night.md"
    res = CliRunner().invoke(cli, ["report", NIGHTLY, "--store", str(store), "--date", "2026-03-02", "--output", str(out)])
    assert res.exit_code == 64, res.output
    assert "No section of this report applies to this store" in out.read_text()
    assert _entries(store) == 0
    # a catch-up goes on past such a period, as past one without logs
    res = CliRunner().invoke(cli, ["report", NIGHTLY, "--store", str(store), "--catch-up", "--since", "2026-03-01",
                                   "--until", "2026-03-03", "--out-dir", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out").glob("*.md"))) >= 3 and _entries(store) == 0


def test_explain_says_which_formats_it_reads_and_whether_a_release_would_be_refused(linux_store):
    res = CliRunner().invoke(cli, ["explain", WINDOWS_QUERY, "--store", str(linux_store), "--day", "2026-03-02"])
    assert res.exit_code == 0, res.output
    assert "input formats it reads: windows, evtx" in res.output
    assert "coverage: a release would be refused: the store holds no logs this query reads" in res.output
    res = CliRunner().invoke(cli, ["explain", SUDO_QUERY, "--store", str(linux_store), "--start", "2026-03-01",
                                   "--end", "2026-03-11", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["formats"] == ["syslog", "auditd"] and doc["coverage"]["covered_days"] == 2 and doc["coverage"]["window_days"] == 10
    assert _entries(linux_store) == 0
