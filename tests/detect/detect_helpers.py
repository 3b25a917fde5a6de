"""Synthetic events for the detector tests."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from dplogs.schema import conform


def synthetic_events(n: int = 3000, users: int = 50, days: int = 20) -> pl.DataFrame:
    """Deterministic events: ``users`` users over ``days`` November days, a mix of categories,
    outcomes, hosts and hours."""
    i = np.arange(n)
    ts = [dt.datetime(2026, 11, 1 + int(k // users) % days, int(k * 7) % 24, tzinfo=dt.UTC) for k in i]
    return conform(pl.DataFrame({
        "@timestamp": ts,
        "user.name": [f"u{k % users}" for k in i],
        "event.category": np.where(i % 3 == 0, "process", "authentication"),
        "event.outcome": np.where(i % 7 == 0, "failure", "success"),
        "host.name": [f"h{k % 5}" for k in i],
        "source.ip": [f"10.0.0.{k % 11}" for k in i],
        "source.bytes": (i * 37) % 5000,
    }))
