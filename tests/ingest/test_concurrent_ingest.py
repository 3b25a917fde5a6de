"""Concurrent ingests into one store run one after the other (the store's writer lock)."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

from dplogs.ingest.base import IngestOptions
from dplogs.ingest.ingest import ingest
from dplogs.ingest.store import Store

SAMPLES = Path(__file__).resolve().parents[2] / "sample_logs"


def _ingest(store: str, path: str) -> None:
    ingest([path], store, options=IngestOptions(year=2024))


def test_an_ingest_waits_for_the_writer_lock(tmp_path):
    store = Store.init(tmp_path / "s")
    child = mp.get_context("spawn").Process(target=_ingest, args=(str(store.path), str(SAMPLES / "auth.log")))
    with store.writer_lock():
        child.start()
        time.sleep(4)  # ample for the child to start and parse 2k lines if it did not wait
        assert child.is_alive()
        assert Store.open(store.path).fingerprints() == {}
        assert not list(store.path.glob("events/**/*.parquet"))
    child.join(120)
    assert child.exitcode == 0
    events = Store.open(store.path).scan().collect()
    assert events.height == sum(1 for _ in (SAMPLES / "auth.log").open("rb"))
    assert len(Store.open(store.path).fingerprints()) == 1
