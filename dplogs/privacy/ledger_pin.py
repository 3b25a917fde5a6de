"""A pin of a store's ledger kept outside the store: its id and head hash, written by each
scheduled report run into its ``--out-dir`` (:data:`PIN_NAME`) and checked by the next one.

Why: the ledger's head record (:mod:`dplogs.privacy.ledger_anchor`) catches an older copy of the
ledger put back, but not the whole store directory (ledger and record together) restored from a
backup: that is a valid, self-consistent store whose ledger lacks the spend recorded since. A
report directory lives apart from the store (a web root, a share), so the next run finds that the
ledger no longer contains the head it pinned, and refuses to release (exit 74) instead of spending
a budget that was already spent. ``dplogs budget verify --pinned HASH`` is the same check by hand.

A pin of another ledger (the directory reused for another store) is not checked and is replaced.
An operator who restored the store on purpose, knowing the spend it erased, deletes the pin file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dplogs.errors import LedgerError, StoreWriteError
from dplogs.files import write_atomic

if TYPE_CHECKING:
    from dplogs.privacy.ledger import Ledger

PIN_NAME = ".dplogs-ledger-pin.json"


@dataclass(frozen=True)
class Pin:
    ledger_id: str
    head_hash: str


def read(directory: Path) -> Pin | None:
    """The pin in ``directory``, None when there is none; a :class:`LedgerError` when it cannot be
    read (a damaged pin must not silently switch the check off)."""
    path = directory / PIN_NAME
    if not path.exists() and not path.is_symlink():
        return None
    try:
        doc = json.loads(path.read_bytes())
        return Pin(str(doc["ledger_id"]), str(doc["head_hash"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LedgerError(f"the ledger pin {path} cannot be read ({type(exc).__name__}); it records the budget "
                          "ledger's head after the last report run. Check the store's ledger (dplogs budget verify), "
                          "then delete the pin to start a new one; nothing was released") from None


def check(ledger: Ledger, directory: Path) -> None:
    """Refuse (:class:`LedgerError`, exit 74) when ``directory`` pins a head of this ledger that
    its chain no longer contains."""
    pin = read(directory)
    if pin is None or pin.ledger_id != ledger.identity():
        return
    report = ledger.verify(pinned=(pin.head_hash,))
    lost = [p for p in report.problems if pin.head_hash in p]
    if lost:
        raise LedgerError(
            f"the budget ledger {ledger.path} does not contain the head {pin.head_hash} that "
            f"{directory / PIN_NAME} recorded after the last report run: the store was restored from an "
            "older copy (or its ledger rewritten), which erases the spend recorded since. Nothing was released. "
            "Put the current store back; if the restore was deliberate and its lost spend accounted for, "
            f"delete {directory / PIN_NAME}")


def write(ledger: Ledger, directory: Path) -> None:
    """Pin this ledger's current head in ``directory`` (after a run)."""
    report = ledger.verify()
    if report.problems or not report.head_hash:
        return  # a ledger that does not verify released nothing; its head is no history to pin
    path = directory / PIN_NAME
    try:
        write_atomic(path, json.dumps({"ledger_id": ledger.identity(), "head_hash": report.head_hash}) + "\n")
    except OSError as exc:  # a full disk or a read-only directory is not a bug: the releases are recorded
        raise StoreWriteError(f"cannot write the ledger pin {path} ({exc.strerror}); the releases are in the ledger "
                              "and the report files are written: rerun the same command to pin it (it spends "
                              "nothing)") from None
