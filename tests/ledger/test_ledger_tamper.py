"""Tamper evidence (hash chain, seals, head row) and corrupt or missing ledger files."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest

from dplogs.errors import LedgerError
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.mechanisms import add_noise, calibrate
from dplogs.privacy.sensitivity import Sensitivity


@pytest.fixture
def filled(ledger, ledger_path):
    for i in range(4):
        with ledger.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11"], caller="cli", query=f"q{i}") as c:
            c.record({"i": i})
    ledger.close()
    return ledger_path


def _edit(path, sql, *args):
    con = sqlite3.connect(path)
    with con:
        con.execute(sql, args)
    con.close()


def _problems(path):
    with Ledger.open(path) as led:
        return led.verify()


def test_untouched_ledger_verifies(filled):
    report = _problems(filled)
    assert report.ok and report.entries == 4 and report.problems == ()
    assert len(report.head_hash) == 64


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("UPDATE entries SET epsilon = 0.01 WHERE seq = 2", "entry #2 .* was edited: its content"),
        ("UPDATE entries SET query = 'other' WHERE seq = 1", "entry #1 .* was edited: its content"),
        ("UPDATE entries SET status = 'refunded' WHERE seq = 3", "entry #3 .* status or payload"),
        ("UPDATE entries SET payload = '{\"i\": 99}' WHERE seq = 4", "entry #4 .* status or payload"),
        ("DELETE FROM entries WHERE seq = 2", "deleted"),
        ("DELETE FROM entries WHERE seq = 4", "holds 3"),
        ("UPDATE entries SET seq = seq + 10 WHERE seq = 1", "reordered"),
    ],
)
def test_tampering_is_detected(filled, sql, expected):
    _edit(filled, sql)
    report = _problems(filled)
    assert not report.ok
    assert any(__import__("re").search(expected, p) for p in report.problems), report.problems
    with pytest.raises(LedgerError, match="verification failed"):
        report.raise_for_problems()


def test_deleting_the_last_entry_and_fixing_the_count_is_still_caught(filled):
    _edit(filled, "DELETE FROM entries WHERE seq = 4")
    _edit(filled, "UPDATE meta SET value = '3' WHERE key = 'entry_count'")
    report = _problems(filled)
    assert not report.ok
    assert any("head of the chain" in p for p in report.problems)


def test_tampered_count_blocks_new_reservations(filled):
    _edit(filled, "DELETE FROM entries WHERE seq = 4")
    with Ledger.open(filled) as led, pytest.raises(LedgerError, match="budget verify"):
        with led.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11"], caller="cli"):
            pytest.fail("must not reserve on a tampered ledger")


def test_missing_ledger_is_an_error_without_create(tmp_path):
    with pytest.raises(LedgerError, match="no budget ledger") as info:
        Ledger.open(tmp_path / "ledger.sqlite")
    assert info.value.exit_code == 74
    assert not (tmp_path / "ledger.sqlite").exists()


@pytest.mark.parametrize("content", [b"garbage " * 1000, b"SQLite format 3\x00" + b"\xff" * 5000])
def test_corrupt_ledger_gives_clear_error_and_no_release(filled, content):
    filled.write_bytes(content)
    drawn = []
    with pytest.raises(LedgerError, match="corrupt or unreadable"):
        led = Ledger.open(filled, create=True)  # create must never reset an existing file
        with led.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11"], caller="cli") as c:
            plan = calibrate(mechanism="laplace", sensitivity=Sensitivity(l1=1, l2=1), epsilon=0.1, integer=True)
            drawn.append(add_noise(np.array([5]), plan, charge=c))
    assert drawn == []
    assert filled.read_bytes() == content


def test_empty_file_is_not_silently_reinitialised(tmp_path):
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"")
    os.utime(path, (1e9, 1e9))  # an old truncated ledger, not one being created right now
    with pytest.raises(LedgerError, match="not a dplogs budget ledger"):
        Ledger.open(path, create=True)


def test_foreign_sqlite_database_is_rejected(tmp_path):
    path = tmp_path / "ledger.sqlite"
    _edit(path, "CREATE TABLE t (x)")
    os.utime(path, (1e9, 1e9))  # not a ledger another process is creating right now
    with pytest.raises(LedgerError, match="not a dplogs budget ledger"):
        Ledger.open(path)


def test_caps_edited_outside_set_caps_are_detected_and_block_spending(filled):
    _edit(filled, "UPDATE caps SET epsilon = 100")
    report = _problems(filled)
    assert not report.ok and any("caps were edited" in p for p in report.problems)
    with Ledger.open(filled) as led, pytest.raises(LedgerError, match="caps were changed"):
        with led.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11"], caller="cli"):
            pytest.fail("must not reserve against forged caps")
    with Ledger.open(filled) as led, pytest.raises(LedgerError, match="caps were changed") as info:
        led.set_caps(window_policy="month", epsilon=2.0, delta=1e-6)  # would launder the forgery
    assert "restore" not in str(info.value) and "Never replace it with an older copy" in str(info.value)


def test_set_caps_reseals(ledger):
    ledger.set_caps(window_policy="month", epsilon=2.0, delta=1e-6, window="2026-12")
    ledger.set_caps(window_policy="month", epsilon=3.0, delta=1e-6)
    assert ledger.verify().ok
