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
