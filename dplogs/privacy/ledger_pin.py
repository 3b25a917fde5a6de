"""A pin of a store's ledger kept outside the store: its id and head hash, written by each
scheduled report run into its ``--out-dir`` (:data:`PIN_NAME`) and checked by the next one.

Why: the ledger's head record (:mod:`dplogs.privacy.ledger_anchor`) catches an older copy of the
ledger put back, but not the whole store directory (ledger and record together) restored from a
backup: that is a valid, self-consistent store whose ledger lacks the spend recorded since. A
report directory lives apart from the store (a web root, a share), so the next run finds that the
ledger no longer contains the head it pinned, and refuses to release (exit 74) instead of spending
a budget that was already spent. ``dplogs budget verify --pinned HASH`` is the same check by hand.

The pin holds one head per ledger id, so a directory shared by several stores' reports keeps
each store's pin (replacing another ledger's pin let that store's restore go unseen). An operator
who restored a store on purpose, knowing the spend it erased, deletes the pin file.

The directory may be writable by others: the pin is opened without following a link or blocking
on a FIFO, must be a regular file of at most :data:`MAX_PIN_BYTES`, and is replaced by a rename
that never writes through a link (found by faults4: a FIFO at its name hung the run, a link to
/dev/zero read without end, a link elsewhere had its target overwritten).
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import TYPE_CHECKING

from dplogs.errors import LedgerError, StoreWriteError
from dplogs.files import NotAFile, directory_locked, read_regular, replace_whole

if TYPE_CHECKING:
    from dplogs.privacy.ledger import Ledger

PIN_NAME = ".dplogs-ledger-pin.json"
MAX_PIN_BYTES = 1 << 20
"""A pin is ~130 bytes per store pinned in the directory: a larger file is not one dplogs wrote."""


def _refuse(path: Path, why: str) -> LedgerError:
    return LedgerError(f"the ledger pin {path} cannot be read ({why}); it records the budget ledger's head after "
                       "the last report run. Check the store's ledger (dplogs budget verify), then delete the pin "
                       "to start a new one; nothing was released")


def read(directory: Path) -> dict[str, str]:
    """The heads pinned in ``directory`` by ledger id (empty when there is no pin); a
    :class:`LedgerError` when it cannot be read (a damaged pin must not silently switch the check
    off). A pin of one ledger (``{"ledger_id", "head_hash"}``, as dplogs wrote it before) is read too."""
    path = directory / PIN_NAME
    try:
        data = read_regular(path, limit=MAX_PIN_BYTES)
    except OSError as exc:  # ELOOP: a symbolic link
        raise _refuse(path, "not a regular file" if exc.errno == errno.ELOOP else exc.strerror or "") from None
    except NotAFile as exc:
        raise _refuse(path, str(exc)) from None
    if data is None:
        return {}
    try:
        doc = json.loads(data)
        heads = doc["heads"] if "heads" in doc else {doc["ledger_id"]: doc["head_hash"]}
        if not isinstance(heads, dict) or not all(isinstance(v, str) for v in heads.values()):
            raise TypeError
        return {str(k): v for k, v in heads.items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise _refuse(path, type(exc).__name__) from None


def check(ledger: Ledger, directory: Path) -> None:
    """Refuse (:class:`LedgerError`, exit 74) when ``directory`` pins a head of this ledger that
    its chain no longer contains."""
    head = read(directory).get(ledger.identity())
    if head is None:
        return
    report = ledger.verify(pinned=(head,))
    lost = [p for p in report.problems if head in p]
    if lost:
        raise LedgerError(
            f"the budget ledger {ledger.path} does not contain the head {head} that "
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
        # two stores' runs at once would each drop the other's head (read, add, replace)
        with directory_locked(directory, follow_link=True):
            heads = {**read(directory), ledger.identity(): report.head_hash}  # other stores' pins stay
            replace_whole(path, json.dumps({"heads": heads}, indent=1, sort_keys=True) + "\n")
    except OSError as exc:  # a full disk or a read-only directory is not a bug: the releases are recorded
        raise StoreWriteError(f"cannot write the ledger pin {path} ({exc.strerror}); the releases are in the ledger "
                              "and the report files are written: rerun the same command to pin it (it spends "
                              "nothing)") from None

