"""What an ingest stores, byte-level layout aside: the columns and Arrow types of the Parquet files
of a sample of each benchmarked format (syslog/auth, combined access, ECS JSON), the values equal
to what the format parsed, and the ECS arrays dictionary-encoded. Speed work on the writer must
leave all of this unchanged (``benchmarks/ingest.py``)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from tests.ingest.structured_helpers import parse

from dplogs.ingest.base import IngestOptions
from dplogs.ingest.ingest import ingest
from dplogs.ingest.store import UNIT_CODE, Store
from dplogs.schema import conform

OPTS = IngestOptions(year=2024)

SYSLOG = [
    "Mar  1 10:00:00 bastion01 sshd[1001]: Failed password for user001 from 10.1.2.3 port 50022 ssh2",
    "Mar  1 10:00:07 bastion01 sshd[1002]: Accepted publickey for user002 from 10.1.2.4 port 50023 ssh2: RSA SHA256:abc",
    "Mar  1 10:00:14 bastion01 sshd[1003]: pam_unix(sshd:session): session opened for user user003 by (uid=0)",
    "Mar  1 10:00:21 bastion01 sudo:   user004 : TTY=pts/1 ; PWD=/home/user004 ; USER=root ; COMMAND=/usr/bin/id",
    "Mar  1 10:00:28 bastion01 sshd[1005]: Invalid user admin7 from 10.1.2.6 port 50026",
    "Mar  1 10:00:35 bastion01 systemd[1]: Started Session 6 of user user006.",
]
ACCESS = [
    '10.0.0.1 - user001 [01/Mar/2024:10:00:00 +0000] "GET /app/page/1?q=1 HTTP/1.1" 200 512 "https://intranet.example.com/" "curl/8.5.0"',
    '10.0.0.2 - - [01/Mar/2024:10:00:07 +0000] "POST /login HTTP/1.1" 404 0 "-" "Mozilla/5.0"',
]
JSONL = [
    json.dumps({"@timestamp": "2024-03-01T10:00:00.000Z", "user": {"name": "user001"}, "host": {"name": "host1"},
                "event": {"category": "authentication", "action": "logon", "outcome": "failure", "dataset": "bench.ecs"},
                "source": {"ip": "10.0.0.1", "port": 1024}, "message": "logon 0"}),
    json.dumps({"@timestamp": "2024-03-01T10:00:07.000Z", "user.name": "user002",
                "event": {"category": ["authentication", "session"], "type": ["start"], "outcome": "success"}}),
]

# Parquet columns and Arrow types as written (columns null in every row are left out of a file).
STRING, LIST, HASH = "string_view", "large_list<element: string_view>", "fixed_size_list<element: uint64>[2]"
EXPECTED = {
    "syslog": {
        "@timestamp": "timestamp[us, tz=UTC]", "event.dataset": STRING, "event.module": STRING, "event.kind": STRING,
        "event.category": LIST, "event.type": LIST, "event.action": STRING, "event.outcome": STRING, "message": STRING,
        "user.name": STRING, "user.effective.name": STRING, "source.ip": STRING, "source.port": "int32",
        "host.name": STRING, "process.name": STRING, "process.pid": "int64", "log.file.path": STRING,
        "log.offset": "int64", "event.hash": HASH,
    },
    "access": {
        "@timestamp": "timestamp[us, tz=UTC]", "event.dataset": STRING, "event.module": STRING, "event.kind": STRING,
        "event.category": LIST, "event.type": LIST, "event.outcome": STRING, "user.name": STRING, "source.ip": STRING,
        "http.request.method": STRING, "http.request.referrer": STRING, "http.response.status_code": "int32",
        "http.response.body.bytes": "int64", "url.original": STRING,
        "user_agent.original": STRING, "log.file.path": STRING, "log.offset": "int64",
        "event.hash": HASH,
    },
    "jsonl": {
        "@timestamp": "timestamp[us, tz=UTC]", "event.dataset": STRING, "event.module": STRING, "event.kind": STRING,
        "event.category": LIST, "event.type": LIST, "event.action": STRING, "event.outcome": STRING, "message": STRING,
        "user.name": STRING, "source.ip": STRING, "source.port": "int32", "host.name": STRING,
        "log.file.path": STRING, "log.offset": "int64", "event.hash": HASH,
    },
}
for columns in EXPECTED.values():  # every file of a store made with unit codes (format 4)
    columns[UNIT_CODE] = "uint32"
SAMPLES = {"syslog": ("auth.log", SYSLOG), "access": ("access.log", ACCESS), "jsonl": ("ecs.jsonl", JSONL)}


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_stored_columns_types_and_values(tmp_path: Path, fmt: str) -> None:
    name, lines = SAMPLES[fmt]
    log = tmp_path / name
    log.write_text("".join(line + "\n" for line in lines))
    summary = ingest([log], tmp_path / "s", format=fmt, options=OPTS)
    assert (summary.written, summary.quarantined) == (len(lines), 0)
    [path] = (tmp_path / "s/events").glob("day=*/*.parquet")
    stored = pq.read_schema(path)
    assert {f.name: str(f.type) for f in stored} == EXPECTED[fmt]
    # The values are the format's own, apart from event.hash (keyed by the input's head when stored).
    parsed = parse(fmt, log, OPTS)[0]
    back = Store.open(tmp_path / "s").scan().collect()
    assert back.drop("event.hash").equals(parsed.drop("event.hash"))
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    for array in ("event.category", "event.type"):
        assert "RLE_DICTIONARY" in encodings[f"{array}.list.element"], (array, encodings)


def test_ecs_arrays_are_dictionary_encoded_and_round_trip(tmp_path: Path) -> None:
    # pyarrow's per-column options name a list's values NAME.list.element; options naming the list
    # itself silently do nothing, which left the arrays plain-encoded (syslog: 40x larger before
    # compression, ~3% of the ingest).
    stamp = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    frame = conform(pl.DataFrame({
        "@timestamp": [stamp] * 4,
        "event.category": [["authentication"], ["authentication", "session"], None, ["iam"]],
        "event.type": [["start"], [], None, ["user", "creation"]],
    }))
    store = Store.init(tmp_path / "s", dataset="t")
    store.write_events(frame, stem="x")
    path = tmp_path / "s/events/day=2024-03-01/x.parquet"
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" in encodings["event.category.list.element"]
    assert "RLE_DICTIONARY" in encodings["event.type.list.element"]
    assert pl.read_parquet_schema(path)["event.category"] == pl.List(pl.String)
    assert store.scan().collect().equals(frame)


@pytest.mark.parametrize("arrays", [
    [["authentication"], None, ["authentication", "session"]],  # all allowed: the check is skipped
    [["authentication"], []],  # an empty array becomes null
    [["authentication", None]],  # a null value is dropped
    [["nope", "iam"], None],  # a value outside the ECS domain is dropped
    [["nope"]],  # and an array left empty is null
])
def test_domain_shortcut_equals_the_full_check(arrays: list) -> None:
    # within_domains skips the per-row list evaluation only where it would change nothing.
    from dplogs.ingest._structured import in_domain, within_domains
    from dplogs.schema import FIELDS

    frame = conform(pl.DataFrame({"event.category": pl.Series(arrays, dtype=pl.List(pl.String)),
                                  "event.outcome": ["success"] + [None] * (len(arrays) - 1)}))
    full = frame.with_columns(in_domain(f) for f in FIELDS.values() if f.allowed is not None)
    assert within_domains(frame).equals(full)
