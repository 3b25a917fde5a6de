"""Microsoft Sentinel / Log Analytics Syslog table exports: syslog messages, Sysmon for Linux XML,
auoms records, and the OTRF Linux recordings made that way."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from tests.ingest.structured_helpers import detected, lines_frame, parse

from dplogs.ingest.base import IngestOptions
from dplogs.ingest.sentinel import SentinelSyslog

FMT = SentinelSyslog()
LINUX = Path(__file__).resolve().parents[2] / "../shared/datasets/otrf_security_datasets/linux"
SYSMON_FILE = LINUX / "syslog_sysmon_log4shell_cve2021_44228_jndi_reference_2022-05-11181020.json.gz"
AUOMS_FILE = LINUX / "syslog_auoms_auditd_log4shell_cve2021_44228_jndi_reference_2022-05-11181020.json.gz"


def _row(message: str, program: str = "sshd", **extra) -> str:
    return json.dumps({"TenantId": "t", "SourceSystem": "Linux", "TimeGenerated": "2022-05-11T18:10:21.997Z",
                       "EventTime": "2022-05-11T18:10:21Z", "Computer": "UBUNTU5", "HostName": "ubuntu5",
                       "Facility": "auth", "SeverityLevel": "info", "ProcessName": program, "ProcessID": 4242,
                       "SyslogMessage": message, "Type": "Syslog", **extra})


def _sysmon(event_id: int, data: dict[str, str]) -> str:
    fields = "".join(f'<Data Name="{k}">{v}</Data>' for k, v in data.items())
    return ('<Event><System><Provider Name="Linux-Sysmon" Guid="{ff032593}"/>'
            f'<EventID>{event_id}</EventID><Version>5</Version>'
            '<TimeCreated SystemTime="2022-05-11T18:10:22.000000000Z"/><Channel>Linux-Sysmon/Operational</Channel>'
            f'<Computer>UBUNTU5</Computer><Security UserId="0"/></System><EventData>{fields}</EventData></Event>')


def test_syslog_messages_are_categorised_like_auth_log_lines():
    out = FMT.parse_lines(lines_frame(
        _row("Failed password for invalid user admin from 203.0.113.9 port 50514 ssh2"),
        _row("  Alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls", program="sudo"),
        _row("Started Daily apt upgrade and clean activities.", program="systemd", SeverityLevel="notice"),
    ), "s.json", IngestOptions())
    ev = out.events
    assert out.quarantine.height == 0
    assert ev["user.name"].to_list() == ["admin", "Alice", None]  # Unix names keep their case
    assert ev["user.effective.name"].to_list()[1] == "root"
    assert ev["source.ip"].to_list() == ["203.0.113.9", None, None]
    assert ev["event.outcome"].to_list()[0] == "failure" and ev["event.action"].to_list()[:2] == ["ssh_login", "sudo"]
    assert ev["event.dataset"].to_list() == ["system.auth", "system.auth", "system.syslog"]
    assert ev["host.name"].to_list() == ["ubuntu5"] * 3  # the syslog header's host before Computer
    assert ev["process.name"].to_list() == ["sshd", "sudo", "systemd"] and ev["process.pid"].to_list() == [4242] * 3
    assert ev["event.severity"].to_list() == [6, 6, 5]
    # EventTime (the event's own), not TimeGenerated (when Log Analytics received it)
    assert ev["@timestamp"][0] == datetime(2022, 5, 11, 18, 10, 21, tzinfo=timezone.utc)


def test_sysmon_for_linux_xml_is_mapped_with_the_sysmon_event_ids():
    create = _sysmon(1, {"UtcTime": "2022-05-11 18:10:21.998", "ProcessId": "17790", "Image": "/bin/bash",
                         "CommandLine": "bash -c &quot;a &amp;&amp; b &lt; c&quot;", "User": "Tomcat",
                         "ParentImage": "/usr/lib/jvm/java/bin/java"})
    connect = _sysmon(3, {"UtcTime": "2022-05-11 18:10:21.790", "ProcessId": "1340", "Image": "/usr/bin/java",
                          "User": "tomcat", "Protocol": "tcp", "SourceIp": "192.168.2.5", "SourcePort": "41696",
                          "DestinationIp": "192.168.2.6", "DestinationPort": "1389"})
    out = FMT.parse_lines(lines_frame(_row(create, program="sysmon"), _row(connect, program="sysmon")), "s.json", IngestOptions())
    ev = out.events
    assert out.quarantine.height == 0
    assert ev["event.dataset"].to_list() == ["sysmon_linux.log"] * 2 and set(ev["event.module"]) == {"sysmon_linux"}
    assert ev["event.code"].to_list() == ["1", "3"]
    assert ev["event.category"].to_list() == [["process"], ["network"]]
    assert ev["event.type"].to_list() == [["start"], ["connection"]]
    assert ev["process.command_line"][0] == 'bash -c "a && b < c"'  # XML entities decoded
    assert ev["process.name"].to_list() == ["bash", "java"] and ev["process.pid"].to_list() == [17790, 1340]
    assert ev["process.parent.executable"][0] == "/usr/lib/jvm/java/bin/java"
    assert ev["user.name"].to_list() == ["Tomcat", "tomcat"]  # a Linux account keeps its case
    assert ev["destination.ip"][1] == "192.168.2.6" and ev["destination.port"][1] == 1389
    assert ev["network.transport"][1] == "tcp" and ev["host.name"].to_list() == ["UBUNTU5"] * 2
    assert ev["@timestamp"][0] == datetime(2022, 5, 11, 18, 10, 21, 998000, tzinfo=timezone.utc)  # Sysmon's UtcTime


def test_auoms_records():
    ok = ('type=AUOMS_EXECVE audit(1652292622.017:84150): syscall=execve success=yes exit=0 ppid=17790 pid=17793 '
          'user=tomcat uid=1001 effective_user=root euid=0 tty=(none) comm="base64" exe="/usr/bin/base64" '
          'cmdline="base64 -d" key=auoms')
    failed = ('type=AUOMS_EXECVE audit(1652292621.986:84138): syscall=execve success=no exit=-2 pid=17790 '
              'user=tomcat effective_user=tomcat comm="http-nio-8080-e" exe="/usr/lib/jvm/java/bin/java"')
    out = FMT.parse_lines(lines_frame(_row(ok, program="auoms"), _row(failed, program="auoms")), "s.json", IngestOptions())
    ev = out.events
    assert ev["event.dataset"].to_list() == ["auditd.log"] * 2 and ev["event.action"].to_list() == ["execve"] * 2
    assert ev["event.outcome"].to_list() == ["success", "failure"]
    assert ev["user.name"].to_list() == ["tomcat", "tomcat"]
    assert ev["user.effective.name"].to_list() == ["root", None]  # only when it differs
    assert ev["process.executable"].to_list() == ["/usr/bin/base64", "/usr/lib/jvm/java/bin/java"]
    assert ev["process.name"].to_list() == ["base64", "java"] and ev["process.pid"].to_list() == [17793, 17790]
    assert ev["process.command_line"].to_list() == ["base64 -d", None]
    assert ev["event.category"].to_list() == [["process"], ["process"]]


def test_rows_that_are_not_of_the_table_are_quarantined_with_a_reason():
    out = FMT.parse_lines(lines_frame(
        _row("ok message", program="cron"),
        json.dumps({"TimeGenerated": "2022-05-11T18:10:21Z", "Computer": "x"}),
        _row("no time", EventTime="", TimeGenerated="yesterday"),
        "not json",
    ), "s.json", IngestOptions())
    assert out.events.height == 1
    assert dict(zip(out.quarantine["line"], out.quarantine["reason"], strict=True)) == {
        2: "no SyslogMessage", 3: "no timestamp (the event's time cannot be determined)", 4: "not a JSON object"}


def test_detected_from_content(tmp_path):
    path = tmp_path / "export.json"
    path.write_text("\n".join(_row(f"message {i}", program="cron") for i in range(5)) + "\n")
    assert detected(path) == "sentinel"


@pytest.mark.skipif(not SYSMON_FILE.exists() or not AUOMS_FILE.exists(),
                    reason="../shared/datasets/otrf_security_datasets/linux is absent (third-party data)")
def test_otrf_log4shell_recordings_ingest_completely_and_show_the_attack_chain():
    assert detected(SYSMON_FILE) == "sentinel" and detected(AUOMS_FILE) == "sentinel"
    sysmon, quarantine, _ = parse("sentinel", SYSMON_FILE)
    with gzip.open(SYSMON_FILE, "rt") as f:
        assert sysmon.height == sum(1 for _ in f) and quarantine.height == 0
    assert sysmon["event.code"].value_counts().sort("event.code").rows() == [("1", 31), ("11", 4), ("23", 2), ("3", 6), ("5", 50)]
    assert sysmon["event.action"].null_count() == 0 and sysmon["host.name"].null_count() == 0
    # the exploit: the JVM (tomcat) spawns bash, which decodes and runs a reverse shell
    spawned = sysmon.filter((pl.col("event.code") == "1") & pl.col("process.parent.executable").str.contains("java"))
    assert spawned["user.name"].unique().to_list() == ["tomcat"]
    assert spawned["process.command_line"].str.contains("base64").any()
    auoms, quarantine, _ = parse("sentinel", AUOMS_FILE)
    assert auoms.height == 50 and quarantine.height == 0
    assert auoms["user.name"].null_count() == 0 and auoms["event.outcome"].null_count() == 0
    assert set(auoms["event.outcome"]) == {"success", "failure"}
