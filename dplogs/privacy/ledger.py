"""The durable privacy-budget ledger of a store (``STORE/ledger.sqlite``).

Every release, from any process (CLI queries, nightly reports, detector training), draws on one
ledger. Its protocol makes "no release without a committed charge" structural::

    ledger = Ledger.open(store.ledger_path, create=True)
    with ledger.charge(loss, windows=["2026-11"], caller="cli", query=text) as charge:
        if charge.replayed_payload is not None:      # same idempotency key already released
            return charge.replayed_payload
        noisy = add_noise(values, plan, charge=charge)
        charge.record({"values": noisy.tolist()})
    # emit the release only here, after the with-block committed it

1. **validate**: loss, windows and caller are checked before anything is written;
2. **reserve**: one ``BEGIN IMMEDIATE`` transaction checks the cap of every window the release
   touches and inserts the entry as ``reserved`` (durable before any noise exists); a release that
   would exceed a cap raises :class:`~dplogs.errors.BudgetExhausted` ("budget left: ...") and
   writes nothing;
3. **draw**: noise is drawn against the yielded :class:`LedgerCharge`;
4. **commit**: on normal exit the entry becomes ``committed`` with the recorded payload. On an
   exception it becomes ``refunded`` if no noise was drawn, ``failed-after-noise`` (still spent)
   otherwise, and the exception propagates.

**Crash safety.** An entry left ``reserved`` by a process that died (SIGKILL, power loss) counts as
spent forever: we cannot know whether its noisy values were seen, so refunding it could release
information twice. ``verify()`` and ``budget show`` list such entries. A process that dies before
the reservation commits leaves nothing (SQLite rolls the transaction back).

**Tamper evidence.** Entries form a hash chain: ``entry_hash`` = SHA-256 over the previous hash
and the entry's immutable content; ``seal`` covers its mutable part (status, payload); the head
hash and entry count live in a separate ``meta`` row, so an edited, deleted (even the last),
inserted or reordered entry fails :meth:`Ledger.verify`. The caps are hashed into ``meta`` too:
caps edited outside :meth:`Ledger.set_caps` fail verification and block new reservations. Without an external anchor a chain only
catches edits that do not recompute it: record ``verify()``'s head hash elsewhere (a SIEM, a
ticket) to pin history.

**A ledger that fails verification releases nothing.** Re-hashing the whole chain on every
release would cost ~25 µs per entry, so every write transaction (reserve, commit, ``set_caps``)
instead checks a *state seal* in O(1): SQLite triggers count every insert, update and delete on
``entries`` into a ``writes`` row that can only count up (guard triggers refuse anything else), and
``meta.state_seal`` is the SHA-256 of that count with the entry count, head hash, caps hash,
window policy and store id, re-sealed by dplogs in the same transaction as each of its own writes.
An entry edited, deleted or inserted through any SQLite client, or a ``meta`` value changed, no
longer matches the seal; the newest entry is also re-hashed against the head. Then the reservation
(or replay) is refused with :class:`~dplogs.errors.LedgerError` and the full ``verify()`` problems,
and ``verify()`` reports it too. The seal is never renewed over a failing state, so a tampered
ledger stays refused. A format-1 ledger (made before the seal) is fully verified once, then gets
the counter. Out of reach of this check, as of any keyless chain: someone who drops the triggers
or recomputes the hashes, and raw byte edits of the file that bypass SQLite (``verify()`` re-hashes
every entry and still catches the latter).

**Store identity.** :meth:`open` with ``store_id`` refuses a ledger bound to another store (copied or
hard-linked from it) and never follows a symbolic link for the ledger or its ``-wal``/``-shm``
files. An unbound ledger (made standalone, or before ids existed) is bound by its first write when
it has no entries yet, otherwise only by :meth:`Ledger.bind` (``dplogs budget set``).

**I/O trouble is not corruption.** A full disk, a read-only file system or a denied permission
raises :class:`~dplogs.errors.LedgerIOError` saying so (SQLite rolls the failed write back, the
ledger stays intact); corruption raises :class:`~dplogs.errors.LedgerError`. Neither message ever
suggests an older copy of the ledger: that would undo recorded spend.

**Composition** per window is :func:`dplogs.privacy.accounting.compose`; caps are per window of
the ledger's window policy (day, week or month).

>>> import tempfile, pathlib
>>> from dplogs.privacy.loss import PrivacyLoss
>>> path = pathlib.Path(tempfile.mkdtemp()) / "ledger.sqlite"
>>> ledger = Ledger.open(path, create=True)
>>> ledger.set_caps(window_policy="month", epsilon=1.0, delta=1e-6)
>>> with ledger.charge(PrivacyLoss(epsilon=0.25), windows=["2026-11"], caller="cli", query="q") as c:
...     c.record({"count": 41})
>>> ledger.spent("2026-11").epsilon, ledger.remaining("2026-11").epsilon
(0.25, 0.75)
>>> ledger.verify().ok
True
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import stat
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dplogs.errors import (
    BudgetExhausted,
    ConcurrentRun,
    DplogsError,
    InternalError,
    LedgerError,
    LedgerIOError,
    UsageError,
)
from dplogs.files import lock_file
from dplogs.privacy import ledger_anchor
from dplogs.privacy.accounting import Caps, LossSums, Remaining, TotalLoss, compose, exceeded_advice, fits, remaining
from dplogs.privacy.charge import Charge
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.windows import check_policy, check_window

FORMAT_VERSION = "2"
_UNSEALED_FORMAT = "1"  # no write counter or state seal yet: fully verified, then upgraded, by its first write
STATUSES = ("reserved", "committed", "refunded", "failed-after-noise")
SPENT_STATUSES = ("reserved", "committed", "failed-after-noise")
CALLERS_HINT = "cli, report, train, audit"
_GENESIS = "0" * 64
_ALL_WINDOWS = "*"
_LOCK_WAIT_S = 60.0
_BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS caps (
    policy TEXT NOT NULL, window TEXT NOT NULL,
    epsilon REAL NOT NULL, delta REAL NOT NULL, rho REAL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (policy, window)
);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    policy TEXT NOT NULL,
    windows TEXT NOT NULL,
    epsilon REAL NOT NULL, delta REAL NOT NULL, rho REAL NOT NULL,
    mechanisms TEXT NOT NULL,
    query TEXT, query_hash TEXT NOT NULL,
    caller TEXT NOT NULL,
    idempotency_key TEXT,
    pid INTEGER NOT NULL, host TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    payload TEXT,
    prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL, seal TEXT NOT NULL
);
-- a key may be retried after a refund or a failure, but released (committed) only once
CREATE UNIQUE INDEX IF NOT EXISTS entries_key_committed
    ON entries (idempotency_key) WHERE status = 'committed';
CREATE INDEX IF NOT EXISTS entries_key ON entries (idempotency_key);
"""

_COUNTER_TRIGGERS = ("writes_only_count_up", "writes_never_deleted", "writes_one_row",
                     "entries_counted_insert", "entries_counted_update", "entries_counted_delete")
_NOT_COUNTING = "SELECT RAISE(ABORT, 'the ledger write counter only counts up')"
_GUARD = (
    # One row counting every write to entries, by any SQLite client; it can only count up.
    "CREATE TABLE IF NOT EXISTS writes (n INTEGER NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS writes_only_count_up BEFORE UPDATE ON writes "
    f"WHEN NEW.n IS NOT OLD.n + 1 OR NEW.rowid IS NOT OLD.rowid BEGIN {_NOT_COUNTING}; END",
    f"CREATE TRIGGER IF NOT EXISTS writes_never_deleted BEFORE DELETE ON writes BEGIN {_NOT_COUNTING}; END",
    "CREATE TRIGGER IF NOT EXISTS writes_one_row BEFORE INSERT ON writes "
    f"WHEN EXISTS (SELECT 1 FROM writes) BEGIN {_NOT_COUNTING}; END",
    *(f"CREATE TRIGGER IF NOT EXISTS entries_counted_{op.lower()} AFTER {op} ON entries "
      "BEGIN UPDATE writes SET n = n + 1; END" for op in ("INSERT", "UPDATE", "DELETE")),
    "INSERT INTO writes (n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM writes)",
)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Entry:
    """Public: one release in the ledger (``budget history`` shows these)."""

    seq: int
    id: str
    policy: str
    windows: tuple[str, ...]
    loss: PrivacyLoss
    mechanisms: tuple[str, ...]
    query: str | None
    query_hash: str
    caller: str
    idempotency_key: str | None
    pid: int
    host: str
    status: str
    created_at: str
    updated_at: str
    payload: Any
    prev_hash: str
    entry_hash: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise LedgerError(f"entry {self.id} has unknown status {self.status!r}; the ledger was edited, run `dplogs budget verify`")

    @property
    def spent(self) -> bool:
        """Whether the entry counts against the budget (everything but a refund)."""
        return self.status in SPENT_STATUSES

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "id": self.id, "policy": self.policy, "windows": list(self.windows),
            "epsilon": self.loss.epsilon, "delta": self.loss.delta, "rho": self.loss.rho,
            "mechanisms": list(self.mechanisms), "query": self.query, "query_hash": self.query_hash,
            "caller": self.caller, "idempotency_key": self.idempotency_key, "pid": self.pid,
            "host": self.host, "status": self.status, "created_at": self.created_at,
            "updated_at": self.updated_at, "payload": self.payload, "entry_hash": self.entry_hash,
        }


@dataclass(frozen=True)
class WindowBudget:
    """Public: a window's caps, composed spend and what is left (``budget show``)."""

    window: str
    caps: Caps | None
    spent: TotalLoss
    remaining: Remaining
    entries: int
    unfinished: int
    """Entries still ``reserved``: in flight, or left by a dead process (counted as spent)."""
    over_cap: bool = False
    """Spent more than the caps allow (caps lowered after the spend): nothing is left to spend."""


@dataclass(frozen=True)
class VerifyReport:
    """Public: the result of :meth:`Ledger.verify`. ``ok`` is False when ``problems`` is not
    empty; ``unfinished`` entries (reserved, counted as spent) are reported but are not problems."""

    ok: bool
    entries: int
    head_hash: str
    problems: tuple[str, ...]
    unfinished: tuple[Entry, ...]

    def raise_for_problems(self) -> None:
        if self.problems:
            raise LedgerError("ledger verification failed: " + "; ".join(self.problems) + ". " + _TAMPERED)


class LedgerCharge(Charge):
    """A :class:`Charge` backed by a ledger entry. ``record(payload)`` stores the release with
    the commit so an idempotent rerun can re-emit it; a replayed charge (``replayed_payload`` is
    not None) spent nothing and refuses draws."""

    def __init__(
        self, reserved: PrivacyLoss, *, entry_id: str | None, windows: tuple[str, ...],
        replayed_payload: Any = None,
    ) -> None:
        super().__init__(reserved, entry_id=entry_id)
        self.windows = windows
        self.replayed_payload = replayed_payload
        self._payload_text: str | None = None

    def consume(self, loss: PrivacyLoss) -> None:
        if self.replayed_payload is not None:
            raise InternalError("noise drawn against a replayed charge; return charge.replayed_payload instead")
        super().consume(loss)

    def record(self, payload: Any) -> None:
        """Store ``payload`` (JSON-serialisable released values and metadata) with the commit."""
        if self.replayed_payload is not None:
            raise InternalError("record() on a replayed charge; return charge.replayed_payload instead")
        try:
            self._payload_text = json.dumps(payload)
        except (TypeError, ValueError) as exc:
            raise InternalError(f"release payload is not JSON-serialisable: {exc}") from None


ANY_PROTECTION = object()
"""For :meth:`Ledger.charge`: a release that does not depend on a protection policy (training)."""


class Ledger:
    """Public: the budget ledger of one store. Open with :meth:`open`; safe to share between
    threads and processes."""

    def __init__(self, path: Path, conn: sqlite3.Connection, store_id: str | None = None) -> None:
        self.path = path
        self._conn = conn
        self._store_id = store_id
        self._lock = threading.RLock()
        self._host = socket.gethostname()
        self._file: tuple[int, int] | None = None  # (device, inode) of the file opened: see _check_file

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = False, store_id: str | None = None) -> Ledger:
        """Open the ledger at ``path``; with ``create``, make a new one if (and only if) no file
        exists there. A corrupt, foreign or unreadable file raises LedgerError: never reset.

        ``store_id`` (the store manifest's id; every store-backed caller passes it) refuses a
        ledger bound to another store; a symbolic link at ``path`` is always refused."""
        path = Path(path)
        created = False
        _refuse_links(path)
        if not os.path.lexists(path):
            if not create:
                raise LedgerError(
                    f"no budget ledger at {path}; create one with `dplogs budget set --store "
                    f"{path.parent} --epsilon E --delta D` (nothing was released)"
                )
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
                created = True
            except FileExistsError:
                pass  # another process is creating it: wait for its schema below
            except OSError as exc:
                raise _storage_error(exc, path, "create") from None
        try:
            conn = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _storage_error(exc, path, "open") from None
        ledger = cls(path, conn, store_id)
        try:
            ledger._setup(created)
            _refuse_links(path)  # swapped for a link while SQLite opened it
            opened = os.stat(path)
            ledger._file = (opened.st_dev, opened.st_ino)
            ledger._check_owner()
        except (sqlite3.Error, OSError) as exc:
            conn.close()
            raise _storage_error(exc, path, "open") from None
        except DplogsError:
            conn.close()
            raise
        return ledger

    def _setup(self, created: bool) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        if created:
            c.execute("PRAGMA journal_mode = WAL")
            with self._tx("create"):
                for stmt in (*_SCHEMA.split(";"), *_GUARD):
                    if stmt.strip():
                        c.execute(stmt)
                for key, value in (("format", FORMAT_VERSION), ("head_hash", _GENESIS), ("ledger_id", uuid.uuid4().hex),
                                   ("entry_count", "0"), ("window_policy", "month"),
                                   ("caps_hash", _caps_hash(c))):
                    c.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
                if self._store_id is not None:
                    c.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)", (self._store_id,))
                self._seal_state(c)
            if ledger_anchor.read(self.path) is None:  # a record of a lost ledger stays: it is evidence
                ledger_anchor.write(self.path, ledger_anchor.HeadRecord(self._meta("ledger_id"), 0, _GENESIS))
        else:
            if c.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("integrity check failed")
            deadline = time.monotonic() + 2.0
            while not self._has_schema():
                # only a just-created file may be a concurrent creator's, still being set up
                creating = time.time() - self.path.stat().st_mtime < 2.0
                if not creating or time.monotonic() > deadline:
                    raise LedgerError(
                        f"{self.path} is not a dplogs budget ledger (no ledger tables); point --store "
                        "at the right store (nothing was released)"
                    )
                time.sleep(0.05)
            c.execute("PRAGMA journal_mode = WAL")
        c.execute("PRAGMA synchronous = FULL")  # a committed reservation survives power loss
        fmt = self._meta("format")
        if fmt not in (FORMAT_VERSION, _UNSEALED_FORMAT):
            raise LedgerError(f"ledger format {fmt!r} is not supported (expected {FORMAT_VERSION}); upgrade dplogs")

    def _check_owner(self) -> None:
        """Refuse a ledger bound to another store than the one opening it (copied or linked in)."""
        owner = self._meta("store_id")
        if self._store_id is not None and owner is not None and owner != self._store_id:
            raise LedgerError(
                f"the budget ledger {self.path} belongs to another store (store id {owner}; this store "
                f"is {self._store_id}): it was copied or linked here. A store's spend is only in its own "
                "ledger; nothing was released"
            )

    def identity(self) -> str:
        """This ledger's random id (``meta.ledger_id``), which its store's manifest records so a
        ledger deleted and re-created, or swapped for another, is seen. A ledger made before ids
        gets one here."""
        own = self._meta("ledger_id")
        if own is None:
            with self._tx("give an id to"):
                self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('ledger_id', ?)", (uuid.uuid4().hex,))
            own = self._meta("ledger_id")
        return own

    def record_replacement(self, lost_id: str) -> None:
        """Note in this new ledger that it replaces the lost ledger ``lost_id`` (shown by ``verify``)."""
        with self._tx("record the lost ledger in"):
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('replaces_lost_ledger', ?)",
                               (f"{lost_id} (lost; replaced {_now()})",))
        self._write_head_record()

    def reset_head_record(self) -> None:
        """Write a new head record from this ledger where the old one is missing or unreadable
        (``dplogs budget set --reset-head-record``, the administrator's act after checking that this
        is the store's current ledger), and note it in the ledger (shown by ``verify``). Refused
        where the record is readable: a ledger that does not extend a readable record is an older
        copy or another ledger, and a new record would erase the spend recorded since."""
        record = ledger_anchor.read(self.path)
        if isinstance(record, ledger_anchor.HeadRecord):
            raise UsageError(f"--reset-head-record rewrites only a missing or unreadable head record; "
                             f"{ledger_anchor.record_path(self.path)} is readable (nothing was changed)")
        chain = [p for p in self.verify().problems if "head record" not in p]
        if chain:
            raise LedgerError("the ledger itself fails verification, so no head record is written for it: "
                              + "; ".join(chain))
        with self._tx("note the reset head record in"):
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('head_record_reset', ?)",
                               (f"{_now()} (the record was {record or 'missing'})",))
        ledger_anchor.write(self.path, ledger_anchor.HeadRecord(
            self._meta("ledger_id"), int(self._meta("entry_count") or 0), self._meta("head_hash") or _GENESIS),
            replace_unreadable=True)

    def record_protection(self, version: int, digest: str) -> None:
        """Seal the store's protection policy in force (``dplogs protect`` writes it, then records
        it here): :meth:`protection` is what a release may run under, so a policy file edited,
        replaced or rolled back by hand (say, networks widened to every address) no longer matches
        and is refused (:func:`dplogs.engine.policy.check_recorded`)."""
        with self._tx("record the protection policy in") as c:
            self._guard(c)  # never launder a forgery into a new seal
            c.execute("INSERT OR REPLACE INTO meta VALUES ('protection', ?)",
                      (_canonical({"version": int(version), "digest": str(digest)}),))
            self._seal_state(c)

    def protection(self) -> tuple[int, str] | None:
        """The protection policy ``dplogs protect`` last recorded: (version, digest), or None."""
        text = self._read("SELECT value FROM meta WHERE key = 'protection'")
        if not text:
            return None
        try:  # sealed by the state seal; an edited value is tampering, not a bug (found by faults4: exit 70)
            doc = json.loads(text[0][0])
            return int(doc["version"]), str(doc["digest"])
        except (TypeError, ValueError, KeyError) as exc:
            raise LedgerError(f"ledger verification failed: the recorded protection policy is unreadable "
                              f"({type(exc).__name__}): the ledger was changed outside dplogs. {_TAMPERED}") from None

    def head_record_reset(self) -> str | None:
        """When the head record was last rewritten by :meth:`reset_head_record` (and what it was)."""
        return self._meta("head_record_reset")

    def replaced_lost(self) -> str | None:
        """When this ledger was started in place of a lost one (``budget set --replace-lost-ledger``):
        the lost ledger's id and the time, or None."""
        return self._meta("replaces_lost_ledger")

    def _has_schema(self) -> bool:
        names = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return {"meta", "caps", "entries"} <= names and self._conn.execute(
            "SELECT 1 FROM meta WHERE key='format'").fetchone() is not None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self, doing: str, *, after: str = "") -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: the write lock is taken before anything is read,
        so check-and-spend is atomic across processes. SQLite errors become LedgerIOError (disk
        full, read-only, permission) or LedgerError (corruption), naming ``doing``; ``after`` is
        appended to the message (what the failure means for the caller)."""
        with self._lock:
            try:
                self._begin_immediate()
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:  # a failed COMMIT may already have rolled back
                        with contextlib.suppress(sqlite3.Error):
                            self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise _storage_error(exc, self.path, doing, after=after) from None

    def _begin_immediate(self) -> None:
        # SQLite's own busy handler backs off to 100 ms sleeps, which starves writers under
        # contention; poll the write lock at a short fixed interval instead
        self._conn.execute("PRAGMA busy_timeout = 0")
        deadline = time.monotonic() + _LOCK_WAIT_S
        try:
            while True:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if _io_kind(exc) != "busy":
                        raise
                    if time.monotonic() > deadline:
                        raise ConcurrentRun(
                            f"the budget ledger {self.path} stayed locked by another process for "
                            f"{_LOCK_WAIT_S:.0f} s; nothing was charged — retry later, or look for a stuck "
                            "dplogs process"
                        ) from None
                    time.sleep(0.0005)
        finally:
            self._conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise _storage_error(exc, self.path, "read") from None

    # -- caps ----------------------------------------------------------------------------
    @property
    def window_policy(self) -> str:
        return self._read("SELECT value FROM meta WHERE key = 'window_policy'")[0][0]

    def set_caps(
        self, *, window_policy: str, epsilon: float, delta: float = 0.0, rho: float | None = None,
        window: str | None = None,
    ) -> None:
        """Set the caps of every window of ``window_policy`` (or only of ``window``). The policy
        cannot change once releases are charged: their guarantee is stated per window."""
        check_policy(window_policy)
        caps = Caps(epsilon=epsilon, delta=delta, rho=rho)
        if window is not None:
            check_window(window, window_policy)
        with self._tx("set caps in") as c:
            self._guard(c)  # never launder a forgery into a new seal
            current = self._meta("window_policy")
            if current != window_policy and c.execute("SELECT 1 FROM entries LIMIT 1").fetchone():
                raise UsageError(
                    f"this ledger already charges {current} windows; its window policy cannot change "
                    f"to {window_policy} (ingest into a new store for a different policy)"
                )
            c.execute("UPDATE meta SET value = ? WHERE key = 'window_policy'", (window_policy,))
            c.execute(
                "INSERT OR REPLACE INTO caps VALUES (?, ?, ?, ?, ?, ?)",
                (window_policy, window or _ALL_WINDOWS, caps.epsilon, caps.delta, caps.rho, _now()),
            )
            c.execute("UPDATE meta SET value = ? WHERE key = 'caps_hash'", (_caps_hash(c),))
            self._seal_state(c)

    def bind(self) -> None:
        """Bind an unbound ledger, even one holding releases, to the store it was opened for
        (``store_id``). Only the store's administrator does this (``dplogs budget set``, the demo
        for its own store); a ledger bound to another store stays refused."""
        if self._store_id is None:
            raise InternalError("bind() needs a ledger opened with the store's store_id")
        with self._tx("bind") as c:
            self._guard(c, bind=True)
            self._seal_state(c)

    def caps(self, window: str | None = None) -> Caps | None:
        """The caps that apply to ``window`` (its own, else the policy-wide ones), or None."""
        rows = self._read(
            "SELECT window, epsilon, delta, rho FROM caps WHERE policy = "
            "(SELECT value FROM meta WHERE key='window_policy') AND window IN (?, ?)",
            (window or _ALL_WINDOWS, _ALL_WINDOWS),
        )
        rows.sort(key=lambda r: r[0] == _ALL_WINDOWS)
        return Caps(epsilon=rows[0][1], delta=rows[0][2], rho=rows[0][3]) if rows else None

    # -- spend ---------------------------------------------------------------------------
    def _sums(self, window: str) -> tuple[LossSums, int, int]:
        rows = self._read(
            "SELECT epsilon, delta, rho, status FROM entries WHERE status IN (?, ?, ?) AND EXISTS "
            "(SELECT 1 FROM json_each(entries.windows) WHERE value = ?)",
            (*SPENT_STATUSES, window),
        )
        sums = LossSums.of(PrivacyLoss(epsilon=e, delta=d, rho=r) for e, d, r, _ in rows)
        return sums, len(rows), sum(1 for *_, s in rows if s == "reserved")

    def spent(self, window: str) -> TotalLoss:
        """The composed loss charged to ``window`` (reserved entries included)."""
        caps = self.caps(window)
        with self._lock:
            sums = self._sums(window)[0]
        return compose(sums, delta_cap=caps.delta if caps else 0.0)

    def remaining(self, window: str) -> Remaining:
        """What ``window`` can still spend (zero when no cap is set)."""
        return self.budget(window).remaining

    def budget(self, window: str) -> WindowBudget:
        caps = self.caps(window)
        with self._lock:
            sums, n, unfinished = self._sums(window)
        left = remaining(sums, caps) if caps else Remaining(epsilon=0.0, delta=0.0, rho=0.0)
        return WindowBudget(
            window=window, caps=caps, spent=compose(sums, delta_cap=caps.delta if caps else 0.0),
            remaining=left, entries=n, unfinished=unfinished,
            over_cap=caps is not None and not fits(sums, caps),
        )

    def windows(self) -> list[str]:
        """Every window some entry was charged to, in order."""
        rows = self._read("SELECT DISTINCT value FROM entries, json_each(entries.windows) ORDER BY value")
        return [r[0] for r in rows]

    # -- the release protocol ------------------------------------------------------------
    @contextlib.contextmanager
    def charge(
        self, loss: PrivacyLoss, *, windows: Sequence[str], caller: str, query: str | None = None,
        idempotency_key: str | None = None, mechanisms: Sequence[str] = (),
        protection: tuple[int, str] | None | object = ANY_PROTECTION,
    ) -> Iterator[LedgerCharge]:
        """Reserve ``loss`` in every window of ``windows``, yield the charge, then commit (or
        refund if no noise was drawn before an exception). See the module docstring.
        ``protection``: the policy (version, digest; None for none) the release was prepared
        under, checked against :meth:`protection` in the reserving transaction, so a ``dplogs
        protect`` that finished meanwhile is refused (ConcurrentRun) before anything is charged.
        A release under ``idempotency_key`` holds that key's lock from before the reservation to
        after the commit (:meth:`_key_lock`)."""
        with self._key_lock(idempotency_key):
            charge, entry_id = self._reserve(loss, windows, caller, query, idempotency_key, mechanisms, protection)
            if charge.replayed_payload is not None:
                yield charge
                return
            try:
                yield charge
            except BaseException as exc:
                charge.close()
                status = "failed-after-noise" if charge.noise_drawn else "refunded"
                try:
                    self._finish(entry_id, status, charge._payload_text)
                except (sqlite3.Error, DplogsError) as finish_exc:
                    exc.add_note(f"the ledger could not mark entry {entry_id} {status} ({finish_exc}); it stays reserved and counts as spent")
                raise
            charge.close()
            self._finish(entry_id, "committed", charge._payload_text)

    @contextlib.contextmanager
    def _key_lock(self, key: str | None) -> Iterator[None]:
        """Hold ``locks/key-<hash of key>.lock`` beside the ledger (``flock``: the kernel frees it
        when its holder dies, on any host of a shared file system) for a release under ``key``.
        Another run holding it is in progress: refused (75, nothing charged). Holding it, any entry
        left ``reserved`` under the key is a dead run's (it stays spent) whatever pid and host it
        names: judged by pid, a run killed on another host, or whose pid a later process reused
        (a container's dplogs is pid 1 every time), blocked its key forever."""
        if key is None:
            yield
            return
        if not isinstance(key, str) or not key:
            raise UsageError("an idempotency key must be a non-empty string, e.g. 'report-id/2026-11'")
        locks = self.path.parent / "locks"
        try:
            fd = lock_file(locks, f"key-{_sha(key)[:24]}.lock")
        except TimeoutError:
            raise ConcurrentRun(
                f"a release with idempotency key {key!r} is in progress in another run; nothing was charged — "
                "retry when it has finished to get its stored release"
            ) from None
        except OSError as exc:
            raise _storage_error(exc, locks, "lock the idempotency key in") from None
        try:
            yield
        finally:
            os.close(fd)

    def _reserve(
        self, loss: PrivacyLoss, windows: Sequence[str], caller: str, query: str | None,
        idempotency_key: str | None, mechanisms: Sequence[str], protection: tuple[int, str] | None | object,
    ) -> tuple[LedgerCharge, str]:
        if not isinstance(loss, PrivacyLoss):
            raise InternalError(f"ledger.charge needs a PrivacyLoss, got {type(loss).__name__}")
        if isinstance(windows, str) or not windows:
            raise UsageError("a release must be charged to at least one budget window (a list of keys)")
        if not caller or not isinstance(caller, str):
            raise UsageError(f"caller must name who releases ({CALLERS_HINT})")
        wins = tuple(sorted(set(windows)))
        with self._tx("reserve in") as c:
            self._guard(c)  # a ledger that fails verification releases (and replays) nothing
            policy = self._meta("window_policy")
            if c.execute("SELECT 1 FROM caps WHERE policy = ?", (policy,)).fetchone() is None:
                # a setup step left out, not a spent budget: 77 tells a scheduler that the next
                # window goes on, and without caps no window ever would
                raise UsageError(
                    f"no budget caps are set; set them with `dplogs budget set --store "
                    f"{self.path.parent} --epsilon E --delta D` (nothing was charged)"
                )
            for w in wins:
                try:
                    check_window(w, policy)
                except UsageError:
                    raise UsageError(
                        f"the release is charged to {', '.join(wins)} but this ledger's budget "
                        f"windows are {policy}s; the store's budget window and its ledger disagree "
                        f"(run `dplogs budget set --store {self.path.parent}` to align them before "
                        "any release)"
                    ) from None
            if idempotency_key is not None:
                replay = self._replay(c, idempotency_key)
                if replay is not None:
                    return replay, ""
            if protection is not ANY_PROTECTION and self.protection() != protection:
                raise ConcurrentRun(
                    "`dplogs protect` set another protection policy while this release was prepared under "
                    f"{'none' if protection is None else f'version {protection[0]}'}; nothing was released or "
                    "charged: run it again to release under the policy now in force")
            for w in wins:
                caps = self.caps(w)
                if caps is None:
                    raise BudgetExhausted(
                        f"no budget cap is set for window {w}; set one with `dplogs budget set "
                        f"--store {self.path.parent} --epsilon E --delta D` (nothing was charged)"
                    )
                sums = self._sums(w)[0]
                if not fits(sums + LossSums.one(loss), caps):
                    refused = (w, sums, caps)
                    break
            else:
                refused = None
                entry_id = self._insert(c, loss, wins, policy, caller, query, idempotency_key, mechanisms)
                if not self._meta("anchored") and isinstance(ledger_anchor.read(self.path), ledger_anchor.HeadRecord):
                    c.execute("INSERT INTO meta VALUES ('anchored', '1')")  # the record is now required
                self._seal_state(c)
        if refused is None:
            self._write_head_record()  # after the commit: the record never runs ahead of the ledger
        if refused is not None:  # explained outside the transaction: other writers need not wait
            w, sums, caps = refused
            raise BudgetExhausted(
                f"release of {_fmt_loss(loss)} exceeds the budget of window {w}; budget left: "
                f"{remaining(sums, caps)} (nothing was charged; {exceeded_advice(sums, loss, caps)})"
            )
        return LedgerCharge(loss, entry_id=entry_id, windows=wins), entry_id

    def _replay(self, c: sqlite3.Connection, key: str) -> LedgerCharge | None:
        """The committed release under ``key`` to re-emit, if any. Called under the key's lock, so
        an entry left reserved under it is a dead run's: it stays spent, and a new release may
        proceed (as after refunded or failed attempts)."""
        rows = c.execute(
            f"SELECT {_ENTRY_COLUMNS}, seal FROM entries WHERE idempotency_key = ? AND status = 'committed' ORDER BY seq",
            (key,),
        ).fetchall()
        for *cols, seal in rows:
            e = _entry(cols)
            if e.payload is None:
                raise LedgerError(
                    f"entry {e.id} with idempotency key {key!r} was committed without a recorded "
                    "release, so it cannot be re-emitted; use a new idempotency key"
                )
            if _entry_problems(e, cols[17], seal):  # what is re-emitted is what was released
                raise LedgerError(f"the stored release of entry #{e.seq} ({e.id}) was edited. {_TAMPERED}")
            return LedgerCharge(e.loss, entry_id=e.id, windows=e.windows, replayed_payload=e.payload)
        return None

    def _insert(
        self, c: sqlite3.Connection, loss: PrivacyLoss, wins: tuple[str, ...], policy: str, caller: str,
        query: str | None, key: str | None, mechanisms: Sequence[str],
    ) -> str:
        head = self._meta("head_hash")
        count = int(self._meta("entry_count") or 0)
        last = c.execute("SELECT max(seq) FROM entries").fetchone()[0] or 0
        if last != count:
            raise LedgerError(
                f"the ledger's entry count ({count}) does not match its entries ({last}); it was "
                f"edited — run `dplogs budget verify`. {_TAMPERED}"
            )
        now = _now()
        entry = Entry(
            seq=count + 1, id=uuid.uuid4().hex, policy=policy, windows=wins, loss=loss,
            mechanisms=tuple(str(m) for m in mechanisms), query=query, query_hash=_sha(query or ""),
            caller=caller, idempotency_key=key, pid=os.getpid(), host=self._host, status="reserved",
            created_at=now, updated_at=now, payload=None, prev_hash=head, entry_hash="",
        )
        entry_hash = _sha(head + "\n" + _canonical(_content(entry)))
        seal = _seal(entry_hash, "reserved", now, None)
        c.execute(
            "INSERT INTO entries (seq, id, policy, windows, epsilon, delta, rho, mechanisms, query, "
            "query_hash, caller, idempotency_key, pid, host, status, created_at, updated_at, payload, "
            "prev_hash, entry_hash, seal) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (entry.seq, entry.id, policy, json.dumps(list(wins)), loss.epsilon, loss.delta, loss.rho,
             json.dumps(list(entry.mechanisms)), query, entry.query_hash, caller, key, entry.pid,
             self._host, "reserved", now, now, None, head, entry_hash, seal),
        )
        c.execute("UPDATE meta SET value = ? WHERE key = 'head_hash'", (entry_hash,))
        c.execute("UPDATE meta SET value = ? WHERE key = 'entry_count'", (str(count + 1),))
        return entry.id

    def _finish(self, entry_id: str, status: str, payload_text: str | None) -> None:
        after = f" Entry {entry_id} stays reserved and counts as spent; do not use the values of this run."
        with self._tx(f"mark entry {entry_id} {status} in", after=after) as c:
            # the status is recorded either way; the seal is renewed only over an intact state, so
            # a tampering that happened meanwhile stays visible
            intact = self._meta("format") == FORMAT_VERSION and not self._state_problems(c)
            row = c.execute("SELECT entry_hash, status FROM entries WHERE id = ?", (entry_id,)).fetchone()
            if row is None or row[1] != "reserved":
                raise InternalError(f"entry {entry_id} is not reserved (found {row}); cannot mark it {status}")
            now = _now()
            c.execute(
                "UPDATE entries SET status = ?, updated_at = ?, payload = ?, seal = ? WHERE id = ?",
                (status, now, payload_text, _seal(row[0], status, now, payload_text), entry_id),
            )
            if intact:
                self._seal_state(c)

    # -- integrity enforcement -----------------------------------------------------------
    def _check_file(self) -> None:
        """The file at :attr:`path` must still be the one this connection opened: a long-lived
        engine keeps its ledger open, and went on charging a ledger file deleted meanwhile (spend
        no later run reads) or, once another was put in its place, refused it as rolled back."""
        if self._file is None:
            return
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            raise LedgerError(
                f"the budget ledger {self.path} was removed while this run had it open; what the store spent "
                "cannot be known, so nothing was released or charged. Put that same file back, or, as the "
                f"store's administrator, `dplogs budget set --store {self.path.parent} --replace-lost-ledger ...`"
            ) from None
        except OSError as exc:
            raise _storage_error(exc, self.path, "check") from None
        if (now.st_dev, now.st_ino) != self._file:
            raise ConcurrentRun(
                f"the budget ledger {self.path} was replaced by another file since this run opened it (`dplogs "
                "budget set --replace-lost-ledger`, or a copy put back); nothing was released or charged: run it "
                "again (an embedding service: Engine.close(), then use the engine again) to open and check the "
                "ledger now there")

    def _guard(self, c: sqlite3.Connection, *, bind: bool = False) -> None:
        """Run first in every write transaction: refuse a ledger that fails verification (O(1)
        through the state seal), upgrade an unsealed format-1 ledger after one full verification,
        and bind an unbound ledger to the opening store. The caller re-seals after its write."""
        self._check_file()
        if self._meta("format") == _UNSEALED_FORMAT:
            self.verify().raise_for_problems()
            for stmt in _GUARD:
                c.execute(stmt)
            c.execute("UPDATE meta SET value = ? WHERE key = 'format'", (FORMAT_VERSION,))
        elif problems := self._state_problems(c):
            found = self.verify().problems  # the full picture, paid only on the way to a refusal
            raise LedgerError(
                "ledger verification failed: " + "; ".join(dict.fromkeys([*found, *problems])) + ". "
                + _TAMPERED
            )
        if _caps_hash(c) != self._meta("caps_hash"):
            raise LedgerError(
                f"the budget caps were changed outside `dplogs budget set` (run `dplogs budget verify`). {_TAMPERED}"
            )
        if problems := self._head_record_problems(c):
            raise LedgerError("ledger verification failed: " + "; ".join(problems) + ". " + _ROLLED_BACK)
        self._check_owner()
        if self._store_id is not None and self._meta("store_id") is None:
            if not bind and c.execute("SELECT 1 FROM entries LIMIT 1").fetchone():
                raise LedgerError(
                    f"the budget ledger {self.path} is not bound to any store but already holds releases "
                    "(made before store ids, or copied from elsewhere); if it is this store's own ledger, "
                    f"bind it once with `dplogs budget set --store {self.path.parent}` (nothing was released)"
                )
            c.execute("INSERT INTO meta VALUES ('store_id', ?)", (self._store_id,))

    def _state_problems(self, c: sqlite3.Connection) -> list[str]:
        """What the O(1) check finds wrong: a missing write counter or trigger, a state that does
        not match the seal dplogs last wrote, or a newest entry that does not hash to the head."""
        triggers = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        if not set(_COUNTER_TRIGGERS) <= triggers or c.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'writes'").fetchone() is None:
            return ["the ledger's write counter or its triggers were removed"]
        problems = []
        if self._meta("state_seal") != _state_seal(c):
            problems.append("the ledger was changed outside dplogs: its entries, entry count, head hash, caps, "
                            "window policy, store id or recorded protection policy no longer match the seal of "
                            "dplogs' last write")
        count = int(self._meta("entry_count") or 0)
        last = c.execute(f"SELECT {_ENTRY_COLUMNS}, seal FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        if last is None:
            if count != 0 or self._meta("head_hash") != _GENESIS:
                problems.append("the ledger records entries but holds none (entries were deleted)")
        else:
            *cols, seal = last
            try:
                e = _entry(cols)
            except (LedgerError, ValueError, TypeError, json.JSONDecodeError):
                return [*problems, f"the newest entry #{cols[0]} is unreadable"]
            if e.seq != count or e.entry_hash != self._meta("head_hash"):
                problems.append("the newest entry is not the recorded head of the chain")
            problems += _entry_problems(e, cols[17], seal)
        return problems

    def _head_record_problems(self, c: sqlite3.Connection) -> list[str]:
        """Whether the ledger extends its head record (:mod:`~dplogs.privacy.ledger_anchor`)."""
        record = ledger_anchor.read(self.path)
        hash_at: dict[int, str] = {0: _GENESIS}
        if isinstance(record, ledger_anchor.HeadRecord) and record.entries > 0:
            row = c.execute("SELECT entry_hash FROM entries WHERE seq = ?", (record.entries,)).fetchone()
            if row is not None:
                hash_at[record.entries] = row[0]
        return ledger_anchor.problems(
            record, ledger_id=self._meta("ledger_id"), entries=int(self._meta("entry_count") or 0), hash_at=hash_at,
            anchored=self._meta("anchored") == "1", record_name=ledger_anchor.record_path(self.path).name)

    def _write_head_record(self) -> None:
        with self._lock:
            own, count, head = self._meta("ledger_id"), self._meta("entry_count"), self._meta("head_hash")
        if own is not None:
            ledger_anchor.write(self.path, ledger_anchor.HeadRecord(own, int(count or 0), head or _GENESIS))

    def _seal_state(self, c: sqlite3.Connection) -> None:
        c.execute("INSERT OR REPLACE INTO meta VALUES ('state_seal', ?)", (_state_seal(c),))

    # -- reading and verifying -----------------------------------------------------------
    def history(self, *, limit: int | None = None, window: str | None = None) -> list[Entry]:
        """Entries, newest first (all statuses), optionally only those charged to ``window``."""
        sql = f"SELECT {_ENTRY_COLUMNS} FROM entries"
        args: list[Any] = []
        if window is not None:
            sql += " WHERE EXISTS (SELECT 1 FROM json_each(entries.windows) WHERE value = ?)"
            args.append(window)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            if limit < 1:
                raise UsageError(f"--limit must be >= 1, got {limit}")
            sql += " LIMIT ?"
            args.append(limit)
        return [_entry(r) for r in self._read(sql, args)]

    def committed_keys(self, prefix: str) -> list[str]:
        """Idempotency keys starting with ``prefix`` whose release is committed, sorted (how a
        scheduled report finds the periods it already released)."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._read(
            "SELECT DISTINCT idempotency_key FROM entries WHERE status = 'committed' "
            "AND idempotency_key LIKE ? ESCAPE '\\' ORDER BY idempotency_key", (pattern,))
        return [r[0] for r in rows if r[0].startswith(prefix)]  # LIKE ignores ASCII case

    def verify(self, *, pinned: Sequence[str] = ()) -> VerifyReport:
        """Recompute the hash chain and seals; compare with the head hash and count in ``meta``;
        check the caps hash and (format 2) the state seal the per-release check relies on.
        ``pinned``: head hashes recorded outside the store earlier, each of which the chain must
        contain (it extends that history)."""
        problems: list[str] = []
        unfinished: list[Entry] = []
        with self._lock:
            try:
                check = self._conn.execute("PRAGMA quick_check").fetchone()[0]
                rows = self._conn.execute(
                    f"SELECT {_ENTRY_COLUMNS}, seal FROM entries ORDER BY seq").fetchall()
                head, count = self._meta("head_hash"), self._meta("entry_count")
                caps_hash, stored_caps_hash = _caps_hash(self._conn), self._meta("caps_hash")
                sealed = self._meta("format") == FORMAT_VERSION
                state = self._state_problems(self._conn) if sealed else []
                state += self._head_record_problems(self._conn)
            except sqlite3.Error as exc:
                raise _storage_error(exc, self.path, "read") from None
        if check != "ok":
            problems.append(f"SQLite integrity check: {check}")
        running = _GENESIS
        for i, row in enumerate(rows, start=1):
            *cols, seal = row
            try:
                e = _entry(cols)
            except (LedgerError, ValueError, json.JSONDecodeError) as exc:
                problems.append(f"entry #{cols[0]} is unreadable ({exc})")
                running = cols[-1]
                continue
            if e.seq != i:
                problems.append(f"entry #{e.seq} found where #{i} was expected (an entry was deleted or reordered)")
            if e.prev_hash != running:
                problems.append(f"entry #{e.seq} does not link to the previous entry (an entry was deleted, inserted or reordered)")
            problems += _entry_problems(e, cols[17], seal)
            if e.status == "reserved":
                unfinished.append(e)
            running = e.entry_hash
        if str(len(rows)) != count:
            problems.append(f"the ledger records {count} entries but holds {len(rows)} (entries were deleted or added)")
        if running != head:
            problems.append("the last entry is not the recorded head of the chain (the newest entries were deleted or edited)")
        if caps_hash != stored_caps_hash:
            problems.append("the budget caps were edited outside `dplogs budget set` (their hash does not match)")
        problems += [p for p in state if p not in problems]
        chain = {_GENESIS} | {r[-2] for r in rows}  # every entry hash (r[-1] is the seal)
        problems += [f"the pinned head {h} is not in the chain: the ledger (or the whole store) was put back "
                     "from an older copy, or rewritten" for h in pinned if h not in chain]
        return VerifyReport(ok=not problems, entries=len(rows), head_hash=head or "", problems=tuple(problems),
                            unfinished=tuple(unfinished))


_ENTRY_COLUMNS = (
    "seq, id, policy, windows, epsilon, delta, rho, mechanisms, query, query_hash, caller, "
    "idempotency_key, pid, host, status, created_at, updated_at, payload, prev_hash, entry_hash"
)


def _entry(r: Sequence[Any]) -> Entry:
    return Entry(
        seq=r[0], id=r[1], policy=r[2], windows=tuple(json.loads(r[3])),
        loss=PrivacyLoss(epsilon=r[4], delta=r[5], rho=r[6]), mechanisms=tuple(json.loads(r[7])),
        query=r[8], query_hash=r[9], caller=r[10], idempotency_key=r[11], pid=r[12], host=r[13],
        status=r[14], created_at=r[15], updated_at=r[16],
        payload=None if r[17] is None else json.loads(r[17]), prev_hash=r[18], entry_hash=r[19],
    )


def _content(e: Entry) -> dict[str, Any]:
    return {
        "seq": e.seq, "id": e.id, "policy": e.policy, "windows": list(e.windows),
        "epsilon": e.loss.epsilon, "delta": e.loss.delta, "rho": e.loss.rho,
        "mechanisms": list(e.mechanisms), "query": e.query, "query_hash": e.query_hash,
        "caller": e.caller, "idempotency_key": e.idempotency_key, "pid": e.pid, "host": e.host,
        "created_at": e.created_at,
    }


def _entry_problems(e: Entry, payload_text: str | None, seal: str) -> list[str]:
    """An entry whose content does not match its hash, or status and payload their seal."""
    problems = []
    if _sha(e.prev_hash + "\n" + _canonical(_content(e))) != e.entry_hash:
        problems.append(f"entry #{e.seq} ({e.id}) was edited: its content does not match its hash")
    if _seal(e.entry_hash, e.status, e.updated_at, payload_text) != seal:
        problems.append(f"entry #{e.seq} ({e.id}) was edited: its status or payload does not match its seal")
    return problems


def _state_seal(c: sqlite3.Connection) -> str:
    """SHA-256 of everything the O(1) check trusts: the write counter (which triggers bump on every
    change to entries), entry count, head hash, caps hash, window policy, store id and the recorded
    protection policy (absent keys are left out, so a ledger's seal from before a key existed holds)."""
    writes = c.execute("SELECT n FROM writes").fetchall()
    meta = dict(c.execute("SELECT key, value FROM meta WHERE key IN "
                          "('entry_count', 'head_hash', 'caps_hash', 'window_policy', 'store_id', 'anchored', "
                          "'protection')").fetchall())
    return _sha("dplogs ledger state\n" + _canonical([[w[0] for w in writes], meta]))


def _caps_hash(c: sqlite3.Connection) -> str:
    rows = c.execute("SELECT policy, window, epsilon, delta, rho FROM caps ORDER BY policy, window").fetchall()
    return _sha(_canonical([list(r) for r in rows]))


def _seal(entry_hash: str, status: str, updated_at: str, payload_text: str | None) -> str:
    return _sha(entry_hash + "\n" + _canonical([status, updated_at, payload_text]))


_TAMPERED = (
    "Nothing was released or charged. Do not release from this store: keep the ledger file as it is "
    "for investigation (`dplogs budget verify` lists the problems). Never replace it with an older "
    "copy: that would erase recorded spend"
)

_ROLLED_BACK = (
    "Nothing was released or charged. Put the store's current ledger back (what it spent since the copy "
    "was made is recorded only there); `dplogs budget verify` lists the problems"
)

_IO_HINTS = {
    "full": "the disk holding it is full (or over quota); free space there and retry",
    "readonly": "it or its store directory is read-only (a read-only file system or mount); make the store "
                "writable and retry",
    "denied": "permission was denied; run dplogs as the store's owner or fix the permissions, then retry",
    "cantopen": "it cannot be opened (no permission, a read-only store directory, or a missing directory); "
                "fix that and retry",
    "io": "the storage reported an I/O error; check the disk and retry",
}


def _io_kind(exc: BaseException) -> str | None:
    """What kind of storage trouble ``exc`` is ("busy" for a lock held elsewhere), or None when it
    is not storage trouble (corruption, a foreign file)."""
    if isinstance(exc, OSError):
        return {errno.ENOSPC: "full", errno.EDQUOT: "full", errno.EROFS: "readonly", errno.EACCES: "denied",
                errno.EPERM: "denied"}.get(exc.errno, "io")
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    text = str(exc).lower()
    for kind, sqlite_code, words in (
        ("full", 13, ("disk is full",)), ("readonly", 8, ("readonly", "read-only")),
        ("denied", 3, ("access permission denied",)), ("cantopen", 14, ("unable to open",)),
        ("io", 10, ("disk i/o error",)), ("busy", 5, ("database is locked", "busy")), ("busy", 6, ("locked",)),
    ):
        if primary == sqlite_code or any(w in text for w in words):
            return kind
    return None


_ROOM_FOR_A_WRITE = 64 << 10  # a -shm file grows 32 KiB at a time; a charge writes a few pages


def _space_left(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``path``."""
    try:
        fs = os.statvfs(path.parent)
    except OSError:
        return _ROOM_FOR_A_WRITE  # cannot tell: keep SQLite's own word
    return fs.f_bavail * fs.f_frsize


def _storage_error(exc: BaseException, path: Path, doing: str, *, after: str = "") -> DplogsError:
    """The error to raise for ``exc`` met while ``doing`` (create, open, read, reserve in, ...)."""
    kind = _io_kind(exc)
    if kind == "io" and _space_left(path) < _ROOM_FOR_A_WRITE:
        kind = "full"  # SQLite reports a full disk met while growing its -shm or -wal file as an I/O error
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if kind == "busy":
        return ConcurrentRun(f"cannot {doing} the budget ledger {path}: another process holds it ({detail}); "
                             f"nothing was charged — retry later.{after}")
    if kind is not None:
        return LedgerIOError(
            f"cannot {doing} the budget ledger {path} ({detail}): {_IO_HINTS[kind]}. This is an I/O "
            f"problem, not corruption: a failed write is rolled back and the ledger stays intact; "
            f"nothing was released.{after}"
        )
    return LedgerError(f"cannot {doing} the budget ledger {path}: it is corrupt or unreadable ({detail}). "
                       f"{_TAMPERED}.{after}")


def _refuse_links(path: Path) -> None:
    """A ledger (or its -wal/-shm file) that is a symbolic link, or a ledger with other hard links,
    may be another store's: never follow it."""
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _storage_error(exc, path, "open") from None
        if stat.S_ISLNK(st.st_mode):
            raise LedgerError(f"{p} is a symbolic link; a store's budget ledger must be its own file, not a "
                              "link to another (nothing was released)")
        if p == path and st.st_nlink > 1:
            raise LedgerError(f"{p} has other hard links; a store's budget ledger must be its own file, not "
                              "shared with another store (nothing was released)")


def _fmt_loss(loss: PrivacyLoss) -> str:
    parts = [f"{n}={getattr(loss, n):.6g}" for n in ("epsilon", "delta", "rho") if getattr(loss, n)]
    return "(" + ", ".join(parts or ["zero loss"]) + ")"


class LedgerOfStore(Protocol):
    """What :func:`open_store_ledger` needs of a store (``dplogs.ingest.store.Store``)."""

    path: Path
    ledger_path: Path

    def recorded_ledger_id(self) -> str: ...

    def record_ledger_id(self, ledger_id: str) -> None: ...


def open_store_ledger(store: LedgerOfStore, *, create: bool, store_id: str | None,
                      replace_lost: bool = False) -> Ledger:
    """The ledger of ``store``: :meth:`Ledger.open`, checked against the ledger id the store's
    manifest recorded when its ledger was first opened. A recorded ledger that is missing, or a
    different one in its place (deleted and re-created, or swapped), raises :class:`LedgerError`
    (74): what the store spent cannot be known, and a fresh ledger would hand out the whole budget
    again. ``replace_lost`` (``dplogs budget set --replace-lost-ledger``, the administrator's
    explicit act) starts a new ledger in place of a missing one and records the loss in it."""
    recorded = store.recorded_ledger_id()
    missing = not os.path.lexists(store.ledger_path)
    if replace_lost and not (recorded and missing):
        raise UsageError(f"--replace-lost-ledger starts a new ledger only where the store's recorded ledger is "
                         f"missing; {store.ledger_path} is {'there' if not missing else 'not recorded yet'} "
                         "(nothing was changed)")
    if recorded and missing and not replace_lost:
        raise LedgerError(
            f"the budget ledger of store {store.path} is missing: the store recorded ledger {recorded}, and "
            f"{store.ledger_path.name} is gone. What this store already spent cannot be known, so nothing is "
            f"released. Put that same file back (a different or older copy is refused: it would undo recorded "
            f"spend), or, as the store's administrator, start a new ledger that records the loss: `dplogs budget "
            f"set --store {store.path} --replace-lost-ledger --epsilon E --delta D`"
        )
    ledger = Ledger.open(store.ledger_path, create=create or replace_lost, store_id=store_id)
    try:
        if replace_lost:
            ledger.record_replacement(recorded)
        # Reading commands (create=False) write nothing: they compare ids when both exist.
        own = ledger.identity() if create or replace_lost else ledger._meta("ledger_id")
        if recorded and own is not None and own != recorded and not replace_lost:
            raise LedgerError(
                f"{store.ledger_path} is not the budget ledger of store {store.path}: the store recorded ledger "
                f"{recorded}, this file is ledger {own} (the ledger was deleted and re-created, or swapped). What "
                "the store already spent cannot be known from it, so nothing is released; put the store's own "
                "ledger back"
            )
        if own is not None and own != recorded and (create or replace_lost):
            store.record_ledger_id(own)
    except BaseException:
        ledger.close()
        raise
    return ledger


class _CopyOf:
    """A store seen through a private copy of its ledger (:func:`open_store_ledger_copy`)."""

    def __init__(self, store: LedgerOfStore, ledger_path: Path) -> None:
        self.path, self.ledger_path, self._store = store.path, ledger_path, store

    def recorded_ledger_id(self) -> str:
        return self._store.recorded_ledger_id()

    def record_ledger_id(self, ledger_id: str) -> None:
        raise InternalError("a copy of a ledger is only read")


def open_store_ledger_copy(store: LedgerOfStore, *, store_id: str | None) -> Ledger:
    """The ledger of ``store`` read from a private temporary copy (the ledger, its WAL and its head
    record), for reading commands where SQLite cannot open it in place: a read-only mount or a
    forensic copy on read-only media, where nothing can write it meanwhile. The same checks as
    :func:`open_store_ledger` apply (store id, ledger id, head record, verification); the copy is
    removed when the ledger is closed or collected."""
    tmp = Path(tempfile.mkdtemp(prefix="dplogs-ledger-copy-"))
    try:
        for suffix in ("", "-wal", ledger_anchor.SUFFIX):
            src = store.ledger_path.with_name(store.ledger_path.name + suffix)
            if os.path.lexists(src):
                _refuse_links(src)
                shutil.copyfile(src, tmp / src.name)
        ledger = open_store_ledger(_CopyOf(store, tmp / store.ledger_path.name), create=False, store_id=store_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    weakref.finalize(ledger, shutil.rmtree, tmp, True)
    return ledger
