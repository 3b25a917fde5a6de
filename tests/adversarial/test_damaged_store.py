"""A store whose events files were truncated or overwritten (a partial copy, a full disk, bit rot)
releases nothing and says which file is damaged (74), instead of exiting 70 as a bug; nothing is
charged."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.adversarial.conftest import GOOD, auth_store, invoke

from dplogs.privacy.ledger import Ledger

@pytest.fixture()
def store(tmp_path) -> Path:
    return auth_store(tmp_path / "store", epsilon=5)


def _ledger_bytes(store: Path) -> list:
    """What the ledger holds (a refunded reservation would show; its bytes move on a checkpoint)."""
    with Ledger.open(store / "ledger.sqlite") as ledger:
        return [(e.seq, e.status, e.loss) for e in ledger.history()]


def _largest_events_file(store: Path) -> Path:
    return max((store / "events").rglob("*.parquet"), key=lambda f: f.stat().st_size)


def test_a_truncated_events_file_is_named_and_nothing_is_charged(store):
    victim = _largest_events_file(store)
    victim.write_bytes(victim.read_bytes()[:500])
    before = _ledger_bytes(store)
    for args in (("query", "--store", store, *GOOD), ("inspect", "--store", store, "--head", "3")):
        res = invoke(*args)
        assert res.exit_code == 74, res.output
        assert "is damaged" in res.output and victim.name in res.output and "this is a bug" not in res.output
    assert _ledger_bytes(store) == before


def test_an_events_file_overwritten_inside_is_a_damaged_store_not_a_bug(store):
    victim = _largest_events_file(store)
    data = bytearray(victim.read_bytes())
    data[8:len(data) - 2000] = bytes(len(data) - 2008)  # footer magic intact, contents zeroed
    victim.write_bytes(bytes(data))
    before = _ledger_bytes(store)
    res = invoke("query", "--store", store, *GOOD)
    assert res.exit_code == 74, res.output
    assert "is damaged" in res.output and "this is a bug" not in res.output
    assert _ledger_bytes(store) == before


def test_a_file_removed_since_it_was_listed_is_not_damage(store, monkeypatch):
    # a torn-line repair deletes an events file it emptied; a query listing files meanwhile
    from dplogs.ingest.store import Store

    listed = Store.event_files
    gone = store / "events" / "day=2024-03-05" / "removed-meanwhile.parquet"
    monkeypatch.setattr(Store, "event_files", lambda self, day=None: [*listed(self, day), gone])
    assert gone not in Store.open(store).readable_event_files()
    assert invoke("query", "--store", store, *GOOD).exit_code == 0


@pytest.mark.parametrize("name", ["ingested.json", "ledger.sqlite.head"])
def test_a_fifo_at_a_store_files_name_is_refused_without_hanging(tmp_path, name):
    """A FIFO put at the name of the store's input registry (coverage) or the ledger's head record
    hung every query forever before anything was charged (found by faults4)."""
    import os
    import subprocess
    import sys

    from tests.adversarial.conftest import ledger_state

    store = auth_store(tmp_path / "store")
    assert invoke("query", "--store", store, *GOOD).exit_code == 0  # a ledger with a head record
    before = ledger_state(store)
    (store / name).unlink()
    os.mkfifo(store / name)
    res = subprocess.run([sys.executable, "-c", "from dplogs.cli import main; main()", "query", "--store", str(store),
                          *GOOD], capture_output=True, text=True, timeout=60)
    assert res.returncode in (66, 74), res.stderr
    assert name in res.stderr and "not a regular file" in res.stderr
    assert ledger_state(store) == before


def test_a_store_whose_creation_failed_is_completed_by_the_rerun(tmp_path, monkeypatch):
    """A full disk (or a kill) while the first ingest created the store left events/, quarantine/
    and units/ without manifest.json, and every later ingest refused the directory as 'not a dplogs
    store' (found by faults4 running the README tour with ENOSPC at each step)."""
    import errno
    import os

    from tests.adversarial.conftest import REPO

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    store = tmp_path / "soc"
    monkeypatch.setattr(os, "replace", full)
    res = invoke("ingest", REPO / "sample_logs" / "auth.log", "--store", store, "--year", "2024")
    assert res.exit_code == 74 and "No space left" in res.output, res.output
    monkeypatch.undo()
    assert not (store / "manifest.json").exists() and store.is_dir()
    res = invoke("ingest", REPO / "sample_logs" / "auth.log", "--store", store, "--year", "2024")
    assert res.exit_code == 0, res.output
    assert invoke("inspect", "--store", store).exit_code == 0
    (store / "events" / "stray").write_text("x")  # a directory holding anything else is still refused
    (store / "manifest.json").unlink()
    assert invoke("ingest", REPO / "sample_logs" / "auth.log", "--store", store).exit_code == 66
