"""A store on read-only storage (a read-only mount, a forensic copy) can still be read by the
budget's reading commands: SQLite cannot open its WAL ledger in place, so they read a private
copy of it, with every check (found by redteam2: `budget verify` exited 74 there)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.adversarial.conftest import GOOD, auth_store, invoke

from dplogs.cli import budget as budget_cli
from dplogs.errors import LedgerIOError


@pytest.fixture()
def spent_store(tmp_path) -> Path:
    store = auth_store(tmp_path / "store", epsilon=5)
    assert invoke("query", "--store", store, *GOOD).exit_code == 0
    return store


def _copies_left() -> list[Path]:
    import tempfile

    return list(Path(tempfile.gettempdir()).glob("dplogs-ledger-copy-*"))


def test_reading_commands_fall_back_to_a_private_copy_when_the_ledger_cannot_be_opened(spent_store, monkeypatch):
    opened = budget_cli.open_store_ledger

    def cannot_open(store, **kw):  # what SQLite does on a read-only mount
        if store.ledger_path.parent == spent_store:
            raise LedgerIOError(f"cannot open the budget ledger {store.ledger_path} (unable to open database file)")
        return opened(store, **kw)

    monkeypatch.setattr("dplogs.privacy.ledger.open_store_ledger", cannot_open)
    monkeypatch.setattr(budget_cli, "open_store_ledger", cannot_open)
    monkeypatch.setattr(budget_cli, "_writable", lambda path: False)
    before = _copies_left()
    res = invoke("budget", "verify", "--store", spent_store)
    assert res.exit_code == 0 and "reading a private copy of its ledger" in res.output and "ok: 1 entries" in res.output
    res = invoke("budget", "show", "--store", spent_store)
    assert res.exit_code == 0 and "2024-03" in res.output
    # a tampered ledger read through the copy still fails verification
    (spent_store / "ledger.sqlite.head").write_text('{"ledger_id": "x", "entries": 9, "head_hash": "y"}')
    res = invoke("budget", "verify", "--store", spent_store)
    assert res.exit_code == 74, res.output
    # the administrator's command never works on a copy
    res = invoke("budget", "set", "--store", spent_store, "--epsilon", "6")
    assert res.exit_code == 74 and "reading a private copy" not in res.output
    import gc

    gc.collect()
    assert _copies_left() == before  # the copies are removed


def test_budget_verify_reads_a_store_on_a_read_only_mount(spent_store, tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "--bind", str(spent_store), str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("this machine does not allow bind mounts (needs root); the copy fallback is tested above")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], capture_output=True).returncode != 0:
            pytest.skip("this machine does not allow read-only remounts; the copy fallback is tested above")
        # in child processes, so no file of the mount stays open here (an in-process run kept
        # the events mapped and the mount busy: it outlived the test)
        dplogs = [sys.executable, "-c", "from dplogs.cli import main; main()"]
        res = subprocess.run([*dplogs, "budget", "verify", "--store", str(mnt)], capture_output=True, text=True)
        assert res.returncode == 0 and "ok: 1 entries" in res.stdout, res.stderr
        res = subprocess.run([*dplogs, "query", "--store", str(mnt), *GOOD], capture_output=True, text=True)
        assert res.returncode == 74, res.stderr  # nothing is released from it
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    shutil.rmtree(mnt, ignore_errors=True)


def test_budget_show_reads_a_store_on_a_full_disk(tmp_path):
    """On a full disk SQLite cannot open the WAL ledger in place (it writes its -shm index), so
    `budget show` exited 74 while the spend it reports was intact (found by hand, session 15): the
    reading commands read a private copy, while a release still fails 74 (it must charge)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("this machine does not allow tmpfs mounts (needs root); test_full_disk_fallback_wiring covers the rule")
    try:
        store = auth_store(mnt / "store", epsilon=5)
        dplogs = [sys.executable, "-c", "from dplogs.cli import main; main()"]
        assert subprocess.run([*dplogs, "query", "--store", str(store), *GOOD], capture_output=True).returncode == 0
        (store / "ledger.sqlite-shm").unlink(missing_ok=True)  # as after a clean close: opening makes it again
        with open(mnt / "fill", "wb") as f:  # fill the disk
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
            except OSError:
                pass
        res = subprocess.run([*dplogs, "budget", "show", "--store", str(store)], capture_output=True, text=True)
        assert res.returncode == 0 and "on a full disk: reading a private copy" in res.stderr, res.stderr
        assert "2024-03" in res.stdout and "entries" in res.stdout
        res = subprocess.run([*dplogs, "query", "--store", str(store), *GOOD], capture_output=True, text=True)
        assert res.returncode == 74 and "full" in res.stderr, res.stderr
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_fallback_wiring(spent_store, monkeypatch):
    """Without root: the copy is read only when the store is read-only or its disk full; any other
    I/O trouble opening the ledger stays an error (74)."""
    def cannot_open(store, **kw):
        raise LedgerIOError(f"cannot open the budget ledger {store.ledger_path} (disk I/O error)")

    monkeypatch.setattr(budget_cli, "open_store_ledger", cannot_open)
    monkeypatch.setattr(budget_cli, "_full", lambda path: False)
    assert invoke("budget", "show", "--store", spent_store).exit_code == 74
    monkeypatch.setattr(budget_cli, "_full", lambda path: True)
    res = invoke("budget", "show", "--store", spent_store)
    assert res.exit_code == 0 and "on a full disk: reading a private copy" in res.output, res.output
