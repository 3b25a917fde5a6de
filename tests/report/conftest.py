"""A sample store ingested once per session; each test gets its own ledger over its events."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from dplogs.ingest.base import IngestOptions
from dplogs.ingest.ingest import ingest
from dplogs.privacy.ledger import Ledger

REPO = Path(__file__).resolve().parents[2]
NIGHTLY = REPO / "queries" / "reports" / "nightly.toml"


@pytest.fixture(scope="session")
def ingested_sample(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("sample") / "s"
    ingest([REPO / "sample_logs"], store, options=IngestOptions(year=2024))
    return store


def events_of(sample: Path, store: Path) -> Path:
    """``store``: a new store sharing ``sample``'s events and quarantine (linked, read-only) with
    copies of its small files and no ledger."""
    store.mkdir()
    for item in sample.iterdir():
        if item.name in ("events", "quarantine"):  # the store allows these two to be links
            (store / item.name).symlink_to(item)
        elif item.is_file() and not item.name.startswith("ledger"):
            shutil.copy2(item, store / item.name)
    return store


@pytest.fixture
def new_store(ingested_sample, tmp_path) -> Callable[..., Path]:
    """``new_store(epsilon)``: the sample events (linked, read-only) with a fresh ledger capped at
    ``epsilon`` (and δ 1e-5) per month window."""

    def make(epsilon: float = 10.0, name: str = "store") -> Path:
        store = events_of(ingested_sample, tmp_path / name)
        Ledger.open(store / "ledger.sqlite", create=True).set_caps(window_policy="month", epsilon=epsilon, delta=1e-5)
        return store

    return make
