"""``dplogs inspect`` (coverage, events, quarantine), ingest progress, and reading a store with plain
polars."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.ingest.base import NO_TIME_REASON
from dplogs.ingest.ingest import ingest
from dplogs.ingest.store import Store
from dplogs.schema import STORE_SCHEMA

AUTH = [
    "Mar 30 15:05:11 web sshd[9]: Failed password for invalid user admin from 24.151.103.17 port 52844 ssh2",
    "Mar 30 15:05:12 web sshd[9]: Accepted password for bob from 10.0.0.9 port 52845 ssh2",
    "Mar 31 09:00:00 web sudo:   bob : TTY=pts/0 ; PWD=/home/bob ; USER=root ; COMMAND=/bin/ls",
    "this line has no syslog header \x1b[31m",
]
CEF = ["CEF:0|V|P|1|1|N|5|src=10.0.0.1 rt=1705481530000", "CEF:0|V|P|1|1|N|5|src=10.0.0.2 suser=eve"]


def _store(tmp_path: Path) -> Path:
    (tmp_path / "auth.log").write_text("\n".join(AUTH) + "\n")
    (tmp_path / "fw.cef").write_text("\n".join(CEF) + "\n")
    ingest([tmp_path / "auth.log"], tmp_path / "s", format="syslog", options=_opts())
    ingest([tmp_path / "fw.cef"], tmp_path / "s", format="cef")
    return tmp_path / "s"


def _opts():
    from dplogs.ingest.base import IngestOptions

    return IngestOptions(year=2024)


def _run(*args: str):
    return CliRunner().invoke(cli, ["inspect", *args])


def test_coverage_per_day_dataset_and_input(tmp_path: Path) -> None:
    store = _store(tmp_path)
    out = _run("--store", str(store), "--format", "json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    events = {(r["day"], r["event.dataset"], Path(r["log.file.path"]).name): r["rows"]
              for r in doc["events per day, dataset and input"]}
    assert events == {("2024-01-17", "cef.log", "fw.cef"): 1, ("2024-03-30", "system.auth", "auth.log"): 2,
                      ("2024-03-31", "system.auth", "auth.log"): 1}
    rejected = {(Path(r["source"]).name, r["reason"]): r["lines"] for r in doc["quarantined lines per input and reason"]}
    assert rejected == {("auth.log", "no syslog header"): 1, ("fw.cef", NO_TIME_REASON): 1}
    assert "trust boundary" in out.stderr and "not a differentially private release" in out.stderr


def test_head_where_and_columns(tmp_path: Path) -> None:
    store = _store(tmp_path)
    out = _run("--store", str(store), "--head", "5", "--where", "event.category = 'authentication' AND event.outcome = 'failure'",
               "--format", "json")
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.stdout)["events"]
    assert (row["user.name"], row["source.ip"], row["event.category"]) == ("admin", "24.151.103.17", ["authentication"])
    table = _run("--store", str(store), "--head", "4", "--columns", "user.name,user.effective.name,event.action")
    assert table.exit_code == 0 and "user.effective.name" in table.stdout and "bob" in table.stdout
    assert _run("--store", str(store), "--where", "x = 1").exit_code == 64  # --where needs --head
    assert _run("--store", str(store), "--head", "1", "--where", "nosuch = 1").exit_code == 64
    assert _run("--store", str(store), "--head", "1", "--columns", "nosuch").exit_code == 64


def test_wide_events_are_shown_a_field_a_line(tmp_path: Path) -> None:
    """A Windows event sets ~23 columns: as one table row in a 160-column console each column was
    about 5 characters wide (a timestamp folded over 9 lines). Wide events are shown one at a
    time, a field a line, the unset fields left out; a few chosen columns stay one table."""
    store = _store(tmp_path)
    out = _run("--store", str(store), "--head", "1", "--where", "event.outcome = 'failure'")
    assert out.exit_code == 0, out.output
    lines = {" ".join(line.strip("│ ").split()) for line in out.stdout.splitlines()}
    assert "events: 1 of 1" in lines
    assert "@timestamp │ 2024-03-30T15:05:11+00:00" in lines and "source.ip │ 24.151.103.17" in lines
    assert not any(line.startswith("user.target.name") for line in lines)  # not set: not shown
    narrow = _run("--store", str(store), "--head", "4", "--columns", "user.name,event.action")
    assert narrow.exit_code == 0 and "events (4 rows)" in narrow.stdout


def test_quarantine_shows_lines_with_reasons_inert(tmp_path: Path) -> None:
    store = _store(tmp_path)
    out = _run("--store", str(store), "--quarantine", "--reason", "no syslog header")
    assert out.exit_code == 0, out.output
    assert "no syslog header" in out.stdout and "\\x1b" in out.stdout and "\x1b" not in out.stdout
    doc = json.loads(_run("--store", str(store), "--quarantine", "--format", "json").stdout)
    assert sorted(r["reason"] for r in doc["quarantine"]) == sorted(["no syslog header", NO_TIME_REASON])
    assert _run("--store", str(tmp_path / "missing")).exit_code == 66


def test_plain_polars_reads_the_store_in_one_call(tmp_path: Path) -> None:
    store = _store(tmp_path)  # its files hold different column sets (syslog vs CEF)
    # the documented recipe: files also carry dplogs' unit code, which extra_columns leaves out
    plain = pl.scan_parquet(f"{store}/events/**/*.parquet", schema=STORE_SCHEMA, missing_columns="insert",
                            extra_columns="ignore", hive_partitioning=False).collect()
    assert plain.schema == STORE_SCHEMA and plain.height == 4
    assert plain.sort("event.hash").equals(Store.open(store).scan().collect().sort("event.hash"))


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def begin(self, name: str, total_bytes: int) -> None:
        self.calls.append(("begin", Path(name).name, total_bytes))

    def update(self, bytes_done: int, records: int) -> None:
        self.calls.append(("update", bytes_done, records))

    def end(self) -> None:
        self.calls.append(("end",))


def test_ingest_reports_progress_per_input(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("\n".join(AUTH * 3) + "\n")
    rec = _Recorder()
    ingest([log], tmp_path / "s", format="syslog", progress=rec)
    assert rec.calls[0] == ("begin", "auth.log", log.stat().st_size) and rec.calls[-1] == ("end",)
    updates = [c for c in rec.calls if c[0] == "update"]
    assert sum(c[2] for c in updates) == 12 and updates[-1][1] == log.stat().st_size


def test_cli_ingest_on_a_pipe_shows_no_progress_and_an_uncut_summary(tmp_path: Path) -> None:
    (tmp_path / "auth.log").write_text("\n".join(AUTH) + "\n")
    out = CliRunner().invoke(cli, ["ingest", str(tmp_path / "auth.log"), "--store", str(tmp_path / "s"), "--year", "2024"])
    assert out.exit_code == 0, out.output
    assert "records" not in out.stderr.splitlines()[0]  # no progress bar
    assert "quarantined" in out.stderr and "quarant…" not in out.stderr  # headers are not cut on a pipe
    quiet = CliRunner().invoke(cli, ["ingest", str(tmp_path / "auth.log"), "--store", str(tmp_path / "s"), "--quiet"])
    assert quiet.exit_code == 0
