"""CSV and Parquet with a column mapping."""

from __future__ import annotations

import csv
import gzip
from datetime import datetime, timezone

import polars as pl
import pytest
from tests.ingest.structured_helpers import detected, parse

from dplogs.errors import UsageError
from dplogs.ingest.base import IngestOptions
from dplogs.ingest.tabular import Csv, Parquet

MAP = {"when": "@timestamp", "client": "source.ip", "who": "user.name", "bytes": "source.bytes"}
MAP_3 = {k: v for k, v in MAP.items() if k != "bytes"}
CSV_TEXT = (
    "when,client,who,bytes\n"
    "2024-05-01T10:00:00Z,10.0.0.1,ann,100\n"
    '2024-05-01 12:00:00,10.0.0.2,"doe, john",x\n'
    "2024-05-01T10:00:00Z,10.0.0.1\n"
    ",,,\n"
    "1714557600,10.0.0.3,carl,7\n"
)


def test_csv_mapping_bad_rows_and_types(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV_TEXT)
    assert detected(path) == "csv"
    events, quarantine, _ = parse("csv", path, IngestOptions(field_map=MAP, tz="Europe/Paris"))
    assert events["user.name"].to_list() == ["ann", "doe, john", "carl"]
    assert events["source.ip"].to_list() == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert events["source.bytes"].to_list() == [100, None, 7]
    utc = timezone.utc
    assert events["@timestamp"].to_list() == [datetime(2024, 5, 1, 10, tzinfo=utc), datetime(2024, 5, 1, 10, tzinfo=utc),
                                              datetime(2024, 5, 1, 10, tzinfo=utc)]
    assert events["event.dataset"].unique().to_list() == ["csv.generic"]
    assert events["event.hash"].n_unique() == 3
    assert sorted(quarantine["reason"].to_list()) == ["no mapped column has a value", "wrong number of CSV fields"]
    wrong = quarantine.filter(pl.col("reason") == "wrong number of CSV fields").row(0, named=True)
    assert (wrong["line"], wrong["text"]) == (4, "2024-05-01T10:00:00Z,10.0.0.1")


def test_csv_in_small_chunks_and_gzipped(tmp_path):
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(CSV_TEXT.encode()))
    whole, _, _ = parse("csv", path, IngestOptions(field_map=MAP))
    chunked, _, _ = parse("csv", path, IngestOptions(field_map=MAP, chunk_lines=1))
    assert chunked.equals(whole) and whole.height == 3


def test_mapping_is_required_and_checked(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV_TEXT)
    with pytest.raises(UsageError, match="pass --map 'COLUMN=ecs.field'.*columns here: when, client, who, bytes"):
        parse("csv", path)
    with pytest.raises(UsageError, match="lacks: nope"):
        parse("csv", path, IngestOptions(field_map={"nope": "user.name"}))
    with pytest.raises(UsageError, match="not a store field"):
        parse("csv", path, IngestOptions(field_map={"who": "username"}))


def test_a_table_without_a_mapping_in_a_directory_walk_is_named(tmp_path):
    """`dplogs ingest` of a directory holding auth.log and a CSV export (loghub's OpenSSH folder)
    ingested the log, then stopped with 'CSV input needs a column mapping' and no file name."""
    from click.testing import CliRunner

    from dplogs.cli import cli

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "auth.log").write_text(
        "Mar  1 10:00:00 h sshd[1]: Failed password for root from 198.51.100.1 port 22 ssh2\n")
    (tmp_path / "logs" / "export.csv").write_text(CSV_TEXT)
    res = CliRunner().invoke(cli, ["ingest", str(tmp_path / "logs"), "--store", str(tmp_path / "st"), "--year", "2024"])
    assert res.exit_code == 64
    assert f"error: {tmp_path / 'logs' / 'export.csv'}: CSV input needs a column mapping" in res.stderr
    assert "or leave the file out of the paths ingested" in res.stderr
    with pytest.raises(UsageError, match=r"export\.csv: --map names columns this CSV file lacks: nope"):
        parse("csv", tmp_path / "logs" / "export.csv", IngestOptions(field_map={"nope": "user.name"}))


def test_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    pl.DataFrame({"ts": [datetime(2024, 1, 1, tzinfo=timezone.utc), None], "ip": ["1.2.3.4", None],
                  "n": [5, None]}).write_parquet(path)
    assert detected(path) == "parquet"
    events, quarantine, _ = parse("parquet", path, IngestOptions(field_map={"ts": "@timestamp", "ip": "source.ip", "n": "source.port"}))
    assert events["source.ip"].to_list() == ["1.2.3.4"] and events["source.port"].to_list() == [5]
    assert events["@timestamp"].to_list() == [datetime(2024, 1, 1, tzinfo=timezone.utc)]
    assert quarantine["reason"].to_list() == ["no mapped column has a value"]


def test_sniffers_do_not_claim_other_formats():
    assert Csv().sniff(CSV_TEXT.encode()) >= 0.5
    assert Csv().sniff(b"Feb 21 21:54:44 web1 sshd[3402]: Failed password for root from 1.2.3.4 port 22 ssh2\n" * 3) == 0
    assert Csv().sniff(b'{"a": 1, "b": 2, "c": 3}\n' * 3) == 0
    assert Csv().sniff(b'127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326\n' * 3) == 0
    assert Csv().sniff(b"#Fields: date,time,c-ip\n2020-01-01,00:00:00,1.2.3.4\n") == 0
    assert Parquet().sniff(b"PAR1....") == 1.0 and Parquet().sniff(CSV_TEXT.encode()) == 0


def test_otrf_s3_honey_bucket(datasets_dir):
    path = datasets_dir / "otrf_security_datasets/aws/AWS_S3_HoneyBucketLogs.csv"
    assert detected(path) == "csv"
    options = IngestOptions(field_map={"Source IP": "source.ip", "Event DateTime": "@timestamp",
                                       "Event Name": "event.action", "Request User Agent": "user_agent.original"})
    events, quarantine, _ = parse("csv", path, options)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert events.height == len(rows) == 301 and quarantine.height == 0
    assert events["source.ip"].to_list() == [r["Source IP"] for r in rows]
    assert events["event.action"].to_list() == [r["Event Name"] for r in rows]
    assert events["@timestamp"].null_count() == 0


def test_non_parquet_bytes_are_quarantined_not_a_crash(tmp_path):
    from dplogs.ingest.ingest import ingest

    bad = tmp_path / "fake.parquet"
    bad.write_bytes(b"PAR1 this is not really parquet\n")
    summary = ingest([bad], tmp_path / "store", format="parquet",
                     options=IngestOptions(field_map={"a": "user.name"}))
    (f,) = summary.files
    assert f.parsed == 0 and f.quarantined == 1
    assert any("not a readable Parquet file" in r for r in summary.reasons)


def test_parquet_lists_structs_and_non_utf8_bytes_are_read_as_text(tmp_path):
    # a list column, or a binary one not UTF-8, failed the cast to text: exit 70 for the whole file
    path = tmp_path / "nested.parquet"
    pl.DataFrame({
        "ts": ["2024-05-01T10:00:00Z"] * 3,
        "who": [b"ann", b"\xff\xfeb", None],
        "tags": [["a", "b"], None, []],
        "ctx": [{"raw": b"\xff", "n": 1}, {"raw": b"ok", "n": None}, None],
    }).write_parquet(path)
    opts = IngestOptions(field_map={"ts": "@timestamp", "who": "user.name", "tags": "message", "ctx": "event.action"})
    events, quarantine, _ = parse("parquet", path, opts)
    assert quarantine.height == 0
    assert events["user.name"].to_list() == ["ann", "\ufffd\ufffdb", None]
    assert events["message"].to_list() == ['["a","b"]', None, "[]"]
    assert events["event.action"].to_list() == ['{"raw":"\ufffd","n":1}', '{"raw":"ok","n":null}', None]


def test_parquet_maps_and_dates_past_polars_calendar_are_read(tmp_path):
    # a map column could not be cast to text, and a date 2^30 days out made polars panic: exit 70
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({
        "ts": ["2024-05-01T10:00:00Z"] * 2,
        "who": pa.array([[("k", "v")], None], pa.map_(pa.string(), pa.string())),
        "day": pa.array([2**30, 19844], pa.date32()),
    }), path)
    events, quarantine, _ = parse("parquet", path, IngestOptions(field_map={"ts": "@timestamp", "who": "user.name",
                                                                            "day": "message"}))
    assert quarantine.height == 0
    assert events["user.name"].to_list() == ['[{"key":"k","value":"v"}]', None]
    assert events["message"].to_list()[1] == "2024-05-01" and events["message"].to_list()[0]


def test_parquet_row_groups_are_gathered_into_chunks(tmp_path):
    # read dictionary-encoded, each row group was a batch: one row per group made a chunk per row
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dplogs.ingest.formats import named
    from dplogs.ingest.reader import open_sources

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"ts": ["2024-05-01T10:00:00Z"] * 300, "who": [f"u{i}" for i in range(300)]}), path,
                   row_group_size=1)
    with open_sources([path]) as ((source, _),):
        chunks = list(named("parquet").parse(source, IngestOptions(field_map={"ts": "@timestamp", "who": "user.name"})))
    assert [c.events.height for c in chunks] == [300]
    assert chunks[0].events["user.name"].to_list() == [f"u{i}" for i in range(300)]


def test_a_parquet_bomb_is_refused_before_it_is_expanded(tmp_path):
    # one 1 KB string indexed by 5,000 rows: ~1 KB of Parquet, 5 MB of text (the old reader
    # expanded it whole: a 797-byte file of 10,000 x 100 KB took 4 GB and a minute)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dplogs.errors import DataError
    from dplogs.ingest.ingest import ingest

    path = tmp_path / "bomb.parquet"
    rows = 5_000
    pq.write_table(pa.table({"ts": pa.array(["2024-05-01T10:00:00Z"] * rows),
                             "who": pa.array(["x" * 1000]).take(pa.array([0] * rows))}), path)
    assert path.stat().st_size < 5000
    opts = IngestOptions(field_map={"ts": "@timestamp", "who": "user.name"})
    with pytest.raises(DataError, match="expands more than 200x"):
        ingest([path], tmp_path / "store", format="parquet", options=opts)
    # the limit is the gzip one: raised, the same file is read
    summary = ingest([path], tmp_path / "store2", format="parquet",
                     options=IngestOptions(field_map=opts.field_map, max_gzip_ratio=100_000))
    assert summary.files[0].parsed == rows


def test_csv_bytes_that_are_not_utf8_are_replaced_not_fatal(tmp_path):
    # one byte that is not UTF-8 failed Arrow's text conversion, or the malformed row's text the
    # quarantine keeps: exit 70 for the whole file
    path = tmp_path / "t.csv"
    path.write_bytes(b"when,client,who\n2024-05-01T10:00:00Z,10.0.0.1,an\xffn\n2024-05-01T10:00:00Z,\xfe\n"
                     b"2024-05-01T10:00:00Z,10.0.0.3,\xe2\x82\xac\n")
    events, quarantine, _ = parse("csv", path, IngestOptions(field_map=MAP_3))
    assert events["user.name"].to_list() == ["an\ufffdn", "\u20ac"]
    assert quarantine.select("line", "text").rows() == [(3, "2024-05-01T10:00:00Z,\ufffd")]


def test_csv_with_a_byte_order_mark_maps_its_first_column(tmp_path):
    # Excel's "CSV UTF-8" begins with a BOM: the first column was named "\ufeffwhen", so
    # --map when=... was refused (64) as naming a column the file lacks
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbfwhen,client,who\n2024-05-01T10:00:00Z,10.0.0.1,ann\n")
    events, quarantine, _ = parse("csv", path, IngestOptions(field_map=MAP_3))
    assert events.select("@timestamp", "user.name").rows() == [(datetime(2024, 5, 1, 10, tzinfo=timezone.utc), "ann")]


def test_a_column_name_used_twice_is_numbered_not_fatal(tmp_path):
    # "ts,ts" (or two empty names from trailing commas) made polars refuse the frame: exit 70
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_path = tmp_path / "t.csv"
    csv_path.write_text("when,when,who,,\n2024-05-01T10:00:00Z,x,ann,1,2\n")
    pq_path = tmp_path / "t.parquet"
    pq.write_table(pa.table([pa.array(["2024-05-01T10:00:00Z"]), pa.array(["x"]), pa.array(["ann"])],
                            names=["when", "when", "who"]), pq_path)
    opts = IngestOptions(field_map={"when": "@timestamp", "who": "user.name", "when#2": "message"})
    for name, path in (("csv", csv_path), ("parquet", pq_path)):
        events, quarantine, _ = parse(name, path, opts)
        assert quarantine.height == 0
        assert events.select("user.name", "message").rows() == [("ann", "x")]


def test_unparseable_csv_header_is_a_clear_data_error(tmp_path):
    from dplogs.errors import DataError
    from dplogs.ingest.ingest import ingest

    bad = tmp_path / "t.csv"
    bad.write_bytes(b"a,b\rc,d\n1,2,3\n")  # found by hypothesis: a bare CR in the header
    with pytest.raises(DataError, match="not a CSV header row"):
        ingest([bad], tmp_path / "store", format="csv", options=IngestOptions(field_map={"a": "user.name"}))
