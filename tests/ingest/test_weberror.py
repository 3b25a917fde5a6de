"""Apache httpd and nginx error logs: layouts, times, clients, and the security events they hold.

The lines are written for these tests (invented hosts and accounts) in the shapes Apache 2.2, 2.4
and nginx write; loghub's real Apache error log is checked against its structured oracle.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest

from dplogs.ingest.base import IngestOptions
from dplogs.ingest.ingest import ingest
from dplogs.engine.api import Engine
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.testing import exact_mode
from dplogs.ingest.weberror import WebError
from tests.ingest.structured_helpers import detected, lines_frame

UTC = dt.UTC


def _parse(*lines: str, options: IngestOptions = IngestOptions()):
    return WebError().parse_lines(lines_frame(*lines), "error.log", options)


def _rows(*lines: str, options: IngestOptions = IngestOptions()) -> list[dict]:
    chunk = _parse(*lines, options=options)
    assert chunk.quarantine.is_empty(), chunk.quarantine.rows()
    return chunk.events.to_dicts()


def test_apache_22_and_24_layouts() -> None:
    old, new, bare, zoned = _rows(
        "[Tue Mar 12 09:15:02 2024] [error] [client 198.51.100.7] File does not exist: /srv/www/robots.txt",
        "[Tue Mar 12 09:15:03.250311 2024] [core:warn] [pid 4410:tid 139871] [client 198.51.100.7:50122] AH00037: "
        "Symbolic link not allowed: /srv/www/x",
        "[Tue Mar 12 09:15:04.000001 2024] [:notice] [pid 4410] AH00094: Command line: '/usr/sbin/httpd'",
        "[2024-03-12 10:15:05.5 +0100] [mpm_event:notice] [pid 1:tid 2] AH00489: Apache configured",
    )
    assert (old["@timestamp"], old["source.ip"], old["source.port"], old["event.severity"]) == (
        dt.datetime(2024, 3, 12, 9, 15, 2, tzinfo=UTC), "198.51.100.7", None, 3)
    assert old["message"] == "File does not exist: /srv/www/robots.txt" and old["event.dataset"] == "apache.error"
    assert (new["source.ip"], new["source.port"], new["process.pid"], new["event.code"], new["event.type"]) == (
        "198.51.100.7", 50122, 4410, "AH00037", ["error"])
    assert new["@timestamp"] == dt.datetime(2024, 3, 12, 9, 15, 3, 250311, tzinfo=UTC)
    assert (bare["source.ip"], bare["event.type"], bare["event.severity"], bare["event.category"]) == (
        None, ["info"], 5, ["web"])
    assert zoned["@timestamp"] == dt.datetime(2024, 3, 12, 9, 15, 5, 500000, tzinfo=UTC)  # its own zone wins


def test_zone_less_times_are_local_in_tz() -> None:
    (apache, nginx) = _rows("[Tue Mar 12 09:15:02 2024] [error] [client 10.1.1.1] x",
                            "2024/03/12 09:15:02 [error] 7#7: *1 y, client: 10.1.1.1",
                            options=IngestOptions(tz="Europe/Berlin"))
    assert apache["@timestamp"] == nginx["@timestamp"] == dt.datetime(2024, 3, 12, 8, 15, 2, tzinfo=UTC)


def test_clients_with_ports_and_ipv6() -> None:
    rows = _rows(
        "[Tue Mar 12 09:15:02 2024] [ssl:info] [pid 1] [client 2001:db8::5:443] AH01964: Connection to child 3",
        "[Tue Mar 12 09:15:02 2024] [ssl:info] [pid 1] [client 2001:db8::5:50122] AH01964: x",  # 50122: no hex group
        "[Tue Mar 12 09:15:02 2024] [ssl:info] [pid 1] [client 203.0.113.9:99999] AH01964: x",  # no port is that big: the address alone
        "[Tue Mar 12 09:15:02 2024] [ssl:info] [pid 1] [client web01.example] AH01964: x",  # a host name is no IP
    )
    # Apache writes an IPv6 client and its port without brackets: ":443" is also an address's
    # last group, so the whole is read as the address (the port is lost, the unit is not mixed up)
    assert [(r["source.ip"], r["source.port"]) for r in rows] == [
        ("2001:db8::5:443", None), ("2001:db8::5", 50122), ("203.0.113.9", None), (None, None)]


def test_authentication_failures_name_the_account_and_count_as_failed_logins() -> None:
    rows = _rows(
        '[Tue Mar 12 09:15:02.1 2024] [auth_basic:error] [pid 9] [client 203.0.113.5:4100] AH01617: user mallory: '
        'authentication failure for "/admin/": Password Mismatch',
        "[Tue Mar 12 09:15:03.1 2024] [auth_basic:error] [pid 9] [client 203.0.113.5:4101] AH01618: user root not "
        "found: /admin/",
        '[Tue Mar 12 09:15:04 2024] [error] [client 203.0.113.5] user carol: authentication failure for "/dav": '
        "Password Mismatch",
        '2024/03/12 09:15:05 [error] 12#12: *40 user "dave": password mismatch, client: 203.0.113.6, server: '
        'intranet, request: "POST /login HTTP/1.1", host: "intranet.example"',
        '2024/03/12 09:15:06 [error] 12#12: *41 user "erin" was not found in "/etc/nginx/htpasswd", client: '
        '203.0.113.6, server: intranet, request: "GET /admin HTTP/2.0", host: "intranet.example"',
        "[Tue Mar 12 09:15:07.1 2024] [authz_core:error] [pid 9] [client 203.0.113.5:4102] AH01630: client denied by "
        "server configuration: /srv/www/private",
        "2024/03/12 09:15:08 [error] 12#12: *42 access forbidden by rule, client: 203.0.113.6, server: intranet, "
        'request: "GET /.git/config HTTP/1.1", host: "intranet.example"',
        "[Tue Mar 12 09:15:09.1 2024] [authz_core:error] [pid 9] [client 203.0.113.5:4103] AH01790: user frank: "
        'authorization failure for "/finance": ',  # logged in, not allowed: no failed login
    )
    assert [r["user.name"] for r in rows] == ["mallory", "root", "carol", "dave", "erin", None, None, None]
    assert [r["event.outcome"] for r in rows] == ["failure"] * 7 + [None]
    assert [r["event.category"][0] for r in rows] == ["authentication"] * 5 + ["web"] * 3
    assert [r["event.type"] for r in rows][5:] == [["denied"], ["denied"], ["error"]]
    assert [r["url.original"] for r in rows][:7] == ["/admin/", "/admin/", "/dav", "/login", "/admin", None, "/.git/config"]
    assert [r["source.ip"] for r in rows][3:5] == ["203.0.113.6", "203.0.113.6"]
    assert rows[3]["http.request.method"] == "POST" and rows[3]["event.dataset"] == "nginx.error"
    assert rows[3]["process.pid"] == 12 and rows[3]["event.module"] == "nginx"


def test_modsecurity_blocks_carry_their_rule() -> None:
    apache, nginx = _rows(
        "[Tue Mar 12 09:15:02.1 2024] [security2:error] [pid 9] [client 203.0.113.5:4100] [client 203.0.113.5] "
        'ModSecurity: Access denied with code 403 (phase 2). Matched "Operator `Ge\' with parameter `5\'" '
        '[file "/etc/modsecurity/rules/REQUEST-949-BLOCKING-EVALUATION.conf"] [line "80"] [id "949110"] '
        '[msg "Inbound Anomaly Score Exceeded (Total Score: 5)"] [hostname "shop.example"] [uri "/search"] '
        '[unique_id "ZfA1"]',
        '2024/03/12 09:15:03 [error] 12#12: *7 [client 203.0.113.6] ModSecurity: Access denied with code 403 (phase 2). '
        '[id "942100"] [msg "SQL Injection Attack Detected via libinjection"] [uri "/item"], client: 203.0.113.6, '
        'server: shop, request: "GET /item?id=1%27%20OR%201=1 HTTP/1.1", host: "shop.example"',
    )
    assert (apache["rule.id"], apache["rule.name"], apache["url.original"], apache["event.type"]) == (
        "949110", "Inbound Anomaly Score Exceeded (Total Score: 5)", "/search", ["denied"])
    assert (nginx["rule.id"], nginx["url.original"], nginx["source.ip"], nginx["event.outcome"]) == (
        "942100", "/item", "203.0.113.6", "failure")


def test_lines_that_are_not_records_are_quarantined_with_a_reason() -> None:
    chunk = _parse(
        "AH00558: httpd: Could not reliably determine the server's fully qualified domain name",  # before logging began
        "[Wed Mar 12 09:15:02 2024] [error] weekday does not match the date",
        "2024/03/12 09:15:02 [error] 7#7: *1 FastCGI sent in stderr: first line",
        "PHP message: PHP Warning:  a continuation line",
        "",
    )
    assert chunk.events.height == 1 and chunk.skipped == 1
    assert chunk.quarantine.get_column("reason").to_list() == [
        "not an Apache or nginx error log line", "bad timestamp", "not an Apache or nginx error log line"]


def test_auto_detection_picks_the_error_log_reader(tmp_path: Path) -> None:
    (tmp_path / "apache").write_bytes(b"[Tue Mar 12 09:15:02 2024] [error] [client 10.1.1.1] File does not exist: /x\n"
                                      b"[Tue Mar 12 09:15:03.5 2024] [core:notice] [pid 4] AH00094: Command line: 'httpd'\n")
    (tmp_path / "nginx").write_bytes(b"2024/03/12 09:15:02 [error] 7#7: *1 open() failed, client: 10.1.1.1, server: s\n")
    assert detected(tmp_path / "apache") == detected(tmp_path / "nginx") == "weberror"


@pytest.mark.parametrize("query", ["failed_logins_per_hour", "failing_accounts_per_day"])
def test_shipped_failed_login_queries_count_web_auth_failures_as_sshd_failures(tmp_path: Path, query: str) -> None:
    """The same failed logins written by sshd to auth.log and by Apache/nginx basic auth to their
    error logs: the shipped failed-login queries give the same exact (pre-noise) answer on both."""
    tries = [(9, 1, "alice", "203.0.113.5"), (9, 2, "alice", "203.0.113.5"), (9, 3, "bob", "198.51.100.7"),
             (11, 0, "carol", "203.0.113.5")]
    auth = "".join(f"Mar 12 {h:02}:{m:02}:00 srv sshd[{i}]: Failed password for {user} from {ip} port 5000 ssh2\n"
                   for i, (h, m, user, ip) in enumerate(tries))
    web = "".join(
        (f'[Tue Mar 12 {h:02}:{m:02}:00 2024] [error] [client {ip}] user {user}: authentication failure for "/": x\n'
         if i % 2 else f'2024/03/12 {h:02}:{m:02}:00 [error] 5#5: *{i} user "{user}": password mismatch, client: {ip}\n')
        for i, (h, m, user, ip) in enumerate(tries))
    web += "[Tue Mar 12 09:05:00 2024] [error] [client 203.0.113.5] File does not exist: /favicon.ico\n"
    answers = []
    for name, text in (("auth.log", auth), ("error.log", web)):
        (tmp_path / name).write_text(text)
        store = tmp_path / f"store-{name}"
        ingest([tmp_path / name], store, options=IngestOptions(year=2024))
        Ledger.open(store / "ledger.sqlite", create=True).set_caps(window_policy="month", epsilon=100.0, delta=1e-3)
        queries = Path(__file__).resolve().parents[2] / "queries"
        with exact_mode():
            data = Engine.open(store).query_file(queries / f"{query}.toml").release(caller="test").data
        answers.append(data.sort(pl.all()))
    assert answers[0].equals(answers[1]), answers
    assert answers[0]["value"].sum() == (4 if query == "failed_logins_per_hour" else 3)  # 3 accounts on 03-12


def test_loghub_apache_error_log_against_its_oracle(datasets_dir: Path) -> None:
    folder = datasets_dir / "loghub" / "Apache"
    if not (folder / "Apache_2k.log").is_file():
        pytest.skip("loghub/Apache is not in ../shared/datasets")
    raw = (folder / "Apache_2k.log").read_text(encoding="utf-8").splitlines()
    chunk = _parse(*[line.rstrip("\r") for line in raw])
    oracle = pl.read_csv(folder / "Apache_2k.log_structured.csv")
    assert chunk.quarantine.is_empty() and chunk.events.height == oracle.height == 2000
    levels = {"emerg": 0, "alert": 1, "crit": 2, "error": 3, "warn": 4, "notice": 5, "info": 6}
    assert chunk.events.get_column("event.severity").to_list() == [levels[v] for v in oracle.get_column("Level")]
    # loghub's Content keeps the [client ...] part, which is source.ip here (and in Elastic's pipeline)
    contents = [re.sub(r"^\[client [^\]]+\] ", "", c) for c in oracle.get_column("Content")]
    assert chunk.events.get_column("message").to_list() == contents
    clients = [m.group(1) if (m := re.search(r"\[client ([^\]]+)\]", line)) else None for line in raw]
    assert chunk.events.get_column("source.ip").to_list() == clients and sum(c is not None for c in clients) == 32
    stamps = [dt.datetime.strptime(t, "%a %b %d %H:%M:%S %Y").replace(tzinfo=UTC) for t in oracle.get_column("Time")]
    assert chunk.events.get_column("@timestamp").to_list() == stamps
