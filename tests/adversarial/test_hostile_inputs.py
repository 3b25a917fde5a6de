"""Hostile log input through the real ingest path (files on disk, reader, format, store): nothing
is lost — every input line is parsed, quarantined or deliberately skipped — and nothing crashes;
a whole-file format that cannot read its input says so with a DplogsError. Also: non-UTF-8 bytes,
a truncated gzip stream, and a private key of enormous cardinality."""

from __future__ import annotations

import datetime as dt
import gzip
import tempfile
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dplogs.errors import DplogsError
from dplogs.ingest.base import IngestOptions, LineFormat
from dplogs.ingest.formats import registered
from dplogs.ingest.ingest import ingest
from tests.adversarial.conftest import REPO, invoke

FORMATS = sorted(registered())
LINE_FORMATS = [n for n in FORMATS if isinstance(registered()[n], LineFormat)]
FORMAT_PARAMS = FORMATS
OPTIONS = IngestOptions(year=2024)

_piece = st.one_of(
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b" ")),
    st.sampled_from([
        b"Mar  4 07:09:53 bastion01 sshd[1]: Failed password for root from 1.2.3.4 port 2 ssh2",
        b'10.0.0.1 - - [04/Mar/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "x"',
        b"CEF:0|V|P|1|9|N|5|src=10.0.0.1 suser=bob",
        b'{"@timestamp": "2024-03-04T10:00:00Z", "user": {"name": "\xff\xfe"}}',
        b"#fields\tts\tuid", b"\xff\xfe\x00\x00", b"\r", b"", b"\x1b[31m", "é€😀".encode(),
    ]),
)


def _lines_in(data: bytes) -> int:
    """Records a line reader sees: lines split on \\n, a final unterminated line counts."""
    if not data:
        return 0
    return data.count(b"\n") + (not data.endswith(b"\n"))


def _records(data: bytes) -> int:
    """Gzip is detected from content: a file starting with its magic bytes holds the lines of
    whatever part of the stream decompresses (the rest is reported as a read problem)."""
    if data[:2] != b"\x1f\x8b":
        return _lines_in(data)
    try:
        return _lines_in(zlib.decompressobj(wbits=31).decompress(data))
    except zlib.error:
        return 0


@pytest.mark.parametrize("name", FORMAT_PARAMS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(_piece, min_size=1, max_size=12))
def test_fuzzed_file_loses_nothing(name, pieces):
    data = b"\n".join(pieces) + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.log"
        path.write_bytes(data)
        try:
            summary = ingest([path], Path(tmp) / "store", format=name, options=OPTIONS)
        except DplogsError as exc:  # a clear, documented refusal of the whole input
            assert str(exc) and exc.exit_code in (64, 65, 66)
            return
        (f,) = summary.files
        if name in LINE_FORMATS:
            assert f.parsed - f.repeated + f.quarantined + f.skipped == _records(data), f


def test_non_utf8_lines_are_counted_not_lost(tmp_path):
    raw = b"hello\n\xff\xfe bad bytes\nMar  4 07:09:53 bastion01 sshd[1]: Failed password for root from 1.2.3.4 port 2 ssh2\n"
    path = tmp_path / "bad.log"
    path.write_bytes(raw)
    res = invoke("ingest", "--store", tmp_path / "store", "--year", "2024", "--format", "syslog", path)
    assert res.exit_code == 0, res.output
    summary = ingest([path], tmp_path / "store2", format="syslog", options=OPTIONS)
    (f,) = summary.files
    assert (f.parsed, f.quarantined + f.skipped) == (1, 2)


def test_truncated_gzip_ingests_the_readable_part_and_says_so(tmp_path):
    full = (REPO / "sample_logs" / "auth.log").read_bytes()
    cut = gzip.compress(full)[:20_000]
    path = tmp_path / "auth.log.gz"
    path.write_bytes(cut)
    readable = zlib.decompressobj(wbits=31).decompress(cut)
    res = invoke("ingest", "--store", tmp_path / "store", "--year", "2024", path)
    assert res.exit_code == 0, res.output
    assert "ends early" in res.stderr
    summary = ingest([path], tmp_path / "store2", options=OPTIONS)
    (f,) = summary.files
    assert f.problem and "ends early" in f.problem
    assert f.parsed - f.repeated + f.quarantined + f.skipped == _lines_in(readable)


def test_private_key_of_enormous_cardinality_releases_only_what_selection_allows(tmp_path):
    """10⁵ hosts each used by one user, plus one host used by 300 users. Each singleton host is
    kept with probability ≤ the plan's δ, so releasing ≥ 3 of them has probability < 10⁻⁶;
    the popular host is kept (its count is far above the threshold)."""
    from dplogs.engine.api import Engine
    from dplogs.engine.plan import Aggregation
    from dplogs.privacy.ledger import Ledger
    from dplogs.schema import conform

    n = 100_000
    users = [f"u{i}" for i in range(n)] + [f"p{i}" for i in range(300)]
    hosts = [f"h{i}" for i in range(n)] + ["popular"] * 300
    ts = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
    lf = conform(pl.LazyFrame({"@timestamp": [ts] * len(users), "user.name": users, "host.name": hosts}))
    ledger = Ledger.open(tmp_path / "ledger.sqlite", create=True)
    ledger.set_caps(window_policy="month", epsilon=5.0, delta=1e-5)
    eng = Engine(scan=lambda: lf, privacy_unit="user.name", budget_window="month", ledger=ledger)
    q = eng.build(Aggregation.count(), keys=["host.name"], epsilon=1.0, delta=1e-6, max_groups=1,
                  max_rows_per_group=1, start="2026-11-01", end="2026-12-01")
    assert q.plan.loss.delta <= 1e-6
    rel = q.release(caller="audit")
    released = rel.data["host.name"].to_list()
    assert "popular" in released
    assert len(released) <= 3, released
    assert len(ledger.history()) == 1 and ledger.history()[0].status == "committed"
    assert np.isfinite(rel.data["value"].to_numpy()).all()
