"""syslog / auth.log: golden lines, timestamp rules, quarantine reasons, and real-log oracles
(loghub OpenSSH and Linux structured CSVs, Elastic's suspicious-login auth.log)."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import re
from pathlib import Path

import polars as pl
import pytest

from dplogs.ingest.base import IngestOptions
from dplogs.ingest.syslog import Syslog
from tests.ingest.structured_helpers import detected, lines_frame, parse

UTC = dt.UTC


def _one(line: str, options: IngestOptions = IngestOptions(year=2024)) -> dict:
    chunk = Syslog().parse_lines(lines_frame(line), "auth.log", options)
    assert chunk.quarantine.is_empty(), chunk.quarantine.rows()
    return chunk.events.row(0, named=True)


# Golden pairs: raw auth.log lines (shapes taken from real Ubuntu/RHEL logs) beside the ECS values
# Elastic's system/auth pipeline gives them.
GOLDEN = [
    ("Mar 27 13:06:56 ip-10-77-20-248 sshd[1291]: Server listening on 0.0.0.0 port 22.",
     {"process.name": "sshd", "process.pid": 1291, "host.name": "ip-10-77-20-248", "event.action": None,
      "message": "Server listening on 0.0.0.0 port 22.", "event.dataset": "system.auth"}),
    ("Feb 20 08:35:22 slave22 sshd[5774]: Failed password for root from 116.31.116.24 port 29160 ssh2",
     {"user.name": "root", "source.ip": "116.31.116.24", "source.port": 29160, "event.action": "ssh_login",
      "event.outcome": "failure", "event.category": ["authentication"]}),
    ("Mar 30 15:05:11 web sshd[9]: Failed password for invalid user admin from 24.151.103.17 port 52844 ssh2",
     {"user.name": "admin", "source.ip": "24.151.103.17", "event.outcome": "failure"}),
    ("Apr  2 09:00:01 web sshd[9]: Invalid user oracle from 2001:db8::7 port 4022",
     {"user.name": "oracle", "source.ip": "2001:db8::7", "source.port": 4022, "event.outcome": "failure"}),
    ("Feb 21 21:54:44 localhost sshd[3402]: Accepted publickey for vagrant from 10.0.2.2 port 63673 ssh2: RSA 39:33:99",
     {"user.name": "vagrant", "event.outcome": "success", "event.action": "ssh_login"}),
    ("Feb 24 00:13:02 precise32 sudo:      tsg : user NOT in sudoers ; TTY=pts/1 ; PWD=/home/vagrant ; USER=root ; COMMAND=/bin/ls",
     {"user.name": "tsg", "user.effective.name": "root", "event.action": "sudo", "event.outcome": "failure",
      "event.category": ["process"], "process.pid": None}),
    ("Feb 23 00:08:48 localhost sudo: vagrant : TTY=pts/1 ; PWD=/home/vagrant ; USER=root ; COMMAND=/bin/cat /var/log/secure",
     {"user.name": "vagrant", "user.effective.name": "root", "event.outcome": None, "event.action": "sudo"}),  # Elastic sets no outcome
    ("Apr 19 15:30:01 h su[2101]: Successful su for root by elastic_user_4",
     {"user.name": "elastic_user_4", "user.effective.name": "root", "event.action": "su", "event.outcome": "success"}),
    ("Apr 19 15:30:01 h su[2101]: FAILED su for root by mallory",
     {"user.name": "mallory", "event.outcome": "failure"}),
    ("Feb 22 11:47:05 localhost useradd[6995]: new user: name=apache, UID=48, GID=48, home=/usr/share/httpd, shell=/sbin/nologin",
     {"user.name": "apache", "user.target.name": "apache", "event.action": "user-created", "event.category": ["iam"],
      "event.type": ["user", "creation"]}),
    ("Feb 22 11:47:05 localhost groupadd[6991]: new group: name=apache, GID=48",
     {"user.name": None, "user.target.name": None, "event.action": "group-created", "event.category": ["iam"]}),
    ("Apr 18 17:02:50 h usermod[2]: add 'elastic_user_9' to group 'sudo'",
     {"user.name": "elastic_user_9", "user.target.name": "elastic_user_9", "event.action": "group-member-added"}),
    ("Apr 18 17:03:02 h chpasswd[3]: pam_unix(chpasswd:chauthtok): password changed for elastic_user_9",
     {"user.name": "elastic_user_9", "event.action": "password-changed", "event.category": ["iam"]}),
    # the pattern is anchored: its literal at the start (bare or after pam_unix(…)) routes a line to it
    ("Apr 18 17:03:02 h passwd[3]: password changed for bob", {"user.name": "bob", "event.action": "password-changed"}),
    ("Apr 18 17:03:02 h passwd[3]: note: password changed for bob", {"user.name": None, "event.action": None}),
    ("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4  user=root",
     {"process.name": "sshd(pam_unix)", "process.pid": 19939, "source.ip": "218.188.2.4", "user.name": "root",
      "event.action": "authentication_failure", "event.outcome": "failure"}),
    ("Jun 15 02:04:59 combo sshd(pam_unix)[20882]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=220-135-151-1.hinet-ip.hinet.net  user=root",
     {"source.ip": None, "user.name": "root"}),  # a host name is not source.ip
    ("Feb  9 21:19:40 precise32 sudo: pam_unix(sudo:session): session opened for user root by vagrant(uid=1000)",
     {"user.name": "vagrant", "user.effective.name": "root", "event.action": "logged-on", "event.category": ["session"],
      "event.type": ["start"]}),
    # issue 16 regressions: user names Elastic keeps and the old patterns lost
    ("Apr 24 14:30:40 h sudo[1]:   deploy : PWD=/srv ; USER=root ; COMMAND=/usr/bin/systemctl restart app",
     {"user.name": "deploy", "user.effective.name": "root", "event.action": "sudo", "event.category": ["process"]}),  # no TTY
    ("Apr 24 14:30:40 h sshd[641839]: pam_faillock(sshd:auth): Consecutive login failures for user test account temporarily locked",
     {"user.name": "test", "event.action": "account-locked", "event.outcome": "failure", "event.category": ["authentication"]}),
    ("Apr 24 14:30:41 h unix_chkpwd[77]: password check failed for user (bob)",
     {"user.name": "bob", "event.action": "authentication_failure", "event.outcome": "failure", "event.type": ["info"]}),
    ("Apr 24 14:30:42 h useradd[8]: failed adding user 'carol', data deleted",
     {"user.name": "carol", "event.outcome": "failure", "event.category": ["iam"], "event.type": ["user", "creation"]}),
    ("Apr 24 14:30:43 h groupadd[9]: group 'ops' already exists",
     {"event.outcome": "success", "event.category": ["iam"], "event.type": ["group", "creation"]}),
    ("Apr 24 14:30:44 h passwd[10]: pam_unix(passwd:chauthtok): password changed for jsmith",
     {"user.name": "jsmith", "user.target.name": "jsmith", "event.action": "password-changed", "event.outcome": "success"}),
    ("Apr 24 14:30:45 h su[11]: pam_unix(su:session): session opened for user root by erin(uid=1000)",
     {"user.name": "erin", "user.effective.name": "root", "event.action": "logged-on"}),
    ("Apr 24 14:30:46 h gpasswd[12]: user alice added by root to group sudo",
     {"user.name": "root", "user.target.name": "alice", "event.category": ["iam"], "event.outcome": "success"}),
    # authentication failures of other PAM modules (SSSD on directory-joined hosts, Kerberos, LDAP,
    # winbind) and of pam_unix outside its auth phase, as Elastic reads every "authentication failure"
    # (test-pam-chauthtok-iso8601): they were not categorised at all
    ("Mar  4 10:00:00 web sshd[11]: pam_sss(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
     "rhost=203.0.113.9 user=bob",
     {"user.name": "bob", "source.ip": "203.0.113.9", "event.action": "authentication_failure", "event.outcome": "failure",
      "event.category": ["authentication"]}),
    ("Mar  4 10:00:03 web sshd[13]: pam_krb5(sshd:auth): authentication failure; logname=dave uid=0 euid=0 tty=ssh ruser= "
     "rhost=198.51.100.4",
     {"user.name": None, "source.ip": "198.51.100.4", "event.outcome": "failure", "event.category": ["authentication"]}),
    ("Mar  4 10:00:04 web passwd[14]: pam_unix(passwd:chauthtok): authentication failure; logname=erin uid=1000 euid=0 "
     "tty=pts/0 ruser= rhost=  user=erin",
     {"user.name": "erin", "event.outcome": "failure", "event.category": ["authentication"]}),
    # PAM refusing an account sshd does not know (Elastic's test-auth: user.name, no outcome)
    ("Mar  3 07:15:02 web2 sshd[4411]: error: PAM: User not known to the underlying authentication module for illegal "
     "user guest from scanner.example.net",
     {"user.name": "guest", "source.ip": None, "event.action": None, "event.category": None, "event.outcome": None}),
    ("Mar  3 07:15:03 web2 sshd[4412]: error: PAM: User not known to the underlying authentication module for illegal "
     "user ftp user from 198.51.100.61",
     {"user.name": "ftp user", "source.ip": "198.51.100.61", "event.action": None, "event.outcome": None,
      "event.dataset": "system.auth"}),
]


@pytest.mark.parametrize(("line", "expected"), GOLDEN, ids=[g[0][:40] for g in GOLDEN])
def test_golden_auth_lines(line: str, expected: dict) -> None:
    row = _one(line)
    assert {k: row[k] for k in expected} == expected


def test_bsd_timestamp_uses_year_and_zone() -> None:
    row = _one("Feb 21 21:54:44 web1 sshd[1]: x", IngestOptions(year=2021, tz="America/New_York"))
    assert row["@timestamp"] == dt.datetime(2021, 2, 22, 2, 54, 44, tzinfo=UTC)


def test_year_rollover_default() -> None:
    now = dt.datetime.now(UTC)
    ahead = now + dt.timedelta(days=3)  # a date "in the future" must be last year's
    behind = now - dt.timedelta(days=3)
    frame = lines_frame(*(f"{t:%b} {t.day:2d} {t:%H:%M:%S} h p: m" for t in (ahead, behind)))
    ts = Syslog().parse_lines(frame, "x", IngestOptions()).events.get_column("@timestamp").to_list()
    assert ts[0].year == ahead.year - 1 and (ts[0].month, ts[0].day) == (ahead.month, ahead.day)
    assert ts[1].year == behind.year and (ts[1].month, ts[1].day) == (behind.month, behind.day)


def test_iso_and_rfc5424_timestamps() -> None:
    frame = lines_frame(
        "2018-08-14T14:30:02.203151+02:00 linux-sqrz systemd[4179]: Stopped target Basic System.",
        "2019-06-14T10:40:20.912134 localhost sudo: pam_unix(sudo-i:session): session opened for user root by u(uid=0)",
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"App\"] \ufeffAn application event",
        "<34>1 2003-10-11T22:14:15.003-07:00 host su 77 - - 'su root' failed for lonvick on /dev/pts/8",
    )
    ev = Syslog().parse_lines(frame, "x", IngestOptions(tz="Europe/Berlin")).events
    assert ev.get_column("@timestamp").to_list() == [
        dt.datetime(2018, 8, 14, 12, 30, 2, 203151, tzinfo=UTC),
        dt.datetime(2019, 6, 14, 8, 40, 20, 912134, tzinfo=UTC),  # no zone in the line: --tz applies
        dt.datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC),
        dt.datetime(2003, 10, 12, 5, 14, 15, 3000, tzinfo=UTC),
    ]
    assert ev.get_column("host.name").to_list() == ["linux-sqrz", "localhost", "mymachine.example.com", "host"]
    assert ev.get_column("process.name").to_list() == ["systemd", "sudo", "evntslog", "su"]
    assert ev.get_column("process.pid").to_list() == [4179, None, None, 77]
    assert ev.get_column("message").to_list()[2:] == ["An application event", "'su root' failed for lonvick on /dev/pts/8"]
    assert ev.get_column("event.severity").to_list()[2:] == [5, 2]


def test_stamps_that_carry_their_year() -> None:
    """Network devices (Cisco ASA with `logging timestamp`, many appliances) write ``Mmm dd yyyy
    hh:mm:ss``: the line's own year wins over --year, --tz applies; they were quarantined as
    "no syslog header". ASA without a device id ends the stamp with a colon and names no host: read
    too (its message id is the tag), and so is a year-less stamp with a colon, the header a Cisco
    device writes when it logs straight to the collector (it was quarantined)."""
    frame = lines_frame(
        "Oct 10 2018 12:34:56 fw01 CiscoASA[999]: %ASA-6-302013: Built outbound TCP connection 11757",
        "Feb  3 2021 23:10:00 sw-2 sshd[42]: Failed password for admin from 203.0.113.5 port 2222 ssh2",
        "Apr 15 2013 09:36:50: %ASA-4-106023: Deny tcp src dmz:10.1.2.30/63016 dst outside:192.0.0.8/53",
        "Apr 15 09:36:50: %ASA-4-106023: Deny tcp src dmz:10.1.2.30/63016 dst outside:192.0.0.8/53",
    )
    chunk = Syslog().parse_lines(frame, "x", IngestOptions(year=2024, tz="Europe/Berlin"))
    ev = chunk.events
    assert ev.get_column("@timestamp").to_list() == [
        dt.datetime(2018, 10, 10, 10, 34, 56, tzinfo=UTC), dt.datetime(2021, 2, 3, 22, 10, tzinfo=UTC),
        dt.datetime(2013, 4, 15, 7, 36, 50, tzinfo=UTC), dt.datetime(2024, 4, 15, 7, 36, 50, tzinfo=UTC)]
    assert ev.get_column("host.name").to_list() == ["fw01", "sw-2", None, None]
    assert ev.get_column("process.name").to_list() == ["CiscoASA", "sshd", None, None]  # an id in the tag is no process
    assert ev.get_column("source.ip").to_list()[2:] == ["10.1.2.30"] * 2
    assert ev.select("user.name", "source.ip", "event.outcome").row(1) == ("admin", "203.0.113.5", "failure")
    assert chunk.quarantine.is_empty()


def test_cisco_asa_log_with_years_matches_elastic(datasets_dir: Path) -> None:
    """Filebeat 2019's Cisco ASA test log (``Mmm dd yyyy`` stamps): detected as syslog without
    --format, every line stored, each @timestamp equal to Elastic's for the line at that offset."""
    import json

    folder = datasets_dir / "parser_oracles/elastic_beats_filebeat_2019/cisco/asa"
    log = folder / "asa.log"
    assert detected(log) == "syslog"
    events, quarantine, _ = parse("syslog", log)
    assert quarantine.is_empty() and events.height == log.read_text().count("\n")
    stamps = dict(zip(events.get_column("log.offset").to_list(), events.get_column("@timestamp").to_list()))
    expected = json.loads((folder / "asa.log-expected.json").read_text())
    assert len(expected) >= 100
    for doc in expected:
        want = dt.datetime.fromisoformat(doc["@timestamp"].replace("Z", "+00:00"))
        assert stamps[doc["log.offset"]] == want, doc["log.offset"]


def test_quarantine_reasons_and_accounting() -> None:
    frame = lines_frame(
        "Feb 30 10:00:00 h sshd[1]: impossible date",
        "this is not syslog",
        "",
        "\tcontinued message",
        "Mar  1 10:00:00 h sshd[1]: fine",
    )
    chunk = Syslog().parse_lines(frame, "x", IngestOptions(year=2023))
    assert chunk.quarantine.select("line", "reason").rows() == [
        (1, "bad timestamp"), (2, "no syslog header"), (4, "continuation line"),
    ]
    assert chunk.events.get_column("log.offset").to_list() == [frame.item(4, "offset")]
    assert chunk.skipped == 1
    assert chunk.events.height + chunk.quarantine.height + chunk.skipped == frame.height



def test_a_block_of_fast_lines_parses_as_within_a_mixed_block() -> None:
    # A block whose every line takes the fast header path skips the blank-line and header checks;
    # its events and quarantine must equal those of the same lines next to a line that does not.
    fast = ["Feb 30 10:00:00 h sshd[1]: impossible date", "Mar  1 10:00:00 h sshd[2]: Failed password for bob from 10.0.0.1 port 22 ssh2"]
    alone = Syslog().parse_lines(lines_frame(*fast), "x", IngestOptions(year=2023))
    mixed = Syslog().parse_lines(lines_frame(*fast, "not syslog"), "x", IngestOptions(year=2023))
    assert alone.quarantine.select("line", "reason").rows() == [(1, "bad timestamp")]
    assert alone.quarantine.equals(mixed.quarantine.filter(pl.col("line") <= 2))
    assert alone.events.equals(mixed.events) and alone.events.height == 1

def _loghub_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _template_values(template: str, content: str) -> list[str] | None:
    pattern = "^" + re.escape(template).replace(re.escape("<*>"), "(.*?)") + "$"
    m = re.match(pattern, content)
    return list(m.groups()) if m else None


def test_loghub_openssh_structured_oracle(datasets_dir: Path) -> None:
    base = datasets_dir / "loghub/OpenSSH"
    events, quarantine, _ = parse("syslog", base / "OpenSSH_2k.log", IngestOptions(year=2017))
    rows = _loghub_rows(base / "OpenSSH_2k.log_structured.csv")
    # two "message repeated 5 times: [...]" lines are 5 events each; the oracle has one row per line
    assert quarantine.is_empty() and events.height == len(rows) + 2 * 4 == 2008
    events = events.unique("log.offset", keep="first", maintain_order=True)
    ev = events.sort("log.offset").to_dicts()
    checked = 0
    for row, e in zip(rows, ev, strict=True):
        # loghub strips trailing blanks from Content; we keep the message as logged
        assert (e["host.name"], e["process.pid"], e["message"].rstrip()) == (row["Component"], int(row["Pid"]), row["Content"])
        assert e["@timestamp"].strftime("%b %d %H:%M:%S") == f"{row['Date']} {int(row['Day']):02d} {row['Time']}"
        # Identity values, read independently from the loghub template's variables
        tpl = row["EventTemplate"]
        vals = _template_values(tpl, row["Content"])
        if tpl.startswith(("Failed password for <*> from", "Accepted password for <*> from")) and vals:
            user = vals[0].removeprefix("invalid user ")
            assert (e["user.name"], e["source.ip"], e["source.port"]) == (user, vals[1], int(vals[2]))
            assert e["event.outcome"] == ("success" if tpl.startswith("Accepted") else "failure")
            checked += 1
        elif tpl.startswith("Invalid user <*> from <*>") and vals:
            assert (e["user.name"], e["source.ip"], e["event.outcome"]) == (vals[0], vals[1], "failure")
            checked += 1
    assert checked >= 450  # 497 identity-bearing login lines in this sample


def test_loghub_linux_structured_oracle(datasets_dir: Path) -> None:
    base = datasets_dir / "loghub/Linux"
    events, quarantine, _ = parse("syslog", base / "Linux_2k.log", IngestOptions(year=2005))
    rows = _loghub_rows(base / "Linux_2k.log_structured.csv")
    assert quarantine.is_empty() and events.height == len(rows) == 2000
    agree = {"host": 0, "component": 0, "pid": 0, "content": 0}
    for row, e in zip(rows, events.sort("log.offset").to_dicts(), strict=True):
        agree["host"] += e["host.name"] == row["Level"]
        agree["component"] += e["process.name"] == row["Component"]
        agree["pid"] += e["process.pid"] == (int(row["PID"]) if row["PID"] else None)
        agree["content"] += e["message"].rstrip() == row["Content"]
    assert all(v >= 0.99 * 2000 for v in agree.values()), agree


def test_real_auth_log_counts_match_an_independent_count(datasets_dir: Path) -> None:
    path = datasets_dir / "auth_logs/elastic_examples_suspicious_login_auth.log.gz"
    assert detected(path) == "syslog"
    events, quarantine, _ = parse("syslog", path, IngestOptions(year=2019))
    raw = gzip.decompress(path.read_bytes()).decode().splitlines()
    # rsyslog's "message repeated N times: [ MSG ]" line is N events of MSG (85 lines, 410 events)
    repeats = [int(m.group(1)) for ln in raw if (m := re.search(r": message repeated (\d+) times: \[", ln))]
    assert (len(repeats), sum(repeats)) == (85, 410)
    assert quarantine.is_empty() and events.height == len(raw) - len(repeats) + sum(repeats) == 7121 + 325
    assert events.get_column("event.hash").n_unique() == events.height
    # ssh_login outcomes versus plain-Python regexes over the raw text
    accepted = sum(bool(re.search(r"sshd\[\d+\]: Accepted \S+ for .* from \S+ port \d+", ln)) for ln in raw)
    failed = sum(int(m.group(1) or 1) for ln in raw if (m := re.search(
        r"sshd\[\d+\]: (?:message repeated (\d+) times: \[ )?(?:Failed \S+ for .* from \S+ port \d+|Invalid user .* from \S+)", ln)))
    logins = events.filter(pl.col("event.action") == "ssh_login")
    assert logins.filter(pl.col("event.outcome") == "success").height == accepted == 226
    assert logins.filter(pl.col("event.outcome") == "failure").height == failed == 810 + 410
    # sshd's connection-level lines carry the source too (Elastic leaves them unparsed), without an outcome
    closing = [ln for ln in raw if re.search(r"sshd\[\d+\]: (?:Connection closed by|Connection reset by|Disconnected "
                                             r"from|Received disconnect from|error: maximum authentication) ", ln)]
    sources = [m.group(1) for ln in closing if (m := re.search(r" (\d+\.\d+\.\d+\.\d+)(?: port \d+|:)", ln))]
    assert len(sources) == len(closing) > 1000
    found = events.filter(pl.col("event.action").is_in(["ssh_disconnected", "ssh_max_auth_attempts"]))
    assert sorted(found["source.ip"].to_list()) == sorted(sources)
    assert found["event.outcome"].null_count() == found.height
    brute = sum(("24.151.103.17" in ln) and ("Failed" in ln or "Invalid user" in ln) for ln in raw)
    ours = logins.filter((pl.col("source.ip") == "24.151.103.17") & (pl.col("event.outcome") == "failure")).height
    assert ours == brute == 157


REPEAT = "Mar 29 23:18:33 h sshd[6402]: message repeated {} times: [ Failed password for root from 10.0.0.1 port 1 ssh2]"


def test_a_repeat_line_is_as_many_events_as_it_counts() -> None:
    """rsyslog writes a message once, then "message repeated N times: [ MSG ]" for the N identical
    messages that followed: N events of MSG (was one)."""
    lines = lines_frame("Mar 29 23:18:30 h sshd[6402]: Failed password for root from 10.0.0.1 port 1 ssh2",
                        REPEAT.format(5), "Mar 29 23:18:40 h sshd[6402]: message repeated 2 times: no brackets")
    chunk = Syslog().parse_lines(lines, "auth.log", IngestOptions(year=2017))
    events = chunk.events
    assert (events.height, chunk.repeated, chunk.repeats_capped) == (1 + 5 + 1, 4, 0)
    copies = events.filter(pl.col("message").str.contains(r"repeated 5 times: \[", literal=False))
    assert copies.height == 5 and copies.get_column("log.offset").n_unique() == 1
    assert copies.select("event.outcome", "source.ip", "user.name").unique().rows() == [("failure", "10.0.0.1", "root")]
    assert events.get_column("event.hash").n_unique() == events.height  # distinct events, not duplicates
    again = Syslog().parse_lines(lines, "auth.log", IngestOptions(year=2017)).events
    assert again.get_column("event.hash").equals(events.get_column("event.hash"))  # re-reading gives the same hashes


@pytest.mark.parametrize(("count", "events", "capped"), [("1", 1, 0), ("0", 1, 0), ("200", 200, 0), ("201", 200, 1),
                                                         ("99999999999999999999999", 200, 1)])
def test_a_forged_repeat_count_is_capped(count: str, events: int, capped: int) -> None:
    chunk = Syslog().parse_lines(lines_frame(REPEAT.format(count)), "auth.log", IngestOptions(year=2017))
    assert (chunk.events.height, chunk.repeats_capped, chunk.quarantine.height) == (events, capped, 0)


def test_ingest_counts_repeats_and_says_when_a_count_was_cut(tmp_path: Path) -> None:
    from dplogs.ingest.ingest import ingest

    log = tmp_path / "auth.log"
    log.write_text(REPEAT.format(3) + "\n" + REPEAT.format(10_000) + "\n")
    summary = ingest([log], tmp_path / "s", options=IngestOptions(year=2017), format="syslog")
    (result,) = summary.files
    assert (result.parsed, result.repeated, result.repeats_capped) == (3 + 200, 2 + 199, 1)
    assert any("1 'message repeated N times' lines" in w and "200 events" in w for w in summary.warnings)
    with log.open("a") as f:  # the log grows: its copies are the same events again, not new ones
        f.write(REPEAT.format(2) + "\n")
    (grown,) = ingest([log], tmp_path / "s", options=IngestOptions(year=2017), format="syslog").files
    assert (grown.parsed, grown.duplicate_rows) == (205, 203)
    from dplogs.ingest.store import Store
    assert Store.open(tmp_path / "s").scan().collect().height == 205


@pytest.mark.parametrize("name", ["syslog", "sentinel"])
def test_repeat_lines_are_cut_into_chunks_of_bounded_events(tmp_path: Path, name: str) -> None:
    # a chunk was bounded by lines, not events: chunk_lines repeat lines made 200 times as many rows
    # at once (20,000 lines of 110 bytes: 4 million events and 1.6 GB in one chunk)
    import json

    from dplogs.ingest.formats import named
    from dplogs.ingest.ingest import _parsed_chunks
    from dplogs.ingest.reader import open_sources

    line = REPEAT.format(200)
    if name == "sentinel":
        line = json.dumps({"TimeGenerated": "2017-03-29T23:18:33Z", "Computer": "h", "ProcessName": "sshd",
                           "Facility": "auth", "SyslogMessage": line.split("]: ", 1)[1]})
    log = tmp_path / "auth.log"
    log.write_text("\n".join([line] * 60 + ["Mar 29 23:18:40 h sshd[6402]: one line"]) + "\n")
    options = IngestOptions(year=2017, chunk_lines=1000)
    with open_sources([log]) as ((source, _),):
        for chunks in (named(name).parse(source, options), _parsed_chunks(named(name), source, options)):
            sizes = [c.events.height + c.quarantine.height + c.skipped for c in chunks]
            assert sum(sizes) == 60 * 200 + 1 and max(sizes) <= 1000 + 200, sizes


FAILED = "Mar 29 23:18:30 web1 sshd[6402]: Failed password for root from 10.0.0.1 port 1 ssh2"


@pytest.mark.parametrize("repeat", [
    "Mar 29 23:18:50 web1 last message repeated 3 times",  # sysklogd, FreeBSD
    "Mar 29 23:18:50 --- last message repeated 3 times ---",  # macOS
    "Mar 29 23:18:50  sshd[6402]: last message repeated 3 times",  # old rsyslog (Ubuntu 12.04): tag, no host
    "Mar 29 23:18:50 web1 sshd[6402]: last message repeated 3 times",
])
def test_a_bsd_repeat_line_is_as_many_events_of_the_line_before(repeat: str) -> None:
    """sysklogd/BSD syslogd write "last message repeated N times" for N more of the line before
    (no brackets): N events of that message at the repeat's time (was one uncategorised event, so a
    brute force logged this way lost most of its failures)."""
    lines = lines_frame(FAILED, repeat, "Mar 29 23:19:00 web1 sshd[6402]: Accepted password for bob from 10.0.0.2 port 2 ssh2")
    chunk = Syslog().parse_lines(lines, "auth.log", IngestOptions(year=2017))
    events, offsets = chunk.events, lines.get_column("offset").to_list()
    assert (events.height, chunk.repeated, chunk.quarantine.height) == (1 + 3 + 1, 2, 0)
    copies = events.filter(pl.col("log.offset") == offsets[1])
    assert copies.select("host.name", "process.name", "event.outcome", "source.ip", "user.name").unique().rows() == [
        ("web1", "sshd", "failure", "10.0.0.1", "root")]
    assert copies.get_column("@timestamp").unique().to_list() == [dt.datetime(2017, 3, 29, 23, 18, 50, tzinfo=UTC)]
    assert copies.get_column("message").unique().to_list() == [f"message repeated 3 times: [ {FAILED.split(': ', 1)[1]} ]"]
    assert events.get_column("event.hash").n_unique() == events.height
    assert events.filter(pl.col("event.outcome") == "success").height == 1  # the line after is itself


def test_bsd_repeats_chain_skip_blank_lines_and_reach_into_the_previous_block(tmp_path: Path) -> None:
    """A message repeated for long is flushed several times ("repeated 30 times", then "repeated
    120 times"): each repeats the last real line, also when the reader cut a block between them."""
    from dplogs.ingest.ingest import ingest
    from dplogs.ingest.store import Store

    repeat = "Mar 29 23:{:02d}:00 web1 last message repeated {} times"
    log = tmp_path / "auth.log"
    log.write_text("\n".join([FAILED, repeat.format(19, 30), "", repeat.format(21, 120)] + [FAILED] * 3) + "\n")
    for chunk_lines in (1000, 2, 1):
        store = tmp_path / f"s{chunk_lines}"
        (result,) = ingest([log], store, options=IngestOptions(year=2017, chunk_lines=chunk_lines), format="syslog").files
        events = Store.open(store).scan().collect()
        assert (result.quarantined, events.height) == (0, 1 + 30 + 120 + 3), chunk_lines
        assert events.filter((pl.col("user.name") == "root") & (pl.col("event.outcome") == "failure")).height == events.height
    with log.open("a") as f:  # the log grows: its repeats read again are the same events, not new ones
        f.write(FAILED + "\n")
    ingest([log], tmp_path / "s1", options=IngestOptions(year=2017), format="syslog")
    assert Store.open(tmp_path / "s1").scan().collect().height == 1 + 30 + 120 + 3 + 1


def test_a_bsd_repeat_with_nothing_before_it_is_quarantined() -> None:
    """At the start of an input (rotated right after the message) the repeated message is not in it:
    quarantined with that reason, not stored as an event of its own text."""
    lines = lines_frame("Mar 29 23:18:50 web1 last message repeated 3 times", "  continued", "Mar 29 23:18:51 --- last message repeated 1 time ---", FAILED)
    chunk = Syslog().parse_lines(lines, "auth.log", IngestOptions(year=2017))
    assert chunk.events.height == 1
    reasons = chunk.quarantine.get_column("reason").to_list()
    assert reasons[0].startswith("'last message repeated N times' with no message before it") and reasons[1] == "continuation line"
    assert reasons[2] == reasons[0]
