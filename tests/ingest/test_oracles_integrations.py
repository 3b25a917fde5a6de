"""Golden tests against today's Elastic integrations (``elastic/integrations`` pipeline tests).

``parser_oracles/elastic_integrations/<pkg>/<data_stream>/`` holds raw test logs beside the ECS
documents Elastic's current pipelines make of them (see its README). Each raw line ``i`` pairs
with ``expected[i]`` (our event found by the line's byte offset); documents without a raw line and
lines without a document are left out, as the README lists. Compared, for every field dplogs maps,
on every pair where either side has a value (so a value Elastic does not set counts against us
too): see :data:`COMPARED`. ECS arrays are compared as sets; times to the millisecond; addresses
as addresses. Harness-made fields (``event.created``, ``event.ingested``, GeoIP, ``ecs.version``) and
``event.dataset``/``event.module`` (set by the harness's data stream, not the pipeline) are not
compared.

Where dplogs differs on purpose, :data:`DELIBERATE` says how and why; the comparison applies the
stated rule to Elastic's value, and the table shows those fields with a ``*``. The same list is in
``docs/architecture.md`` ("Deliberate differences from Elastic"). Agreement per package and field
is printed (``-rA``) and must be >= 99% everywhere.

Not compared (no dplogs input shape for them): ``system/security`` and
``windows/sysmon_operational`` (pre-decoded Winlogbeat documents, not a log file; the EVTX and
Windows JSON parsers are checked against Winlogbeat in ``test_windows.py``), and the Splunk-export
envelopes ending the zeek kerberos/ntlm/rdp/dns files (a Splunk export is not a Zeek log).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from dplogs.ingest.base import IngestOptions
from dplogs.schema import FIELDS
from tests.ingest.structured_helpers import detected, parse

ORACLE = "parser_oracles/elastic_integrations"

# data stream -> (dplogs format, options); year-less syslog lines: the README's year and zone
SYSLOG_2026 = IngestOptions(year=2026)
STREAMS: dict[str, tuple[str, IngestOptions]] = {
    "system/auth": ("syslog", SYSLOG_2026),
    "system/syslog": ("syslog", SYSLOG_2026),
    "apache/access": ("access", IngestOptions()),
    "iis/access": ("iis", IngestOptions()),
    "aws/cloudtrail": ("cloudtrail", IngestOptions()),
    "suricata/eve": ("jsonl", IngestOptions()),
    "zeek/dns": ("zeek", IngestOptions()),
    "zeek/kerberos": ("zeek", IngestOptions()),
    "zeek/notice": ("zeek", IngestOptions()),
    "zeek/ntlm": ("zeek", IngestOptions()),
    "zeek/rdp": ("zeek", IngestOptions()),
    "auditd/log": ("auditd", IngestOptions()),
}
OPTIONS = {"test-systemd.log": IngestOptions(year=2026, tz="Etc/GMT+2")}  # the test config's GMT-0200
NOT_COMPARED = {"system/security", "windows/sysmon_operational"}

COMPARED = (
    "@timestamp", "user.name", "user.domain", "user.effective.name", "user.target.name", "source.ip", "source.port",
    "destination.ip", "destination.port", "event.outcome", "event.action", "event.category", "event.type", "event.kind",
    "http.request.method", "http.response.status_code", "http.response.body.bytes", "url.original",
    "user_agent.original", "process.name", "process.pid", "host.name", "rule.name", "rule.id", "rule.category",
    "cloud.provider", "cloud.region", "network.transport",
)


def _lower(value, doc):
    return value.lower() if isinstance(value, str) else value


def _upn_name(value, doc):
    return value.split("@")[0] if isinstance(value, str) else value


def _upn_domain(value, doc):
    name = doc.get("user.name")
    return name.split("@", 1)[1] if isinstance(name, str) and "@" in name else value


def _with_query(value, doc):
    query = doc.get("url.query")
    return f"{value}?{query}" if value and query else value


DELIBERATE: dict[tuple[str, str], tuple[str, Callable]] = {
    # (package, field) -> (why, how Elastic's value (and document) read for the comparison)
    ("zeek", "user.name"): ("Kerberos/NTLM accounts are case-insensitive: one lower-cased identity per account "
                            "(Elastic keeps the case logged)", _lower),
    ("iis", "user.name"): ("IIS users are Windows accounts: lower-cased, as above", _lower),
    ("aws", "user.name"): ("a UPN user name (Identity Center `additionalEventData.UserName`) is split into user.name "
                           "and user.domain, like every UPN (Elastic keeps it whole)", _upn_name),
    ("aws", "user.domain"): ("the domain of a split UPN (see user.name)", _upn_domain),
    ("aws", "cloud.provider"): ("always `aws` (one fixture's Elastic version sets it, the other's does not)",
                                lambda v, doc: "aws"),
    ("aws", "event.category"): ("every signin.amazonaws.com event is authentication (Elastic lists ConsoleLogin-like "
                                "names only, so an Identity Center UserAuthentication has none)",
                                lambda v, doc: v or (["authentication"] if doc.get("event.provider") == "signin.amazonaws.com" else v)),
    ("iis", "http.request.method"): ("http.request.method is a public key domain of HTTP verbs; IIS FTP commands "
                                     "(ControlChannelClosed) are not HTTP methods and are left out",
                                     lambda v, doc: v if v in (FIELDS["http.request.method"].allowed or ()) else None),
    ("iis", "url.original"): ("dplogs has no url.query: url.original keeps stem and query (`/a?b=1`); Elastic's "
                              "url.original is the stem", _with_query),
    ("auditd", "event.action"): ("the record type lower-cased, as Filebeat's auditd module (Elastic's newest names the "
                                 "syscall's effect, `deleted`)", lambda v, doc: doc["auditd.log.record_type"].lower()),
    ("auditd", "event.outcome"): ("a syscall's `success=yes|no` is its outcome (Elastic keeps it in auditd.log.success)",
                                  lambda v, doc: v or {True: "success", False: "failure"}.get(doc.get("auditd.log.success"))),
    ("auditd", "user.name"): ("an enriched log's account name of the audit uid (AUID) is the account acting (Elastic "
                              "keeps it in auditd.log.AUID)", lambda v, doc: v or doc.get("auditd.log.AUID")),
    ("auditd", "host.name"): ("`node=` names the host that logged the record (Elastic: auditd.log.node)",
                              lambda v, doc: v or doc.get("auditd.log.node")),
    ("iis", "host.name"): ("s-computername is the host that logged the event: host.name (Elastic: "
                           "iis.access.server_name)", lambda v, doc: v or doc.get("iis.access.server_name")),
}
# Values Elastic's newest pipeline sets that dplogs names differently on purpose, per (package, field,
# Elastic's value, process.name): (why, the value dplogs gives instead).
RENAMED: dict[tuple[str, str, str, str], tuple[str, object]] = {
    ("system", "event.action", "service-stop", "sudo"): (
        "sudo keeps event.action `sudo` (queries count sudo use) whatever command it runs", "sudo"),
    ("system", "event.action", "service-start", "sudo"): ("as service-stop", "sudo"),
    ("system", "event.action", "service-restart", "sudo"): ("as service-stop", "sudo"),
    ("system", "event.type", "end", "sudo"): ("sudo starts a process (type start) whatever it runs", ["start"]),
    ("system", "event.type", "change", "sudo"): ("as end, for sudo", ["start"]),
    ("system", "event.action", "group-added", "groupadd"): (
        "two fixtures disagree on `group added to /etc/gshadow`: group-added (test-groupdel) and group-created "
        "(test-iam-systemctl); dplogs says group-created", "group-created"),
}
STALE: dict[tuple[str, str], str] = {
    ("test-userdel.log", "event.action"): "expected output predates the action names test-iam-systemctl shows",
    ("test-userdel.log", "event.type"): "as event.action: `removed group` is [group, deletion] in test-iam-systemctl",
    ("test-gpasswd.log", "event.action"): "expected output predates message.yml's group-user-added/removed",
}
"""(file, field) pairs whose fixture contradicts a newer fixture or the current pipeline: not counted."""
SYSLOG_ONLY = {"user.name", "user.effective.name", "event.outcome", "event.action", "event.category", "event.type"}
"""Elastic's system/syslog stream does not read auth messages; dplogs categorises auth messages in
any syslog input (one file often carries both), so these fields of PAM lines in that stream are
not compared."""


def _flat(doc: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _flat(value, name + ".")
        else:
            out[name] = value
    return out


def _expected(doc: dict) -> dict:
    flat = _flat(doc)
    flat.setdefault("host.name", flat.get("host.hostname"))
    if "url.original" not in flat and "url.path" in flat:  # IIS: Elastic splits stem and query
        query = flat.get("url.query")
        flat["url.original"] = flat["url.path"] + (f"?{query}" if query else "")
    return flat


def _norm(field: str, value):
    if value is None or value == [] or value == "":
        return None
    if field == "@timestamp":
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    if field in ("event.category", "event.type"):
        return frozenset(value if isinstance(value, list) else [value])
    if field.endswith(".ip"):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value
    if field.endswith((".port", ".pid", ".status_code", ".bytes")):
        return int(value)
    return str(value) if isinstance(value, int) else value


def _first(value):
    """The value (an array's first element) a RENAMED entry is keyed by."""
    if isinstance(value, list):
        return value[0] if value else None
    return value if isinstance(value, str) else None


def _raw_lines(path: Path) -> list[tuple[int, str]]:
    data = path.read_bytes()
    out, offset = [], 0
    for line in data.split(b"\n"):
        if line:
            out.append((offset, line.decode()))
        offset += len(line) + 1
    return out


def _pairs(stream: str, log: Path) -> list[tuple[dict | None, dict]]:
    fmt, options = STREAMS[stream]
    events, _, _ = parse(fmt, log, OPTIONS.get(log.name, options))
    ours = {row["log.offset"]: row for row in events.iter_rows(named=True)}
    docs = json.loads(Path(f"{log}-expected.json").read_text())["expected"]
    pairs = []
    for (offset, text), doc in zip(_raw_lines(log), docs, strict=False):
        if text.startswith('{"preview":'):  # a Splunk export envelope, not a Zeek record
            continue
        pairs.append((ours.get(offset), _expected(doc)))
    return pairs


def agreement(datasets: Path) -> tuple[dict, list[str]]:
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    misses: list[str] = []
    for stream in STREAMS:
        package = stream.split("/")[0]
        for log in sorted((datasets / ORACLE / stream).glob("*")):
            if log.name.endswith("-expected.json"):
                continue
            for row, exp in _pairs(stream, log):
                for field in COMPARED:
                    if (log.name, field) in STALE:
                        continue
                    if stream == "system/syslog" and field in SYSLOG_ONLY and row is not None and \
                            (row["process.name"] or "") != "systemd":
                        continue
                    theirs = _norm(field, exp.get(field))
                    rule = DELIBERATE.get((package, field))
                    if rule is not None:
                        theirs = _norm(field, rule[1](exp.get(field), exp))
                    renamed = RENAMED.get((package, field, _first(exp.get(field)), exp.get("process.name")))
                    if renamed is not None:
                        theirs = _norm(field, renamed[1])
                    mine = None if row is None else _norm(field, row[field])
                    if theirs is None and mine is None:
                        continue
                    counts[(package, field)][1] += 1
                    if theirs == mine:
                        counts[(package, field)][0] += 1
                    else:
                        misses.append(f"{stream}/{log.name} {field}: Elastic {exp.get(field)!r}, dplogs {mine!r}")
    return counts, misses


def test_agreement_with_todays_elastic_integrations(datasets_dir: Path) -> None:
    root = datasets_dir / ORACLE
    present = {f"{p.parent.name}/{p.name}" for p in root.glob("*/*") if p.is_dir()}
    assert present <= set(STREAMS) | NOT_COMPARED, f"oracle streams without a mapping: {present - set(STREAMS) - NOT_COMPARED}"
    counts, misses = agreement(datasets_dir)
    print("\nAgreement with elastic/integrations pipeline tests (package, field: agree/compared; * = deliberate rule):")
    for (package, field), (agree, total) in sorted(counts.items()):
        star = "*" if (package, field) in DELIBERATE or any(k[:2] == (package, field) for k in RENAMED) else " "
        print(f"  {package:8s} {field:26s}{star} {agree:4d}/{total:<4d} {100 * agree / total:6.1f}%")
    low = {k: v for k, v in counts.items() if v[0] / v[1] < 0.99}
    assert not low, f"below 99%: {low}; misses: {misses[:20]}"
    # the fields the issue names are exercised
    exercised = {field for (_, field) in counts}
    assert {"@timestamp", "user.name", "user.effective.name", "user.target.name", "source.ip", "destination.port",
            "event.outcome", "event.action", "event.category", "event.type", "rule.name", "http.request.method",
            "url.original", "process.name", "cloud.region"} <= exercised


@pytest.mark.parametrize("stream", sorted(STREAMS))
def test_every_oracle_line_is_stored(datasets_dir: Path, stream: str) -> None:
    for log in sorted((datasets_dir / ORACLE / stream).glob("*")):
        if log.name.endswith("-expected.json"):
            continue
        fmt, options = STREAMS[stream]
        events, quarantine, _ = parse(fmt, log, OPTIONS.get(log.name, options))
        envelopes = sum(text.startswith('{"preview":') for _, text in _raw_lines(log))
        assert events.height == len(_raw_lines(log)) - envelopes, (log.name, quarantine.rows())


@pytest.mark.parametrize("stream", sorted(STREAMS))
def test_every_oracle_log_is_recognised_without_format(datasets_dir: Path, stream: str) -> None:
    """A SOC drops logs in a directory and runs `dplogs ingest` on it: every test log of a format
    dplogs reads must be detected as that format (the mod_ssl request log and IIS 8's header-less
    default layout were refused as unrecognised, exit 65). Left out: the zeek files whose Splunk
    envelope is half their JSON lines (one Zeek record beside one envelope reads as plain JSON)."""
    fmt, _ = STREAMS[stream]
    for log in sorted((datasets_dir / ORACLE / stream).glob("*")):
        texts = [text for _, text in _raw_lines(log)]
        if not log.name.endswith("-expected.json") and sum(t.startswith('{"preview":') for t in texts) < len(texts) / 4:
            assert detected(log) == fmt, log.name
