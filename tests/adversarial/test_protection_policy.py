"""The protected-population policy under attack (round 3 of the red-team sweep): a policy file
edited by hand into another shape, and a person on the roster seen from outside the networks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.adversarial.conftest import ledger_state
from tests.adversarial.conftest import invoke as run

SQL = "SELECT source.ip, COUNT(*) AS logins FROM logs WHERE event.outcome = 'success' GROUP BY source.ip"


def _event(i: int, user: str, ip: str) -> str:
    return json.dumps({"@timestamp": f"2024-03-05T10:{i // 60:02d}:{i % 60:02d}Z", "event": {"category": ["authentication"],
                       "outcome": "success"}, "user": {"name": user}, "source": {"ip": ip}})


@pytest.fixture(scope="module")
def protected_store(tmp_path_factory) -> Path:
    """anna (a person on the roster) logs in 30 times from her home address 203.0.113.7, and 12
    times from the office; 'svc' (not on the roster) 40 times from 198.51.100.9."""
    root = tmp_path_factory.mktemp("policy")
    log = root / "logins.json"
    lines = [_event(i, "anna", "203.0.113.7") for i in range(30)] + [_event(30 + i, "anna", "10.0.0.5") for i in range(12)]
    lines += [_event(100 + i, "svc", "198.51.100.9") for i in range(40)]
    log.write_text("\n".join(lines) + "\n")
    store = root / "store"
    assert run("ingest", log, "--store", store).exit_code == 0
    assert run("budget", "set", "--store", store, "--epsilon", 20, "--delta", "1e-5").exit_code == 0
    (root / "people.txt").write_text("anna\n")
    assert run("protect", "--store", store, "--users", root / "people.txt", "--networks", "10.0.0.0/8").exit_code == 0
    return store


def test_a_person_logging_in_from_outside_is_not_in_the_exact_part(protected_store):
    # Found: rows of a roster account from an outside address were unprotected, so this release
    # showed anna's home address with her exact 30 logins (exact 30, no selection needed)
    res = run("query", "--store", protected_store, "--sql", SQL, "--epsilon", 1, "--delta", "1e-6",
              "--max-groups", 1, "--max-rows-per-group", 1, "--day", "2024-03-05", "--format", "json")
    assert res.exit_code == 0, res.output
    cells = json.loads(res.output[res.output.index("{"):])["data"]
    exact = {c["source.ip"]: c["exact"] for c in cells}
    assert exact.get("198.51.100.9") == 40  # the service account from outside: exact, as declared
    assert not exact.get("203.0.113.7")  # anna's home address carries none of her rows exactly


@pytest.mark.parametrize("field, value", [
    ("users", "anna"),          # was read as the roster {'a', 'n'}: anna's rows unprotected
    ("users", [1, 2]),          # was a TypeError: exit 70
    ("networks", "10.0.0.0/8"),  # was read character by character ('1' as 0.0.0.1/32)
    ("networks", ["10.0.0.0/33"]),
    ("version", 7),
])
def test_a_policy_edited_into_another_shape_is_refused_and_charges_nothing(protected_store, tmp_path, field, value):
    store = tmp_path / "store"
    shutil.copytree(protected_store, store)
    policy = store / "policy" / "v1.json"
    data = json.loads(policy.read_text())
    policy.write_text(json.dumps({**data, field: value}))
    before = ledger_state(store)
    res = run("query", "--store", store, "--sql", "SELECT COUNT(*) FROM logs", "--day", "2024-03-05")
    assert res.exit_code == 66 and "protection policy" in res.output and "unreadable" in res.output, res.output
    assert ledger_state(store) == before
    # and dplogs protect, which the message names, replaces it
    assert run("protect", "--store", store, "--clear").exit_code == 0
    assert run("query", "--store", store, "--sql", "SELECT COUNT(*) FROM logs", "--day", "2024-03-05").exit_code == 0


def test_a_garbled_current_pointer_can_be_replaced_with_protect(protected_store, tmp_path):
    # Found: dplogs protect read the damaged policy to number the next version, so the repair the
    # error message names failed with the same error
    store = tmp_path / "store"
    shutil.copytree(protected_store, store)
    (store / "policy" / "current").write_text("x")
    assert run("protect", "--store", store, "--show").exit_code == 66
    res = run("protect", "--store", store, "--clear")
    assert res.exit_code == 0, res.output
    assert (store / "policy" / "v2.json").exists() and (store / "policy" / "v1.json").exists()


def test_an_inside_address_written_ipv4_mapped_is_inside():
    # Found: a dual-stack server logs an office host 10.0.0.5 as ::ffff:10.0.0.5, which was
    # outside 10.0.0.0/8 (another IP version), so that host's rows were aggregated exactly
    from dplogs.engine.policy import Policy

    policy = Policy(version=1, networks=("10.0.0.0/8",))
    assert policy.address_protected("::ffff:10.0.0.5") and policy.address_protected("::ffff:a00:5")
    assert not policy.address_protected("::ffff:203.0.113.7")
    assert Policy(version=1, networks=("::ffff:0:0/96",)).address_protected("::ffff:10.0.0.5")


def test_a_directory_export_roster_matches_the_accounts_as_ingest_names_them():
    # Found: the roster was compared verbatim, while ingest lower-cases Windows names and splits
    # DOMAIN\ and @REALM off: a roster line 'Alice.Smith' (as an AD export writes it) left the
    # stored 'alice.smith' off the roster, so her Windows logons were released exactly, her name
    # as a key (exact 20 of 21)
    import polars as pl

    from dplogs.engine.policy import PROTECTED, Policy
    from dplogs.schema import conform

    policy = Policy(version=1, users=frozenset({"CORP\\Alice.Smith", "dave@CORP.EXAMPLE", "carol"}), networks=None)
    rows = conform(pl.DataFrame({"user.name": ["alice.smith", "dave", "Carol", "carol", "root", None]}).lazy())
    assert policy.mark(rows, "user.name").collect()[PROTECTED].to_list() == [True, True, True, True, False, True]


def test_a_roster_exported_with_a_byte_order_mark_names_its_first_person(tmp_path):
    # Found: a UTF-8 BOM (PowerShell's Out-File, Excel's "CSV UTF-8") stayed on the first
    # account ('\ufeffalice'), so that person was off the roster and their rows exact
    from dplogs.engine.policy import read_roster

    roster = tmp_path / "people.txt"
    roster.write_bytes("\ufeffalice\r\nbob\r\n".encode())
    assert read_roster(roster) == {"alice", "bob"}


def test_an_older_policy_put_back_in_force_is_refused(protected_store, tmp_path):
    # Found: pointing 'current' back at an older, broader version (v1: every row outside the
    # networks exact) silently put it back in force, with no new version recorded
    store = tmp_path / "store"
    shutil.copytree(protected_store, store)
    assert run("protect", "--store", store, "--clear").exit_code == 0  # v2: every row protected
    (store / "policy" / "current").write_text("1")
    before = ledger_state(store)
    res = run("query", "--store", store, "--sql", "SELECT COUNT(*) FROM logs", "--day", "2024-03-05")
    assert res.exit_code == 66 and "not the newest" in res.output, res.output
    assert ledger_state(store) == before
    assert run("protect", "--store", store, "--clear").exit_code == 0  # the repair it names: v3
    assert run("protect", "--store", store, "--show").exit_code == 0


# --- anomaly rows under a policy (redteam4) -------------------------------------------------------

def _web_log(*, anna_at_home: bool) -> str:
    """March 2024 web requests: 6 office addresses (inside 10.0.0.0/8, people on the roster), 2
    scanners outside without an account, and, if ``anna_at_home``, anna (on the roster) signed in
    from her home address 203.0.113.7 on two days: rows the policy keeps protected."""
    rows = []
    for day in range(1, 15):
        for i in range(6):
            rows += [(f"2024-03-{day:02d}T{9 + i:02d}:{m:02d}:00", f"10.0.0.{i + 1}", f"clerk{i}") for m in range(3)]
        rows += [(f"2024-03-{day:02d}T02:0{s}:00", f"198.51.100.{s + 1}", "-") for s in range(2)]
    if anna_at_home:
        rows += [(f"2024-03-{day:02d}T21:0{m}:00", "203.0.113.7", "anna") for day in (4, 9) for m in range(3)]
    return "".join(f'{ip} - {user} [{t[8:10]}/Mar/2024:{t[11:19]} +0000] "GET /app HTTP/1.1" 200 512 "-" "ua"\n'
                   for t, ip, user in sorted(rows))


def _source_ip_store(root: Path, *, anna_at_home: bool, roster: bool) -> Path:
    logs = root / "logs"
    logs.mkdir(parents=True)
    (logs / "access.log").write_text(_web_log(anna_at_home=anna_at_home))
    (logs / "people.txt").write_text("anna\n" + "".join(f"clerk{i}\n" for i in range(6)))
    store = root / "store"
    assert run("ingest", "--store", store, "--privacy-unit", "source.ip", "--quiet", logs / "access.log").exit_code == 0
    assert run("budget", "set", "--store", store, "--epsilon", 1000, "--delta", 0.5).exit_code == 0
    people = ["--users", logs / "people.txt"] if roster else []
    assert run("protect", "--store", store, "--networks", "10.0.0.0/8", *people).exit_code == 0
    return store


@pytest.fixture(scope="module")
def anomaly_stores(tmp_path_factory) -> dict[str, Path]:
    """Neighbours on a source.ip store under a roster and networks (D' drops the protected rows of
    anna's home address in March), the same logs under networks alone, and a model trained on D."""
    root = tmp_path_factory.mktemp("anomalies")
    stores = {"D": _source_ip_store(root / "D", anna_at_home=True, roster=True),
              "D'": _source_ip_store(root / "E", anna_at_home=False, roster=True),
              "networks only": _source_ip_store(root / "N", anna_at_home=False, roster=False)}
    res = run("train", "--store", stores["D"], "--detector", "kmeans", "--k", 2, "--epsilon", 4, "--delta", "1e-6",
              "--start", "2024-03-01", "--end", "2024-04-01", "--output", root / "model.json")
    assert res.exit_code == 0, res.output
    return {**stores, "model": root / "model.json"}


def _anomaly_count(store: Path, model: Path) -> dict:
    # threshold -1: every unit-window is flagged (k-means scores are squared distances), so the
    # rows are all unit-windows of the window, K = 7 per address
    res = run("query", "--store", store, "--sql", "SELECT COUNT(*) FROM logs", "--anomalies", model, "--threshold", -1,
              "--epsilon", 1, "--start", "2024-03-01", "--end", "2024-04-01", "--format", "json")
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{"):])["data"][0]


def test_an_anomaly_row_of_an_address_a_person_used_is_not_counted_exactly(anomaly_stores):
    # Found: on a source.ip store an anomaly row (one per flagged address-day) carries the address
    # and no account, so the networks marked it unprotected whenever the address was outside, even
    # when the rows it was scored from were a roster person's, which the policy keeps protected.
    # anna's two days at home were counted exactly: exact 16 on D, 14 on D' (no noise on the
    # difference), though D and D' differ only in protected rows.
    d, e = (_anomaly_count(anomaly_stores[k], anomaly_stores["model"]) for k in ("D", "D'"))
    assert d["exact"] == e["exact"]


def test_anomaly_rows_of_outside_addresses_stay_exact_where_no_person_can_use_them(anomaly_stores):
    # without a roster every row from an outside address is unprotected, so its unit-windows are
    # too: the two scanners' 7 kept days each are counted exactly
    assert _anomaly_count(anomaly_stores["networks only"], anomaly_stores["model"])["exact"] == 14


def test_an_anomaly_release_says_how_the_policy_read_its_rows(anomaly_stores):
    res = run("explain", "--store", anomaly_stores["D"], "--sql", "SELECT COUNT(*) FROM logs", "--anomalies",
              anomaly_stores["model"], "--threshold", -1, "--epsilon", 1, "--start", "2024-03-01", "--end", "2024-04-01",
              "--format", "json")
    assert res.exit_code == 0, res.output
    rule = json.loads(res.output[res.output.index("{"):])["protection"]["rule"]
    assert rule.startswith("every row is protected") and "outside 10.0.0.0/8" not in rule
