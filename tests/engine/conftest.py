"""Fixtures for the engine tests: engines over in-memory frames with a real ledger and the polars
backend, and a store built from sample_logs with `dplogs ingest`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from dplogs.backends.base import get_backend
from dplogs.cli import cli
from dplogs.engine import Engine
from dplogs.privacy.ledger import Ledger
from dplogs.schema import conform
from dplogs.schema.units import UnitRule

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def make_engine(tmp_path: Path) -> Callable[..., Engine]:
    """``make_engine(frame, epsilon_cap=..., unit=..., defaults=...)``: an engine over ``frame``
    (``unit``: a UnitRule or its spelling, rows without identity then one shared unit)
    (conformed to the store schema) with a fresh ledger capped per month."""
    counter = iter(range(10_000))

    def make(frame: pl.DataFrame, *, epsilon_cap: float = 1e6, rho_cap: float | None = None, delta_cap: float = 1e-2,
             unit: str | UnitRule = "user.name", defaults: dict | None = None, policy: str = "month") -> Engine:
        lf = conform(frame.lazy())
        ledger = Ledger.open(tmp_path / f"ledger{next(counter)}.sqlite", create=True)
        ledger.set_caps(window_policy=policy, epsilon=epsilon_cap, delta=delta_cap, rho=rho_cap)
        return Engine(scan=lambda: lf, privacy_unit=unit, budget_window=policy, defaults=defaults,
                      ledger=ledger, backend=get_backend("polars"))

    return make


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sample_logs ingested into a store whose ledger allows a generous monthly budget."""
    store = tmp_path_factory.mktemp("store") / "st"
    result = CliRunner().invoke(cli, ["ingest", str(REPO / "sample_logs"), "--store", str(store), "--year", "2024"])
    assert result.exit_code == 0, result.output
    Ledger.open(store / "ledger.sqlite", create=True).set_caps(window_policy="month", epsilon=1000.0, delta=1e-3)
    return store
