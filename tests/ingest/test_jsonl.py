"""JSON lines: ECS documents, generic JSON with --map, Suricata EVE (golden), malformed lines."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from tests.ingest.structured_helpers import detected, lines_frame, parse

from dplogs.errors import UsageError
from dplogs.ingest.base import IngestOptions
from dplogs.ingest.jsonl import JsonLines
from dplogs.schema import STORE_SCHEMA

FMT = JsonLines()


def run(*texts: str, **opts):
    return FMT.parse_lines(lines_frame(*texts), "t.jsonl", IngestOptions(**opts))


T0 = '"@timestamp": "2024-01-01T00:00:00Z"'


def stamped(text: str) -> str:
    """``text`` (a JSON object) with a time: documents without one are quarantined."""
    return text.replace("{", "{" + T0 + ", ", 1)


def test_documents_without_a_time_are_quarantined_not_stored_untimed():
    out = run('{"user.name": "ann"}', stamped('{"user.name": "bob"}'))
    assert out.events["user.name"].to_list() == ["bob"]
    assert out.quarantine.select("line", "reason").rows() == [(1, "no timestamp (the event's time cannot be determined)")]


def test_nested_and_dotted_ecs_keys_agree():
    out = run(
        '{"@timestamp": "2024-03-01T10:00:00Z", "user": {"name": "ann"}, "source": {"ip": "10.0.0.1", "port": 22}}',
        '{"@timestamp": "2024-03-01T12:00:00.5+02:00", "user.name": "bob", "source.ip": "10.0.0.2", "source.port": "23"}',
        '{"@timestamp": 1709287200000, "event": {"outcome": "failure", "code": 4625}}',
    )
    ev = out.events
    assert ev.schema == STORE_SCHEMA and out.quarantine.height == 0
    assert ev["user.name"].to_list() == ["ann", "bob", None]
    assert ev["source.ip"].to_list() == ["10.0.0.1", "10.0.0.2", None]
    assert ev["source.port"].to_list() == [22, 23, None]
    assert ev["event.code"].to_list() == [None, None, "4625"]
    utc = timezone.utc
    assert ev["@timestamp"].to_list() == [
        datetime(2024, 3, 1, 10, tzinfo=utc), datetime(2024, 3, 1, 10, 0, 0, 500000, tzinfo=utc),
        datetime(2024, 3, 1, 10, tzinfo=utc),
    ]
    assert ev["event.dataset"].unique().to_list() == ["json.ecs"]
    assert ev["log.offset"].to_list()[0] == 0 and ev["log.file.path"].unique().to_list() == ["t.jsonl"]
    assert ev["event.hash"].n_unique() == 3


def test_document_values_and_dataset_override():
    out = run(stamped('{"event": {"dataset": "okta.system", "module": "okta"}, "user": {"name": "x"}}'))
    assert out.events.row(0, named=True)["event.dataset"] == "okta.system"
    assert out.events.row(0, named=True)["event.module"] == "okta"
    out = run(stamped('{"event": {"dataset": "okta.system"}}'), dataset="mine")
    assert out.events["event.dataset"].to_list() == ["mine"]


def test_malformed_lines_are_quarantined_and_the_rest_stays_aligned():
    good = [stamped(json.dumps({"user.name": f"u{i}", "source.port": i})) for i in range(200)]
    texts = list(good)
    texts[17] = '{"user.name": "broken"'
    texts[150] = '{"user.name": "x"} trailing}'
    texts[151] = "[1, 2]"
    texts[152] = ""
    texts[153] = stamped('{"user": "a plain string where ECS has an object", "host.name": "h"}')
    out = run(*texts)
    q = out.quarantine
    assert q["line"].to_list() == [18, 151, 152]
    assert q["reason"].to_list() == ["not a JSON object", "invalid JSON", "not a JSON object"]
    assert q["text"].to_list() == [texts[17], texts[150], texts[151]]
    assert q["source"].unique().to_list() == ["t.jsonl"]
    assert out.skipped == 1
    assert out.events.height + q.height + out.skipped == len(texts)
    ev = out.events.filter(pl.col("user.name").str.starts_with("u"))
    # every surviving row still carries its own line's values
    assert (ev["user.name"].str.slice(1).cast(pl.Int32) == ev["source.port"]).all()
    assert ev.height == 200 - 5


def test_field_map_for_generic_json():
    out = run(
        '{"ts": "2023-05-06 07:08:09", "src": "192.0.2.7", "who": {"login": "carol"}, "user.name": "ignored"}',
        field_map={"src": "source.ip", "who.login": "user.name", "ts": "@timestamp"},
        tz="Europe/Berlin",
    )
    row = out.events.row(0, named=True)
    assert row["source.ip"] == "192.0.2.7"
    assert row["user.name"] == "carol"  # the mapping wins over the document's own ECS key
    assert row["@timestamp"] == datetime(2023, 5, 6, 5, 8, 9, tzinfo=timezone.utc)
    assert row["event.dataset"] == "json.generic"


def test_field_map_onto_unknown_field_says_how_to_fix():
    with pytest.raises(UsageError, match="not a store field; use one of: .*source.ip"):
        run('{"a": 1}', field_map={"a": "src.address"})


def test_sniff_claims_json_objects_only():
    assert FMT.sniff(b'{"@timestamp": "2024-01-01T00:00:00Z", "user.name": "a"}\n') >= 0.8
    assert 0.5 <= FMT.sniff(b'{"a": 1}\n{"b": 2}\n') < 0.8
    assert FMT.sniff(b"Feb 21 21:54:44 web1 sshd[3402]: Failed password for root\n") == 0
    assert FMT.sniff(b'CEF:0|Vendor|Product|1|100|name|5|src=10.0.0.1\n') == 0
    assert FMT.sniff(b'127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326\n') == 0


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.one_of(hs.text(max_size=40), hs.just('{"user": {"name": "z"}}'),
                          hs.builds(lambda s: "{" + s + "}", hs.text(max_size=20))), max_size=50))
def test_arbitrary_lines_never_raise_and_are_all_accounted_for(texts):
    texts = [t.replace("\n", " ").replace("\r", " ") for t in texts]
    frame = lines_frame(*texts)
    out = FMT.parse_lines(frame, "fuzz", IngestOptions())
    assert out.events.height + out.quarantine.height + out.skipped == frame.height


def _golden(path):
    return {d["log.offset"]: d for d in json.loads(path.read_text())}


@pytest.mark.parametrize("name", ["eve-small", "eve-alerts"])
def test_suricata_eve_against_elastic_golden(datasets_dir, name):
    log = datasets_dir / f"parser_oracles/elastic_beats_filebeat_2019/suricata/eve/{name}.log"
    expected = _golden(log.with_name(log.name + "-expected.json"))
    assert detected(log) == "jsonl"
    events, quarantine, _ = parse("jsonl", log)
    assert quarantine.height == 0 and events.height == len(expected)
    fields = ["source.ip", "destination.ip", "source.port", "destination.port", "network.transport",
              "source.bytes", "destination.bytes", "http.response.status_code", "url.original",
              "user_agent.original", "event.kind", "event.dataset", "event.module", "event.severity"]
    agree: dict[str, list[bool]] = {f: [] for f in fields + ["@timestamp"]}
    for row in events.iter_rows(named=True):
        exp = expected[row["log.offset"]]
        for f in fields:
            if f in exp:
                agree[f].append(row[f] == exp[f])
        ts = datetime.fromisoformat(exp["@timestamp"].replace("Z", "+00:00"))
        agree["@timestamp"].append(abs((row["@timestamp"] - ts).total_seconds()) < 0.001)
    rates = {f: sum(v) / len(v) for f, v in agree.items() if v}
    print(f"suricata {name} agreement:", rates)
    assert set(rates) >= {"source.ip", "destination.port", "@timestamp", "event.kind"}
    assert all(rate == 1.0 for rate in rates.values()), rates


def test_keys_first_seen_after_the_schema_sample_are_still_read():
    texts = [stamped(json.dumps({"user": {"name": f"u{i}"}})) for i in range(600)]
    texts[450] = stamped(json.dumps({"user": {"name": "late", "domain": "CORP"}, "source": {"ip": "10.9.9.9"}}))
    texts[599] = stamped(json.dumps({"source.port": 4242, "event": {"code": 7}}))
    ev = run(*texts).events
    assert ev.row(450, named=True)["source.ip"] == "10.9.9.9"
    assert ev.row(450, named=True)["user.domain"] == "CORP"
    assert (ev.row(599, named=True)["source.port"], ev.row(599, named=True)["event.code"]) == (4242, "7")
    assert ev["source.ip"].null_count() == 599


def test_public_fields_keep_their_ecs_domain():
    out = run(stamped('{"event": {"outcome": "allowed", "category": ["authentication", "network", "nonsense"], "type": ["start"]}, '
                      '"network": {"transport": "TCP6"}, "http.request.method": "get"}'))
    row = out.events.row(0, named=True)
    assert row["event.outcome"] is None and row["network.transport"] is None  # outside the ECS domain
    # ECS arrays are kept whole; values outside the ECS domain are dropped from them
    assert (row["event.category"], row["event.type"]) == (["authentication", "network"], ["start"])
    assert row["http.request.method"] == "GET"


def test_byte_order_mark_on_the_first_line():
    out = run('\ufeff{' + T0 + ', "user.name": "bom"}', stamped('{"user.name": "x"}'))
    assert out.events["user.name"].to_list() == ["bom", "x"] and out.quarantine.height == 0
    assert FMT.sniff('\ufeff{"@timestamp": "2024-01-01T00:00:00Z"}\n'.encode()) >= 0.8


def test_documents_without_any_known_field_ask_for_a_mapping():
    out = run('{"Computer": "h1", "SyslogMessage": "x"}', stamped('{"user.name": "a"}'))
    assert out.events["user.name"].to_list() == ["a"]
    assert out.quarantine["reason"].to_list() == ["no known field; pass --map KEY=ecs.field"]
    mapped = run(stamped('{"Computer": "h1", "SyslogMessage": "x"}'), field_map={"Computer": "host.name", "SyslogMessage": "message"})
    assert mapped.events.select("host.name", "message").row(0) == ("h1", "x") and mapped.quarantine.height == 0


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_whole_blocks_parse_like_their_lines(tmp_path, newline):
    """The reader hands JSON its raw block instead of re-joined lines; the events are the same
    (CRLF files included, whose CR the lines do not keep)."""
    docs = [
        '{"@timestamp":"2024-03-01T10:00:00Z","user":{"name":"ann"},"event":{"action":"logon"}}',
        '{"@timestamp":"2024-03-01T10:00:01.5Z","source":{"ip":"10.0.0.2","port":23},"logon":1}',
        '{"@timestamp":"2024-03-01T10:00:02Z","user.name":"bob"}',
    ]
    path = tmp_path / "x.jsonl"
    path.write_bytes(newline.join(docs).encode() + newline.encode())
    events, quarantine, _ = parse("jsonl", path)
    joined = FMT.parse_lines(lines_frame(*docs), str(path), IngestOptions()).events
    assert quarantine.height == 0 and events.height == 3
    assert events.drop("log.offset", "event.hash").equals(joined.drop("log.offset", "event.hash"))
