"""Regression tests for the gaps issue 16 found against today's Elastic integrations (each fails on
the parsers before it), and for one identity per account (issue 14) on real Windows, Kerberos
and sshd logs. The auth.log gaps (sudo without TTY, pam_faillock, unix_chkpwd, useradd/groupadd
failures, su/sudo/PAM actor vs target) are golden lines in ``test_syslog_auth.py``."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import re
from pathlib import Path

import polars as pl
import pytest

from dplogs.engine.plan import Cmp, In, IsNull, Key, KeyKind, Like
from dplogs.ingest.access import IIS, Access
from dplogs.ingest.base import NO_TIME_REASON, IngestOptions, InputSource
from dplogs.ingest.cef import Cef
from dplogs.ingest.cloudtrail import CloudTrail
from dplogs.ingest.ingest import ingest
from dplogs.ingest.jsonl import JsonLines
from dplogs.ingest.store import Store
from dplogs.ingest.syslog import Syslog
from dplogs.ingest.zeek import Zeek
from dplogs.schema import conform
from tests.ingest.structured_helpers import detected, lines_frame, parse

UTC = dt.UTC


def _source(name: str, data: bytes) -> InputSource:
    return InputSource(name=name, head=data[:65536], open=lambda: io.BytesIO(data))


# -- CloudTrail: a failed console login has no errorCode ------------------------------------------


def _trail(**record) -> dict:
    return {"eventTime": "2024-05-01T10:00:00Z", "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
            "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.9",
            "userIdentity": {"type": "IAMUser", "userName": "anaya"}, **record}


def test_cloudtrail_failed_console_login_is_a_failure() -> None:
    records = [
        _trail(responseElements={"ConsoleLogin": "Failure"}, errorMessage="Failed authentication"),
        _trail(responseElements={"ConsoleLogin": "Success"}),
        _trail(eventSource="s3.amazonaws.com", eventName="GetObject", errorCode="AccessDenied"),
        _trail(eventName="UserAuthentication", serviceEventDetails={"UserAuthentication": "Failure"},
               userIdentity={"type": "IdentityCenterUser"}, additionalEventData={"UserName": "Ann@Example.com"}),
    ]
    chunk = CloudTrail().parse_lines(lines_frame(*(json.dumps(r) for r in records)), "ct.json", IngestOptions())
    ev = chunk.events
    assert ev["event.outcome"].to_list() == ["failure", "success", "failure", "failure"]
    assert ev["event.category"].to_list() == [["authentication"], ["authentication"], None, ["authentication"]]
    assert ev["user.name"].to_list() == ["anaya", "anaya", "anaya", "Ann"]  # the UPN split; AWS keeps case
    assert ev["user.domain"].to_list()[3] == "Example.com"


# -- access logs: vhost_combined ------------------------------------------------------------------


def test_vhost_prefixed_access_lines_keep_the_client_address() -> None:
    chunk = Access().parse_lines(lines_frame(
        'www.example.com:443 198.51.100.4 - bob [26/Dec/2016:16:22:13 +0200] "GET /a HTTP/1.1" 200 10 "-" "curl/8"',
        'shop.example.org 2001:db8::5 - - [26/Dec/2016:16:22:14 +0200] "POST /b HTTP/1.1" 401 0 "-" "curl/8"',
        '10.0.0.2, 10.0.0.1, 85.181.35.98 - - [07/Dec/2016:11:05:07 +0100] "GET /ocelot HTTP/1.1" 200 571 "-" "x"',
    ), "vhost.log", IngestOptions())
    ev = chunk.events
    assert chunk.quarantine.is_empty()
    assert ev["source.ip"].to_list() == ["198.51.100.4", "2001:db8::5", "85.181.35.98"]
    assert ev["destination.port"].to_list() == [443, None, None]
    assert ev["user.name"].to_list() == ["bob", None, None]


# -- IIS: no #Fields line, and a header that changes mid-file --------------------------------------


IIS_DEFAULT = (b"2024-01-02 03:04:05 10.0.0.1 GET /index.htm - 80 - 198.51.100.7 Mozilla/5.0 - 200 0 0 15\n"
               b"2024-01-02 03:04:06 10.0.0.1 POST /login u=1 443 CORP\\Alice 198.51.100.8 curl/8 http://x/ 401 1 2148074254 12\n")


def test_iis_without_fields_header_reads_the_default_w3c_layout() -> None:
    assert detected_bytes(IIS_DEFAULT) == "iis"
    (chunk,) = IIS().parse(_source("u_ex240102.log", IIS_DEFAULT), IngestOptions())
    ev = chunk.events
    assert chunk.quarantine.is_empty() and ev.height == 2
    assert ev["source.ip"].to_list() == ["198.51.100.7", "198.51.100.8"]
    assert ev["url.original"].to_list() == ["/index.htm", "/login?u=1"]
    assert ev["http.response.status_code"].to_list() == [200, 401]
    assert (ev["user.name"].to_list(), ev["user.domain"].to_list()) == ([None, "alice"], [None, "CORP"])


def test_iis_header_changing_mid_file() -> None:
    data = (b"#Fields: date time c-ip cs-method cs-uri-stem sc-status\n"
            b"2024-01-02 03:04:05 198.51.100.1 GET /a 200\n"
            b"#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip sc-status\n"
            b"2024-01-02 03:04:06 10.0.0.1 GET /b q=1 80 - 198.51.100.2 404\n")
    chunks = list(IIS().parse(_source("iis.log", data), IngestOptions(chunk_lines=2)))
    ev = pl.concat([c.events for c in chunks])
    assert all(c.quarantine.is_empty() for c in chunks)
    assert ev["source.ip"].to_list() == ["198.51.100.1", "198.51.100.2"]
    assert ev["url.original"].to_list() == ["/a", "/b?q=1"]
    assert ev["destination.port"].to_list() == [None, 80]


def detected_bytes(data: bytes) -> str:
    from dplogs.ingest.reader import detect_format

    return detect_format(_source("x.log", data)).name


# -- Suricata alerts ------------------------------------------------------------------------------


def test_suricata_alert_keeps_its_rule() -> None:
    alert = {"timestamp": "2024-03-01T10:00:00.000000+0000", "event_type": "alert", "src_ip": "203.0.113.5",
             "src_port": 4444, "dest_ip": "10.0.0.5", "dest_port": 22, "proto": "TCP",
             "alert": {"action": "allowed", "signature_id": 2001219, "signature": "ET SCAN Potential SSH Scan",
                       "category": "Attempted Information Leak", "severity": 2}}
    blocked = {**alert, "alert": {**alert["alert"], "action": "blocked"}}
    ev = JsonLines().parse_lines(lines_frame(json.dumps(alert), json.dumps(blocked)), "eve.json", IngestOptions()).events
    row = ev.row(0, named=True)
    assert (row["rule.name"], row["rule.id"], row["rule.category"]) == (
        "ET SCAN Potential SSH Scan", "2001219", "Attempted Information Leak")
    assert (row["event.kind"], row["event.category"], row["event.type"]) == (
        "alert", ["network", "intrusion_detection"], ["allowed"])
    assert ev["event.type"].to_list()[1] == ["denied"] and ev["event.outcome"].to_list() == ["success", "failure"]
    assert row["event.dataset"] == "suricata.eve"


# -- Zeek: dataset from _path or the file name; outcomes ------------------------------------------


def test_zeek_dataset_from_file_name_and_ssh_outcome() -> None:
    data = (b'{"ts":1700000000.1,"uid":"C1","id.orig_h":"203.0.113.9","id.orig_p":5000,"id.resp_h":"10.0.0.2",'
            b'"id.resp_p":22,"auth_success":false,"auth_attempts":3,"client":"SSH-2.0-libssh"}\n'
            b'{"ts":1700000001.1,"uid":"C2","id.orig_h":"203.0.113.9","id.orig_p":5001,"id.resp_h":"10.0.0.2",'
            b'"id.resp_p":22,"auth_success":true}\n')
    ev = pl.concat([c.events for c in Zeek().parse(_source("/var/log/zeek/ssh.log", data), IngestOptions())])
    assert ev["event.dataset"].to_list() == ["zeek.ssh", "zeek.ssh"]
    assert ev["event.outcome"].to_list() == ["failure", "success"]
    assert ev["event.category"].to_list()[0] == ["network", "authentication"]


def test_zeek_path_field_and_conn_states() -> None:
    lines = [json.dumps({"_path": "conn", "ts": 1700000000 + i, "uid": f"C{i}", "id.orig_h": "10.0.0.1",
                         "id.resp_h": "10.0.0.2", "proto": "tcp", "conn_state": state})
             for i, state in enumerate(["REJ", "SF", "S0", "OTH"])]
    ev = Zeek().parse_lines(lines_frame(*lines), "anything.json", IngestOptions()).events
    assert set(ev["event.dataset"]) == {"zeek.connection"}
    assert ev["event.outcome"].to_list() == ["failure", "success", "failure", None]
    assert ev["event.type"].to_list() == [["connection", "start", "denied"], ["connection", "start", "end"],
                                          ["connection", "start"], ["connection", "info"]]


# -- CEF/LEEF: times, and events without one ------------------------------------------------------


def test_cef_time_fields_and_syslog_header() -> None:
    chunk = Cef().parse_lines(lines_frame(
        "CEF:0|V|P|1|1|N|5|src=10.0.0.1 rt=1705481530000",
        "CEF:0|V|P|1|1|N|5|src=10.0.0.2 end=Jan 17 2024 08:52:11",
        "CEF:0|V|P|1|1|N|5|src=10.0.0.3 start=1705481532000",
        "<134>Jan 17 08:52:13 fw01 CEF:0|V|P|1|1|N|5|src=10.0.0.4",
        "CEF:0|V|P|1|1|N|5|src=10.0.0.5 msg=no time at all",
    ), "fw.log", IngestOptions(year=2024))
    assert [t.second for t in chunk.events["@timestamp"]] == [10, 11, 12, 13]
    assert chunk.quarantine.select("line", "reason").rows() == [(5, NO_TIME_REASON)]


def test_events_without_a_time_are_quarantined_and_counted_never_day_unknown(tmp_path: Path) -> None:
    log = tmp_path / "fw.log"
    log.write_text("CEF:0|V|P|1|1|N|5|src=10.0.0.1 rt=1705481530000\nCEF:0|V|P|1|1|N|5|src=10.0.0.2 suser=eve\n")
    summary = ingest([log], tmp_path / "s", format="cef")
    assert (summary.written, summary.quarantined) == (1, 1)
    assert dict(summary.reasons) == {NO_TIME_REASON: 1}
    store = Store.open(tmp_path / "s")
    assert [p.name for p in store.day_paths()] == ["day=2024-01-17"]
    assert store.scan_quarantine().collect()["reason"].to_list() == [NO_TIME_REASON]


# -- queries over ECS arrays ----------------------------------------------------------------------


def test_filters_on_array_columns_mean_contains_and_grouping_takes_the_primary_value() -> None:
    frame = conform(pl.DataFrame({"event.category": [["authentication", "session"], ["process"], None, []],
                                  "user.name": ["a", "b", "c", "d"]}))
    def users(f) -> list[str]:
        return frame.filter(f.expr()).get_column("user.name").to_list()
    assert users(Cmp("event.category", "=", "session")) == ["a"]
    assert users(Cmp("event.category", "!=", "session")) == ["b", "d"]
    assert users(In("event.category", ("process", "iam"))) == ["b"]
    assert users(Like("event.category", "auth%")) == ["a"]
    assert users(IsNull("event.category")) == ["c", "d"]
    with pytest.raises(Exception, match="array"):
        Cmp("event.category", "<", "x")
    key = Key("event.category", "event.category", KeyKind.ENUM, values=("authentication", "process"))
    assert frame.select(key.expr()).to_series().to_list() == ["authentication", "process", None, None]
    assert key.domain(dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)).dtype == pl.String
    # a single string given for an array column (callers, older tools) becomes a one-element array
    assert conform(pl.DataFrame({"event.type": ["start", None]}))["event.type"].to_list() == [["start"], None]


# -- one identity per account (issue 14) on real logs ---------------------------------------------


OTRF = "otrf_security_datasets"


def test_windows_upn_and_plain_name_are_one_identity(datasets_dir: Path) -> None:
    path = datasets_dir / OTRF / "windows_host/purplesharp_ad_playbook_I_2020-10-22042947.json.gz"
    events, _, _ = parse("windows", path)
    raw = pl.read_ndjson(path, schema={"TargetUserName": pl.String, "EventID": pl.Int64}, ignore_errors=True)
    spellings = {n for n in raw["TargetUserName"].drop_nulls() if n.lower().startswith("pgustavo")}
    assert spellings == {"pgustavo", "pgustavo@THESHIRE.LOCAL"}  # two spellings in the log...
    named = events.filter(pl.col("user.name").str.to_lowercase().str.contains("gustavo"))
    assert set(named["user.name"]) == {"pgustavo"}  # ...one identity in the store
    kerberos = named.filter(pl.col("event.code") == "4769")  # the service tickets name pgustavo@THESHIRE.LOCAL
    assert kerberos.height > 0 and set(kerberos["user.domain"].drop_nulls()) <= {"THESHIRE.LOCAL", "THESHIRE"}
    machines = events.filter(pl.col("user.name").str.ends_with("$"))
    assert machines.height > 0 and machines.filter(pl.col("user.name").str.contains("[A-Z@]")).is_empty()


def test_windows_and_kerberos_accounts_meet_in_one_unit(datasets_dir: Path) -> None:
    root = datasets_dir / OTRF / "lsass_campaign_01"
    windows, _, _ = parse("windows", root / "metasploit_logonpasswords_lsass_memory_dump.json.gz")
    kerberos, _, _ = parse("zeek", root / "zeek/kerberos.log")
    assert set(kerberos["user.domain"].drop_nulls()) == {"PANDALAB.COM"}
    both = set(windows["user.name"].drop_nulls()) & set(kerberos["user.name"].drop_nulls())
    assert {"stevie.marie", "pedro.gustavo"} <= both


def test_sshd_names_keep_their_case_and_qualified_ones_split(datasets_dir: Path) -> None:
    path = datasets_dir / "auth_logs/elastic_examples_suspicious_login_auth.log.gz"
    events, _, _ = parse("syslog", path, IngestOptions(year=2024))
    assert events["user.domain"].null_count() == events.height  # plain Unix names: nothing to split
    # every sshd login keeps the name exactly as logged (Unix names are case-sensitive)
    text = gzip.decompress(path.read_bytes()).decode()
    logged = set(re.findall(r"(?:Accepted|Failed) \S+ for (?:invalid user )?(\S+) from \S+ port", text))
    stored = set(events.filter(pl.col("event.action") == "ssh_login")["user.name"].drop_nulls())
    assert logged and logged <= stored and all(f" {name} from " in text for name in stored)
    mixed = Syslog().parse_lines(lines_frame(
        "Mar 30 15:05:11 web sshd[9]: Accepted password for PGustavo@theshire.local from 10.0.0.9 port 52844 ssh2",
        "Mar 30 15:05:12 web sshd[9]: Accepted password for THESHIRE\\pgustavo from 10.0.0.9 port 52845 ssh2",
        "Mar 30 15:05:13 web sshd[9]: Accepted password for Bob from 10.0.0.9 port 52846 ssh2",
    ), "auth.log", IngestOptions(year=2024)).events
    assert mixed["user.name"].to_list() == ["PGustavo", "pgustavo", "Bob"]  # Unix: case kept
    assert mixed["user.domain"].to_list() == ["theshire.local", "THESHIRE", None]
