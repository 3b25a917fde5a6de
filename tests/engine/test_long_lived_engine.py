"""State an engine reads once and uses later (docs/architecture.md, "Long-lived engines"): an
ingest, a torn line's repair or a replaced ledger that lands while an engine is open or a release
runs is either read as a consistent, slightly old store or refused before anything is charged.
Interleavings are made by calling the writers from inside the reader at the moment in question."""

from __future__ import annotations

import threading

import polars as pl
import pytest

from dplogs.engine.api import Engine
from dplogs.ingest.store import Store
from dplogs.privacy.testing import exact_mode
from tests.ingest.test_store_unit_codes import _events, _store

ACTIONS = ["a0", "a1", "a2", "a3"]
COUNT = "SELECT event.action, COUNT(*) FROM logs GROUP BY 1"
BOUNDS = dict(epsilon=1.0, max_groups=4, max_rows_per_group=10_000, declared={"event.action": ACTIONS},
              start="2026-03-01", end="2026-03-04")


def _hashed_store(path) -> Store:
    """A coded store (3 day files) whose events carry distinct ``event.hash`` ids, as ingest's do."""
    events = _events(800, seed=3)
    ids = pl.concat_list(pl.int_range(pl.len(), dtype=pl.UInt64), pl.lit(0, pl.UInt64)).list.to_array(2)
    return _store(path, "user.name", "shared", [events.with_columns(ids.alias("event.hash"))])


def _counts(release) -> list[float]:
    return release.to_polars().sort("event.action")["value"].to_list()


def test_a_repair_that_empties_a_listed_file_waits_for_the_release_reading_it(tmp_path):
    """A torn last line's repair (`Store.remove_events`, under ingest's writer lock) removed an
    events file a release had listed but not yet read: the release failed with FileNotFoundError
    (exit 70). Now the repair waits until the release has read what it listed; the release
    counts every listed event, and the next one sees the store without them."""
    store = _hashed_store(tmp_path / "s")
    eng = Engine.open(store.path)
    eng.ledger.set_caps(window_policy="month", epsilon=10)
    emptied = store.event_files()[0]
    day, hashes = emptied.parent.name.removeprefix("day="), pl.read_parquet(emptied)["event.hash"]
    with exact_mode():
        whole = _counts(eng.sql(COUNT, **BOUNDS).release())
    listed, repaired = eng._coded_store.unit_codes, []
    repair = threading.Thread(target=lambda: repaired.append(_repair(store, day, hashes)))

    def list_then_repair(rule):  # the files are listed; an ingest repairs a torn line now
        repair.start()
        repair.join(timeout=1.0)
        repaired.append("waited" if repair.is_alive() else "not waited")
        return listed(rule)

    eng._coded_store.unit_codes = list_then_repair
    with exact_mode():
        during = _counts(eng.sql(COUNT, **BOUNDS).release())
    repair.join(timeout=60)
    del eng._coded_store.unit_codes
    assert repaired == ["waited", hashes.len()] and not emptied.exists()
    assert during == whole
    with exact_mode():
        after = _counts(eng.sql(COUNT, **BOUNDS).release())
    assert sum(whole) - sum(after) == hashes.len()
    assert len(eng.ledger.history()) == 3


def _repair(store: Store, day: str, hashes: pl.Series) -> int:
    with store.writer_lock():
        return store.remove_events(day, hashes)


def _ledger_files(store: Store) -> list:
    return [store.path / f"ledger.sqlite{suffix}" for suffix in ("", "-wal", "-shm")]


def test_an_engine_whose_ledger_file_was_removed_or_replaced_charges_nothing(tmp_path):
    """An engine keeps its ledger open. Before, with the store's ledger file deleted it went on
    releasing, charged to the deleted file (which no later run reads), where a fresh run is
    refused (74: what the store spent is unknown); and once `budget set --replace-lost-ledger`
    had made a new one, it was refused as a rolled-back ledger (74, wrongly: a rerun reads the
    new ledger). Now the first is refused as a fresh run is (74), the second as a rerun (75);
    nothing is charged in either."""
    from dplogs.errors import ConcurrentRun, LedgerError
    from dplogs.privacy.ledger import open_store_ledger

    store = _hashed_store(tmp_path / "s")
    eng = Engine.open(store.path)
    eng.ledger.set_caps(window_policy="month", epsilon=10)
    eng.sql(COUNT, **BOUNDS).release()
    for path in _ledger_files(store):
        path.unlink(missing_ok=True)
    with pytest.raises(LedgerError) as fresh:
        Engine.open(store.path).ledger
    with pytest.raises(LedgerError, match="removed") as removed:
        eng.sql(COUNT, **BOUNDS).release()
    assert removed.value.exit_code == fresh.value.exit_code == 74
    new = open_store_ledger(store, create=True, store_id=store.identity, replace_lost=True)
    new.set_caps(window_policy="month", epsilon=10)
    spent = len(new.history())
    with pytest.raises(ConcurrentRun, match="replaced") as replaced:
        eng.sql(COUNT, **BOUNDS).release()
    assert replaced.value.exit_code == 75 and len(new.history()) == spent
    eng.close()  # the cure the message names: the engine opens the ledger now at the path
    eng.sql(COUNT, **BOUNDS).release()
    assert len(new.history()) == spent + 1


def test_an_engine_opened_before_its_store_was_bound_releases_once_budget_set_binds_it(tmp_path):
    """A store made before store ids: its engine is refused (74) until `dplogs budget set` binds
    store and ledger, as the message says. An engine opened before that bind kept refusing after
    it (it read the store id from the manifest it opened with); now it reads the id the bind wrote."""
    import json

    from click.testing import CliRunner

    from dplogs.cli import cli
    from dplogs.errors import LedgerError

    store = _hashed_store(tmp_path / "s")
    manifest = json.loads((store.path / "manifest.json").read_text())
    (store.path / "manifest.json").write_text(json.dumps({**manifest, "store_id": "", "ledger_id": ""}))
    eng = Engine.open(store.path)
    with pytest.raises(LedgerError, match="predates store identities"):
        eng.sql(COUNT, **BOUNDS).release()
    bound = CliRunner().invoke(cli, ["budget", "set", "--store", str(store.path), "--epsilon", "10", "--delta", "0"])
    assert bound.exit_code == 0, bound.output
    eng.sql(COUNT, **BOUNDS).release()
    assert eng.ledger._meta("store_id") == json.loads((store.path / "manifest.json").read_text())["store_id"] != ""
    assert len(eng.ledger.history()) == 1


def test_a_defaults_update_beside_the_first_ledger_open_loses_neither(tmp_path, monkeypatch):
    """`Engine.save_defaults` re-reads the manifest and writes it back; the first ledger open
    records the ledger's id the same way. The id recorded between the other's read and write was
    lost (the store then recorded no ledger: one deleted later would be re-created fresh, its
    spend forgotten). Now the rewrites take turns: both changes are kept."""
    store = _hashed_store(tmp_path / "s")
    eng = Engine.open(store.path)
    opened, order, ids = [], [], []
    read_manifest = Store.open.__func__

    def read_while_the_ledger_opens(cls, path):  # defaults' read done: another engine's first ledger open
        manifest = read_manifest(cls, path)
        if not opened:
            opened.append(threading.Thread(target=lambda: ids.append(Engine.open(store.path).ledger.identity())))
            opened[0].start()
            opened[0].join(timeout=1.0)
            order.append("waited" if opened[0].is_alive() else "not waited")
        return manifest

    monkeypatch.setattr(Store, "open", classmethod(read_while_the_ledger_opens))
    eng.save_defaults(max_groups=3)
    monkeypatch.undo()
    opened[0].join(timeout=60)
    manifest = Store.open(store.path).manifest
    assert manifest.ledger_id == ids[0] != "" and order == ["waited"]
    assert manifest.defaults["max_groups"] == 3 and eng.defaults["max_groups"] == 3


def test_outputs_cannot_replace_the_store_locks(tmp_path):
    """An output renamed onto a lock file gives later lockers another file than the holders:
    `--output STORE/.events.lock` would let a repair rewrite files a release is reading."""
    store = _hashed_store(tmp_path / "s")
    assert all(store.holds(store.path / name) for name in (".ingest.lock", ".events.lock", ".manifest.lock"))
    assert not store.holds(store.path / "scores" / "m.parquet")
