"""Golden tests against Elastic Filebeat's own expected output (elastic/beats test fixtures, 2019).

Each expected document is joined to our event by ``log.offset`` (the byte offset of its line).
Compared fields, where the oracle has them: ``@timestamp``, ``user.name``, ``source.ip``,
``source.port``, ``event.outcome``, ``event.action``, ``event.category``, ``host.hostname`` (our
``host.name``), ``process.name``/``pid``, ``message`` and the HTTP fields. Normalisations, stated:
Filebeat 2019 keeps ``-`` placeholders where we store null; IIS splits ``url.path``/``url.query``
where we keep ``url.original``; multi-line syslog messages (``log.flags: multiline``) are joined by
Filebeat but quarantined line by line here, so their ``message`` is not compared.

Agreement per format and field is printed (run with ``-rA`` to see it) and must be ≥ 99%.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

import pytest

from dplogs.ingest.base import IngestOptions
from tests.ingest.structured_helpers import parse

ORACLE = "parser_oracles/elastic_beats_filebeat_2019"
CASES = {
    "syslog": ["system/auth", "system/syslog"],
    "access": ["apache/access", "nginx/access"],
    "iis": ["iis/access"],
}
COMPARED = {
    "@timestamp": "@timestamp", "user.name": "user.name", "source.ip": "source.ip",
    "source.port": "source.port", "event.outcome": "event.outcome", "event.action": "event.action",
    "event.category": "event.category", "host.hostname": "host.name", "process.name": "process.name",
    "process.pid": "process.pid", "message": "message", "http.request.method": "http.request.method",
    "url.original": "url.original", "http.response.status_code": "http.response.status_code",
    "http.response.body.bytes": "http.response.body.bytes", "http.request.referrer": "http.request.referrer",
    "user_agent.original": "user_agent.original", "destination.port": "destination.port",
}


def _expected_value(doc: dict, key: str):
    value = doc[key]
    if isinstance(value, list):
        value = value[0]
    return None if value == "-" else value


def _ours(row: dict, ecs: str):
    value = row[ecs]
    if isinstance(value, list):  # ECS arrays; Filebeat 2019 gave the primary category as a string
        value = value[0] if value else None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return value


def _agreement(fmt: str, files: list[Path]) -> tuple[dict, list[str]]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # field -> [agree, total]
    misses: list[str] = []
    for log in files:
        docs = json.loads(Path(f"{log}-expected.json").read_text())
        events, quarantine, _ = parse(fmt, log, IngestOptions(year=2019))
        by_offset = {row["log.offset"]: row for row in events.iter_rows(named=True)}
        for doc in docs:
            row = by_offset.get(doc["log.offset"])
            multiline = "multiline" in (doc.get("log.flags") or [])
            if "url.path" in doc and "url.original" not in doc:  # IIS: rebuild the original URL
                query = _expected_value(doc, "url.query")
                doc = {**doc, "url.original": doc["url.path"] + (f"?{query}" if query else "")}
            for key, ecs in COMPARED.items():
                if key not in doc or (key == "message" and multiline):
                    continue
                counts[key][1] += 1
                got = None if row is None else _ours(row, ecs)
                if got == _expected_value(doc, key):
                    counts[key][0] += 1
                else:
                    misses.append(f"{log.name}@{doc['log.offset']} {key}: expected {doc[key]!r}, got {got!r}")
    return counts, misses


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_agreement_with_filebeat(fmt: str, datasets_dir: Path) -> None:
    files = sorted(p for d in CASES[fmt] for p in (datasets_dir / ORACLE / d).glob("*.log"))
    assert files, f"no oracle files for {fmt}"
    counts, misses = _agreement(fmt, files)
    print(f"\nFilebeat agreement, format {fmt} ({len(files)} files):")
    for key, (agree, total) in sorted(counts.items()):
        print(f"  {key:28s} {agree:5d}/{total:<5d} {100 * agree / total:6.2f}%")
    for key, (agree, total) in counts.items():
        assert agree / total >= 0.99, f"{fmt} {key}: {agree}/{total}; first misses: {misses[:5]}"
    # the fields the issue names must really be exercised by the oracle
    exercised = {k for k, (_, total) in counts.items() if total}
    wanted = {"syslog": {"user.name", "source.ip", "event.outcome", "event.action", "@timestamp"},
              "access": {"source.ip", "http.request.method", "url.original", "@timestamp"},
              "iis": {"source.ip", "url.original", "@timestamp", "http.response.status_code"}}[fmt]
    assert wanted <= exercised


def test_only_multiline_continuations_are_quarantined(datasets_dir: Path) -> None:
    for fmt, dirs in CASES.items():
        for d in dirs:
            for log in sorted((datasets_dir / ORACLE / d).glob("*.log")):
                _, quarantine, _ = parse(fmt, log, IngestOptions(year=2019))
                reasons = set(quarantine.get_column("reason").to_list())
                if log.name.startswith("darwin-syslog"):
                    assert reasons <= {"continuation line"}
                else:
                    assert not reasons, (log, reasons)
