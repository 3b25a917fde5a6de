"""The Parquet store and the ingest pipeline: manifest, partitions, quarantine, idempotence,
--max-errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from dplogs.errors import DataError, StoreError, UsageError
from dplogs.ingest.base import IngestOptions
from dplogs.ingest.ingest import TooManyErrors, ingest
from dplogs.ingest.store import STORE_QUARANTINE_SCHEMA, Store
from dplogs.schema import SCHEMA_VERSION, STORE_SCHEMA

OPTS = IngestOptions(year=2024)
LINES = [
    "Mar  1 10:00:00 h sshd[1]: Failed password for root from 10.0.0.9 port 22 ssh2",
    "Mar  1 23:59:59 h sshd[2]: Accepted password for bob from 10.0.0.8 port 22 ssh2",
    "Mar  2 00:00:00 h sshd[3]: Failed password for bob from 10.0.0.8 port 22 ssh2",
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_init_writes_manifest_and_open_reads_it(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", dataset="corp", privacy_unit="source.ip", budget_window="week")
    manifest = json.loads((tmp_path / "s/manifest.json").read_text())
    assert {k: manifest[k] for k in ("dataset", "privacy_unit", "budget_window", "schema_version", "defaults")} == {
        "dataset": "corp", "privacy_unit": "source.ip", "budget_window": "week",
        "schema_version": SCHEMA_VERSION, "defaults": {},
    }
    again = Store.open(tmp_path / "s")
    assert again.manifest == store.manifest
    assert again.ledger_path == tmp_path / "s/ledger.sqlite"
    assert again.scan().collect_schema() == STORE_SCHEMA


def test_defaults_and_conflicts(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s")
    assert (store.manifest.dataset, store.manifest.privacy_unit, store.manifest.budget_window) == ("s", "user.name", "month")
    with pytest.raises(UsageError, match="already has privacy-unit 'user.name'"):
        Store.init(tmp_path / "s", privacy_unit="host.name")
    Store.init(tmp_path / "s", privacy_unit="user.name")  # same value: fine
    with pytest.raises(UsageError, match="--budget-window"):
        Store.init(tmp_path / "t", budget_window="year")
    updated = store.update_defaults({"count": {"max_groups": 3}})
    assert Store.open(tmp_path / "s").manifest.defaults == {"count": {"max_groups": 3}} == updated.manifest.defaults


def test_open_missing_or_foreign_or_newer(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="create it with `dplogs ingest"):
        Store.open(tmp_path / "none")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign/file.txt").write_text("x")
    with pytest.raises(StoreError, match="not a dplogs store"):
        Store.init(tmp_path / "foreign")
    Store.init(tmp_path / "s")
    manifest = json.loads((tmp_path / "s/manifest.json").read_text())
    (tmp_path / "s/manifest.json").write_text(json.dumps({**manifest, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(StoreError, match="re-ingest"):
        Store.open(tmp_path / "s")


def test_events_partitioned_by_day_and_quarantine_kept(tmp_path: Path) -> None:
    log = _write(tmp_path / "auth.log", [*LINES, "garbage that is not syslog"])
    summary = ingest([log], tmp_path / "s", options=OPTS, format="syslog")
    assert (summary.parsed, summary.written, summary.quarantined) == (3, 3, 1)
    days = sorted(p.name for p in (tmp_path / "s/events").iterdir())
    assert days == ["day=2024-03-01", "day=2024-03-02"]
    store = Store.open(tmp_path / "s")
    events = store.scan().collect()
    assert events.schema == STORE_SCHEMA and events.height == 3
    assert events.get_column("log.file.path").unique().to_list() == [str(log)]
    quarantine = store.scan_quarantine().collect()
    assert quarantine.schema == STORE_QUARANTINE_SCHEMA
    assert quarantine.select("line", "reason", "text", "run_id").rows() == [
        (4, "no syslog header", "garbage that is not syslog", summary.run_id)
    ]


def test_reingesting_the_same_bytes_adds_nothing(tmp_path: Path) -> None:
    log = _write(tmp_path / "auth.log", LINES)
    ingest([log], tmp_path / "s", options=OPTS)
    second = ingest([log], tmp_path / "s", options=OPTS)
    assert second.files[0].duplicate_file and second.written == 0
    # the same content compressed is a different file but the same events
    gz = tmp_path / "auth.log.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    third = ingest([gz], tmp_path / "s", options=OPTS)
    assert (third.parsed, third.files[0].duplicate_rows, third.written) == (3, 3, 0)
    assert Store.open(tmp_path / "s").scan().collect().height == 3


def test_grown_file_adds_only_new_lines(tmp_path: Path) -> None:
    log = _write(tmp_path / "auth.log", LINES[:2])
    ingest([log], tmp_path / "s", options=OPTS)
    _write(log, LINES)  # logrotate-free append: same first two lines at the same offsets
    summary = ingest([log], tmp_path / "s", options=OPTS)
    assert (summary.parsed, summary.files[0].duplicate_rows, summary.written) == (3, 2, 1)
    events = Store.open(tmp_path / "s").scan().collect()
    assert sorted(events.get_column("process.pid").to_list()) == [1, 2, 3]


def test_identical_lines_at_different_offsets_are_distinct_events(tmp_path: Path) -> None:
    log = _write(tmp_path / "auth.log", [LINES[0], LINES[0]])
    ingest([log], tmp_path / "s", options=OPTS)
    assert Store.open(tmp_path / "s").scan().collect().height == 2


def test_max_errors_raises_after_writing_everything(tmp_path: Path) -> None:
    log = _write(tmp_path / "auth.log", [*LINES, "bad one", "bad two"])
    with pytest.raises(TooManyErrors) as info:
        ingest([log], tmp_path / "s", options=OPTS, format="syslog", max_errors=1)
    assert isinstance(info.value, DataError) and info.value.exit_code == 65
    assert info.value.summary.quarantined == 2
    store = Store.open(tmp_path / "s")
    assert store.scan().collect().height == 3
    assert store.scan_quarantine().collect().height == 2
    # at the limit it passes
    log2 = _write(tmp_path / "b.log", [LINES[0], "bad"])
    assert ingest([log2], tmp_path / "s", options=OPTS, format="syslog", max_errors=1).quarantined == 1


def test_unknown_format_in_explicit_file_is_an_error(tmp_path: Path) -> None:
    odd = tmp_path / "odd.txt"
    odd.write_text("hello\nworld\n")
    with pytest.raises(DataError, match="pass --format"):
        ingest([odd], tmp_path / "s")
    with pytest.raises(UsageError, match="one of"):
        ingest([odd], tmp_path / "s", format="nope")


def test_changed_hash_function_falls_back_to_fingerprints(tmp_path: Path) -> None:
    log = _write(tmp_path / "auth.log", LINES)
    ingest([log], tmp_path / "s", options=OPTS)
    manifest_file = tmp_path / "s/manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest_file.write_text(json.dumps({**manifest, "hash_canary": "from-another-polars"}))
    gz = tmp_path / "auth.log.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    summary = ingest([gz], tmp_path / "s", options=OPTS)
    assert summary.warnings and "only identical files are deduplicated" in summary.warnings[0]
    assert summary.files[0].duplicate_rows == 0  # hash dedup honestly switched off, not silently wrong


def test_scan_is_lazy_and_filters_push_down(tmp_path: Path) -> None:
    log = _write(tmp_path / "auth.log", LINES)
    ingest([log], tmp_path / "s", options=OPTS)
    lf = Store.open(tmp_path / "s").scan()
    assert isinstance(lf, pl.LazyFrame)
    assert lf.filter(pl.col("event.outcome") == "failure").select(pl.len()).collect().item() == 2


def test_same_bytes_with_another_format_are_reparsed_without_duplicates(tmp_path: Path) -> None:
    # A wrong --format quarantines everything; re-running with the right one must not be skipped.
    log = _write(tmp_path / "fw.log", ["CEF:0|V|P|1|9|Deny|5|src=10.0.0.1 suser=eve rt=1700000000000", *LINES[:1]])
    first = ingest([log], tmp_path / "s", options=OPTS, format="syslog")
    assert (first.written, first.quarantined) == (1, 1)
    assert ingest([log], tmp_path / "s", options=OPTS, format="syslog").files[0].duplicate_file
    fixed = ingest([log], tmp_path / "s", options=OPTS, format="cef")
    assert not fixed.files[0].duplicate_file
    # the CEF line is new; the syslog line (quarantined by cef now) was already stored once
    assert (fixed.written, fixed.quarantined) == (1, 1)
    events = Store.open(tmp_path / "s").scan().collect()
    assert sorted(events.get_column("event.dataset").to_list()) == ["cef.log", "system.auth"]


def test_parquet_encodings_round_trip_exactly(tmp_path: Path) -> None:
    # Steady integers and the timestamp are delta-encoded, repeating strings dictionary-encoded;
    # values (nulls, negatives, extremes) come back exactly.
    import datetime as dt

    import pyarrow.parquet as pq

    from dplogs.schema import conform

    stamps = [dt.datetime(2024, 3, 1, 0, 0, s, tzinfo=dt.UTC) for s in (5, 1, 59)]
    frame = conform(pl.DataFrame({
        "@timestamp": stamps, "event.action": ["ssh_login", "ssh_login", None], "message": ["a", "b", "c"],
        "process.pid": [2**62, None, -(2**62)], "source.port": [65535, 0, None], "log.offset": [0, 10, 2**40],
    }))
    store = Store.init(tmp_path / "s", dataset="t")
    store.write_events(frame, stem="x")
    path = tmp_path / "s/events/day=2024-03-01/x.parquet"
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    for delta in ("@timestamp", "process.pid", "source.port", "log.offset"):
        assert "DELTA_BINARY_PACKED" in encodings[delta], encodings[delta]
    assert "RLE_DICTIONARY" in encodings["event.action"] and "RLE_DICTIONARY" not in encodings["message"]
    assert store.scan().collect().equals(frame)


def test_interleaved_days_are_written_as_few_files(tmp_path: Path) -> None:
    # A merged export: consecutive lines belong to different days. Parsed in chunks of 3 lines,
    # each chunk's day parts wait and are written together, one file per day, nothing lost.
    days = ["Mar  1", "Mar  2", "Mar  3"]
    lines = [f"{days[i % 3]} 10:00:{i:02d} h sshd[{i}]: Failed password for u{i} from 10.0.0.{i} port 22 ssh2" for i in range(12)]
    log = _write(tmp_path / "auth.log", lines)
    summary = ingest([log], tmp_path / "s", options=IngestOptions(year=2024, chunk_lines=3), format="syslog")
    assert summary.written == 12
    files = sorted((tmp_path / "s/events").glob("day=*/*.parquet"))
    assert [f.parent.name for f in files] == ["day=2024-03-01", "day=2024-03-02", "day=2024-03-03"]
    events = Store.open(tmp_path / "s").scan().collect()
    assert sorted(events.get_column("user.name")) == sorted(f"u{i}" for i in range(12))


def test_day_writer_bounds_what_waits(tmp_path: Path) -> None:
    import datetime as dt

    from dplogs.ingest.store import DayWriter
    from dplogs.schema import conform

    store = Store.init(tmp_path / "s", dataset="t")
    writer = DayWriter(store, "run", min_rows=5, max_buffered=6)

    def chunk(*sizes: tuple[int, int]) -> pl.DataFrame:
        return pl.concat([conform(pl.DataFrame({"@timestamp": [dt.datetime(2024, 3, day, tzinfo=dt.UTC)] * n,
                                                "user.name": [f"d{day}-{i}" for i in range(n)]})) for day, n in sizes])

    def files() -> list[str]:
        return sorted(f"{f.parent.name}/{f.name}" for f in (tmp_path / "s/events").glob("day=*/*.parquet"))

    writer.add(chunk((1, 2), (2, 2)))
    assert files() == []  # both parts wait
    writer.add(chunk((1, 3), (2, 1)))
    assert files() == ["day=2024-03-01/run-00000.parquet"]  # day 1 reached min_rows: its 5 rows in one file
    writer.add(chunk((2, 1), (3, 2)))
    assert len(files()) == 1  # day 2 (4 rows) and day 3 still wait
    writer.add(chunk((3, 1)))
    assert files()[-1] == "day=2024-03-02/run-00001.parquet"  # day 2 is absent from this chunk: written
    writer.add(chunk((3, 1), (4, 3), (5, 2)))  # 4 + 3 + 2 rows would wait, more than max_buffered
    assert len(files()) == 5
    writer.close()
    assert len(files()) == 5
    counts = dict(store.scan().group_by(pl.col("@timestamp").dt.day()).len().collect().iter_rows())
    assert counts == {1: 5, 2: 4, 3: 4, 4: 3, 5: 2}


def test_event_hash_without_the_fallback_hash_is_the_same_when_every_offset_is_set() -> None:
    """Line formats know every record has an offset and skip the second text hash (which polars'
    coalesce computed for every row); the stored hashes must not change by it."""
    from dplogs.ingest.base import event_hash

    frame = pl.DataFrame({"text": ["a", "a", "b", ""], "offset": [0, 2, 4, 6]})
    full = frame.select(event_hash(pl.col("text"), pl.col("offset"))).to_series()
    quick = frame.select(event_hash(pl.col("text"), pl.col("offset"), offsets_complete=True)).to_series()
    assert quick.dtype == full.dtype and quick.to_list() == full.to_list()
    # a record without an offset still gets the second hash (the default)
    missing = pl.DataFrame({"text": ["a"], "offset": [None]}, schema={"text": pl.String, "offset": pl.Int64})
    assert missing.select(event_hash(pl.col("text"), pl.col("offset"))).item()[1] is not None
