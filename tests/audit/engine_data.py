"""Worst-case neighbouring store frames for auditing the engine (STORE_SCHEMA LazyFrames)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from dplogs.schema import conform

T = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
WINDOW = {"start": "2026-11-01", "end": "2026-12-01"}
VICTIM = "victim"
OUTCOMES = ["failure", "success", "unknown"]


def neighbours(
    *, victim_rows: int, victim_outcome: str = "failure", victim_bytes: float = 1e6,
    victim_host: str = "h-victim", others: int = 30, host_share: int = 0,
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """D: ``others`` background users with one event each (inside any bounds, so bounding them is
    seed-independent) plus a victim with ``victim_rows`` events; ``host_share`` background users
    also use the victim's host. D′ = D without the victim."""
    users = [f"u{i}" for i in range(others)]
    outcomes = [OUTCOMES[i % 3] for i in range(others)]
    sizes = [float(i % 50) for i in range(others)]
    hosts = [victim_host if i < host_share else f"h{i}" for i in range(others)]
    users += [VICTIM] * victim_rows
    outcomes += [victim_outcome] * victim_rows
    sizes += [victim_bytes] * victim_rows
    hosts += [victim_host] * victim_rows
    d = conform(pl.LazyFrame({
        "@timestamp": [T] * len(users), "user.name": users, "event.outcome": outcomes,
        "source.bytes": sizes, "host.name": hosts,
    }))
    return d, d.filter(pl.col("user.name") != VICTIM)
