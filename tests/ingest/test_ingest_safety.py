"""Ingest never loses or duplicates (issue 12): mixed column sets in a day, re-ingestion of grown
and rotated files, one run == two runs, the time range, directory walks, gzip bombs, a corrupt
registry, links in the store, hostile paths, and disk-full / read-only stores."""

from __future__ import annotations

import datetime as dt
import errno
import gzip
import json
import os
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.errors import DataError, StoreError, StoreWriteError
from dplogs.ingest import store as store_module
from dplogs.ingest.base import IngestOptions
from dplogs.ingest.ingest import ingest
from dplogs.ingest.store import Store

OPTS = IngestOptions(year=2024)


def auth_line(i: int, day: int = 1) -> str:
    kinds = (
        f"sshd[{i}]: Failed password for u{i % 7} from 10.0.{i % 3}.{i % 250} port {1000 + i} ssh2",
        f"systemd[1]: Started Session {i} of user u{i % 7}.",
        f"sudo:   u{i % 7} : TTY=pts/1 ; PWD=/home/u{i % 7} ; USER=root ; COMMAND=/bin/ls {i}",
        f"useradd[{i}]: new user: name=n{i}, UID={1000 + i}, GID=100, home=/home/n{i}, shell=/bin/sh",
    )
    return f"Mar {day:2d} {i % 24:02d}:{i % 60:02d}:{i % 60:02d} h {kinds[i % 4]}"


def access_line(i: int, day: int = 1) -> str:
    return f'10.1.0.{i % 250} - u{i % 5} [{day:02d}/Mar/2024:10:00:{i % 60:02d} +0000] "GET /p/{i} HTTP/1.1" {200 + i % 3} {i}'


def json_line(i: int, day: int = 1) -> str:
    return json.dumps({"@timestamp": f"2024-03-{day:02d}T11:00:{i % 60:02d}Z", "event": {"action": f"a{i % 3}"},
                       "user": {"name": f"j{i}"}, "source": {"ip": f"10.2.0.{i % 250}"}})


def write_lines(path: Path, lines: list[str], *, mode: str = "w") -> Path:
    with path.open(mode) as f:
        f.write("".join(line + "\n" for line in lines))
    return path


def snapshot(path: Path, *, names: bool = True) -> tuple[list, list]:
    """Everything that matters about a store's content, order-free: the events' hashes and key
    columns (with the file each came from, unless not ``names``), and the quarantined records."""
    store = Store.open(path)
    events = store.scan().select("event.hash", "@timestamp", "log.offset", "user.name", "message",
                                 *(["log.file.path"] if names else []))
    quarantine = store.scan_quarantine().select("source", "line", "reason", "text")
    return (sorted(events.collect().with_columns(pl.col("event.hash").cast(pl.List(pl.UInt64))).rows()),
            sorted(quarantine.collect().rows()))


def stray_files(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob(".*") if p.name != ".ingest.lock")


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# -- 1. a day whose files hold different column sets -------------------------------------------

def test_growing_log_ingested_24_times_keeps_exactly_every_line(tmp_path: Path) -> None:
    # The hourly cron: the same auth.log grows, is ingested again each hour; its lines fill
    # different columns (sshd, systemd, sudo, useradd), so the day's files differ in columns.
    log = tmp_path / "auth.log"
    lines: list[str] = []
    for hour in range(24):
        new = [auth_line(4 * (hour * 5 + k) + hour % 4) for k in range(5)] + [f"garbage {hour}"]  # one kind an hour
        lines += new
        write_lines(log, new, mode="a")
        summary = ingest([log], tmp_path / "s", options=OPTS, format="syslog")
        assert summary.written == 5, (hour, summary)
    store = Store.open(tmp_path / "s")
    events = store.scan().collect()
    assert events.height == 24 * 5
    assert sorted(events.get_column("log.offset")) == sorted(
        sum(len(x) + 1 for x in lines[:i]) for i, line in enumerate(lines) if not line.startswith("garbage"))
    assert len({tuple(pl.read_parquet_schema(f)) for f in store.event_files()}) > 1  # the files' columns differ
    quarantine = store.scan_quarantine().collect()
    assert sorted(quarantine.get_column("text")) == sorted(f"garbage {h}" for h in range(24))  # each once


def test_mixed_formats_on_shared_days_keep_exactly_every_record(tmp_path: Path) -> None:
    auth = write_lines(tmp_path / "auth.log", [auth_line(i, day=1 + i % 3) for i in range(30)])
    access = write_lines(tmp_path / "access.log", [access_line(i, day=1 + i % 3) for i in range(20)])
    docs = write_lines(tmp_path / "events.json", [json_line(i, day=1 + i % 3) for i in range(10)])
    for path in (auth, access, docs, auth, access, docs):  # every second pass is a no-op
        ingest([path], tmp_path / "s", options=OPTS)
    events = Store.open(tmp_path / "s").scan().collect()
    assert events.height == 60
    assert events.group_by("log.file.path").len().sort("log.file.path").rows() == [
        (str(access), 20), (str(auth), 30), (str(docs), 10)]
    assert events.get_column("@timestamp").dt.day().unique().sort().to_list() == [1, 2, 3]
    # the same three files again, with more lines each, in one run: only the new lines are added
    write_lines(auth, [auth_line(100 + i, day=2) for i in range(4)], mode="a")
    write_lines(access, [access_line(100 + i, day=2) for i in range(3)], mode="a")
    assert ingest([auth, access, docs], tmp_path / "s", options=OPTS).written == 7
    assert Store.open(tmp_path / "s").scan().collect().height == 67


# -- 3. what a duplicate is --------------------------------------------------------------------

def test_one_run_and_two_runs_store_the_same(tmp_path: Path) -> None:
    # b.log holds a.log's third line at the same byte offset (the lines before differ, same length);
    # c.log is a.log grown; d.log.gz is c.log rotated and compressed.
    a = write_lines(tmp_path / "a.log", [auth_line(0), auth_line(1), auth_line(2)])
    b = write_lines(tmp_path / "b.log", [auth_line(0).replace("u0", "x0"), auth_line(1).replace("u1", "x1"), auth_line(2)])
    c = write_lines(tmp_path / "c.log", [auth_line(i) for i in range(5)])
    d = tmp_path / "d.log.gz"
    d.write_bytes(gzip.compress(c.read_bytes()))
    assert a.read_text().rindex(auth_line(2)) == b.read_text().rindex(auth_line(2))
    ingest([a, b, c, d], tmp_path / "one", options=OPTS)
    for path in (a, b, c, d):
        ingest([path], tmp_path / "two", options=OPTS)
    ingest([d, c, b, a], tmp_path / "reversed", options=OPTS)
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")
    # in the other order the same events are stored, some first read from another file
    assert snapshot(tmp_path / "one", names=False) == snapshot(tmp_path / "reversed", names=False)
    events = Store.open(tmp_path / "one").scan().collect()
    # a's 3 lines, b's 3 (its own first two and the identical third line: both kept), c's 2 new
    assert events.height == 8
    assert events.filter(pl.col("message").str.ends_with("COMMAND=/bin/ls 2")).get_column("log.file.path").sort().to_list() == [
        str(a), str(b)]
    assert events.get_column("event.hash").n_unique() == 8


def test_identical_first_lines_of_a_grown_input_are_the_same_events(tmp_path: Path) -> None:
    # An input that starts with another's bytes is, up to there, that input grown: its lines are
    # not stored twice (this is what makes the hourly re-ingest of a growing log a no-op).
    a = write_lines(tmp_path / "a.log", [auth_line(0)])
    b = write_lines(tmp_path / "b.log", [auth_line(0), auth_line(1)])
    assert ingest([a, b], tmp_path / "s", options=OPTS).written == 2


# -- 4. plausible times --------------------------------------------------------------------------

MARCH = (dt.datetime(2024, 3, 1, tzinfo=dt.UTC), dt.datetime(2024, 3, 2, tzinfo=dt.UTC))


@pytest.mark.parametrize(("name", "good", "bad", "fmt", "window"), [
    # syslog takes its year from --year: a narrow range shows the check runs on this path too
    ("auth.log", auth_line(1), auth_line(2, day=5), "syslog", MARCH),
    ("access.log", access_line(1), '10.0.0.1 - - [01/Mar/2150:10:00:00 +0000] "GET / HTTP/1.1" 200 5', "access", None),
    ("e.json", json_line(1), json.dumps({"@timestamp": "-2024-01-01T00:00:00Z", "user": {"name": "x"}}), "jsonl", None),
    ("e.json", json_line(1), json.dumps({"@timestamp": "1960-01-01T00:00:00Z", "user": {"name": "x"}}), "jsonl", None),
    ("cef.log", "CEF:0|V|P|1|9|Deny|5|rt=Mar 01 2024 10:00:00 src=10.0.0.1 suser=eve",
     "CEF:0|V|P|1|9|Deny|5|rt=Mar 01 2230 10:00:00 src=10.0.0.1 suser=eve", "cef", None),
    ("conn.log", '{"ts": 1709287200.0, "uid": "C1", "id.orig_h": "10.0.0.1"}',
     '{"ts": 99999999999.0, "uid": "C2", "id.orig_h": "10.0.0.1"}', "zeek", None),
    ("win.json", json.dumps({"@timestamp": "2024-03-01T10:00:00Z", "Hostname": "DC1", "Channel": "security", "EventID": 4625}),
     json.dumps({"@timestamp": "2199-03-01T10:00:00Z", "Hostname": "DC1", "Channel": "security", "EventID": 4625}), "windows", None),
    ("trail.json", json.dumps({"eventName": "A", "eventSource": "s", "awsRegion": "r", "eventTime": "2024-03-01T10:00:00Z"}),
     json.dumps({"eventName": "B", "eventSource": "s", "awsRegion": "r", "eventTime": "3024-03-01T10:00:00Z"}), "cloudtrail", None),
])
def test_records_outside_the_time_range_are_quarantined(tmp_path: Path, name: str, good: str, bad: str, fmt: str,
                                                        window: tuple[dt.datetime, dt.datetime] | None) -> None:
    log = write_lines(tmp_path / name, [good, bad])
    options = IngestOptions(year=2024) if window is None else IngestOptions(year=2024, time_range=window)
    summary = ingest([log], tmp_path / "s", format=fmt, options=options)
    assert (summary.parsed, summary.quarantined) == (1, 1), summary
    assert dict(summary.reasons) == {options.time_range_reason: 1}
    store = Store.open(tmp_path / "s")
    assert [p.name for p in store.day_paths()] == ["day=2024-03-01"]
    assert store.scan_quarantine().collect().get_column("text").to_list() == [bad]


def test_csv_rows_outside_the_time_range_are_quarantined(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("when,who\n2024-03-01T10:00:00Z,a\n2124-03-01T10:00:00Z,b\n")
    options = IngestOptions(field_map={"when": "@timestamp", "who": "user.name"})
    summary = ingest([table], tmp_path / "s", format="csv", options=options)
    assert (summary.parsed, summary.quarantined, dict(summary.reasons)) == (1, 1, {options.time_range_reason: 1})


def test_time_range_option_on_the_command_line(tmp_path: Path) -> None:
    log = write_lines(tmp_path / "auth.log", [auth_line(1, day=1), auth_line(2, day=20)])
    result = run_cli("ingest", str(log), "--store", str(tmp_path / "s"), "--year", "2024",
                     "--time-range", "2024-03-01:2024-03-10")
    assert result.exit_code == 0, result.stderr
    assert "timestamp outside 2024-03-01..2024-03-10" in result.stderr
    assert Store.open(tmp_path / "s").scan().collect().height == 1
    bad = run_cli("ingest", str(log), "--store", str(tmp_path / "s"), "--time-range", "2024-03-01")
    assert bad.exit_code == 64 and "START:END" in bad.stderr


# -- 5. directory walks ------------------------------------------------------------------------------

def test_walk_skips_links_out_of_the_tree_and_the_store_inside_it(tmp_path: Path) -> None:
    outside = write_lines(tmp_path / "secret.log", [auth_line(9)])
    logs = tmp_path / "logs"
    (logs / "sub").mkdir(parents=True)
    write_lines(logs / "sub" / "auth.log", [auth_line(1)])
    (logs / "escape.log").symlink_to(outside)
    (logs / "loop").symlink_to(logs, target_is_directory=True)
    store = logs / "store"
    for _ in range(2):  # the second time the store (with Parquet files) lies inside the walked tree
        summary = ingest([logs], store, options=OPTS)
        assert [f.name for f in summary.files] == [str(logs / "sub" / "auth.log")]
    assert any("escape.log: symbolic link not followed" in w for w in summary.warnings)
    assert any("store: a dplogs store, not read as input" in w for w in summary.warnings)
    assert Store.open(store).scan().collect().get_column("log.file.path").to_list() == [str(logs / "sub" / "auth.log")]


# -- 6. gzip bombs and giant lines -----------------------------------------------------------------

def _bomb(path: Path, payload: bytes, total: int) -> Path:
    """A gzip file expanding to ``total`` bytes of ``payload`` repeated: multi-member, so it is made
    from one compressed 1 MiB member in milliseconds."""
    member = gzip.compress(payload * (2**20 // len(payload)), compresslevel=9)
    with path.open("wb") as out:
        out.write(gzip.compress(auth_line(1).encode() + b"\n"))  # looks like a log to the sniffer
        for _ in range(total // 2**20):
            out.write(member)
    return path


@pytest.mark.parametrize("payload", [b"\0", b"\n", auth_line(2).encode() + b"\n"])
def test_a_gzip_bomb_is_refused_in_seconds(tmp_path: Path, payload: bytes) -> None:
    bomb = _bomb(tmp_path / "bomb.gz", payload, 2**30)
    assert bomb.stat().st_size < 4 * 2**20
    start = time.perf_counter()
    result = run_cli("ingest", str(bomb), "--store", str(tmp_path / "s"), "--format", "syslog", "--year", "2024")
    assert time.perf_counter() - start < 20
    assert result.exit_code == 65, result.stderr
    assert "gzip data expands more than 200x" in result.stderr and "--max-gzip-ratio" in result.stderr
    assert str(bomb) in result.stderr
    assert not (tmp_path / "s").exists()  # nothing stored, nothing registered: the new store is removed again


def test_ordinary_gzip_and_a_raised_ratio_pass(tmp_path: Path) -> None:
    log = tmp_path / "auth.log.gz"
    log.write_bytes(gzip.compress("".join(auth_line(i) + "\n" for i in range(200_000)).encode()))
    assert ingest([log], tmp_path / "s", options=OPTS).written == 200_000
    bomb = _bomb(tmp_path / "newlines.gz", b"\n", 3 * 2**20)
    assert ingest([bomb], tmp_path / "s", options=IngestOptions(year=2024, max_gzip_ratio=5000)).written == 1


def test_a_giant_line_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(auth_line(1).encode() + b"\n" + b"x" * (3 * 2**20) + b"\n")
    with pytest.raises(DataError, match=r"auth.log: line 2 is longer than 1048576 bytes; pass --max-line-bytes"):
        ingest([log], tmp_path / "s", options=IngestOptions(year=2024, max_line_bytes=2**20))
    assert ingest([log], tmp_path / "t", options=IngestOptions(year=2024, max_line_bytes=4 * 2**20)).quarantined == 1


# -- 7. a corrupt registry, links in the store, hostile paths --------------------------------------

@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"blake3:x:syslog": 5}', "\xff\xfe"])
def test_corrupt_registry_is_a_store_error_saying_how_to_repair(tmp_path: Path, content: str) -> None:
    log = write_lines(tmp_path / "auth.log", [auth_line(1)])
    ingest([log], tmp_path / "s", options=OPTS)
    (tmp_path / "s" / "ingested.json").write_text(content, errors="surrogateescape")
    result = run_cli("ingest", str(log), "--store", str(tmp_path / "s"), "--year", "2024")
    assert result.exit_code == 66, result.stderr
    assert "ingested.json" in result.stderr and "move it aside" in result.stderr
    # the repair it names works and loses nothing, doubles nothing
    (tmp_path / "s" / "ingested.json").rename(tmp_path / "s" / "ingested.json.bad")
    assert run_cli("ingest", str(log), "--store", str(tmp_path / "s"), "--year", "2024").exit_code == 0
    assert Store.open(tmp_path / "s").scan().collect().height == 1


def test_a_symlinked_store_file_is_refused_without_showing_its_target(tmp_path: Path) -> None:
    log = write_lines(tmp_path / "auth.log", [auth_line(1)])
    ingest([log], tmp_path / "s", options=OPTS)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-BYTES " * 10)
    link = tmp_path / "s" / "events" / "day=2024-03-01" / "evil.parquet"
    link.symlink_to(secret)
    with pytest.raises(StoreError, match="symbolic link"):
        Store.open(tmp_path / "s").scan()
    log2 = write_lines(tmp_path / "more.log", [auth_line(2)])
    result = run_cli("ingest", str(log2), "--store", str(tmp_path / "s"), "--year", "2024")
    assert result.exit_code == 66 and "symbolic link" in result.stderr
    assert "TOP-SECRET" not in result.stderr + result.stdout
    link.unlink()
    (tmp_path / "s" / "events" / "day=2024-03-09").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(StoreError, match="symbolic link"):
        Store.open(tmp_path / "s").scan()


def test_paths_with_rich_markup_print_as_they_are(tmp_path: Path) -> None:
    odd = tmp_path / "logs[" / "]x[bold]"  # the path reads .../logs[/]x[bold]/...
    odd.mkdir(parents=True)
    log = odd / "auth.log.gz"
    data = gzip.compress((auth_line(1) + "\n").encode())
    log.write_bytes(data[: len(data) - 6])  # truncated: the summary prints a warning naming the file
    result = run_cli("ingest", str(tmp_path / "logs[/]x[bold]"), "--store", str(tmp_path / "st[bold]"), "--year", "2024")
    assert result.exit_code == 0, result.stderr
    assert f"{log}: input ends early" in result.stderr.replace("\n", "")


# -- 8. disk full, read-only store -------------------------------------------------------------------

def _inputs(tmp_path: Path) -> list[Path]:
    auth = write_lines(tmp_path / "auth.log", [auth_line(i, day=1 + i % 4) if i % 9 else f"bad {i}" for i in range(400)])
    access = write_lines(tmp_path / "access.log", [access_line(i, day=1 + i % 3) if i % 11 else f"junk {i}" for i in range(150)])
    return [auth, access]


INPUT_OPTS = IngestOptions(year=2024, chunk_lines=37)  # many chunks: many files, many points to fail at


def test_disk_full_at_every_write_is_exit_74_and_a_rerun_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = _inputs(tmp_path)
    ingest(inputs, tmp_path / "reference", options=INPUT_OPTS)
    expected = snapshot(tmp_path / "reference")
    writes = {"n": 0}
    real = store_module.pq.write_table

    def counting(table, where, **kw):
        writes["n"] += 1
        real(table, where, **kw)

    monkeypatch.setattr(store_module.pq, "write_table", counting)
    ingest(inputs, tmp_path / "count", options=INPUT_OPTS)
    total = writes["n"]
    assert total > 20
    for fail_at in range(1, total + 1, max(1, total // 12)):
        calls = {"n": 0}

        def full(table, where, **kw):
            calls["n"] += 1
            if calls["n"] == fail_at:
                Path(where).write_bytes(b"PAR1 half")  # the partial file a full disk leaves
                raise OSError(errno.ENOSPC, "No space left on device")
            real(table, where, **kw)

        monkeypatch.setattr(store_module.pq, "write_table", full)
        path = tmp_path / f"s{fail_at}"
        with pytest.raises(StoreWriteError, match="No space left on device.*rerun") as info:
            ingest(inputs, path, options=INPUT_OPTS)
        assert info.value.exit_code == 74
        assert stray_files(path) == []
        monkeypatch.setattr(store_module.pq, "write_table", real)
        ingest(inputs, path, options=INPUT_OPTS)  # space freed
        assert snapshot(path) == expected, fail_at
    monkeypatch.setattr(store_module.pq, "write_table", real)


def test_read_only_store_and_full_registry_exit_74_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = write_lines(tmp_path / "auth.log", [auth_line(1)])
    Store.init(tmp_path / "s")

    def read_only(*_args, **_kw):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(store_module.pq, "write_table", read_only)
    result = run_cli("ingest", str(log), "--store", str(tmp_path / "s"), "--year", "2024")
    assert result.exit_code == 74 and "Read-only file system" in result.stderr and "rerun" in result.stderr
    monkeypatch.undo()
    monkeypatch.setattr(store_module.os, "replace", read_only)
    result = run_cli("ingest", str(log), "--store", str(tmp_path / "s"), "--year", "2024")
    assert result.exit_code == 74, result.stderr
    monkeypatch.undo()
    assert stray_files(tmp_path / "s") == [] or run_cli("ingest", str(log), "--store", str(tmp_path / "s")).exit_code == 0
    assert run_cli("ingest", str(log), "--store", str(tmp_path / "s"), "--year", "2024").exit_code == 0
    assert stray_files(tmp_path / "s") == []
    assert Store.open(tmp_path / "s").scan().collect().height == 1


def test_stray_temp_files_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    log = write_lines(tmp_path / "auth.log", [auth_line(1)])
    ingest([log], tmp_path / "s", options=OPTS)
    day = tmp_path / "s" / "events" / "day=2024-03-01"
    for leftover in (day / ".x.parquet.tmp", tmp_path / "s" / "quarantine" / ".q.parquet.tmp",
                     tmp_path / "s" / ".ingested.json.ab12.tmp"):
        leftover.write_bytes(b"half")
    assert len(stray_files(tmp_path / "s")) == 3
    ingest([write_lines(tmp_path / "b.log", [auth_line(2)])], tmp_path / "s", options=OPTS)
    assert stray_files(tmp_path / "s") == []
    assert os.listdir(day) and Store.open(tmp_path / "s").scan().collect().height == 2
