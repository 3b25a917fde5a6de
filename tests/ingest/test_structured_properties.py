"""Property tests of the structured formats: arbitrary and mutated lines never raise, and every
input line is parsed, quarantined or (blank/header) skipped, exactly once."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from dplogs.ingest.base import IngestOptions
from dplogs.ingest.formats import registered
from tests.ingest.structured_helpers import lines_frame, parse

# Hand-written lines in each shape (the datasets themselves stay outside the repository).
SEEDS = {
    "jsonl": [json.dumps({"@timestamp": "2024-01-01T00:00:00Z", "user": {"name": "a"}, "source.ip": "1.2.3.4"}),
              json.dumps({"timestamp": "2018-07-05T15:01:09.820360-0400", "event_type": "alert", "src_ip": "1.1.1.1",
                          "src_port": 1, "dest_ip": "2.2.2.2", "dest_port": 2, "proto": "TCP", "alert": {"severity": 1}})],
    "windows": [json.dumps({"@timestamp": "2020-10-22T08:29:48.785Z", "EventID": 4625, "Channel": "Security",
                            "Hostname": "DC", "TargetUserName": "x", "IpAddress": "::ffff:1.2.3.4", "LogonType": "3"}),
                json.dumps({"Event": {"System": {"EventID": {"#attributes": {"Qualifiers": 1}, "#text": 7036},
                                                 "Channel": "System", "Computer": "H",
                                                 "TimeCreated": {"#attributes": {"SystemTime": "2019-01-01T00:00:00Z"}}},
                                      "EventData": {"User": "D\\u", "ProcessId": "0x1f"}}})],
    "zeek": ["#separator \\x09", "#path\tconn", "#fields\tts\tuid\tid.orig_h\tid.orig_p\tproto\torig_bytes",
             "1521911720.865716\tC1\t10.0.0.1\t53\tudp\t-",
             json.dumps({"_path": "ntlm", "ts": "2018-03-24T17:15:21.6Z", "uid": "C", "id.orig_h": "1.2.3.4",
                         "username": "u", "success": True})],
    "cloudtrail": [json.dumps({"eventTime": "2020-09-14T00:44:23Z", "eventName": "GetObject", "eventSource": "s3",
                               "userIdentity": {"arn": "arn:aws:iam::1:user/p"}, "sourceIPAddress": "1.2.3.4"})],
}


@hs.composite
def mutated_lines(draw, fmt: str) -> list[str]:
    out = []
    for _ in range(draw(hs.integers(1, 12))):
        if draw(hs.booleans()):
            out.append(draw(hs.text(max_size=60)))
            continue
        line = draw(hs.sampled_from(SEEDS[fmt]))
        for _ in range(draw(hs.integers(0, 3))):
            pos = draw(hs.integers(0, len(line)))
            cut = draw(hs.integers(0, 5))
            line = line[:pos] + draw(hs.text(max_size=4)) + line[pos + cut:]
        out.append(line)
    return [t.replace("\n", " ").replace("\r", " ") for t in out]


@pytest.mark.parametrize("fmt", sorted(SEEDS))
@settings(max_examples=25, deadline=None)
@given(data=hs.data())
def test_mutated_lines_are_all_accounted_for(fmt, data):
    texts = data.draw(mutated_lines(fmt))
    frame = lines_frame(*texts)
    out = registered()[fmt].parse_lines(frame, "fuzz", IngestOptions())
    assert out.events.height + out.quarantine.height + out.skipped == frame.height
    assert out.quarantine["line"].is_unique().all()


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.5, 0.9])
def test_damaged_evtx_never_raises(datasets_dir, tmp_path, cut):
    data = (datasets_dir / "parser_oracles/elastic_beats_filebeat_2019/winlogbeat/sysmon/sysmon-9.01.evtx").read_bytes()
    damaged = tmp_path / "damaged.evtx"
    keep = int(len(data) * cut)
    damaged.write_bytes(data[:keep] + bytes(b ^ 0x5A for b in data[keep:keep + 4096]) + data[keep + 4096:])
    events, quarantine, _ = parse("evtx", damaged)
    assert events.height + quarantine.height <= 32
    if cut == 0.0:  # a damaged file header: the whole file is one quarantined record
        assert quarantine["reason"].to_list() == ["not a readable EVTX file"]


_DOMAIN_VALUES = hs.sampled_from(["authentication", "network", "web", "success", "failure", "bogus", "", None])


@settings(max_examples=150, deadline=None)
@given(categories=hs.lists(hs.none() | hs.lists(_DOMAIN_VALUES, max_size=3), min_size=1, max_size=6),
       outcomes=hs.lists(_DOMAIN_VALUES, min_size=6, max_size=6))
def test_domain_checks_skip_only_columns_they_would_not_change(categories, outcomes):
    """``within_domains`` skips all-null columns and arrays that are all allowed: its result is
    that of applying ``in_domain`` to every public field, on any mix of nulls, empty arrays,
    null elements and values outside the domains."""
    import polars as pl

    from dplogs.ingest._structured import in_domain, within_domains
    from dplogs.schema import FIELDS, conform

    n = len(categories)
    out = conform(pl.DataFrame({"event.category": categories, "event.outcome": outcomes[:n]},
                               schema={"event.category": pl.List(pl.String), "event.outcome": pl.String}))
    expected = out.with_columns(in_domain(f) for f in FIELDS.values() if f.allowed is not None)
    assert within_domains(out).equals(expected)
