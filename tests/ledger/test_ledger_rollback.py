"""An older copy of a store's OWN ledger put back (a backup restored, or the file copied aside
before a run and restored after) is a valid hash chain with the same id, and it erases the spend
recorded since. The head record beside the ledger (``ledger.sqlite.head``) catches it: the copy
no longer extends the record, so nothing is released from it."""

from __future__ import annotations

import gc
import json
import sqlite3
from pathlib import Path

import pytest
from tests.adversarial.conftest import GOOD, auth_store, invoke

from dplogs.errors import LedgerError
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.loss import PrivacyLoss

def _copy_ledger(src: Path, dst: Path) -> None:
    """A consistent copy of a live WAL-mode ledger, as a backup tool would take it."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
        b.execute("PRAGMA journal_mode = DELETE")  # the whole copy in the one file
    finally:
        a.close()
        b.close()


def _put_back(copy: Path, ledger: Path) -> None:
    gc.collect()  # in-process CLI runs may leave a connection for the collector to close
    for f in ledger.parent.glob(ledger.name + "-*"):  # -wal / -shm of the current file
        f.unlink()
    ledger.write_bytes(copy.read_bytes())


@pytest.fixture()
def store(tmp_path) -> Path:
    return auth_store(tmp_path / "store", epsilon=1)


def _standalone_ledger(directory: Path, *, spend: float) -> Path:
    """A ledger made without a store (the Python API), with one release of ε = ``spend``."""
    path = directory / "ledger.sqlite"
    with Ledger.open(path, create=True) as ledger:
        ledger.set_caps(window_policy="month", epsilon=1.0, delta=1e-6)
        with ledger.charge(PrivacyLoss(epsilon=spend), windows=["2026-11"], caller="api"):
            pass
    return path


def _spent(store: Path) -> float:
    with Ledger.open(store / "ledger.sqlite") as ledger:
        return sum(ledger.spent(w).epsilon for w in ledger.windows())


def test_an_older_copy_of_the_stores_own_ledger_is_refused(store, tmp_path):
    assert invoke("query", "--store", store, *GOOD).exit_code == 0
    _copy_ledger(store / "ledger.sqlite", tmp_path / "backup.sqlite")
    for _ in range(2):
        assert invoke("query", "--store", store, *GOOD).exit_code == 0
    spent = _spent(store)
    _put_back(tmp_path / "backup.sqlite", store / "ledger.sqlite")
    assert _spent(store) < spent  # what the copy would hand out again
    res = invoke("query", "--store", store, *GOOD)
    assert res.exit_code == 74, res.output
    assert "older copy put back" in res.output and "holds 1 entries but already held 3" in res.output
    res = invoke("budget", "verify", "--store", store)
    assert res.exit_code != 0 and "older copy put back" in res.output


def test_deleting_the_head_record_as_well_is_seen(store, tmp_path):
    for _ in range(2):  # the second reservation notes that the ledger has a head record
        assert invoke("query", "--store", store, *GOOD).exit_code == 0
    _copy_ledger(store / "ledger.sqlite", tmp_path / "backup.sqlite")
    assert invoke("query", "--store", store, *GOOD).exit_code == 0
    _put_back(tmp_path / "backup.sqlite", store / "ledger.sqlite")
    (store / "ledger.sqlite.head").unlink()
    res = invoke("query", "--store", store, *GOOD)
    assert res.exit_code == 74 and "head record ledger.sqlite.head is missing" in res.output, res.output


def test_a_head_record_one_release_behind_is_consistent(store, tmp_path):
    # a crash after the ledger committed but before the record was written leaves the record behind
    assert invoke("query", "--store", store, *GOOD).exit_code == 0
    behind = (store / "ledger.sqlite.head").read_bytes()
    assert invoke("query", "--store", store, *GOOD).exit_code == 0
    (store / "ledger.sqlite.head").write_bytes(behind)
    assert invoke("query", "--store", store, *GOOD).exit_code == 0
    assert b'"entries": 3' in (store / "ledger.sqlite.head").read_bytes()
    assert invoke("budget", "verify", "--store", store).exit_code == 0


def test_a_rewritten_history_of_the_same_length_is_refused(store, tmp_path):
    # a copy taken before a release, then used for a different release: same entry count, other chain
    _copy_ledger(store / "ledger.sqlite", tmp_path / "backup.sqlite")
    assert invoke("query", "--store", store, *GOOD).exit_code == 0
    record = (store / "ledger.sqlite.head").read_bytes()
    _put_back(tmp_path / "backup.sqlite", store / "ledger.sqlite")
    (store / "ledger.sqlite.head").unlink()  # not anchored yet: a fresh history is accepted...
    assert invoke("query", "--store", store, *GOOD).exit_code == 0
    (store / "ledger.sqlite.head").write_bytes(record)  # ...but it is not the one recorded
    res = invoke("query", "--store", store, *GOOD)
    assert res.exit_code == 74 and "entry #1 is not the one ledger.sqlite.head recorded" in res.output, res.output


def test_a_standalone_ledger_restored_from_a_copy_refuses_to_charge(tmp_path):
    path = _standalone_ledger(tmp_path, spend=0.4)
    _copy_ledger(path, tmp_path / "copy.sqlite")
    with Ledger.open(path) as ledger:
        with ledger.charge(PrivacyLoss(epsilon=0.5), windows=["2026-11"], caller="api"):
            pass
    _put_back(tmp_path / "copy.sqlite", path)
    with Ledger.open(path) as ledger:
        assert not ledger.verify().ok
        with pytest.raises(LedgerError, match="older copy put back"):
            with ledger.charge(PrivacyLoss(epsilon=0.5), windows=["2026-11"], caller="api"):
                pass
        assert ledger.spent("2026-11").epsilon == pytest.approx(0.4)  # nothing charged on the copy


def test_a_standalone_ledger_deleted_and_recreated_is_refused(tmp_path):
    path = _standalone_ledger(tmp_path, spend=0.9)
    for f in tmp_path.glob("ledger.sqlite*"):
        if not f.name.endswith(".head"):
            f.unlink()
    with Ledger.open(path, create=True) as ledger:  # a fresh ledger would hand out the whole budget again
        with pytest.raises(LedgerError, match="the ledger was replaced by another one"):
            ledger.set_caps(window_policy="month", epsilon=1.0, delta=1e-6)
        with pytest.raises(LedgerError, match="the ledger was replaced by another one"):
            with ledger.charge(PrivacyLoss(epsilon=0.9), windows=["2026-11"], caller="api"):
                pass


def test_a_lost_head_record_is_reset_only_by_the_administrator_and_noted(store):
    for _ in range(2):
        assert invoke("query", "--store", store, *GOOD).exit_code == 0
    record = store / "ledger.sqlite.head"
    record.write_text("{half a rec")  # e.g. damaged by the disk
    res = invoke("query", "--store", store, *GOOD)
    assert res.exit_code == 74 and "--reset-head-record" in res.output, res.output
    res = invoke("budget", "set", "--store", store, "--reset-head-record")
    assert res.exit_code == 0, res.output
    assert invoke("query", "--store", store, *GOOD).exit_code == 0
    res = invoke("budget", "verify", "--store", store)
    assert res.exit_code == 0 and "head record was reset by its administrator" in res.output
    # a readable record is never rewritten: a ledger that does not extend it is an older copy
    res = invoke("budget", "set", "--store", store, "--reset-head-record")
    assert res.exit_code == 64 and "is readable (nothing was changed)" in res.output


def test_a_whole_store_restore_is_caught_by_a_head_pinned_outside_the_store(store, tmp_path):
    assert invoke("query", "--store", store, *GOOD).exit_code == 0
    _copy_ledger(store / "ledger.sqlite", tmp_path / "backup.sqlite")  # the ledger and its record together
    old_record = (store / "ledger.sqlite.head").read_bytes()
    assert invoke("query", "--store", store, *GOOD).exit_code == 0
    res = invoke("budget", "verify", "--store", store, "--json")
    pinned = json.loads(res.stdout)["head_hash"]  # what a scheduler files in the SIEM after its run
    assert invoke("budget", "verify", "--store", store, "--pinned", pinned).exit_code == 0
    _put_back(tmp_path / "backup.sqlite", store / "ledger.sqlite")
    (store / "ledger.sqlite.head").write_bytes(old_record)
    assert invoke("query", "--store", store, *GOOD).exit_code == 0  # consistent with itself: not seen here
    res = invoke("budget", "verify", "--store", store, "--pinned", pinned)
    assert res.exit_code == 74 and f"the pinned head {pinned} is not in the chain" in res.output, res.output
    res = invoke("budget", "verify", "--store", store, "--pinned", "abc")
    assert res.exit_code == 64 and "64 hex digits" in res.output
