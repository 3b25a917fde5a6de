"""The Parquet store: events partitioned by day, the quarantine, and a small manifest.

Layout of a store directory ``STORE``::

    STORE/manifest.json                     dataset, privacy-unit rule (chain + unattributed), budget window,
                                            schema version, defaults
    STORE/ingested.json                     content fingerprint + format of ingested inputs (re-ingestion is a no-op)
    STORE/open_tails.json                   last lines stored while they had no newline, in case a writer
                                            was mid-line (dplogs.ingest.tails)
    STORE/events/day=YYYY-MM-DD/*.parquet   events: STORE_SCHEMA columns minus those all null in the file
                                            (scan() restores them); an event without a time is
                                            quarantined by its format, never stored
    STORE/quarantine/*.parquet              rejected records: QUARANTINE_SCHEMA + run_id + hash
    STORE/units/CODE.parquet                the unit dictionary (stores made with unit codes): the unit
                                            value of each code, appended in segments named by their
                                            first code (compacted past 64); events carry the code
                                            as UNIT_CODE (schema version 4)
    STORE/ledger.sqlite                     the privacy-budget ledger (owned by dplogs.privacy), bound
                                            to the manifest's store_id; the manifest records its ledger_id
    STORE/ledger.sqlite.head                the ledger's head record (dplogs.privacy.ledger_anchor): an
                                            older copy of the ledger put back no longer extends it
    STORE/locks/                            report-period lock files (dplogs.report.run)
    STORE/.ingest.lock, STORE/.events.lock  the writers' lock; the one releases share while they read
                                            events files, which a torn line's repair takes alone
    STORE/.manifest.lock                    held while the manifest is re-read and rewritten

Every file is written beside its target as ``.NAME.tmp`` and renamed, so a reader sees whole files
only; an ingest removes the temporary files a killed one left (under the writer lock). The store
never follows a symbolic link among its own files: a linked day partition or Parquet file is
refused (:class:`StoreError`), so it cannot make dplogs read, or show in an error, a file outside
the store (``events/`` and ``quarantine/`` themselves may be links to another disk). Failed writes (disk
full, read-only) raise :class:`StoreWriteError`.

Public API used by the engine and the detector::

    store = Store.open(path)
    store.scan()        # pl.LazyFrame with STORE_SCHEMA
    store.unit_codes()  # the unit dictionary, when the store's events carry unit codes
    store.manifest      # Manifest
    store.path, store.ledger_path
    store.identity      # the random store id its ledger must record (LedgerError for old stores)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from dplogs.errors import (
    ConcurrentRun, InternalError, LedgerError, LedgerIOError, StoreDamaged, StoreError, StoreWriteError, UsageError,
)
from dplogs.files import NotAFile, read_regular
from dplogs.ingest.base import QUARANTINE_SCHEMA, event_hash
from dplogs.ingest.formats import CARRY_ANY
from dplogs.schema import DEFAULT_PRIVACY_UNIT, READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION, STORE_SCHEMA, TIMESTAMP
from dplogs.schema.units import SHARED, UnitRule

BUDGET_WINDOWS = ("day", "week", "month")
HASH_DTYPE = STORE_SCHEMA["event.hash"]
STORE_QUARANTINE_SCHEMA = pl.Schema({**QUARANTINE_SCHEMA, "run_id": pl.String(), "hash": HASH_DTYPE})
"""``hash`` identifies a quarantined record as ``event.hash`` does an event (see
``dplogs.ingest.streams``), so re-reading an input does not quarantine its bad lines twice; null in
files written before it existed."""
_TMP_SUFFIX = ".tmp"
UNIT_CODE = "dplogs.unit_code"
"""Events column of stores made with unit codes: the row's privacy unit (the manifest's rule,
:meth:`UnitRule.expr`) as a dense UInt32 code into the store's unit dictionary; null where the
unit is null (``per-row`` rule). Not in ``STORE_SCHEMA``: :meth:`Store.scan` leaves it out."""
UNIT = "unit"
"""The value column of the unit dictionary (:meth:`Store.unit_codes`)."""
_MAX_UNIT_SEGMENTS = 64
"""Dictionary segments (one per write that meets new units) before the writer compacts them."""
_DICTIONARY_READS = 3
"""Readings of the dictionary a reader tries while compactions remove the segments it listed."""


def codes_rule(rule: UnitRule) -> str:
    """The manifest's spelling of the rule unit codes follow: fields and what unattributed rows are."""
    return f"{rule.label};{rule.unattributed}"


def hash_canary() -> str:
    """``event_hash`` of a fixed record, and the keying scheme (``dplogs.ingest.streams``): if either
    changes (a polars upgrade, a store made before hashes were keyed by input), stored hashes are
    no longer comparable and deduplication falls back to input fingerprints."""
    words = pl.select(event_hash(pl.lit("dplogs hash canary"), pl.lit(0, pl.Int64))).item()
    return "-".join(str(w) for w in words) + "-keyed-by-prefix"


@dataclass(frozen=True)
class Manifest:
    """The store's description. Public: the engine reads the privacy unit and budget window here.

    >>> Manifest(dataset="demo").budget_window
    'month'
    >>> Manifest(dataset="demo", privacy_unit="nope")
    Traceback (most recent call last):
    ...
    dplogs.errors.UsageError: privacy unit 'nope' is not a person-like store column; pass --privacy-unit with one or more (comma-separated, in fallback order) of: host.name, source.ip, user.name
    >>> Manifest(dataset="demo", privacy_unit="user.name, host.name").unit_rule.describe()
    'the first non-null of user.name, host.name (namespaced by field); rows with none of them form one shared unit'
    """

    dataset: str
    privacy_unit: str = DEFAULT_PRIVACY_UNIT
    """The unit chain, comma-separated in fallback order (:class:`~dplogs.schema.units.UnitRule`)."""
    unattributed: str = SHARED
    """Rows with no field of the chain: ``shared`` (one unit) or ``per-row`` (each its own unit,
    opt-in). Manifests written before this field existed read as ``shared``, the conservative rule."""
    budget_window: str = "month"
    schema_version: int = SCHEMA_VERSION
    defaults: dict[str, Any] = field(default_factory=dict)
    """Per-query-kind default contribution bounds; written by the engine, never guessed here."""
    hash_canary: str = ""
    store_id: str = ""
    """Random id made with the store; its ledger records it too, so a ledger copied or linked from
    another store is refused. Empty in stores made before ids existed (``budget set`` assigns one)."""
    ledger_id: str = ""
    """The id of the store's budget ledger, recorded when it is first opened
    (:func:`dplogs.privacy.ledger.open_store_ledger`), so a ledger deleted or swapped later is
    refused rather than replaced by a fresh, unspent one. Empty until then."""
    unit_codes: str = ""
    """The unit rule (:func:`codes_rule`) whose codes every events file carries as
    :data:`UNIT_CODE`, set when the store is made (schema version 4); empty in stores made before
    unit codes (version 3), which are read by value and never given codes part-way (their older
    files have none)."""

    def __post_init__(self) -> None:
        if not self.dataset:
            raise UsageError("dataset name must not be empty; pass --dataset NAME")
        object.__setattr__(self, "privacy_unit", UnitRule.parse(self.privacy_unit, self.unattributed).label)
        if self.budget_window not in BUDGET_WINDOWS:
            raise UsageError(f"budget window {self.budget_window!r} is invalid; pass --budget-window day, week or month")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        known = {k: data[k] for k in ("dataset", "privacy_unit", "unattributed", "budget_window", "schema_version", "defaults",
                                      "hash_canary", "store_id", "ledger_id", "unit_codes") if k in data}
        return cls(**known)

    @property
    def unit_rule(self) -> UnitRule:
        return UnitRule.parse(self.privacy_unit, self.unattributed)


@contextmanager
def _writing(target: Path, tmp: Path | None = None) -> Iterator[None]:
    """Turn a failed write (disk full, read-only, permissions) into :class:`StoreWriteError`,
    removing the temporary file ``tmp`` it may have left."""
    try:
        yield
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise StoreWriteError(
            f"cannot write {target}: {exc.strerror or exc}; free space or make the store writable, then rerun "
            f"the same command (what this run wrote is completed exactly, nothing doubles)"
        ) from exc


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
    with _writing(path, tmp):
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)


def _why(exc: Exception) -> str:
    """Why a store file could not be read: what :func:`read_regular` found, else the error's type
    (never its text, which may quote the file's bytes)."""
    return str(exc) if isinstance(exc, NotAFile) else type(exc).__name__


_LOCK_NAMES = (".ingest.lock", ".events.lock", ".manifest.lock")


@contextmanager
def removed_if_nothing_stored(path: str | os.PathLike[str]) -> Iterator[None]:
    """Around a first ingest into ``path``: when the block fails and the store it created holds
    nothing (an unrecognised file, a gzip bomb, a full disk), remove that store again, so a rerun
    with other ``--privacy-unit`` or ``--budget-window`` options is not refused by settings nobody
    chose. A store that existed before, or holds anything, is kept."""
    path = Path(path)
    existed, created = path.exists(), not (path / "manifest.json").is_file()
    try:
        yield
    except BaseException:
        if created and (path / "manifest.json").is_file():
            with contextlib.suppress(Exception):  # the failure is what the caller must see
                Store.open(path).discard_if_untouched(remove_directory=not existed)
        raise


def _unfinished_store(path: Path) -> bool:
    """Whether ``path`` is empty or holds only what a store creation that failed before its manifest
    left: the empty ``events``, ``quarantine`` and ``units`` folders and a temporary manifest (found
    by faults4: a full disk during the first ingest made every rerun refuse the directory)."""
    for entry in path.iterdir():
        if entry.name.startswith(".manifest.json.") and entry.name.endswith(_TMP_SUFFIX) and entry.is_file():
            continue
        if entry.name in ("events", "quarantine", "units") and entry.is_dir() and not entry.is_symlink() \
                and not any(entry.iterdir()):
            continue
        return False
    return True


def _refuse_link(path: Path) -> None:
    raise StoreError(
        f"{path} is a symbolic link or not a regular file; a store never follows links among its own files "
        f"(one could make dplogs read a file outside the store): remove it from the store"
    )


def _entries(directory: Path, *, top: bool = False) -> list[os.DirEntry[str]]:
    """Visible entries of a store directory (none when it is missing). A symlinked directory is
    refused, except the ``top`` ones (``events``, ``quarantine``), which an operator may place on
    another disk."""
    if directory.is_symlink() and not top:
        _refuse_link(directory)
    try:
        with os.scandir(directory) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except FileNotFoundError:
        return []


def _parquet_files(directory: Path, *, top: bool = False) -> list[Path]:
    """The ``*.parquet`` files of one store directory; a link among them is refused, not followed."""
    files = []
    for entry in _entries(directory, top=top):
        if entry.name.endswith(".parquet"):
            if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                _refuse_link(Path(entry.path))
            files.append(Path(entry.path))
    return files


def _read_column(files: list[Path], name: str) -> pl.Series:
    """One column of store files that may each lack it (read as nulls) or hold other columns."""
    if not files:
        return pl.Series(name, [], HASH_DTYPE)
    try:
        return pl.scan_parquet(files, schema={name: HASH_DTYPE}, missing_columns="insert", extra_columns="ignore",
                               hive_partitioning=False).collect().to_series()
    except pl.exceptions.PolarsError as exc:
        raise StoreError(
            f"a Parquet file in {files[0].parent} is damaged ({type(exc).__name__}); restore it from a backup, or "
            f"move the damaged file out and re-ingest its inputs"
        ) from exc


class Store:
    """An opened store. Use :meth:`open` for an existing store, :meth:`init` to create or open one.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     s = Store.init(d + "/st", dataset="demo")
    ...     (s.manifest.privacy_unit, s.scan().collect().height, s.ledger_path.name)
    ('user.name', 0, 'ledger.sqlite')
    """

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        self._dictionary: pl.DataFrame | None = None  # the writer's copy: unit values and their codes

    @property
    def ledger_path(self) -> Path:
        return self.path / "ledger.sqlite"

    @property
    def events_path(self) -> Path:
        return self.path / "events"

    @property
    def quarantine_path(self) -> Path:
        return self.path / "quarantine"

    def holds(self, path: str | os.PathLike[str]) -> bool:
        """Whether writing ``path`` would overwrite the store's own data: its manifest, registries,
        ledger (and SQLite's side files), events, quarantine, unit codes or policy versions. Output
        options check this before anything is charged (``-o STORE/ledger.sqlite`` erased the spend)."""
        try:
            relative = Path(path).resolve().relative_to(self.path.resolve())
        except ValueError:
            return False
        if not relative.parts:
            return True
        first = relative.parts[0]
        return (first in ("manifest.json", "ingested.json", "open_tails.json", "events", "quarantine", "units", "policy",
                          *_LOCK_NAMES)  # a file renamed onto a lock unlocks it
                or first.startswith(self.ledger_path.name))

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Store:
        """Open an existing store; :class:`StoreError` if it is missing or incompatible."""
        path = Path(path)
        manifest_file = path / "manifest.json"
        if not manifest_file.is_file():
            raise StoreError(f"no dplogs store at {path} (missing manifest.json); create it with `dplogs ingest ... --store {path}`")
        try:
            manifest = Manifest.from_json(json.loads(manifest_file.read_text()))
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{manifest_file} is unreadable ({exc}); restore it or ingest into a new store") from exc
        if manifest.schema_version not in READABLE_SCHEMA_VERSIONS:
            raise StoreError(
                f"store {path} has schema version {manifest.schema_version}, this dplogs reads "
                f"{' and '.join(map(str, READABLE_SCHEMA_VERSIONS))}; re-ingest the logs into a new store"
            )
        return cls(path, manifest)

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        *,
        dataset: str | None = None,
        privacy_unit: str | None = None,
        budget_window: str | None = None,
        unattributed: str | None = None,
    ) -> Store:
        """Open the store at ``path``, creating it when absent. Settings passed for an existing
        store must match its manifest: the privacy-unit rule and window cannot change under stored
        data. A bad rule is refused before anything is written."""
        path = Path(path)
        if privacy_unit is not None and not privacy_unit.strip(" ,"):  # '' must not mean "the default"
            raise UsageError("--privacy-unit names no field; leave it out for the default (user.name) or name "
                             "the fields in fallback order, e.g. user.name,source.ip")
        rule = UnitRule.parse(privacy_unit or DEFAULT_PRIVACY_UNIT, unattributed or SHARED)  # refused before any write
        privacy_unit = rule.label if privacy_unit is not None else None
        if (path / "manifest.json").is_file():
            store = cls.open(path)
            wanted = {"dataset": dataset, "privacy_unit": privacy_unit, "unattributed": unattributed,
                      "budget_window": budget_window}
            for key, value in wanted.items():
                have = getattr(store.manifest, key)
                if value is not None and value != have:
                    raise UsageError(
                        f"store {path} already has {key.replace('_', '-')} {have!r}; drop the option "
                        f"or ingest into a new --store"
                    )
            return store
        if path.exists() and not _unfinished_store(path):
            raise StoreError(f"{path} exists and is not a dplogs store; choose an empty or new --store directory")
        manifest = Manifest(
            dataset=dataset or path.resolve().name,
            privacy_unit=privacy_unit or DEFAULT_PRIVACY_UNIT,
            unattributed=unattributed or SHARED,
            budget_window=budget_window or "month",
            hash_canary=hash_canary(),
            store_id=secrets.token_hex(16),
            unit_codes=codes_rule(rule),
        )
        with _writing(path):
            (path / "events").mkdir(parents=True, exist_ok=True)
            (path / "quarantine").mkdir(exist_ok=True)
            (path / "units").mkdir(exist_ok=True)
        _write_json_atomic(path / "manifest.json", asdict(manifest))
        return cls(path, manifest)

    @property
    def identity(self) -> str:
        """The store id its ledger must be bound to. A store made before ids existed has none:
        :class:`LedgerError` says to bind it once with ``dplogs budget set`` (an admin's act, so a
        ledger copied in from elsewhere is never adopted silently)."""
        if not self.manifest.store_id:  # read afresh: `budget set` may have bound it since this store was opened
            self.manifest = replace(self.manifest, store_id=Store.open(self.path).manifest.store_id)
        if not self.manifest.store_id:
            raise LedgerError(
                f"store {self.path} predates store identities, so its budget ledger cannot be checked "
                f"against it; run `dplogs budget set --store {self.path}` once to bind them (it keeps "
                "the caps; nothing was released)"
            )
        return self.manifest.store_id

    def assign_identity(self) -> str:
        """Give a store made before ids existed its id (``budget set`` and the demo do, as the
        store's administrator); returns the id. Re-reads the manifest so no other change is lost."""
        with self._manifest_locked():
            current = Store.open(self.path).manifest
            if not current.store_id:
                current = self._record_for_ledger(replace(current, store_id=secrets.token_hex(16)), "store id")
        self.manifest = current
        return current.store_id

    def recorded_ledger_id(self) -> str:
        """The ledger id this store's manifest recorded ("" before its ledger was first opened),
        read afresh: another process may have recorded it since this store was opened."""
        return Store.open(self.path).manifest.ledger_id

    def record_ledger_id(self, ledger_id: str) -> None:
        """Record the id of the store's ledger (re-reads the manifest so no other change is lost)."""
        with self._manifest_locked():
            self.manifest = self._record_for_ledger(replace(Store.open(self.path).manifest, ledger_id=ledger_id), "ledger id")

    def _record_for_ledger(self, manifest: Manifest, what: str) -> Manifest:
        """Write ``manifest``, which records ``what`` the ledger checks; a failed write is an I/O
        problem of the budget (:class:`LedgerIOError`, 74)."""
        try:
            _write_json_atomic(self.path / "manifest.json", asdict(manifest))
        except OSError as exc:
            raise LedgerIOError(
                f"cannot record the {what} in {self.path / 'manifest.json'}: {exc.strerror} — an I/O problem "
                "(disk full, read-only or no permission), not corruption; fix it and retry"
            ) from None
        return manifest

    def update_defaults(self, defaults: dict[str, Any]) -> Store:
        """Persist new per-query default bounds (for the engine); returns the updated store. The
        manifest is re-read first so a store id assigned meanwhile is kept."""
        with self._manifest_locked():
            current = Store.open(self.path).manifest
            manifest = replace(current, defaults={**current.defaults, **defaults})
            _write_json_atomic(self.path / "manifest.json", asdict(manifest))
        return Store(self.path, manifest)

    @contextmanager
    def _manifest_locked(self) -> Iterator[None]:
        """Hold ``STORE/.manifest.lock`` while the manifest is re-read and rewritten: two rewrites
        at once (a defaults update beside the first ledger open) lost one's change, and a lost
        store or ledger id unbinds the ledger from its store."""
        with self._locked(".manifest.lock"):
            yield

    def day_paths(self) -> list[Path]:
        """The ``day=*`` partition directories (a symlinked one is refused)."""
        days = []
        for entry in _entries(self.events_path, top=True):
            if entry.name.startswith("day="):
                if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
                    _refuse_link(Path(entry.path))
                days.append(Path(entry.path))
        return days

    def event_files(self, day: str | None = None) -> list[Path]:
        """The events files of one day partition, or of all of them."""
        days = self.day_paths() if day is None else [self.events_path / f"day={day}"]
        return [f for d in days for f in _parquet_files(d)]

    def readable_event_files(self) -> list[Path]:
        """:meth:`event_files`, each checked to end in Parquet's footer magic (one 4-byte read per
        file): a truncated or overwritten file raises :class:`StoreDamaged` naming it, before any
        release reads (and charges for) a store missing part of its events."""
        files, damaged = [], []
        for f in self.event_files():
            try:
                with open(f, "rb") as fh:
                    fh.seek(-4, os.SEEK_END)
                    ok = fh.read(4) == b"PAR1"
            except FileNotFoundError:  # emptied and removed since listed (a torn-line repair): not damage
                continue
            except OSError:
                ok = False
            files.append(f)
            if not ok:
                damaged.append(f)
        if damaged:
            shown = ", ".join(str(f) for f in damaged[:5]) + (f" and {len(damaged) - 5} more" if len(damaged) > 5 else "")
            raise StoreDamaged(
                f"store {self.path} is damaged: {len(damaged)} events file(s) are not whole Parquet files ({shown}); "
                "nothing was released or charged. Restore them from a backup of the store; moving them aside "
                "leaves their events out of every release")
        return files

    def scan(self) -> pl.LazyFrame:
        """All events as a lazy frame with exactly ``STORE_SCHEMA`` (no rows for an empty store)."""
        files = self.readable_event_files()
        if not files:
            return pl.LazyFrame(schema=STORE_SCHEMA)
        # Files leave out their all-null columns (see write_events): "insert" reads those as nulls.
        return pl.scan_parquet(files, schema=STORE_SCHEMA, hive_partitioning=False, missing_columns="insert",
                               extra_columns="ignore")

    def scan_coded(self) -> pl.LazyFrame:
        """:meth:`scan` plus the :data:`UNIT_CODE` column; only for stores with unit codes
        (:meth:`unit_codes`), whose every events file carries it (or leaves it out as all null)."""
        if not self.unit_codes_kept:
            raise InternalError(f"store {self.path} was made without unit codes; read it with scan()")
        schema = pl.Schema({**STORE_SCHEMA, UNIT_CODE: pl.UInt32()})
        files = self.readable_event_files()
        if not files:
            return pl.LazyFrame(schema=schema)
        return pl.scan_parquet(files, schema=schema, hive_partitioning=False, missing_columns="insert")

    @property
    def unit_codes_kept(self) -> bool:
        """Whether the events carry unit codes (a version 4 store made with them)."""
        return bool(self.manifest.unit_codes) and self.manifest.schema_version >= 4

    def unit_codes(self, rule: UnitRule) -> pl.DataFrame | None:
        """The unit dictionary, when the events carry codes of ``rule`` (else None: the store
        predates unit codes, or was coded under another rule): one column :data:`UNIT`, the unit
        value of code ``i`` in row ``i``, distinct by construction."""
        if not self.unit_codes_kept or self.manifest.unit_codes != codes_rule(rule):
            return None
        return self._read_dictionary(rule).drop("code")

    def _read_dictionary(self, rule: UnitRule) -> pl.DataFrame:
        """The dictionary's segments in code order, checked to be contiguous from 0 (a gap or an
        overlap would let two units share a code). A segment whose codes a compacted one already
        holds is what a compaction killed before its clean-up left: skipped. A segment removed
        since it was listed was covered by a compaction (written whole before any removal): the
        segments are listed and read again."""
        schema = {UNIT: _unit_dtype(rule), "code": pl.UInt32()}
        for _ in range(_DICTIONARY_READS):
            try:
                parts = self._dictionary_segments(schema)
                break
            except FileNotFoundError:
                continue
        else:
            raise ConcurrentRun(f"the unit dictionary in {self.path / 'units'} was compacted {_DICTIONARY_READS} times "
                                "while it was read; nothing was released or charged: run it again")
        frame = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
        if not frame["code"].equals(pl.Series("code", range(frame.height), dtype=pl.UInt32)) \
                or frame[UNIT].n_unique() != frame.height:
            raise StoreError(f"the unit dictionary in {self.path / 'units'} has a gap, an overlap or a repeated unit; "
                             "re-ingest the logs into a new store")
        return frame

    def _dictionary_segments(self, schema: dict[str, pl.DataType]) -> list[pl.DataFrame]:
        parts, next_code = [], 0
        try:
            for file in _parquet_files(self.path / "units"):
                first = int(file.stem)
                if first < next_code:
                    continue
                parts.append(pl.read_parquet(file, schema=schema, hive_partitioning=False))
                next_code = first + parts[-1].height
        except (ValueError, pl.exceptions.PolarsError) as exc:
            raise StoreError(f"the unit dictionary in {self.path / 'units'} is damaged ({type(exc).__name__}); "
                             "re-ingest the logs into a new store") from exc
        return parts

    @contextmanager
    def events_held(self) -> Iterator[None]:
        """Hold the events files still while a release lists and reads them (a shared ``flock`` on
        ``STORE/.events.lock``): files an ingest adds meanwhile are not read, and a torn last
        line's repair (:meth:`remove_events`, the one write that rewrites or removes an events
        file) waits, so every file listed is read as listed. Before, a repair that emptied a file
        between the listing and the read failed the release. Ingests never wait for the whole
        run, readers never for an ingest. A store this process cannot create the lock file in
        (read-only media) has no writer to wait for."""
        with self._locked(".events.lock", shared=True, reader=True):
            yield

    @contextmanager
    def _locked(self, name: str, *, shared: bool = False, reader: bool = False, mode: int = 0o644) -> Iterator[None]:
        """Hold a ``flock`` on the store's lock file ``name``, made if missing (freed by the kernel
        when the process dies). A symbolic link there is refused, never followed: it must not make
        us create or lock its target. A ``reader`` that can neither open nor make the file (a
        read-only store) goes on unlocked: nothing writes that store."""
        lock = self.path / name
        if lock.is_symlink():
            raise StoreError(f"the store's lock file {lock} is a symbolic link, which is never followed: remove it")
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = None
        try:
            with _writing(lock):
                try:
                    fd = os.open(lock, flags)  # no O_CREAT first: read-only media refuse even an existing file's
                except FileNotFoundError:
                    fd = os.open(lock, flags | os.O_CREAT, mode)
        except StoreWriteError:
            if not reader:
                raise
        if fd is None:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def scan_quarantine(self) -> pl.LazyFrame:
        """Quarantined records (raw text: inside the trust boundary only)."""
        files = _parquet_files(self.quarantine_path, top=True)
        if not files:
            return pl.LazyFrame(schema=STORE_QUARANTINE_SCHEMA)
        return pl.scan_parquet(files, schema=STORE_QUARANTINE_SCHEMA, missing_columns="insert")

    # -- ingestion-side helpers (used by dplogs.ingest.ingest) ------------------------------------

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Hold the store's exclusive writer lock (``STORE/.ingest.lock``): concurrent ingests into
        one store run one after the other, so no registry update or day-partition dedup is lost."""
        with self._locked(".ingest.lock", mode=0o600):
            if not (self.path / "manifest.json").is_file():  # a failed first ingest discarded it meanwhile
                raise StoreError(f"store {self.path} was removed while this run waited for it; run again")
            self._dictionary = None  # another writer may have added units: re-read under the lock
            yield

    def discard_if_untouched(self, *, remove_directory: bool) -> bool:
        """Remove this store again when nothing was ever stored in it: no events, quarantine rows,
        units, input records, ledger or defaults (see :func:`removed_if_nothing_stored`). Checked
        and removed under the writer lock, so a concurrent ingest that has stored something keeps
        its store. Returns whether removed."""
        with self.writer_lock():
            self.remove_stray_files()
            kept = {"events", "quarantine", "units", "manifest.json", *_LOCK_NAMES}
            entries = list(self.path.iterdir())
            if self.manifest.defaults or any(e.name not in kept for e in entries):
                return False
            if any(any((self.path / name).iterdir()) for name in ("events", "quarantine", "units")):
                return False
            for name in ("events", "quarantine", "units"):
                (self.path / name).rmdir()
            (self.path / "manifest.json").unlink()
        for name in _LOCK_NAMES:  # after the lock is let go; a waiting ingest then finds no manifest and fails
            (self.path / name).unlink(missing_ok=True)
        if remove_directory:
            with contextlib.suppress(OSError):
                self.path.rmdir()
        return True

    def remove_stray_files(self) -> int:
        """Remove the temporary files a killed or failed writer left; call under the writer lock
        (no other writer can be mid-write then). Returns how many were removed."""
        removed = 0
        for directory in (self.path, self.quarantine_path, self.path / "units", *self.day_paths()):
            try:
                with os.scandir(directory) as it:
                    stray = [Path(e.path) for e in it if e.name.startswith(".") and e.name.endswith(_TMP_SUFFIX)]
            except FileNotFoundError:
                continue
            for path in stray:
                with _writing(path):
                    path.unlink(missing_ok=True)
                removed += 1
        return removed

    def fingerprints(self) -> dict[str, dict[str, Any]]:
        """``ingested.json``: registry key -> what was ingested. :class:`StoreError` when it is not a
        JSON object of objects; it is safe to move aside, since re-read inputs are deduplicated."""
        path = self.path / "ingested.json"
        if path.is_symlink():
            _refuse_link(path)
        repair = (f"move it aside (mv {path} {path}.bad) and rerun: it only records which inputs were read, "
                  f"and re-read inputs add no duplicate events or quarantine rows")
        try:
            data = read_regular(path)  # never blocks on a FIFO put at its name
            if data is None:
                return {}
            registry = json.loads(data)
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path} is unreadable or not JSON ({_why(exc)}); {repair}") from exc
        if not isinstance(registry, dict) or not all(isinstance(v, dict) for v in registry.values()):
            raise StoreError(f"{path} is not a JSON object of input records; {repair}")
        return registry

    def coverage(self, formats: Collection[str] | None = None) -> list[tuple[dt.date, dt.date]] | None:
        """The store's coverage: merged day spans ``[first, last]`` (both included) from the first
        to the last event of each ingested input, or the days its ingest declared (``--covers``).
        Coarse public metadata (docs/privacy.md): days without events inside a span count as
        covered. None when the store cannot tell: some input predates coverage records, or events
        were written without ``dplogs ingest``. A store with no events at all covers nothing (``[]``).

        With ``formats``, only inputs parsed as one of them count, or as a format that may hold
        events of any kind (:data:`~dplogs.ingest.formats.CARRY_ANY`), or whose record names no
        format: the input formats are public metadata too."""
        spans = []
        records = self.fingerprints()
        if not records:
            # events written without an ingest (the Python API): the store cannot tell; no events
            # at all (a first ingest that recognised nothing) is known to cover nothing
            return [] if not self.event_files() else None
        for record in records.values():
            if record.get("rows", 0) == 0 and record.get("declared") is not True:
                continue
            fmt = record.get("format")
            if formats is not None and isinstance(fmt, str) and fmt not in formats and fmt not in CARRY_ANY:
                continue
            try:
                first, last = dt.date.fromisoformat(record["first_day"]), dt.date.fromisoformat(record["last_day"])
            except (KeyError, TypeError, ValueError):
                return None
            if last < first:  # edited: no ingest writes it (found by faults4)
                raise StoreError(f"{self.path / 'ingested.json'} is damaged: the coverage of an input ends ({last}) before "
                                 "it begins; move it aside and rerun the ingest (re-read inputs add no duplicates)")
            spans.append((first, last))
        merged: list[tuple[dt.date, dt.date]] = []
        for lo, hi in sorted(spans):
            if merged and lo <= merged[-1][1] + dt.timedelta(days=1):
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return merged

    def open_tails(self) -> list[dict[str, Any]]:
        """``open_tails.json``: last lines stored while they had no newline (``dplogs.ingest.tails``);
        an unreadable file is reported, never guessed at."""
        path = self.path / "open_tails.json"
        if path.is_symlink():
            _refuse_link(path)
        try:
            data = read_regular(path)
            if data is None:
                return []
            records = json.loads(data)
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path} is unreadable or not JSON ({_why(exc)}); move it aside "
                             f"(mv {path} {path}.bad): it only lists last lines that may be completed later") from exc
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise StoreError(f"{path} is not a JSON list of records; move it aside (mv {path} {path}.bad)")
        return records

    def set_open_tails(self, records: list[dict[str, Any]]) -> None:
        _write_json_atomic(self.path / "open_tails.json", records)

    def remove_events(self, day: str, hashes: pl.Series) -> int:
        """Remove the events of one day partition whose ``event.hash`` is in ``hashes`` (each file
        holding one is rewritten without it, atomically; an emptied file is deleted). Returns how
        many were removed. Call under the writer lock (ingest does). Waits for releases reading
        the events (:meth:`events_held`): the only write that changes or removes a file they listed."""
        with self._locked(".events.lock"):
            return self._remove_events(day, hashes)

    def _remove_events(self, day: str, hashes: pl.Series) -> int:
        removed = 0
        for f in self.event_files(day):
            hit = _read_column([f], "event.hash").is_in(hashes.implode(), nulls_equal=False)
            if not hit.any():
                continue
            kept = pl.read_parquet(f, hive_partitioning=False).filter(~hit)
            removed += hit.sum()
            if kept.height:
                _write_parquet(kept, f)
            else:
                with _writing(f):
                    f.unlink()
        return removed

    def add_fingerprint(self, fingerprint: str, record: dict[str, Any]) -> None:
        registry = self.fingerprints()
        registry[fingerprint] = record
        _write_json_atomic(self.path / "ingested.json", registry)

    def day_hashes(self, day: str, files: Iterable[Path] | None = None) -> pl.Series:
        """``event.hash`` of the events stored for one day partition (or in some of its ``files``).
        Files hold different column sets (each leaves out its all-null columns): only this column
        is read."""
        return _read_column(self.event_files(day) if files is None else list(files), "event.hash")

    def quarantine_hashes(self, files: Iterable[Path] | None = None) -> pl.Series:
        """``hash`` of the quarantined records (of some quarantine ``files``); nulls dropped."""
        files = _parquet_files(self.quarantine_path, top=True) if files is None else list(files)
        return _read_column(files, "hash").drop_nulls()

    def write_events(self, events: pl.DataFrame, *, stem: str) -> dict[str, int]:
        """Write a conformed frame into its day partitions; returns rows written per day. Columns
        that are null in every row of a file are not written: most formats fill well under half of
        the store's columns, and encoding the empty ones was ~20% of the write time.

        >>> import tempfile, datetime as dt
        >>> from dplogs.schema import conform
        >>> with tempfile.TemporaryDirectory() as d:
        ...     s = Store.init(d + "/st", dataset="demo")
        ...     ev = conform(pl.DataFrame({"@timestamp": [dt.datetime(2024, 3, 1, tzinfo=dt.UTC)], "user.name": ["ann"]}))
        ...     s.write_events(ev, stem="x")
        ...     stored = pl.read_parquet_schema(s.events_path / "day=2024-03-01" / "x.parquet")
        ...     (list(stored), s.scan().collect_schema() == STORE_SCHEMA, s.scan().collect().height)
        {'2024-03-01': 1}
        (['@timestamp', 'user.name', 'dplogs.unit_code'], True, 1)
        """
        written: dict[str, int] = {}
        for day, part in self.day_parts(events):
            self.write_day(day, part, stem=stem)
            written[day] = part.height
        return written

    @staticmethod
    def day_parts(events: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
        """``events`` split by the day partition they belong to (``YYYY-MM-DD``). Formats quarantine
        events without a time (``base.split_out_of_range``), so one here is a bug."""
        if events.get_column("@timestamp").has_nulls():
            raise InternalError("an event without @timestamp reached the store; its format should have quarantined it")
        # Partition on the date and format only each partition's name: strftime on every row cost
        # more. A chunk usually holds one day: then it is kept as it is (partition_by copies every
        # column, a fifth of the write time).
        dated = events.with_columns(_day=pl.col("@timestamp").dt.date())
        one_day = dated.select(pl.col("_day").n_unique()).item() == 1
        parts = []
        for part in [dated] if one_day else dated.partition_by("_day", maintain_order=False):
            day = part.select(pl.col("_day").first().dt.strftime("%Y-%m-%d")).item()
            parts.append((str(day), part.drop("_day")))
        return parts

    def write_day(self, day: str, events: pl.DataFrame, *, stem: str) -> Path:
        """Write events of one day partition as ``day=DAY/STEM.parquet``, leaving out the columns
        that are null in every row; returns the file."""
        target = self.events_path / f"day={day}"
        with _writing(target):
            target.mkdir(parents=True, exist_ok=True)
        if self.unit_codes_kept:
            events = events.with_columns(self._codes(events))
        nulls = events.null_count().row(0)
        path = target / f"{stem}.parquet"
        _write_parquet(events.select(c for c, n in zip(events.columns, nulls, strict=True) if n < events.height), path)
        return path

    def _codes(self, events: pl.DataFrame) -> pl.Series:
        """The :data:`UNIT_CODE` of each event: its unit's code, new units getting the next codes.
        New units are added to the dictionary (a segment file) before any event refers to them,
        so a killed write leaves at most unused codes. Call under the writer lock (ingest does)."""
        rule = self.manifest.unit_rule
        if self._dictionary is None:
            self._dictionary = self._read_dictionary(rule)
        units = events.select(rule.expr().alias(UNIT))
        # one join finds the codes; only units it leaves without one (new units, rare once a store
        # has seen its population) need the unique pass and a second join
        codes = units.join(self._dictionary, on=UNIT, how="left", maintain_order="left")["code"]
        new = (units.filter(codes.is_null() & pl.col(UNIT).is_not_null()).unique(maintain_order=True)
               if codes.null_count() > units.get_column(UNIT).null_count() else units.clear())
        if new.height:
            first = self._dictionary.height
            if first + new.height > 2**32:
                raise StoreError(f"store {self.path} has more than 2^32 distinct units; split it into several stores")
            new = new.with_columns(pl.int_range(first, first + new.height, dtype=pl.UInt32).alias("code"))
            segment = self.path / "units" / f"{first:010d}.parquet"
            with _writing(segment):
                segment.parent.mkdir(exist_ok=True)
            _write_parquet(new, segment)
            self._dictionary = pl.concat([self._dictionary, new]).rechunk()
            segments = _parquet_files(segment.parent)
            if len(segments) > _MAX_UNIT_SEGMENTS:  # one file again, so a query reads a few files, not thousands
                _write_parquet(self._dictionary, segment.parent / f"{0:010d}.parquet")  # atomic: the rest is now covered
                for covered in segments[1:]:
                    with _writing(covered):
                        covered.unlink(missing_ok=True)
            codes = units.join(self._dictionary, on=UNIT, how="left", maintain_order="left")["code"]
        return codes.alias(UNIT_CODE)

    def write_quarantine(self, quarantine: pl.DataFrame, *, run_id: str, stem: str) -> Path:
        """Write quarantined records (``QUARANTINE_SCHEMA`` + ``hash``) as ``quarantine/STEM.parquet``."""
        frame = quarantine.with_columns(run_id=pl.lit(run_id)).select(STORE_QUARANTINE_SCHEMA.names())
        path = self.quarantine_path / f"{stem}.parquet"
        _write_parquet(frame, path)
        return path


class DayWriter:
    """Day-partitioned writes of one input's chunks. A chunk's part of a day smaller than
    ``min_rows`` waits and is written together with that day's parts of the next chunks: an input
    whose lines interleave many days (a merged export) would otherwise become one small file per
    day per chunk (a 1M-line log interleaving 25 days: 350 files; 55 with this, and 15% less
    ingest time). A day waits only while each chunk brings more of it, and at most
    ``max_buffered`` rows wait; past that, every waiting day is written. :meth:`close` writes the
    rest, and must run before the input counts as ingested."""

    def __init__(self, store: Store, stem: str, *, min_rows: int = 20_000, max_buffered: int = 250_000) -> None:
        self._store, self._stem = store, stem
        self._min_rows, self._max_buffered = min_rows, max_buffered
        self._waiting: dict[str, list[pl.DataFrame]] = {}
        self._buffered = 0
        self.files: dict[str, list[Path]] = {}
        """The files written so far, per day."""

    def add(self, events: pl.DataFrame) -> None:
        parts = self._store.day_parts(events)
        for day, part in parts:
            waiting = self._waiting.setdefault(day, [])
            waiting.append(part)
            self._buffered += part.height
            if sum(p.height for p in waiting) >= self._min_rows:
                self._write(day)
        # A day absent from this chunk is likely over (the tail of a day in a time-ordered log):
        # writing it now keeps stale parts from holding memory until the cap.
        seen = {day for day, _ in parts}
        for day in [d for d in self._waiting if d not in seen]:
            self._write(day)
        if self._buffered > self._max_buffered:
            self.close()

    def close(self) -> None:
        for day in list(self._waiting):
            self._write(day)

    def _write(self, day: str) -> None:
        parts = self._waiting.pop(day)
        self._buffered -= sum(p.height for p in parts)
        n = sum(len(f) for f in self.files.values())
        path = self._store.write_day(day, pl.concat(parts) if len(parts) > 1 else parts[0], stem=f"{self._stem}-{n:05d}")
        self.files.setdefault(day, []).append(path)


_HIGH_CARDINALITY = frozenset({"message", "event.hash", "source.ip", "destination.ip", "url.original"})
"""String columns whose values rarely repeat: a dictionary page for them is built and thrown away."""

_DELTA = frozenset({TIMESTAMP, "log.offset", "line", "source.port", "destination.port", "process.pid", "source.bytes",
                    "destination.bytes", "http.response.body.bytes"})
"""Integer columns (and the timestamp) that rarely repeat or grow steadily: stored as bit-packed
differences. Against dictionary/plain pages this cut the write 15-20%, the files 32-39% and full
scans ~12% (``benchmarks/ingest.py`` inputs)."""


def _leaf(name: str, dtype: pl.DataType) -> str:
    """The Parquet column path pyarrow's per-column options match: a list's values are
    ``NAME.list.element`` (an option naming the list itself silently does not apply)."""
    return f"{name}.list.element" if isinstance(dtype, pl.List) else name


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """zstd-1 Parquet through pyarrow's writer, which polars' lacks the knobs of: dictionary
    encoding is tried only on columns that usually repeat (for the ECS arrays, on their values:
    plain-encoded they were 40x larger before compression and cost ~3% of a syslog ingest), the
    columns in :data:`_DELTA` are delta-encoded, and min/max statistics are kept for
    ``@timestamp`` only, the column scans prune on. The file is written beside the target and
    renamed, so readers never see a half-written file."""
    tmp = path.with_name(f".{path.name}{_TMP_SUFFIX}")
    with _writing(path, tmp):
        pq.write_table(
            # newest: strings stay Arrow string views, as polars holds them (no copy to offsets)
            frame.to_arrow(compat_level=pl.CompatLevel.newest()), tmp, compression="zstd", compression_level=1,
            # unit codes: plain pages are smaller than dictionary ones and decode as fast
            use_dictionary=[_leaf(c, t) for c, t in frame.schema.items()
                            if c not in _HIGH_CARDINALITY and c not in _DELTA and c != UNIT_CODE],
            column_encoding={c: "DELTA_BINARY_PACKED" for c in frame.columns if c in _DELTA},
            write_statistics=[c for c in frame.columns if c == TIMESTAMP],
        )
        os.replace(tmp, path)


def _unit_dtype(rule: UnitRule) -> pl.DataType:
    """The type of ``rule``'s unit values (Binary, String or the chain's Struct)."""
    return pl.LazyFrame(schema=STORE_SCHEMA).select(rule.expr().alias(UNIT)).collect_schema()[UNIT]


def new_run_id() -> str:
    """A sortable, unique ingest run id: UTC time plus random suffix."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
