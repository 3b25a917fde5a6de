"""The auditd format: record shapes, hostile lines, detection, and failed logins in audit.log seen
by the shipped queries exactly as sshd's auth.log lines are. Every line here is written for the
test (none is copied from a third-party log)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.engine.api import Engine
from dplogs.ingest.base import IngestOptions
from dplogs.ingest.formats import registered
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.testing import exact_mode
from tests.ingest.structured_helpers import detected, lines_frame

QUERIES = Path(__file__).resolve().parents[2] / "queries"


def _hex(text: str) -> str:
    return text.encode().hex().upper()


def _parse(*texts: str):
    chunk = registered()["auditd"].parse_lines(lines_frame(*texts), "audit.log", IngestOptions())
    assert chunk.events.height + chunk.quarantine.height + chunk.skipped == len(texts)
    return chunk


def _one(text: str) -> dict:
    chunk = _parse(text)
    assert chunk.quarantine.is_empty(), chunk.quarantine.rows()
    return chunk.events.row(0, named=True)


def _login(t: float, serial: int, acct: str, addr: str, res: str, kind: str = "USER_LOGIN") -> str:
    op = "login" if kind == "USER_LOGIN" else "PAM:authentication grantors=? "
    return (f"type={kind} msg=audit({t:.3f}:{serial}): pid={4000 + serial} uid=0 auid=4294967295 ses=4294967295 "
            f"subj=system_u:system_r:sshd_t:s0-s0:c0.c1023 msg='op={op} acct=\"{acct}\" exe=\"/usr/sbin/sshd\" "
            f"hostname={addr} addr={addr} terminal=ssh res={res}'")


def test_failed_login_is_an_authentication_failure_with_account_and_address():
    row = _one(_login(1709632800.125, 7, "alice", "203.0.113.5", "failed"))
    assert (row["event.action"], row["event.category"], row["event.type"], row["event.outcome"]) == \
        ("user_login", ["authentication"], ["start"], "failure")
    assert (row["user.name"], row["user.id"], row["source.ip"]) == ("alice", "0", "203.0.113.5")
    assert row["@timestamp"] == dt.datetime(2024, 3, 5, 10, 0, 0, 125000, tzinfo=dt.UTC)
    assert (row["process.executable"], row["process.name"], row["process.pid"]) == ("/usr/sbin/sshd", "sshd", 4007)
    assert (row["event.dataset"], row["event.module"], row["event.code"]) == ("auditd.log", "auditd", "USER_LOGIN")
    auth = _one(_login(1709632800.5, 8, "alice", "203.0.113.5", "success", kind="USER_AUTH"))
    assert (auth["event.category"], auth["event.type"], auth["event.outcome"]) == (["authentication"], ["info"], "success")


def test_account_names_hex_unknown_and_numeric():
    """``acct`` hex-decoded; sshd's ``(invalid user)`` is no account; a login naming only a numeric
    ``id`` has no user.name (its row falls to the unit chain's next field or the shared unit)."""
    hexed = _one(_login(1709632800, 1, "x", "::1", "failed").replace('acct="x"', f"acct={_hex('ann marie')}"))
    assert (hexed["user.name"], hexed["source.ip"]) == ("ann marie", "::1")
    invalid = _one(_login(1709632800, 2, "x", "10.0.0.1", "failed").replace('acct="x"', f"acct={_hex('(invalid user)')}"))
    assert invalid["user.name"] is None and invalid["event.outcome"] == "failure"
    realm = _one(_login(1709632800, 4, "dave@CORP.EXAMPLE", "10.0.0.1", "success"))
    assert (realm["user.name"], realm["user.domain"]) == ("dave", "CORP.EXAMPLE")  # one identity, as from sshd
    numeric = _one("type=USER_LOGIN msg=audit(1709632800.000:3): pid=9 uid=0 auid=1000 ses=2 msg='op=login id=1000 "
                   "exe=\"/usr/sbin/sshd\" hostname=? addr=? terminal=/dev/pts/0 res=success'")
    assert (numeric["user.name"], numeric["user.id"], numeric["source.ip"]) == (None, "0", None)


def test_sudo_command_account_change_and_node_prefix():
    cmd = _one(f"node=web1 type=USER_CMD msg=audit(1709632801.000:20): pid=77 uid=1000 auid=1000 ses=4 "
               f"msg='cwd=\"/home/bob\" cmd={_hex('systemctl restart nginx')} exe=\"/usr/bin/sudo\" terminal=pts/0 res=success'")
    assert (cmd["host.name"], cmd["event.category"], cmd["process.command_line"], cmd["process.name"]) == \
        ("web1", ["process"], "systemctl restart nginx", "sudo")
    add = _one("type=ADD_USER msg=audit(1709632802.000:21): pid=78 uid=0 auid=1000 ses=4 msg='op=add-user "
               "acct=\"mallory\" exe=\"/usr/sbin/useradd\" hostname=web1 addr=? terminal=pts/0 res=success'")
    assert (add["event.category"], add["event.type"], add["user.name"], add["source.ip"]) == \
        (["iam"], ["user", "creation"], "mallory", None)


def test_one_kernel_event_is_one_event_per_record():
    serial = "msg=audit(1709632803.250:99):"
    chunk = _parse(
        f"type=SYSCALL {serial} arch=c000003e syscall=59 success=yes exit=0 a0=55d a1=55e a2=55f a3=0 items=2 ppid=1 "
        f"pid=300 auid=1000 uid=1000 gid=1000 euid=1000 tty=pts0 ses=4 comm=\"curl\" exe=\"/usr/bin/curl\" key=(null)",
        f"type=EXECVE {serial} argc=3 a0=\"curl\" a1={_hex('-o /tmp/x y')} a2=\"http://203.0.113.9/p\"",
        f"type=PROCTITLE {serial} proctitle={_hex(chr(0).join(['curl', '-s', 'u']))}",
        f"type=AVC msg=audit(1709632804.000:100): avc:  denied  {{ read }} for  pid=301 comm=\"httpd\" "
        f"name=\"shadow\" dev=\"dm-0\" ino=1 scontext=system_u:system_r:httpd_t:s0 tclass=file permissive=0",
    )
    rows = chunk.events.sort("log.offset").rows(named=True)
    assert [r["event.action"] for r in rows] == ["syscall", "execve", "proctitle", "avc"]
    syscall, execve, title, avc = rows
    assert (syscall["event.category"], syscall["event.type"], syscall["event.outcome"]) == (["process"], ["start"], "success")
    assert (syscall["user.id"], syscall["user.name"], syscall["process.name"]) == ("1000", None, "curl")
    assert execve["process.command_line"] == "curl -o /tmp/x y http://203.0.113.9/p"
    assert title["process.command_line"] == "curl -s u"
    assert (avc["process.pid"], avc["process.name"], avc["event.category"]) == (301, "httpd", None)


def test_enriched_names():
    row = _one("type=SYSCALL msg=audit(1709632805.000:101): arch=c000003e syscall=87 success=no exit=-13 items=1 "
               "ppid=1 pid=5 auid=1001 uid=0 comm=\"rm\" exe=\"/usr/bin/rm\" key=(null)"
               "\x1dARCH=x86_64 SYSCALL=unlink AUID=\"carol\" UID=\"root\"")
    assert (row["user.name"], row["user.id"], row["event.category"], row["event.type"], row["event.outcome"]) == \
        ("carol", "0", ["file"], ["deletion"], "failure")
    unset = _one("type=SYSCALL msg=audit(1709632805.000:102): arch=c000003e syscall=2 success=yes exit=3 pid=6 "
                 "auid=4294967295 uid=0 comm=\"cron\" exe=\"/usr/sbin/cron\"\x1dAUID=\"unset\" UID=\"root\"")
    assert (unset["user.name"], unset["event.category"]) == ("root", ["process"])
    no_uid = _one("type=SYSCALL msg=audit(1709632805.000:103): arch=c000003e syscall=2 success=yes pid=7 auid=4294967295 "
                  "uid=4294967295 comm=\"unset\" exe=\"/bin/unset\"")
    assert (no_uid["user.id"], no_uid["user.name"], no_uid["process.name"]) == (None, None, "unset")


def _hostile() -> list[str]:
    esc = _hex("\x1b[2J\nroot")
    lines = [
        _login(1709632806, 1, "x", "10.0.0.2", "failed").replace('acct="x"', f"acct={esc}"),  # ESC, newline
        'type=USER_AUTH msg=audit(1709632806.000:2): pid=1 uid=0 msg=\'op=PAM acct="bob exe="/x addr=10.0.0.3 res=failed',
        "type=SYSCALL msg=audit(1709632806.000:3): " + " ".join(f"k{i}=v{i}" for i in range(10_000)) + " pid=42",
        "type=USER_LOGIN msg=audit(17096x2806.000:4): pid=1 uid=0 res=failed",
        "type=USER_LOGIN msg=audit(1709632806:5): pid=1 uid=0 res=failed",
        "type=" + "A" * 1_000_000 + " msg=audit(1709632806.000:6): pid=1",
        "type=USER_LOGIN msg=audit(99999999999.000:7): pid=1 uid=0 res=failed",  # year 5138
        # a quoted value cannot fake a key (auditd hex-encodes values with spaces)
        "type=USER_AUTH msg=audit(1709632806.000:8): pid=1 uid=0 msg='op=PAM acct=\"eve\" "
        "exe=\"/tmp/msg='addr=6.6.6.6'res=success\" addr=10.0.0.4 res=failed'",
        "Mar  5 10:00:00 host sshd[1]: Failed password for bob from 10.0.0.5 port 1 ssh2",
        "",
    ]
    return lines


def test_hostile_lines_are_parsed_safely_or_quarantined_with_a_reason():
    lines = _hostile()
    chunk = _parse(*lines)
    events = chunk.events.sort("log.offset").rows(named=True)
    reasons = dict(zip(chunk.quarantine["line"], chunk.quarantine["reason"], strict=True))
    assert reasons == {4: "bad msg=audit(SECONDS.MILLIS:SERIAL) time stamp", 5: "bad msg=audit(SECONDS.MILLIS:SERIAL) time stamp",
                       6: "record type is not an audit type name", 7: "timestamp outside 1970-01-01..2100-01-01 (--time-range)",
                       9: "not an audit record (no type=… msg=audit(…) header)"}
    assert chunk.skipped == 1 and len(events) == 4
    assert events[0]["user.name"] == "\x1b[2J\nroot"  # stored as logged; escaped wherever shown
    # the quote left open ends nothing: acct and exe are null, the keys after them still read
    assert (events[1]["user.name"], events[1]["source.ip"], events[1]["event.outcome"]) == (None, "10.0.0.3", "failure")
    assert events[2]["process.pid"] == 42
    assert (events[3]["user.name"], events[3]["source.ip"], events[3]["event.outcome"]) == ("eve", "10.0.0.4", "failure")


def test_hostile_file_through_the_cli_is_stored_and_shown_escaped(tmp_path):
    log = tmp_path / "audit.log"
    log.write_text("\n".join(_hostile()) + "\n")
    result = CliRunner().invoke(cli, ["ingest", str(log), "--store", str(tmp_path / "st"), "--format", "auditd"])
    assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(cli, ["inspect", "--store", str(tmp_path / "st"), "--head", "5", "--columns", "user.name"])
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output and "root" in shown.output
    rejected = CliRunner().invoke(cli, ["inspect", "--store", str(tmp_path / "st"), "--quarantine"])
    assert rejected.exit_code == 0 and "record type is not an audit type name" in rejected.output


def test_detection(tmp_path):
    plain = tmp_path / "audit.log"
    plain.write_text(_login(1709632800, 1, "a", "10.0.0.1", "failed") + "\n")
    forwarded = tmp_path / "forwarded.log"
    forwarded.write_text("node=db2 " + _login(1709632800, 1, "a", "10.0.0.1", "failed") + "\n")
    assert detected(plain) == detected(forwarded) == "auditd"
    assert registered()["auditd"].sniff(b"Mar  5 10:00:00 host sshd[1]: Failed password for bob\n") == 0


@pytest.mark.parametrize(("wrap", "own_time"), [
    ("Mar  5 10:00:09 web1 audispd: {}", True),  # audisp's syslog plugin: the record as written
    ("Mar  5 10:00:09 web1 audisp-syslog: node=db2 {}", True),
    ("Mar  5 10:00:09 web1 kernel: [ 1234.567890] audit: {}", True),  # no audit daemon: the kernel's printk
    ("Mar  5 10:00:09 web1 audit[4007]: {}", False),  # journald: no stamp of its own, the syslog line's
])
def test_audit_records_carried_by_syslog_read_as_in_audit_log(wrap: str, own_time: bool):
    """An audit record forwarded through syslog (audisp, the kernel when no audit daemon runs,
    journald) is read as the audit reader reads audit.log (was an uncategorised syslog event with
    no user, so the shipped failed-login queries missed it); the event keeps the syslog line as
    read (its hash, the quarantine) and the syslog host where the record names no node."""
    from dplogs.ingest.syslog import Syslog

    record = _login(1709632800.125, 7, "alice", "203.0.113.5", "failed")
    if "kernel" in wrap:
        record = record.replace("type=USER_LOGIN msg=audit(1709632800.125:7)", "type=1112 audit(1709632800.125:7)")
    elif "audit[" in wrap:
        record = record.replace("type=USER_LOGIN msg=audit(1709632800.125:7): ", "USER_LOGIN ")
    lines = [wrap.format(record), "Mar  5 10:00:10 web1 sshd[9]: Failed password for bob from 10.0.0.9 port 1 ssh2",
             wrap.format("type=USER_LOGIN msg=audit(17096328:7): pid=1") if "kernel" not in wrap and "audit[" not in wrap else ""]
    chunk = Syslog().parse_lines(lines_frame(*lines), "syslog", IngestOptions(year=2024))
    events = chunk.events.sort("log.offset")
    row, plain = events.row(0, named=True), _one(_login(1709632800.125, 7, "alice", "203.0.113.5", "failed"))
    fields = ("event.action", "event.code", "event.category", "event.type", "event.outcome", "user.name", "source.ip",
              "process.name", "event.module", "event.dataset")
    assert {k: row[k] for k in fields} == {k: plain[k] for k in fields}
    assert row["@timestamp"] == (plain["@timestamp"] if own_time else dt.datetime(2024, 3, 5, 10, 0, 9, tzinfo=dt.UTC))
    assert row["host.name"] == ("db2" if "node=" in wrap else "web1")
    assert events.row(1, named=True)["user.name"] == "bob"  # the syslog line beside it is syslog's
    if lines[2]:  # a record with a bad stamp: quarantined as the line read
        assert chunk.quarantine.rows(named=True)[0]["text"] == lines[2]
        assert chunk.quarantine.get_column("reason").to_list() == ["bad msg=audit(SECONDS.MILLIS:SERIAL) time stamp"]
    again = Syslog().parse_lines(lines_frame(*lines), "syslog", IngestOptions(year=2024)).events.sort("log.offset")
    assert again.get_column("event.hash").equals(events.get_column("event.hash"))
    assert events.get_column("event.hash").n_unique() == events.height


def test_a_block_of_only_audit_records_in_syslog(tmp_path):
    from dplogs.ingest.syslog import Syslog

    lines = [f"Mar  5 10:00:0{i} web1 audispd: " + _login(1709632800 + i, i, "alice", "203.0.113.5", "failed") for i in range(3)]
    chunk = Syslog().parse_lines(lines_frame(*lines), "syslog", IngestOptions(year=2024))
    assert (chunk.events.height, chunk.quarantine.height) == (3, 0)
    assert chunk.events.get_column("user.name").to_list() == ["alice"] * 3


def _store(tmp_path: Path, name: str, text: str) -> Engine:
    log = tmp_path / name
    log.write_text(text)
    store = tmp_path / f"store-{name}"
    result = CliRunner().invoke(cli, ["ingest", str(log), "--store", str(store), "--year", "2024"])
    assert result.exit_code == 0, result.output
    Ledger.open(store / "ledger.sqlite", create=True).set_caps(window_policy="month", epsilon=100.0, delta=1e-3)
    return Engine.open(store)


@pytest.mark.parametrize("query", ["failed_logins_per_hour", "failing_accounts_per_day", "login_failure_rate_per_week"])
def test_shipped_auth_queries_count_audit_failures_as_auth_log_failures(tmp_path, query):
    """The same failed and successful ssh logins written as audit.log records and as sshd auth.log
    lines: each shipped failed-login query gives the same exact (pre-noise) answer on both."""
    attempts = [(dt.datetime(2024, 3, 5, h, m, tzinfo=dt.UTC), user, ip, ok)
                for h, m, user, ip, ok in [(9, 1, "alice", "203.0.113.5", False), (9, 2, "alice", "203.0.113.5", False),
                                           (9, 3, "bob", "198.51.100.7", False), (9, 4, "bob", "198.51.100.7", True),
                                           (11, 0, "carol", "203.0.113.5", False), (12, 30, "root", "192.0.2.1", False)]]
    audit = "".join(_login(t.timestamp(), i, user, ip, "success" if ok else "failed") + "\n"
                    for i, (t, user, ip, ok) in enumerate(attempts))
    auth = "".join(f"{t:%b %e %H:%M:%S} srv sshd[{100 + i}]: {'Accepted' if ok else 'Failed'} password for {user} from "
                   f"{ip} port {5000 + i} ssh2\n" for i, (t, user, ip, ok) in enumerate(attempts))
    wrapped = "".join(f"{t:%b %e %H:%M:%S} srv audispd: " + _login(t.timestamp(), i, user, ip, "success" if ok else "failed")
                      + "\n" for i, (t, user, ip, ok) in enumerate(attempts))
    answers = []
    for name, text in (("audit.log", audit), ("auth.log", auth), ("syslog", wrapped)):
        with exact_mode():
            data = _store(tmp_path, name, text).query_file(QUERIES / f"{query}.toml").release(caller="test").data
        answers.append(data.sort(pl.all()))
    assert answers[0].equals(answers[1]) and answers[2].equals(answers[1]), answers
    assert (answers[0]["value"].fill_null(0) != 0).any()
    if query == "failed_logins_per_hour":
        assert answers[0]["value"].sum() == 5


def test_sudo_per_day_counts_sudos_audit_records_as_auth_log_lines(tmp_path):
    """sudo writes a USER_CMD record to the audit log (the user named by enriched logs) and a line
    to auth.log: the shipped sudo_per_day query gives the same exact answer on both."""
    runs = [(dt.datetime(2024, 3, 5, 9, m, tzinfo=dt.UTC), user) for m, user in [(1, "alice"), (2, "alice"), (3, "bob")]]
    audit = "".join(
        f"type=USER_CMD msg=audit({t.timestamp():.3f}:{20 + i}): pid={70 + i} uid=1000 auid=1000 ses=4 "
        f"msg='cwd=\"/home/{user}\" cmd=6C73202F726F6F74 exe=\"/usr/bin/sudo\" terminal=pts/0 res=success'"
        f"\x1dUID=\"{user}\" AUID=\"{user}\"\n" for i, (t, user) in enumerate(runs))
    auth = "".join(f"{t:%b %e %H:%M:%S} srv sudo:    {user} : TTY=pts/0 ; PWD=/home/{user} ; USER=root ; "
                   "COMMAND=/bin/ls /root\n" for t, user in runs)
    answers = []
    for name, text in (("audit.log", audit), ("auth.log", auth)):
        with exact_mode():
            data = _store(tmp_path, name, text).query_file(QUERIES / "sudo_per_day.toml").release(caller="test").data
        answers.append(data.sort(pl.all()))
    assert answers[0].equals(answers[1]), answers
    assert sorted(answers[0]["value"].drop_nulls().to_list())[-2:] == [2, 3]  # 3 sudo runs by 2 users on 03-05
