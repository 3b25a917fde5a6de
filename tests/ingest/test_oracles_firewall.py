"""Golden test of the firewall fields against Elastic Filebeat's own expected output (elastic/beats
2019 test fixtures of the ``iptables``, ``cisco/asa`` and ``cisco/ios`` modules), joined by ``log.offset``.

Compared, on every document where either side has a value (a value Elastic does not set counts
against us too): the fields in :data:`COMPARED`. Where dplogs differs on purpose, :data:`DELIBERATE`
says how and why and the comparison reads Elastic's value through the stated rule; :data:`UNCOMPARED`
lists the pairs not compared, with the reason. The same list is in docs/architecture.md
("Deliberate differences from Elastic"). Agreement per module and field is printed (``-rA``) and
must be >= 99%.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from dplogs.ingest.base import IngestOptions
from dplogs.schema import FIELDS
from tests.ingest.structured_helpers import detected, parse

ORACLE = "parser_oracles/elastic_beats_filebeat_2019"
MODULES = {"iptables": "iptables/log", "cisco.asa": "cisco/asa", "cisco.ios": "cisco/ios"}
COMPARED = {  # Elastic's field -> ours
    "@timestamp": "@timestamp", "source.ip": "source.ip", "source.port": "source.port",
    "destination.ip": "destination.ip", "destination.port": "destination.port",
    "network.transport": "network.transport", "event.outcome": "event.outcome", "event.action": "event.action",
    "event.severity": "event.severity", "event.dataset": "event.dataset",
}
CODE = {"cisco.asa": "cisco.asa.message_id"}
"""Elastic's field for the message id, compared with event.code (default: event.code)."""
BUILT = {"302013", "302015"}
ICMP = {"302020", "302021"}
NOT_PARSED = {"305011", "305012", "999999"}
"""ASA message ids dplogs reads the id and level of, not the text: NAT translations and a test id."""


def _verdict(value, doc):
    return {"deny": "failure", "allow": "success", "monitored": None}.get(value, value)


def _action(value, doc):
    code = doc.get("cisco.asa.message_id")
    return "flow-creation" if code in BUILT else None if code in NOT_PARSED else value


DELIBERATE: dict[tuple[str, str], tuple[str, Callable]] = {
    ("iptables", "event.outcome"): ("ECS outcomes: a drop is failure, an accept success (Filebeat 2019: deny/allow, "
                                    "outside ECS; today's Elastic says the same with event.type denied/allowed)", _verdict),
    ("cisco.asa", "event.outcome"): ("as iptables; Dynamic Filter's `monitored` is no outcome", _verdict),
    ("cisco.ios", "event.outcome"): ("as iptables", _verdict),
    ("cisco.ios", "network.transport"): ("`network.transport` is a public key domain: protocols outside it (igmp, "
                                         "IOS's protocol number 0) are null",
                                         lambda v, doc: v if v in (FIELDS["network.transport"].allowed or ()) else None),
    ("cisco.asa", "event.action"): ("Built messages are `flow-creation` (today's Elastic name; Filebeat 2019 says "
                                    "firewall-rule); ids dplogs does not read (NAT 305011/305012) get none, not "
                                    "firewall-rule", _action),
}
UNCOMPARED: dict[tuple[str, str], tuple[str, Callable[[dict], bool]]] = {
    ("iptables", "event.outcome"): (
        "Filebeat 2019 reads a verdict from Ubiquiti prefixes only; dplogs also from the words of a LOG prefix "
        "(`iptables DROP_INPUT:`, `[UFW BLOCK]`): those documents have no Elastic outcome to compare",
        lambda doc: "event.outcome" not in doc),
    ("cisco.asa", "@timestamp"): (
        "a zone name after an ASA stamp (`Apr 15 2014 09:34:34 EDT:`) is not read: ASA writes whatever name "
        "`clock timezone` was given, so the stamp is read in --tz (Filebeat 2019 read EDT)",
        lambda doc: re.match(r"^\w{3} +\d+ \d{4} [\d:]+ [A-Za-z]+:", doc["_line"]) is not None),
    ("cisco.ios", "@timestamp"): (
        "the syslog header's stamp, as for every syslog line; Filebeat reads the router's own stamp after the "
        "sequence number (`585917: Feb  8 04:00:47.272:`), a second or so earlier",
        lambda doc: True),
    ("cisco.asa", "addresses"): (
        "Filebeat 2019 leaves Built connection messages (302013/302015) unparsed; dplogs reads them (the "
        "initiator as source: the `to` side of an outbound connection)",
        lambda doc: doc.get("cisco.asa.message_id") in BUILT),
    ("cisco.asa", "icmp"): (
        "ICMP connections (302020/302021): the numbers after the addresses are ICMP sequence/type/code, not ports, "
        "and a Teardown's local address is the source, as today's Elastic reads them (its test-302020-direction "
        "and test-hostnames); Filebeat 2019 read ports and the foreign address as source",
        lambda doc: doc.get("cisco.asa.message_id") in ICMP),
}
ADDRESS_FIELDS = {"source.ip", "source.port", "destination.ip", "destination.port", "network.transport"}
FIELD_GROUPS = {"addresses": ADDRESS_FIELDS, "icmp": ADDRESS_FIELDS - {"network.transport"}}
"""UNCOMPARED names for several fields at once."""


def _ours(row: dict | None, ecs: str):
    value = None if row is None else row[ecs]
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return value


def _elastic(module: str, key: str, doc: dict):
    value = doc.get(key)
    if key == "event.dataset":  # Filebeat's fileset names: iptables.log, cisco.asa
        return value
    rule = DELIBERATE.get((module, key))
    return rule[1](value, doc) if rule else value


def _skipped(module: str, key: str, doc: dict) -> bool:
    for (mod, field), (_, applies) in UNCOMPARED.items():
        if mod == module and (field == key or key in FIELD_GROUPS.get(field, ())) and applies(doc):
            return True
    return False


def _agreement(module: str, folder: Path) -> tuple[dict, list[str], int]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # field -> [agree, compared]
    misses: list[str] = []
    skipped = 0
    for log in sorted(folder.glob("*.log")):
        docs = json.loads(Path(f"{log}-expected.json").read_text())
        raw = log.read_bytes()
        events, quarantine, _ = parse("syslog", log, IngestOptions(year=2019))
        assert quarantine.is_empty(), (log.name, quarantine.rows()[:3])
        by_offset = {row["log.offset"]: row for row in events.iter_rows(named=True)}
        for doc in docs:
            row = by_offset.get(doc["log.offset"])
            doc["_line"] = raw[doc["log.offset"]:].split(b"\n", 1)[0].decode()  # the raw line, for UNCOMPARED's rules
            for key, ecs in {**COMPARED, CODE.get(module, "event.code"): "event.code"}.items():
                if _skipped(module, key, doc):
                    skipped += 1
                    continue
                want, got = _elastic(module, key, doc), _ours(row, ecs)
                if want is None and got is None:
                    continue
                counts[key][1] += 1
                if got == want:
                    counts[key][0] += 1
                else:
                    misses.append(f"{log.name}@{doc['log.offset']} {key}: expected {want!r}, got {got!r}")
    return counts, misses, skipped


@pytest.mark.parametrize("module", sorted(MODULES))
def test_agreement_with_filebeat(module: str, datasets_dir: Path) -> None:
    folder = datasets_dir / ORACLE / MODULES[module]
    counts, misses, skipped = _agreement(module, folder)
    print(f"\nFilebeat 2019 agreement, {module} ({skipped} values not compared: UNCOMPARED):")
    for key, (agree, total) in sorted(counts.items()):
        star = "*" if (module, key) in DELIBERATE else " "
        print(f"  {key:24s}{star} {agree:5d}/{total:<5d} {100 * agree / total:6.2f}%")
    for key, (agree, total) in counts.items():
        assert agree / total >= 0.99, f"{module} {key}: {agree}/{total}; first misses: {misses[:5]}"
    exercised = {k for k, (_, total) in counts.items() if total >= 5}
    assert {"source.ip", "source.port", "destination.ip", "destination.port", "network.transport",
            "event.outcome"} <= exercised


def test_firewall_logs_are_detected_as_syslog(datasets_dir: Path) -> None:
    for sub in ("iptables/log/iptables.log", "cisco/asa/sample.log", "cisco/asa/asa.log", "cisco/ios/cisco-ios-syslog.log"):
        assert detected(datasets_dir / ORACLE / sub) == "syslog", sub
