"""Golden test of the auditd format against Elastic Filebeat's own expected output (elastic/beats
test fixtures, 2019: ``parser_oracles/elastic_beats_filebeat_2019/auditd/log``).

Each expected document is joined to our event by ``log.offset``; a field is compared where the
oracle has it (fields we set and Filebeat 2019 does not, such as ``source.ip`` from ``addr=`` or
``event.category``, are checked by ``test_auditd.py`` and the integrations oracle). Normalisation,
stated: Filebeat keeps ``res=1``/``res=0`` as the outcome ``1``/``0``; ``event.outcome`` is a
public domain of ``success``/``failure``/``unknown``, so they read as success/failure (auditd's
meaning of them). Agreement per field is printed (``-rA``) and must be ≥ 99%.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

from tests.ingest.structured_helpers import count_lines, detected, parse

ORACLE = "parser_oracles/elastic_beats_filebeat_2019/auditd/log"
COMPARED = ("@timestamp", "event.action", "event.outcome", "user.name", "user.id", "source.ip", "process.pid",
            "process.executable", "process.name", "event.dataset", "event.module")
_OUTCOME = {"1": "success", "0": "failure"}


def _ours(row: dict, field: str):
    value = row[field]
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return value


def _theirs(doc: dict, field: str):
    value = doc[field]
    return _OUTCOME.get(value, value) if field == "event.outcome" else value


def test_agreement_with_filebeat_auditd(datasets_dir: Path) -> None:
    files = sorted((datasets_dir / ORACLE).glob("*.log"))
    assert len(files) == 3
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses: list[str] = []
    for log in files:
        events, _, _ = parse("auditd", log)
        ours = {row["log.offset"]: row for row in events.iter_rows(named=True)}
        for doc in json.loads(Path(f"{log}-expected.json").read_text()):
            row = ours.get(doc["log.offset"])
            for field in COMPARED:
                if field not in doc:
                    continue
                counts[field][1] += 1
                got = None if row is None else _ours(row, field)
                if got == _theirs(doc, field):
                    counts[field][0] += 1
                else:
                    misses.append(f"{log.name}@{doc['log.offset']} {field}: Filebeat {doc[field]!r}, dplogs {got!r}")
    print(f"\nFilebeat agreement, format auditd ({len(files)} files):")
    for field, (agree, total) in sorted(counts.items()):
        print(f"  {field:22s} {agree:5d}/{total:<5d} {100 * agree / total:6.2f}%")
    for field, (agree, total) in counts.items():
        assert agree / total >= 0.99, f"{field}: {agree}/{total}; first misses: {misses[:5]}"
    assert set(COMPARED) <= set(counts), set(COMPARED) - set(counts)


def test_every_oracle_record_is_an_event_and_the_rest_is_kernel_noise(datasets_dir: Path) -> None:
    """Every line is accounted for; the only ones quarantined are audit-rhel7's 119
    ``type=UNKNOWN[1329] msg=…`` lines, binary kernel records without an ``audit(…)`` header."""
    for log in sorted((datasets_dir / ORACLE).glob("*.log")):
        assert detected(log) == "auditd", log.name
        events, quarantine, skipped = parse("auditd", log)
        assert events.height + quarantine.height + skipped == count_lines(log), log.name
        noise = quarantine.filter(quarantine["text"].str.starts_with("type=UNKNOWN[1329] msg="))
        assert noise.height == quarantine.height == (119 if log.name == "audit-rhel7.log" else 0), log.name
        assert set(quarantine["reason"]) <= {"not an audit record (no type=… msg=audit(…) header)"}
