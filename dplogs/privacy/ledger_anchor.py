"""The ledger's head record: a small file beside the ledger (``ledger.sqlite.head``) holding the
ledger's id, entry count and head hash as of its latest reservation.

Why: the hash chain catches any edit of the ledger that does not recompute it, but an *older copy*
of the same ledger (a backup put back, or the file copied aside before a run and restored after)
is itself a valid chain, and it erases the spend recorded since. The head record lives outside
the SQLite file, so such a copy no longer extends it: it holds fewer entries than the record, or a
different entry at the recorded position. The ledger refuses to reserve (and ``verify`` reports it)
until its own file is back.

The record is written after each reservation commits, never before (a write that failed to commit
must not leave the record ahead of the ledger), so after a crash it may lag the ledger by an entry:
a ledger that *extends* the record is consistent. Once a reservation has seen the record, the
ledger notes ``anchored`` in its sealed metadata, so deleting the record as well is seen too.

Out of reach: the whole store directory (ledger and record together) restored from a backup.
Record ``dplogs budget verify``'s head hash outside the store to pin history against that (scheduled
reports pin it in their output directory: :mod:`dplogs.privacy.ledger_pin`).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from dplogs.files import NotAFile, read_regular

SUFFIX = ".head"


@dataclass(frozen=True)
class HeadRecord:
    ledger_id: str
    entries: int
    head_hash: str


def record_path(ledger_path: Path) -> Path:
    return ledger_path.with_name(ledger_path.name + SUFFIX)


def read(ledger_path: Path) -> HeadRecord | None | str:
    """The head record, None when there is none, or a string saying why it cannot be read."""
    path = record_path(ledger_path)
    if path.is_symlink():
        return f"{path} is a symbolic link"
    try:
        data = read_regular(path, limit=1 << 20)  # a FIFO at its name hung every release (found by faults4)
        if data is None:
            return None
        doc = json.loads(data)
    except (OSError, ValueError) as exc:
        return f"{path} cannot be read ({exc if isinstance(exc, NotAFile) else type(exc).__name__})"
    try:
        record = HeadRecord(str(doc["ledger_id"]), int(doc["entries"]), str(doc["head_hash"]))
    except (KeyError, TypeError, ValueError):
        return f"{path} is not a ledger head record"
    return record if record.entries >= 0 else f"{path} is not a ledger head record"


def write(ledger_path: Path, record: HeadRecord, *, replace_unreadable: bool = False) -> None:
    """Replace the record atomically (a reader sees the old or the new one, never half of one).
    Best effort: a record that cannot be written (full disk) stays behind the ledger, which is
    still consistent with it; the ledger's own commit is what counts. An unreadable record is
    evidence and stays unless ``replace_unreadable`` (the administrator's reset)."""
    path = record_path(ledger_path)
    current = read(ledger_path)
    if isinstance(current, str) and not replace_unreadable:
        return
    if isinstance(current, HeadRecord) and current.ledger_id == record.ledger_id and current.entries > record.entries:
        return  # a concurrent writer already recorded a later head
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # one per writer: threads and processes
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"ledger_id": record.ledger_id, "entries": record.entries, "head_hash": record.head_hash}, f)
            f.flush()
            # no fsync: a record lost to a power cut is an older one (a valid lower bound); the
            # ledger's own fsyncs dominate a charge (~25 ms here; the record adds ~15 ms with it)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def problems(record: HeadRecord | None | str, *, ledger_id: str | None, entries: int, hash_at: dict[int, str],
             anchored: bool, record_name: str) -> list[str]:
    """What is wrong between the ledger (its id, entry count, and the entry hash at the recorded
    position in ``hash_at``) and its head record."""
    reset = ("; if only the record was lost and this is the store's current ledger, its administrator can "
             "write a new one with `dplogs budget set --reset-head-record`")
    if record is None:
        return [f"the ledger's head record {record_name} is missing, though the ledger has used one: it was "
                f"deleted, or the ledger is an older copy put back{reset}"] if anchored else []
    if isinstance(record, str):
        return [f"the ledger's head record is unusable: {record}{reset}"]
    if ledger_id is not None and record.ledger_id != ledger_id:
        return [f"the head record {record_name} is of ledger {record.ledger_id}, not of this ledger {ledger_id}: "
                "the ledger was replaced by another one (for a store, `dplogs budget set --replace-lost-ledger` "
                "records that; for a standalone ledger, only its administrator may remove the record, which "
                "forgets what the lost ledger spent)"]
    if entries < record.entries:
        return [f"the ledger holds {entries} entries but already held {record.entries} ({record_name}): it is an "
                "older copy put back, which erases recorded spend"]
    if hash_at.get(record.entries) != record.head_hash:
        return [f"entry #{record.entries} is not the one {record_name} recorded: the ledger's history was "
                "rewritten or another copy was put back"]
    return []
