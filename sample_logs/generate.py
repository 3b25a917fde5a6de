"""Deterministic generator of the demo logs in this directory.

    python sample_logs/generate.py sample_logs/

rewrites ``auth.log``, ``access.log`` and ``windows_security.json`` byte for byte, and the sample
company's directory export ``.organisation/people.txt`` (the roster for ``dplogs protect --users``;
a hidden folder, so ``dplogs ingest sample_logs`` never reads it as a log). It lives outside
the ``dplogs`` package and uses ``random.Random(seed)`` because nothing generated here is ever
released: these are synthetic inputs, not DP noise.

Two weeks (2024-03-04 .. 2024-03-17, UTC) of activity of 60 users of a small company, with three
planted incidents (documented in README.md next to this file):

* SSH brute force: 203.0.113.77 fails ~300 passwords on bastion01 between 2024-03-08 14:00 and 15:00.
* Password spray: 198.51.100.23 tries one or two passwords for 45 users on 2024-03-12 02:10-02:40,
  against SSH (auth.log) and Windows (4625 on DC01).
* Exfiltration: user ``omar.haddad`` downloads 120 large exports (50-400 MB each) from the intranet
  between 2024-03-14 23:00 and 2024-03-15 03:00.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

SEED = 20240304
START = dt.datetime(2024, 3, 4, tzinfo=dt.UTC)
DAYS = 14
FIRST = ["anna", "ben", "chen", "dana", "eli", "fatima", "gus", "hana", "ivan", "jade", "kofi", "lena",
         "mia", "nils", "omar", "priya", "quinn", "raj", "sara", "tom"]
LAST = ["adams", "berg", "costa", "haddad", "ito", "jensen", "khan", "lopez", "moreau", "novak", "okafor", "petrov"]
EXFIL_USER = "omar.haddad"
BRUTE_IP = "203.0.113.77"
SPRAY_IP = "198.51.100.23"
INTERNAL_NETWORKS = "10.0.0.0/8"  # workstations 10.20.0.0/16, servers 10.9.0.0/16
ROSTER = Path(".organisation") / "people.txt"


def _users(rng: random.Random) -> list[str]:
    names = sorted({f"{f}.{l}" for f in FIRST for l in LAST})
    chosen = sorted(rng.sample(names, 59))
    return sorted(set(chosen) | {EXFIL_USER})


def _workday_time(rng: random.Random, day: int) -> dt.datetime:
    base = START + dt.timedelta(days=day)
    hour = rng.choice([7, 8, 8, 9, 9, 9, 10, 10, 11, 13, 13, 14, 14, 15, 15, 16, 16, 17, 18, 21])
    return base + dt.timedelta(hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60))


def _bsd(ts: dt.datetime) -> str:
    return f"{ts:%b} {ts.day:2d} {ts:%H:%M:%S}"


def auth_log(rng: random.Random, users: list[str], ips: dict[str, str]) -> list[tuple[dt.datetime, str]]:
    host = "bastion01"
    out: list[tuple[dt.datetime, str]] = []
    pid = 20000

    def add(ts: dt.datetime, prog: str, msg: str, with_pid: bool = True) -> None:
        nonlocal pid
        pid += rng.randrange(1, 7)
        tag = f"{prog}[{pid}]" if with_pid else prog
        out.append((ts, f"{_bsd(ts)} {host} {tag}: {msg}"))

    for day in range(DAYS):
        weekend = (START + dt.timedelta(days=day)).weekday() >= 5
        for user in users:
            if rng.random() < (0.15 if weekend else 0.75):
                ts = _workday_time(rng, day)
                port = rng.randrange(40000, 65000)
                if rng.random() < 0.08:  # a typo first
                    add(ts, "sshd", f"Failed password for {user} from {ips[user]} port {port} ssh2")
                    ts += dt.timedelta(seconds=rng.randrange(3, 20))
                method = "publickey" if rng.random() < 0.7 else "password"
                add(ts, "sshd", f"Accepted {method} for {user} from {ips[user]} port {port} ssh2")
                add(ts, "sshd", f"pam_unix(sshd:session): session opened for user {user} by (uid=0)")
                if rng.random() < 0.2:
                    cmd = rng.choice(["/usr/bin/systemctl restart nginx", "/usr/bin/apt update", "/bin/journalctl -u sshd"])
                    t2 = ts + dt.timedelta(minutes=rng.randrange(1, 30))
                    add(t2, "sudo", f"  {user} : TTY=pts/{rng.randrange(8)} ; PWD=/home/{user} ; USER=root ; COMMAND={cmd}", False)
                end = ts + dt.timedelta(minutes=rng.randrange(5, 240))
                add(end, "sshd", f"pam_unix(sshd:session): session closed for user {user}")
        for hour in range(0, 24, 6):
            ts = START + dt.timedelta(days=day, hours=hour, minutes=17)
            add(ts, "CRON", "pam_unix(cron:session): session opened for user root by (uid=0)")
    # one account created during the fortnight
    add(START + dt.timedelta(days=2, hours=10, minutes=4), "useradd", "new user: name=svc-backup, UID=1101, GID=1101, home=/home/svc-backup, shell=/bin/bash")
    # Incident 1: SSH brute force
    t = START + dt.timedelta(days=4, hours=14)
    for i in range(300):
        t += dt.timedelta(seconds=rng.randrange(5, 19))
        target = rng.choice(["root", "root", "admin", "oracle", "test", "ubuntu"])
        port = rng.randrange(30000, 60000)
        if target == "root":
            add(t, "sshd", f"Failed password for root from {BRUTE_IP} port {port} ssh2")
        else:
            add(t, "sshd", f"Invalid user {target} from {BRUTE_IP} port {port}")
            add(t, "sshd", f"Failed password for invalid user {target} from {BRUTE_IP} port {port} ssh2")
    # Incident 2: password spray (SSH side)
    t = START + dt.timedelta(days=8, hours=2, minutes=10)
    for user in rng.sample(users, 45):
        for _ in range(rng.choice([1, 1, 2])):
            t += dt.timedelta(seconds=rng.randrange(10, 30))
            add(t, "sshd", f"Failed password for {user} from {SPRAY_IP} port {rng.randrange(30000, 60000)} ssh2")
    return out


def access_log(rng: random.Random, users: list[str], ips: dict[str, str]) -> list[tuple[dt.datetime, str]]:
    pages = ["/", "/wiki/Onboarding", "/wiki/VPN", "/tickets", "/tickets/new", "/reports/weekly",
             "/api/v1/status", "/static/app.js", "/static/style.css", "/export/team-roster.csv"]
    agents = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0 Safari/537.36",
              "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15",
              "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0"]
    ua = {u: rng.choice(agents) for u in users}
    out: list[tuple[dt.datetime, str]] = []

    def add(ts: dt.datetime, ip: str, user: str, method: str, path: str, status: int, size: int, agent: str) -> None:
        out.append((ts, f'{ip} - {user} [{ts:%d/%b/%Y:%H:%M:%S} +0000] "{method} {path} HTTP/1.1" {status} {size} '
                        f'"https://intranet.example.com/" "{agent}"'))

    for day in range(DAYS):
        weekend = (START + dt.timedelta(days=day)).weekday() >= 5
        for user in users:
            if rng.random() < (0.1 if weekend else 0.6):
                ts = _workday_time(rng, day)
                for _ in range(rng.randrange(1, 6)):
                    ts += dt.timedelta(seconds=rng.randrange(2, 400))
                    path = rng.choice(pages)
                    method = "POST" if path == "/tickets/new" and rng.random() < 0.5 else "GET"
                    status = rng.choices([200, 304, 404, 500], weights=[90, 6, 3, 1])[0]
                    size = rng.randrange(300, 90_000) if status == 200 else rng.randrange(0, 400)
                    add(ts, ips[user], user, method, path, status, size, ua[user])
        for _ in range(12):  # anonymous health checks and scanners
            ts = START + dt.timedelta(days=day, seconds=rng.randrange(86400))
            add(ts, "10.9.0.5", "-", "GET", "/api/v1/status", 200, 57, "kube-probe/1.29")
    # Incident 3: exfiltration at night
    t = START + dt.timedelta(days=10, hours=23)
    for i in range(120):
        t += dt.timedelta(seconds=rng.randrange(30, 120))
        add(t, ips[EXFIL_USER], EXFIL_USER, "GET", f"/export/customers-{i:03d}.csv.gz", 200,
            rng.randrange(50_000_000, 400_000_000), ua[EXFIL_USER])
    return out


def windows_log(rng: random.Random, users: list[str], ips: dict[str, str]) -> list[tuple[dt.datetime, str]]:
    out: list[tuple[dt.datetime, str]] = []
    record = 500_000

    def add(ts: dt.datetime, event_id: int, user: str, ip: str, logon_type: str, extra: dict | None = None) -> None:
        nonlocal record
        record += 1
        doc = {
            "@timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "Hostname": "DC01.corp.example.com",
            "Channel": "Security",
            "SourceName": "Microsoft-Windows-Security-Auditing",
            "EventID": event_id,
            "RecordNumber": record,
            "EventType": "AUDIT_FAILURE" if event_id == 4625 else "AUDIT_SUCCESS",
            "TargetUserName": user,
            "TargetDomainName": "CORP",
            "IpAddress": ip,
            "LogonType": logon_type,
        }
        if extra:
            doc.update(extra)
        out.append((ts, json.dumps(doc, separators=(",", ":"))))

    for day in range(DAYS):
        weekend = (START + dt.timedelta(days=day)).weekday() >= 5
        for user in users:
            if rng.random() < (0.05 if weekend else 0.75):
                ts = _workday_time(rng, day) + dt.timedelta(microseconds=rng.randrange(1000) * 1000)
                if rng.random() < 0.06:
                    add(ts, 4625, user, ips[user], "3", {"Status": "0xc000006d", "SubStatus": "0xc000006a"})
                    ts += dt.timedelta(seconds=rng.randrange(3, 30))
                add(ts, 4624, user, ips[user], rng.choice(["2", "3", "3", "10"]))
                add(ts + dt.timedelta(minutes=rng.randrange(10, 300)), 4634, user, "-", "3")
    # Incident 2 seen on the domain controller: the same spray source, network logons
    t = START + dt.timedelta(days=8, hours=2, minutes=12)
    for user in rng.sample(users, 45):
        t += dt.timedelta(seconds=rng.randrange(10, 30))
        add(t, 4625, user, SPRAY_IP, "3", {"Status": "0xc000006d", "SubStatus": "0xc000006a"})
    return out


def main(target: str) -> None:
    rng = random.Random(SEED)
    users = _users(rng)
    ips = {u: f"10.20.{i // 200}.{10 + i % 200}" for i, u in enumerate(users)}
    outdir = Path(target)
    outdir.mkdir(parents=True, exist_ok=True)
    for name, make in (("auth.log", auth_log), ("access.log", access_log), ("windows_security.json", windows_log)):
        records = sorted(make(rng, users, ips), key=lambda r: (r[0], r[1]))
        (outdir / name).write_text("".join(line + "\n" for _, line in records))
    roster = outdir / ROSTER
    roster.parent.mkdir(exist_ok=True)
    roster.write_text(f"# the sample company's people (its directory export), for `dplogs protect --users`;\n"
                      f"# its internal network is {INTERNAL_NETWORKS}\n" + "".join(u + "\n" for u in users))


if __name__ == "__main__":
    import argparse

    # argparse, so that `generate.py --help` prints this help instead of writing logs into ./--help/
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", nargs="?", default=str(Path(__file__).parent),
                        help="directory to write the logs into (default: this script's directory)")
    main(parser.parse_args().outdir)
