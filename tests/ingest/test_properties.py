"""Property tests: every registered line format survives arbitrary and mutated input, and keeps
``parsed - repeated + quarantined + skipped == input lines``; the reader's split equals a naive split."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dplogs.ingest.base import IngestOptions, LineFormat
from dplogs.ingest.formats import registered
from dplogs.ingest.reader import iter_lines

REGISTRY = registered()
LINE_FORMATS = sorted(name for name, fmt in REGISTRY.items() if isinstance(fmt, LineFormat))
SEEDS = [  # one real-shaped line per family; hypothesis mutates them
    "Feb 21 21:54:44 localhost sshd[3402]: Failed password for invalid user test from 10.0.2.2 port 22 ssh2",
    "Feb 21 21:54:46 localhost sshd[3402]: message repeated 5 times: [ Failed password for root from 10.0.2.2 port 22 ssh2]",
    "<165>1 2003-10-11T22:14:15.003Z host app - ID47 [x@1 a=\"b\"] msg",
    '10.0.0.2, 85.181.35.98 - bob [07/Dec/2016:11:05:07 +0100] "GET /x HTTP/1.1" 200 571 "-" "agent"',
    "#Fields: date time c-ip cs-method cs-uri-stem sc-status",
    "2024-01-02 03:04:05 10.1.1.1 GET / 200",
    r"CEF:0|V|P|1|9|N|5|src=10.0.0.1 suser=j\=d msg=a b\\c rt=Jan 17 2020 08:52:10",
    "LEEF:2.0|V|P|1|7|^|src=1.2.3.4^usrName=x",
    '{"@timestamp":"2020-10-22T08:29:55.210Z","EventID":4625,"Channel":"Security","TargetUserName":"a"}',
    '{"ts":1521911721.1,"uid":"C1","id.orig_h":"10.0.0.1","id.orig_p":1,"id.resp_h":"10.0.0.2","id.resp_p":53}',
    "node=h1 type=USER_LOGIN msg=audit(1709632800.125:7): pid=9 uid=0 auid=4294967295 ses=1 msg='op=login "
    "acct=626F62 exe=\"/usr/sbin/sshd\" hostname=? addr=10.0.0.5 terminal=ssh res=failed'\x1dAUID=\"unset\" UID=\"root\"",
    "type=EXECVE msg=audit(1709632800.125:8): argc=2 a0=\"ls\" a1=C3A9E282AC1B0A",
]
OPTIONS = IngestOptions(year=2024)


def _frame(data: bytes) -> pl.DataFrame:
    frames = list(iter_lines(io.BytesIO(data), chunk_lines=1 << 20))
    return pl.concat(frames) if frames else pl.DataFrame(schema={"line": pl.Int64, "offset": pl.Int64, "text": pl.String})


def _check(name: str, lines: pl.DataFrame) -> None:
    chunk = REGISTRY[name].parse_lines(lines, "prop.log", OPTIONS)
    assert chunk.events.height - chunk.repeated + chunk.quarantine.height + chunk.skipped == lines.height
    assert chunk.events.unique("log.offset").height == chunk.events.height - chunk.repeated
    assert set(chunk.events.get_column("log.offset").to_list()) <= set(lines.get_column("offset").to_list())
    assert set(chunk.quarantine.get_column("line").to_list()) <= set(lines.get_column("line").to_list())


_mutation = st.tuples(st.sampled_from(SEEDS), st.integers(0, 200), st.integers(0, 30), st.text(max_size=12))


def _mutate(seed: str, at: int, cut: int, insert: str) -> str:
    at = min(at, len(seed))
    return (seed[:at] + insert + seed[at + cut:]).replace("\n", " ")


@pytest.mark.parametrize("name", LINE_FORMATS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(name: str, data: bytes) -> None:
    _check(name, _frame(data))


@pytest.mark.parametrize("name", LINE_FORMATS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(_mutation, min_size=1, max_size=8))
def test_mutated_real_lines_never_raise(name: str, mutations: list) -> None:
    text = "\n".join(_mutate(*m) for m in mutations) + "\n"
    _check(name, _frame(text.encode()))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400), block=st.integers(1, 64), chunk=st.integers(1, 10))
def test_reader_matches_naive_split(data: bytes, block: int, chunk: int) -> None:
    frames = list(iter_lines(io.BytesIO(data), chunk_lines=chunk, block_bytes=block))
    assert all(f.height <= chunk for f in frames)
    got = pl.concat(frames).rows() if frames else []
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    expected, offset = [], 0
    for i, raw in enumerate(pieces, start=1):
        expected.append((i, offset, (raw[:-1] if raw.endswith(b"\r") else raw).decode("utf-8", "replace")))
        offset += len(raw) + 1
    assert got == expected


def test_every_registered_line_format_is_covered() -> None:
    assert {"syslog", "access", "iis", "cef", "leef"} <= set(LINE_FORMATS)


@pytest.mark.parametrize("name", LINE_FORMATS)
def test_real_files_keep_the_line_invariant(name: str, datasets_dir: Path) -> None:
    """Every format on every small real text log (mostly not its own format: all quarantined)."""
    for rel in ("loghub/OpenSSH/OpenSSH_2k.log", "cef/fp-ngfw-smc.log",
                "evtx_attack_samples/Tunna_rdp_tunnel_IIS.log", "loghub/Proxifier/Proxifier_2k.log"):
        _check(name, _frame((datasets_dir / rel).read_bytes()))
