"""JSON chunks decode the same whichever reader runs.

``decode_json`` is defined by polars' NDJSON reader with every leaf a string; pyarrow's typed
reader runs first when a sample's types allow it. The two are compared here on generated lines
that mix the types pyarrow takes (strings, integers, booleans) with everything that must make it
fail or fall back: floats, big and odd numbers, type changes between lines, objects and arrays
where a leaf is wanted, duplicate keys, escapes and non-ASCII text.
"""

from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dplogs.ingest import _structured
from tests.ingest.structured_helpers import lines_frame

PATHS = [("user", "name"), ("source", "ip"), ("source", "port"), ("event", "code"), ("ok",), ("user.name",)]

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
value = st.one_of(
    text.map(json.dumps),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["-0", "0", "1.5", "1e3", "-2.0", "true", "false", "null", '"\\u00e9\\n\\"q"', '"\\ud83d\\ude00"',
                     "{}", '{"x":1}', "[1,2]", "[]"]),
)
common = st.one_of(st.integers(0, 65535).map(str), text.map(json.dumps), st.sampled_from(["true", "null"]))


def _doc(user: str, ip: str, port: str, code: str, ok: str, dotted: str | None, extra: bool, dup: bool) -> str:
    parts = [f'"user":{{"name":{user}}}', f'"source":{{"ip":{ip},"port":{port}}}', f'"event":{{"code":{code}}}', f'"ok":{ok}']
    if dotted is not None:
        parts.append(f'"user.name":{dotted}')
    if extra:
        parts.append('"unwanted":{"deep":[1,{"a":2}]}')
    if dup:
        parts.append('"ok":"again"')
    return "{" + ",".join(parts) + "}"


# Mostly lines pyarrow can take (so the fast reader really runs), some with anything at all.
tame = st.builds(_doc, text.map(json.dumps), text.map(json.dumps), common, st.integers(0, 9999).map(str),
                 st.sampled_from(["true", "false", "null"]), st.none(), st.booleans(), st.just(False))
wild = st.builds(_doc, value, value, value, value, value, st.one_of(st.none(), value), st.booleans(), st.booleans())


def _decode(lines: pl.DataFrame) -> tuple[list, list]:
    decoded, rejected, _ = _structured.decode_json(lines, PATHS)
    return decoded.to_dicts(), rejected.to_dicts()


@settings(max_examples=300, deadline=None)
@given(docs=st.lists(st.one_of(tame, tame, wild), min_size=1, max_size=12))
def test_pyarrow_and_polars_readers_agree(docs: list[str]) -> None:
    lines = lines_frame(*docs)
    fast = _decode(lines)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(_structured, "_arrow_schema", lambda *_: None)
        reference = _decode(lines)
    assert fast == reference


def test_the_pyarrow_reader_runs_on_tame_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the comparison above: on typical lines pyarrow's reader is what runs."""
    calls: list[bool] = []
    read = _structured._read_arrow

    def spy(*args):
        out = read(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(_structured, "_read_arrow", spy)
    docs = [_doc('"ann"', '"10.0.0.1"', "22", "4625", "true", None, True, False),
            _doc('"bob"', '"10.0.0.2"', '"x"', "4624", "null", None, False, False)]
    decoded, _, _ = _structured.decode_json(lines_frame(docs[0]), PATHS)
    assert calls == [True]
    assert decoded.row(0, named=True)["source/port"] == "22" and decoded.row(0, named=True)["ok"] == "true"
    _structured.decode_json(lines_frame(*docs), PATHS)  # port changes from number to string: polars decides
    assert calls == [True, False]
