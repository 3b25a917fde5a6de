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


TWO_WINDOWS = {"start": "2026-02-25", "end": "2026-03-06"}


def window_neighbours(*, march_days: int = 1) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The per-window neighbour across a month end. D: one background user a day over
    ``TWO_WINDOWS`` plus a victim with one event on Feb 27 and one on each of the first
    ``march_days`` days of March; D′ = D without the victim's March events (its February event
    stays). With L0 = 1, a path that bounds the victim over the whole range keeps its Feb 27 cell
    in D′ always but in D only sometimes, so the count vector moves by 2 while 1 is charged."""
    days = [dt.datetime(2026, 2, 25, 9, tzinfo=dt.UTC) + dt.timedelta(days=i) for i in range(9)]
    march = [dt.datetime(2026, 3, 1 + i, 10, tzinfo=dt.UTC) for i in range(march_days)]
    d = conform(pl.LazyFrame({
        "@timestamp": days + [dt.datetime(2026, 2, 27, 10, tzinfo=dt.UTC)] + march,
        "user.name": [f"u{i}" for i in range(9)] + [VICTIM] * (1 + march_days),
    }))
    return d, d.filter(~((pl.col("user.name") == VICTIM) & (pl.col("@timestamp") >= dt.datetime(2026, 3, 1, tzinfo=dt.UTC))))
