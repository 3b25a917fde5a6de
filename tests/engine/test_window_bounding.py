"""Bounds hold per (unit, budget window), the unit of the neighbouring relation (docs/privacy.md).

A query whose range spans budget windows bounds each unit separately in each window: a unit's
events in one window never decide which of its cells in another window are kept, so removing a
unit's events in one window (the neighbour) changes only that window's cells."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from dplogs.backends.polars_backend import PolarsBackend
from dplogs.engine import Aggregation, time_bucket
from dplogs.engine.execute import UNIT, aggregate, prepare
from dplogs.privacy.windows import window_key, window_start
from dplogs.schema.units import PER_ROW, UNIT_DTYPE, UnitRule
from dplogs.privacy.testing import exact_mode


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.timezone.utc)


def frame() -> pl.DataFrame:
    """``victim`` has one event on Feb 27 and one on each of Mar 1-4; nine other users one each
    on Feb 25 ... Mar 5 (inside any bounds)."""
    rows = [(utc(2026, 2, 27, 10), "victim")] + [(utc(2026, 3, d, 10), "victim") for d in range(1, 5)]
    rows += [(utc(2026, 2, 25, 9) + dt.timedelta(days=i), f"o{i}") for i in range(9)]
    return pl.DataFrame(rows, schema=["@timestamp", "user.name"], orient="row")


@pytest.mark.parametrize("policy, windows", [("month", 2), ("week", 2), ("day", 9)])
@pytest.mark.parametrize("backend", [PolarsBackend(), PolarsBackend(cell_codes=False), PolarsBackend(rows_per_partition=2)])
def test_each_unit_is_bounded_once_per_window(make_engine, policy, windows, backend):
    eng = make_engine(frame(), policy=policy)
    q = eng.build(Aggregation.count(), Aggregation.units(), keys=[time_bucket("day")], epsilon=1.0,
                  max_groups=1, max_rows_per_group=1, start="2026-02-25", end="2026-03-06")
    assert len(q.plan.budget_windows) == windows
    for _ in range(5):  # fresh seeds: the kept cells vary, their number per (unit, window) never does
        main, _ = aggregate(q.plan, eng.scan(), backend)
        # the others are always kept; the victim keeps exactly one cell per window it is in
        victim_windows = {window_key(utc(2026, 2, 27), policy)} | {window_key(utc(2026, 3, d), policy) for d in range(1, 5)}
        assert int(main["rows"].sum()) == 9 + len(victim_windows)
        assert main["rows"].max() <= 2 and main["units"].equals(main["rows"])


@pytest.mark.parametrize("rule, dtype", [(UnitRule(("user.name",), PER_ROW), pl.String), (UnitRule(("user.name",)), pl.Binary),
                                        (UnitRule(("user.name", "host.name")), UNIT_DTYPE)])
def test_one_window_bounds_the_unit_alone(make_engine, rule, dtype):
    """Inside one window the bounding unit is the rule's unit itself (no per-(unit, window) struct):
    the plain column under the per-row opt-in, Binary with the shared unit, a {field, value} struct
    for a chain."""
    eng = make_engine(frame(), unit=rule)
    q = eng.build(Aggregation.count(), epsilon=1.0, max_groups=1, max_rows_per_group=1, start="2026-03-01", end="2026-03-06")
    assert prepare(q.plan, eng.scan()).collect_schema()[UNIT] == dtype


def test_window_neighbour_changes_only_its_window(make_engine):
    """Removing the victim's March events leaves every February cell exactly as it was."""
    d = frame()
    d_prime = d.filter(~((pl.col("user.name") == "victim") & (pl.col("@timestamp") >= utc(2026, 3, 1))))
    for data in (d, d_prime):
        eng = make_engine(data)
        q = eng.build(Aggregation.count(), keys=[time_bucket("day")], epsilon=1.0, max_groups=1,
                      max_rows_per_group=1, start="2026-02-25", end="2026-03-06")
        for _ in range(5):  # fresh seeds each time
            with exact_mode():
                rel = q.release(caller="test")
            feb = rel.data.filter(pl.col("bucket") < utc(2026, 3, 1))["value"].to_list()
            assert feb == [1.0, 1.0, 2.0, 1.0]  # one other user a day, and the victim's Feb 27 cell always


def test_window_start_agrees_with_window_key():
    ts = pl.datetime_range(utc(2020, 12, 25), utc(2021, 1, 12), "7h", eager=True, time_zone="UTC")
    for policy in ("day", "week", "month"):
        starts = pl.select(ts.alias("t")).select(window_start("t", policy)).to_series().to_list()
        for t, s in zip(ts.to_list(), starts, strict=True):
            assert window_key(t, policy) == window_key(s, policy) and s <= t
            assert window_key(s - dt.timedelta(microseconds=1), policy) != window_key(s, policy)
