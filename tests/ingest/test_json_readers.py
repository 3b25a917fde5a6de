"""JSON chunks decode the same whichever reader runs.

``decode_json`` is defined by polars' NDJSON reader with every leaf a string. A pyarrow read
against the types a sample shows runs before it when it can. Its result is compared here with
polars' alone, on
generated lines that mix the types pyarrow takes (strings, integers, booleans) with everything
that must make it fail or fall back: floats, big and odd numbers, type changes between lines,
objects and arrays where a leaf is wanted, duplicate keys, escapes and non-ASCII text.
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


def _decode(lines: pl.DataFrame, *, typed: bool = True) -> tuple[list, list]:
    with pytest.MonkeyPatch.context() as m:
        if not typed:
            m.setattr(_structured, "_arrow_schema", lambda *_: None)
        decoded, rejected, _ = _structured.decode_json(lines, PATHS)
    return decoded.to_dicts(), rejected.to_dicts()


@settings(max_examples=300, deadline=None)
@given(docs=st.lists(st.one_of(tame, tame, wild), min_size=1, max_size=12))
def test_pyarrow_and_polars_readers_agree(docs: list[str]) -> None:
    lines = lines_frame(*docs)
    assert _decode(lines) == _decode(lines, typed=False)


def test_the_pyarrow_readers_run_on_tame_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the comparison above: on typical lines pyarrow's reader is what runs."""
    calls: list[tuple[str, bool]] = []

    def spy(name: str):
        read = getattr(_structured, name)

        def wrapped(*args):
            out = read(*args)
            calls.append((name, out is not None))
            return out

        monkeypatch.setattr(_structured, name, wrapped)

    spy("_read_arrow")
    tame_docs = [_doc('"ann"', '"10.0.0.1"', "22", "4625", "true", None, False, False),
                 _doc('"bob"', '"10.0.0.2"', "23", "4624", "null", '"b"', False, False)]
    decoded, _, _ = _structured.decode_json(lines_frame(*tame_docs), PATHS)
    assert calls == [("_read_arrow", True)]
    assert decoded.row(0, named=True)["source/port"] == "22" and decoded.row(0, named=True)["ok"] == "true"
    calls.clear()  # a mixed list in a key not wanted: the sample's types still read the wanted ones
    _structured.decode_json(lines_frame(_doc('"ann"', '"10.0.0.1"', "22", "4625", "true", None, True, False)), PATHS)
    assert calls == [("_read_arrow", True)]
    calls.clear()  # port changes from number to string: polars decides
    _structured.decode_json(lines_frame(tame_docs[0], _doc('"b"', '"x"', '"x"', "1", "true", None, True, False)), PATHS)
    assert calls == [("_read_arrow", False)]
