"""A ledger that fails verification releases nothing; a ledger belongs to its store; I/O trouble
is told apart from corruption; lowering a cap below a window's spend says so.

The CLI tests run `dplogs` end to end on a tiny store: two releases of ε=0.4 under a cap of 1,
then an edit that (before the state seal) freed budget for a third release past the cap.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
import sqlite3

import polars as pl
import pytest
from click.testing import CliRunner

import dplogs.privacy.ledger as ledger_module
from dplogs.cli import cli
from dplogs.errors import ConcurrentRun, LedgerError, LedgerIOError
from dplogs.ingest.store import Store
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.loss import PrivacyLoss
from dplogs.schema import conform

SQL = "SELECT event.outcome, COUNT(*) AS n FROM logs GROUP BY event.outcome"
QUERY = ["--sql", SQL, "--epsilon", "0.4", "--max-groups", "1", "--max-rows-per-group", "5",
         "--start", "2026-11-01", "--end", "2026-11-20", "--format", "json"]


def dplogs(*args) -> CliRunner:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _store(path) -> Store:
    store = Store.init(path, dataset="t")
    users = ["ann", "bob", "cy"] * 2
    store.write_events(conform(pl.DataFrame({
        "@timestamp": [dt.datetime(2026, 11, 3, tzinfo=dt.UTC)] * 6, "user.name": users,
        "event.outcome": ["failure"] * 3 + ["success"] * 3,
    })), stem="x")
    return store


def _edit(path, *statements) -> None:
    con = sqlite3.connect(path)
    with con:
        for sql in statements:
            con.execute(sql)
    con.close()


def _entries(store: Store) -> list:
    with Ledger.open(store.ledger_path) as led:
        return led.history()


@pytest.fixture
def spent(tmp_path) -> Store:
    """A store whose month cap ε=1 has 0.8 spent by two CLI queries: a third does not fit."""
    store = _store(tmp_path / "st")
    assert dplogs("budget", "set", "--store", store.path, "--epsilon", 1).exit_code == 0
    for _ in range(2):
        r = dplogs("query", "--store", store.path, *QUERY)
        assert r.exit_code == 0, r.output
    return store


def _head_of_first(path) -> str:
    con = sqlite3.connect(path)
    head = con.execute("SELECT entry_hash FROM entries WHERE seq = 1").fetchone()[0]
    con.close()
    return head


EDITS = {
    "epsilon set to 0": lambda p: _edit(p, "UPDATE entries SET epsilon = 0 WHERE seq = 1"),
    "status set to refunded": lambda p: _edit(p, "UPDATE entries SET status = 'refunded' WHERE seq = 1"),
    "last entry deleted, count fixed": lambda p: _edit(
        p, "DELETE FROM entries WHERE seq = 2", "UPDATE meta SET value = '1' WHERE key = 'entry_count'"),
    # the chain alone cannot see this truncation: it is consistent again
    "last entry deleted, count and head fixed": lambda p: _edit(
        p, "DELETE FROM entries WHERE seq = 2", "UPDATE meta SET value = '1' WHERE key = 'entry_count'",
        f"UPDATE meta SET value = '{_head_of_first(p)}' WHERE key = 'head_hash'"),
    "window policy changed to day": lambda p: _edit(p, "UPDATE meta SET value = 'day' WHERE key = 'window_policy'"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_edited_ledger_releases_nothing_and_charges_nothing(spent, edit):
    EDITS[edit](spent.ledger_path)
    before = [(e.id, e.status) for e in _entries(spent)]
    r = dplogs("query", "--store", spent.path, *QUERY)
    assert r.exit_code == 74, r.output
    assert r.stdout == ""  # nothing released
    assert "verification failed" in r.stderr and "older copy" in r.stderr and "restore" not in r.stderr
    assert [(e.id, e.status) for e in _entries(spent)] == before  # nothing charged
    assert dplogs("budget", "verify", "--store", spent.path).exit_code == 74
    # and the seal is never renewed over the failing state: the next attempt is refused too
    assert dplogs("query", "--store", spent.path, *QUERY).exit_code == 74


def test_untouched_ledger_still_refuses_past_the_cap_with_77(spent):
    r = dplogs("query", "--store", spent.path, *QUERY)
    assert r.exit_code == 77 and r.stdout == ""


def test_replay_is_refused_on_a_tampered_ledger(tmp_path):
    store = _store(tmp_path / "st")
    with Ledger.open(store.ledger_path, create=True, store_id=store.identity) as led:
        led.set_caps(window_policy="month", epsilon=1.0)
        with led.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11"], caller="report", idempotency_key="k") as c:
            c.record({"v": 1})
        with led.charge(PrivacyLoss(epsilon=0.1), windows=["2026-12"], caller="cli") as c:
            c.record({"v": 2})
    _edit(store.ledger_path, "UPDATE entries SET query = 'other' WHERE seq = 2")  # not even a spend field
    with Ledger.open(store.ledger_path, store_id=store.identity) as led, pytest.raises(LedgerError, match="edited"):
        with led.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11"], caller="report", idempotency_key="k"):
            pytest.fail("a stored release must not be re-emitted from a tampered ledger")


def test_write_counter_cannot_be_reset_or_removed(spent):
    for sql in ("UPDATE writes SET n = 0", "DELETE FROM writes", "INSERT INTO writes VALUES (0)",
                "INSERT OR REPLACE INTO writes (rowid, n) VALUES (1, 0)"):
        with pytest.raises(sqlite3.DatabaseError, match="only counts up"):
            _edit(spent.ledger_path, sql)
    _edit(spent.ledger_path, "DROP TRIGGER entries_counted_update")
    r = dplogs("query", "--store", spent.path, *QUERY)
    assert r.exit_code == 74 and "write counter or its triggers were removed" in r.stderr


def test_unsealed_format_1_ledger_is_verified_then_upgraded(ledger, ledger_path):
    for i in range(2):
        with ledger.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11"], caller="cli", query=f"q{i}") as c:
            c.record({"i": i})
    ledger.close()
    legacy = [f"DROP TRIGGER {t}" for t in ledger_module._COUNTER_TRIGGERS]
    legacy += ["DROP TABLE writes", "DELETE FROM meta WHERE key = 'state_seal'",
               "UPDATE meta SET value = '1' WHERE key = 'format'"]
    _edit(ledger_path, *legacy)
    with Ledger.open(ledger_path) as led:
        assert led.verify().ok
        with led.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11"], caller="cli") as c:
            c.record({"i": 2})
        assert led.verify().ok
    _edit(ledger_path, "UPDATE entries SET epsilon = 0 WHERE seq = 1")  # now counted
    with Ledger.open(ledger_path) as led, pytest.raises(LedgerError, match="verification failed"):
        with led.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11"], caller="cli"):
            pass


def test_unsealed_ledger_that_fails_verification_is_not_upgraded(ledger, ledger_path):
    with ledger.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11"], caller="cli") as c:
        c.record({})
    ledger.close()
    _edit(ledger_path, *[f"DROP TRIGGER {t}" for t in ledger_module._COUNTER_TRIGGERS],
          "DROP TABLE writes", "UPDATE meta SET value = '1' WHERE key = 'format'",
          "UPDATE entries SET epsilon = 0")
    with Ledger.open(ledger_path) as led, pytest.raises(LedgerError, match="entry #1 .* was edited"):
        with led.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11"], caller="cli"):
            pass


# -- a ledger belongs to its store ------------------------------------------------------------
@pytest.fixture
def two_stores(tmp_path) -> tuple[Store, Store]:
    a, b = _store(tmp_path / "a"), _store(tmp_path / "b")
    for s in (a, b):
        assert dplogs("budget", "set", "--store", s.path, "--epsilon", 1).exit_code == 0
    assert dplogs("query", "--store", a.path, *QUERY).exit_code == 0  # a has spent, b has not
    return a, b


def test_ledger_copied_from_another_store_is_refused(two_stores):
    a, b = two_stores
    for s in (a, b):  # as after every dplogs process ended: everything in the main file
        _edit(s.ledger_path, "PRAGMA wal_checkpoint(TRUNCATE)")
        for suffix in ("-wal", "-shm"):
            s.ledger_path.with_name(s.ledger_path.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(b.ledger_path, a.ledger_path)  # b's unspent ledger, to reset a's budget
    for args in (("query", "--store", a.path, *QUERY), ("budget", "show", "--store", a.path),
                 ("budget", "set", "--store", a.path, "--epsilon", 5)):
        r = dplogs(*args)
        assert r.exit_code == 74 and "belongs to another store" in r.stderr, (args, r.output)
        assert r.stdout == ""


def test_ledger_symlinked_from_another_store_is_refused(two_stores):
    a, b = two_stores
    a.ledger_path.unlink()
    a.ledger_path.symlink_to(b.ledger_path)
    r = dplogs("query", "--store", a.path, *QUERY)
    assert r.exit_code == 74 and "symbolic link" in r.stderr and r.stdout == ""
    with pytest.raises(LedgerError, match="symbolic link"):
        Ledger.open(a.ledger_path)  # even without a store id
    assert len(_entries(b)) == 0  # b's ledger was not charged through the link


def test_hard_linked_ledger_and_symlinked_wal_are_refused(two_stores):
    a, b = two_stores
    a.ledger_path.unlink()
    os.link(b.ledger_path, a.ledger_path)
    with pytest.raises(LedgerError, match="hard links"):
        Ledger.open(b.ledger_path)
    a.ledger_path.unlink()
    wal = b.ledger_path.with_name("ledger.sqlite-wal")
    if wal.exists():
        wal.unlink()
    wal.symlink_to(a.path / "elsewhere")
    with pytest.raises(LedgerError, match="symbolic link"):
        Ledger.open(b.ledger_path)


def test_store_lock_file_symlink_is_not_followed(tmp_path):
    store = _store(tmp_path / "st")
    target = tmp_path / "victim"
    (store.path / ".ingest.lock").symlink_to(target)
    with pytest.raises(Exception, match="symbolic link"), store.writer_lock():
        pass
    assert not target.exists()


def test_legacy_store_and_unbound_ledger_are_bound_by_budget_set_only(tmp_path):
    store = _store(tmp_path / "st")
    with Ledger.open(store.ledger_path, create=True) as led:  # made standalone: unbound
        led.set_caps(window_policy="month", epsilon=1.0)
        with led.charge(PrivacyLoss(epsilon=0.4), windows=["2026-11"], caller="cli") as c:
            c.record({})
    manifest = store.path / "manifest.json"
    manifest.write_text(manifest.read_text().replace(store.manifest.store_id, ""))  # an old store: no id
    r = dplogs("query", "--store", store.path, *QUERY)
    assert r.exit_code == 74 and "predates store identities" in r.stderr and r.stdout == ""
    assert dplogs("budget", "set", "--store", store.path).exit_code == 0  # keeps the caps, binds
    bound = Store.open(store.path).manifest.store_id
    assert bound and Ledger.open(store.ledger_path)._meta("store_id") == bound
    r = dplogs("query", "--store", store.path, *QUERY)
    assert r.exit_code == 0, r.output
    assert len(_entries(store)) == 2  # the earlier spend still counts


def test_unbound_ledger_with_releases_is_not_adopted_by_a_query(tmp_path):
    store = _store(tmp_path / "st")
    with Ledger.open(store.ledger_path, create=True) as led:
        led.set_caps(window_policy="month", epsilon=1.0)
        with led.charge(PrivacyLoss(epsilon=0.4), windows=["2026-11"], caller="cli") as c:
            c.record({})
    r = dplogs("query", "--store", store.path, *QUERY)
    assert r.exit_code == 74 and "not bound to any store" in r.stderr and r.stdout == ""


def test_empty_unbound_ledger_is_adopted_by_its_first_release(tmp_path):
    store = _store(tmp_path / "st")
    with Ledger.open(store.ledger_path, create=True) as led:
        led.set_caps(window_policy="month", epsilon=1.0)
    assert dplogs("query", "--store", store.path, *QUERY).exit_code == 0
    with Ledger.open(store.ledger_path) as led:
        assert led._meta("store_id") == store.identity and led.verify().ok


# -- I/O trouble is not corruption ------------------------------------------------------------
class _FailingConnection:
    """A real SQLite connection that raises ``error`` on statements starting with ``prefix``."""

    def __init__(self, conn, prefix, error):
        self._conn, self._prefix, self._error = conn, prefix, error

    def execute(self, sql, *args):
        if sql.lstrip().startswith(self._prefix):
            raise self._error
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def _fail_on(monkeypatch, prefix, error):
    real = sqlite3.connect
    monkeypatch.setattr(ledger_module.sqlite3, "connect",
                        lambda *a, **kw: _FailingConnection(real(*a, **kw), prefix, error))


IO_FAULTS = {
    "disk full on reserve": ("INSERT INTO entries", sqlite3.OperationalError("database or disk is full"), "full"),
    "read-only on begin": ("BEGIN IMMEDIATE", sqlite3.OperationalError("attempt to write a readonly database"),
                           "read-only"),
    "disk I/O error": ("INSERT INTO entries", sqlite3.OperationalError("disk I/O error"), "I/O error"),
}


@pytest.mark.parametrize("fault", IO_FAULTS)
def test_io_trouble_on_reserve_exits_74_as_io_not_corruption(spent, monkeypatch, fault):
    prefix, error, words = IO_FAULTS[fault]
    before = [(e.id, e.status) for e in _entries(spent)]
    _fail_on(monkeypatch, prefix, error)
    r = dplogs("query", "--store", spent.path, *QUERY[:3], "0.1", *QUERY[4:])
    assert r.exit_code == 74, r.output
    assert r.stdout == ""
    assert "I/O problem, not corruption" in r.stderr and words in r.stderr
    assert "corrupt or" not in r.stderr and "restore" not in r.stderr and "older copy" not in r.stderr
    monkeypatch.undo()
    assert [(e.id, e.status) for e in _entries(spent)] == before
    assert dplogs("budget", "verify", "--store", spent.path).exit_code == 0


def test_an_io_error_on_a_full_disk_says_the_disk_is_full(spent, monkeypatch):
    """On a full file system (a 4 MiB tmpfs) SQLite failed to grow the ledger's -shm file and said
    only "disk I/O error" (SQLITE_IOERR_SHMSIZE), so every command told the operator to "check the
    disk"; a file system without room is now named as full."""
    _fail_on(monkeypatch, "INSERT INTO entries", sqlite3.OperationalError("disk I/O error"))
    monkeypatch.setattr(ledger_module.os, "statvfs", lambda path: os.statvfs_result((4096, 4096, 1024, 0, 0, 0, 0, 0, 0, 255)))
    r = dplogs("query", "--store", spent.path, *QUERY[:3], "0.1", *QUERY[4:])
    assert r.exit_code == 74 and r.stdout == ""
    assert "the disk holding it is full" in r.stderr and "I/O problem, not corruption" in r.stderr, r.output


def test_disk_full_at_commit_keeps_the_charge_and_releases_nothing(spent, monkeypatch):
    _fail_on(monkeypatch, "UPDATE entries SET status", sqlite3.OperationalError("database or disk is full"))
    r = dplogs("query", "--store", spent.path, *QUERY[:3], "0.1", *QUERY[4:])
    assert r.exit_code == 74 and r.stdout == ""
    assert "I/O problem, not corruption" in r.stderr and "counts as spent" in r.stderr
    monkeypatch.undo()
    assert [e.status for e in _entries(spent)] == ["reserved", "committed", "committed"]
    assert dplogs("budget", "verify", "--store", spent.path).exit_code == 0


@pytest.mark.parametrize("err, words", [(errno.EROFS, "read-only"), (errno.ENOSPC, "full"),
                                        (errno.EACCES, "permission")])
def test_creating_the_ledger_on_a_read_only_or_full_store_is_io_trouble(tmp_path, monkeypatch, err, words):
    store = _store(tmp_path / "st")  # no ledger yet: the first release creates one
    real_open = os.open

    def failing_open(path, flags, *args):
        if str(path).endswith("ledger.sqlite"):
            raise OSError(err, os.strerror(err), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(ledger_module.os, "open", failing_open)
    r = dplogs("query", "--store", store.path, *QUERY)
    assert r.exit_code == 74 and "I/O problem, not corruption" in r.stderr and words in r.stderr, r.output
    with pytest.raises(LedgerIOError):
        Ledger.open(store.ledger_path, create=True)


def test_real_full_database_is_io_trouble(ledger, ledger_path):
    # SQLite's own SQLITE_FULL: the file may not grow past its current pages
    ledger._conn.execute(f"PRAGMA max_page_count = {ledger._conn.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(LedgerIOError, match="disk holding it is full") as info:
        for i in range(1000):
            with ledger.charge(PrivacyLoss(epsilon=1e-4), windows=["2026-11"], caller="cli", query="x" * 2000) as c:
                c.record({"i": i})
    assert info.value.exit_code == 74


def test_ledger_lock_held_past_the_wait_is_retryable(ledger, ledger_path, monkeypatch):
    monkeypatch.setattr(ledger_module, "_LOCK_WAIT_S", 0.2)
    holder = sqlite3.connect(ledger_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(ConcurrentRun, match="stayed locked") as info:
            with ledger.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11"], caller="cli"):
                pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert info.value.exit_code == 75 and ledger.history() == []


# -- lowering a cap below the spend ----------------------------------------------------------
def test_lowering_a_cap_below_the_spend_warns_and_is_allowed(spent):
    r = dplogs("budget", "set", "--store", spent.path, "--epsilon", 0.5)
    assert r.exit_code == 0, r.output
    assert "warning: window 2026-11 already spent epsilon=0.8" in r.stderr
    assert "no budget left" in r.stderr and "Nothing already released is undone" in r.stderr
    assert dplogs("query", "--store", spent.path, *QUERY[:3], "0.01", *QUERY[4:]).exit_code == 77
    r = dplogs("budget", "set", "--store", spent.path, "--epsilon", 0.9)  # above the spend again
    assert r.exit_code == 0 and "warning" not in r.stderr
    r = dplogs("budget", "set", "--store", spent.path, "--epsilon", 0.1, "--window", "2026-12")  # unspent window
    assert r.exit_code == 0 and "warning" not in r.stderr
