"""Windows events: flat JSON (OTRF), the Event tree (evtx JSON), binary .evtx vs Winlogbeat golden."""

from __future__ import annotations

import functools
import gzip
import ipaddress
import json
from collections import Counter
from datetime import datetime, timezone

import polars as pl
import pytest
from tests.ingest.structured_helpers import count_lines, detected, lines_frame, parse

from dplogs.ingest.base import IngestOptions
from dplogs.ingest.windows import Evtx, WindowsJson

FMT = WindowsJson()


def run(*docs, **opts):
    texts = [d if isinstance(d, str) else json.dumps(d) for d in docs]
    return FMT.parse_lines(lines_frame(*texts), "w.json", IngestOptions(**opts))


def tree(event_id, data, *, channel="Security", keywords="0x8020000000000000", computer="DC1",
         provider="Microsoft-Windows-Security-Auditing"):
    return {"Event": {"System": {
        "Provider": {"#attributes": {"Name": provider}},
        "EventID": event_id, "Keywords": keywords, "Channel": channel, "Computer": computer,
        "TimeCreated": {"#attributes": {"SystemTime": "2021-06-01T12:00:00.123456Z"}},
    }, "EventData": data}}


def test_tree_logon_maps_target_account_and_network_fields():
    out = run(tree(4624, {"TargetUserName": "ann", "TargetDomainName": "CORP", "SubjectUserName": "DC1$",
                          "IpAddress": "10.1.2.3", "IpPort": "50123", "LogonType": 3,
                          "ProcessId": "0x1fc", "ProcessName": "C:\\Windows\\System32\\lsass.exe"}))
    row = out.events.row(0, named=True)
    assert out.quarantine.height == 0
    assert row["@timestamp"] == datetime(2021, 6, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    assert (row["event.code"], row["event.action"], row["event.category"], row["event.outcome"]) == (
        "4624", "logged-in", ["authentication"], "success")
    assert (row["user.name"], row["user.domain"], row["source.ip"], row["source.port"]) == ("ann", "CORP", "10.1.2.3", 50123)
    assert (row["host.name"], row["winlog.logon.type"], row["winlog.channel"]) == ("DC1", "3", "Security")
    assert (row["process.pid"], row["process.name"]) == (0x1FC, "lsass.exe")
    assert (row["event.dataset"], row["event.module"]) == ("windows.security", "windows")


def test_subject_events_status_codes_and_failures():
    out = run(
        tree(4648, {"SubjectUserName": "bob", "SubjectDomainName": "CORP", "TargetUserName": "admin"}),
        tree(4776, {"TargetUserName": "carl", "Status": "0xc000006a"}, keywords="0x8010000000000000"),
        tree(4776, {"TargetUserName": "dora", "Status": "0x0"}),
        tree(4688, {"SubjectUserName": "eve", "NewProcessId": "0x10", "NewProcessName": "C:\\x\\cmd.exe",
                    "CommandLine": "cmd /c whoami", "ParentProcessName": "C:\\x\\explorer.exe"}),
        tree(4625, {"TargetUserName": "fred", "IpAddress": "-", "IpPort": "-"}, keywords="0x8010000000000000"),
    )
    ev = out.events
    assert ev["user.name"].to_list() == ["bob", "carl", "dora", "eve", "fred"]
    assert ev["user.target.name"].to_list() == ["admin", None, None, None, None]
    assert ev["event.outcome"].to_list() == ["success", "failure", "success", "success", "failure"]
    assert ev["event.action"].to_list() == [
        "logged-in-explicit", "credential-validated", "credential-validated", "created-process", "logon-failed"]
    assert ev.row(3, named=True)["process.pid"] == 16
    assert ev.row(3, named=True)["process.command_line"] == "cmd /c whoami"
    assert ev.row(3, named=True)["process.parent.executable"] == "C:\\x\\explorer.exe"
    assert ev.row(4, named=True)["source.ip"] is None and ev.row(4, named=True)["source.port"] is None


def test_unmapped_ids_classic_event_ids_and_non_events():
    classic = tree({"#attributes": {"Qualifiers": 16384}, "#text": 7036}, {"param1": "x"},
                   channel="System", keywords="0x8080000000000000", computer="SRV",
                   provider="Service Control Manager")
    out = run(
        classic,
        {"EventID": 5156, "Channel": "Security", "Hostname": "H", "EventType": "AUDIT_SUCCESS",
         "@timestamp": "2020-10-22T08:29:48.785Z", "SourceAddress": "::1", "Protocol": "6"},
        {"not": "windows"},
        '{"EventID": 1, "Channel": ',
    )
    ev = out.events
    assert ev["event.code"].to_list() == ["7036", "5156"]
    assert ev["event.action"].to_list() == [None, None]
    assert ev["host.name"].to_list() == ["SRV", "H"]
    assert ev["event.dataset"].to_list() == ["windows.system", "windows.security"]
    assert ev.row(1, named=True)["network.transport"] == "tcp"
    assert out.quarantine["reason"].to_list() == ["no EventID", "not a JSON object"]
    assert out.quarantine["line"].to_list() == [3, 4]


def test_sysmon_user_and_network_fields():
    out = run({"EventID": 3, "Channel": "Microsoft-Windows-Sysmon/Operational", "Hostname": "WS1",
               "@timestamp": "2020-01-01T00:00:00Z", "User": "CORP\\gina", "Image": "C:\\a\\b.exe",
               "ProcessId": "42", "SourceIp": "10.0.0.1", "SourcePort": "5000", "DestinationIp": "8.8.8.8",
               "DestinationPort": "53", "Protocol": "udp"})
    row = out.events.row(0, named=True)
    assert (row["user.name"], row["user.domain"]) == ("gina", "CORP")
    assert (row["source.ip"], row["source.port"], row["destination.ip"], row["destination.port"]) == (
        "10.0.0.1", 5000, "8.8.8.8", 53)
    assert (row["network.transport"], row["event.category"], row["event.dataset"]) == ("udp", ["network"], "windows.sysmon")
    assert row["event.outcome"] is None and row["process.pid"] == 42


def test_sniffers():
    assert FMT.sniff(b'{"EventID": 4624, "Channel": "Security", "Hostname": "x"}\n') > 0.9
    assert FMT.sniff(b'{"@timestamp": "2020-01-01T00:00:00Z", "user.name": "x"}\n') == 0
    assert FMT.sniff(b"Feb 21 21:54:44 web1 sshd[3402]: Failed password for root\n") == 0
    assert Evtx().sniff(b"ElfFile\x00" + bytes(100)) == 1.0 and Evtx().sniff(b"{}") == 0


# ---------------------------------------------------------------------------------------------
# Real data

OTRF = "otrf_security_datasets/windows_host"


@functools.cache
def parsed(path):
    """Each recording is parsed once per test session (they are the slowest inputs here)."""
    return parse("windows", path)


@pytest.mark.slow
def test_otrf_recordings_ingest_completely(datasets_dir):
    files = sorted((datasets_dir / OTRF).glob("*.json.gz"))
    assert len(files) == 8
    for path in files:
        assert detected(path) == "windows", path.name
        events, quarantine, skipped = parsed(path)
        assert quarantine.height == 0 and skipped == 0, path.name
        assert events.height == count_lines(path), path.name
        nulls = events.select(pl.col("@timestamp", "host.name", "event.code").null_count()).row(0)
        assert nulls == (0, 0, 0), (path.name, nulls)


def test_otrf_password_spray_is_visible(datasets_dir):
    path = datasets_dir / OTRF / "purplesharp_ad_playbook_I_2020-10-22042947.json.gz"
    events, quarantine, _ = parsed(path)
    assert events.height == 25_993 and quarantine.height == 0
    # Independent oracle: the target accounts of failed logons, read from the raw JSON.
    with gzip.open(path, "rt") as f:
        raw = [json.loads(line) for line in f]
    sprayed = {d["TargetUserName"] for d in raw if d["EventID"] == 4625}
    assert len(sprayed) >= 7  # the spray: one failure on each of many accounts
    for code, action in (("4625", "logon-failed"), ("4776", "credential-validated")):
        failed = events.filter((pl.col("event.code") == code) & (pl.col("event.outcome") == "failure"))
        assert set(failed["user.name"].to_list()) == sprayed, code
        assert failed["event.action"].unique().to_list() == [action]
    hosts = set(events["host.name"].unique().to_list())
    assert {"MORDORDC.theshire.local", "WORKSTATION5.theshire.local"} <= hosts
    assert {"pgustavo", "sbeavers"} <= set(events["user.name"].drop_nulls().unique().to_list())
    logon_types = set(events.filter(pl.col("event.code") == "4624")["winlog.logon.type"].unique().to_list())
    assert {"3"} <= logon_types
    assert events.filter(pl.col("event.code") == "4624")["event.action"].unique().to_list() == ["logged-in"]


def test_psh_recording_uses_timecreated(datasets_dir):
    path = datasets_dir / OTRF / "psh_lsass_memory_dump_comsvcs_2020-10-18T19500924.json.gz"
    events, quarantine, _ = parsed(path)
    assert events.height == 184 and quarantine.height == 0
    assert events["@timestamp"].min().date().isoformat() == "2020-10-18"


def test_evtx_attack_samples_tree_json(datasets_dir):
    path = datasets_dir / "evtx_attack_samples/evtx_attack_samples.jsonl.gz"
    events, quarantine, _ = parse("windows", path)
    assert events.height == 8_255 and quarantine.height == 0
    assert events["@timestamp"].null_count() == 0 and events["host.name"].null_count() == 0
    assert events["host.name"].n_unique() == 22  # README: 22 hosts


# Winlogbeat 7.x (the golden files, 2019) named actions after the task; current Winlogbeat uses these.
_ACTION_2019 = {("Logon", "4624"): "logged-in", ("Logon", "4625"): "logon-failed",
                ("Logoff", "4634"): "logged-out", ("Special Logon", "4672"): "logged-in-special"}
GOLDEN = ["security/security-windows2012r2-logon", "security/security-windows2016-4672",
          "security/security-windows2016-logoff", "sysmon/sysmon-9.01", "sysmon/sysmon-10.2-dns"]


def _flat(doc, prefix=""):
    for key, value in doc.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def _same(field, ours, theirs):
    if field == "@timestamp":  # Sysmon's golden time is EventData.UtcTime, in milliseconds
        return abs((ours - theirs).total_seconds()) < 0.001
    if field in ("source.ip", "destination.ip") and ours is not None:
        return ipaddress.ip_address(ours) == ipaddress.ip_address(theirs)
    if theirs == "-":  # Winlogbeat keeps Windows' "-" placeholder; dplogs stores null
        return ours is None
    if field == "event.category":  # an ECS array; 2019's golden has the primary category as a string
        return ours == (theirs if isinstance(theirs, list) else [theirs])
    if field == "user.name" and ours is not None:  # one identity per account: Windows names lower-cased
        return ours == theirs.lower()
    return ours == theirs if not isinstance(ours, int) else ours == int(theirs)


def test_binary_evtx_against_winlogbeat_golden(datasets_dir):
    root = datasets_dir / "parser_oracles/elastic_beats_filebeat_2019/winlogbeat"
    fields = ["event.code", "event.action", "event.outcome", "event.category", "user.name", "user.domain",
              "user.id", "source.ip", "source.port", "destination.ip", "destination.port", "host.name",
              "process.executable", "process.pid", "process.parent.executable", "process.name",
              "dns.question.name", "network.transport", "@timestamp"]
    agree: dict[str, Counter] = {f: Counter() for f in fields}
    for name in GOLDEN:
        evtx_path = root / f"{name}.evtx"
        assert detected(evtx_path) == "evtx"
        events, quarantine, _ = parse("evtx", evtx_path)
        golden = json.loads((root / f"{name}.evtx.golden.json").read_text())
        assert quarantine.height == 0 and events.height == len(golden)
        # the same records as evtx-package JSON lines give the same ECS rows
        via_json, _, _ = parse("windows", root / f"{name}.evtx.pyevtx.jsonl")
        drop = ["log.file.path", "log.offset", "event.hash"]
        assert via_json.drop(drop).equals(events.drop(drop))
        for row, doc in zip(events.iter_rows(named=True), golden):
            exp = dict(_flat(doc))
            exp["host.name"] = exp["winlog.computer_name"]
            if "event.action" in exp:
                exp["event.action"] = _ACTION_2019[(exp["event.action"], str(exp["event.code"]))]
            exp["event.code"] = str(exp["event.code"])
            exp["@timestamp"] = datetime.fromisoformat(exp["@timestamp"][:26].rstrip("Z") + "+00:00")
            for f in fields:
                if f in exp:
                    agree[f][_same(f, row[f], exp[f])] += 1
    rates = {f: c[True] / (c[True] + c[False]) for f, c in agree.items() if c}
    print("winlogbeat golden agreement:", {f: f"{r:.3f} (n={sum(agree[f].values())})" for f, r in rates.items()})
    assert {"event.code", "event.action", "event.outcome", "user.name", "source.ip", "host.name",
            "process.executable", "process.pid"} <= set(rates)
    assert all(rate >= 0.99 for rate in rates.values()), rates


def test_gzipped_evtx_reads_through_the_stream(datasets_dir, tmp_path):
    plain = datasets_dir / "parser_oracles/elastic_beats_filebeat_2019/winlogbeat/security/security-windows2016-logoff.evtx"
    packed = tmp_path / "logoff.evtx.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert detected(packed) == "evtx"
    a, _, _ = parse("evtx", plain)
    b, _, _ = parse("evtx", packed)
    assert b.drop("log.file.path").equals(a.drop("log.file.path"))
    assert b["user.name"].to_list() == ["audittest", "administrator"]  # Windows names are case-insensitive
    assert b["event.action"].to_list() == ["logged-out", "logged-out"]


def test_sysmon_process_access_names_the_accessing_process():
    out = run({"EventID": 10, "Channel": "Microsoft-Windows-Sysmon/Operational", "Hostname": "WS1",
               "UtcTime": "2023-08-16 04:55:01.123", "SourceImage": "C:\\Windows\\System32\\rundll32.exe",
               "SourceProcessId": "4242", "SourceUser": "PANDALAB\\pedro", "TargetImage": "C:\\Windows\\System32\\lsass.exe"})
    row = out.events.row(0, named=True)
    assert (row["process.executable"], row["process.name"], row["process.pid"]) == (
        "C:\\Windows\\System32\\rundll32.exe", "rundll32.exe", 4242)
    assert (row["user.name"], row["user.domain"]) == ("pedro", "PANDALAB")
    assert (row["event.category"], row["event.type"]) == (["process"], ["access"])
    assert row["@timestamp"] == datetime(2023, 8, 16, 4, 55, 1, 123000, tzinfo=timezone.utc)
