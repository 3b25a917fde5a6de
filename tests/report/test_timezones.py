"""Time zones: local periods across DST changes, local buckets, and days straddling budget windows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from dplogs.engine.api import Engine
from dplogs.privacy.ledger import Ledger
from dplogs.report import load_report_spec, render, run_report
from tests.report.conftest import NIGHTLY

UTC = dt.timezone.utc


def _berlin():
    return dataclasses.replace(load_report_spec(NIGHTLY), tz="Europe/Berlin")


@pytest.mark.parametrize("day, hours", [(dt.date(2026, 3, 29), 23), (dt.date(2026, 10, 25), 25), (dt.date(2026, 3, 30), 24)])
def test_a_berlin_day_is_its_local_midnights_in_utc(day, hours):
    start, end = _berlin().utc_range(day)
    assert (end - start) == dt.timedelta(hours=hours)
    assert start.astimezone(ZoneInfo("Europe/Berlin")).replace(tzinfo=None) == dt.datetime.combine(day, dt.time())


def test_hour_buckets_of_a_dst_day_follow_local_hours(new_store, monkeypatch):
    """A release over the 25-hour Berlin day of 2026-10-25 has 25 hour buckets, starting at local midnight."""
    monkeypatch.setattr(Engine, "coverage", lambda self, formats=(): None)  # the bucket layout needs no data: skip coverage
    eng = Engine.open(new_store())
    spec = _berlin()
    start, end = spec.utc_range(dt.date(2026, 10, 25))
    q = eng.query_file(spec.sections[0].query, start=start.isoformat(), end=end.isoformat(),
                       time_zone=spec.tz, epsilon=0.5, max_groups=2, max_rows_per_group=2)
    rel = q.release(caller="test")
    buckets = rel.data["hour"].to_list()
    assert len(buckets) == 25 and buckets[0] == dt.datetime(2026, 10, 24, 22, tzinfo=UTC)
    assert buckets[-1] == dt.datetime(2026, 10, 25, 22, tzinfo=UTC)


def test_day_buckets_in_a_zone_start_at_local_midnight_across_dst(new_store, monkeypatch):
    monkeypatch.setattr(Engine, "coverage", lambda self, formats=(): None)  # the bucket layout needs no data: skip coverage
    eng = Engine.open(new_store())
    q = eng.sql('SELECT date_trunc(\'day\', "@timestamp") AS day, COUNT(*) FROM logs GROUP BY 1',
                start="2026-03-27T23:00:00+00:00", end="2026-03-30T22:00:00+00:00", time_zone="Europe/Berlin",
                epsilon=0.5, max_groups=3, max_rows_per_group=2)
    days = q.release(caller="test").data["day"].to_list()
    assert days == [dt.datetime(2026, 3, 27, 23, tzinfo=UTC), dt.datetime(2026, 3, 28, 23, tzinfo=UTC),
                    dt.datetime(2026, 3, 29, 22, tzinfo=UTC)]
    # a zone's day buckets can cut a UTC window in two: one more bucket per window is reachable
    assert q.plan.reach[next(iter(q.plan.reach))] == 3


def test_berlin_report_of_the_spray_day_uses_local_hours(new_store):
    store = new_store()
    run = run_report(_berlin(), store, day=dt.date(2024, 3, 12))
    assert run.first_error is None and run.tz == "Europe/Berlin"
    assert run.utc_start == dt.datetime(2024, 3, 11, 23, tzinfo=UTC)
    doc = json.loads(render(run, "json"))
    assert doc["period"]["tz"] == "Europe/Berlin" and doc["period"]["utc_start"] == "2024-03-11T23:00:00+00:00"
    hours = [c["hour"] for c in doc["sections"][0]["data"]]
    assert hours[0] == "2024-03-12T00:00:00+01:00" and len(hours) == 24
    # the spray (02:10-02:40 UTC) is at 03:00 Berlin time
    # (other sections may have standouts of their own keys, e.g. a host)
    assert "2024-03-12T03:00:00+01:00" in [x["cell"].get("hour") for x in doc["summary"]["standouts"]]
    page = render(run, "html")
    assert "time zone Europe/Berlin" in page and "times Europe/Berlin" in page
    md = render(run, "md")
    assert "2024-03-12 03:00: failures" in md
    # the zone is part of the idempotency key: the UTC report of the same date is a new release
    keys = Ledger.open(store / "ledger.sqlite").committed_keys("report:nightly-soc:2024-03-12@Europe/Berlin:")
    assert len(keys) == 4
    utc = run_report(load_report_spec(NIGHTLY), store, day=dt.date(2024, 3, 12))
    assert not any(s.release.privacy.get("replayed") for s in utc.sections)


def test_a_local_day_straddling_two_budget_windows_is_charged_to_both(new_store, monkeypatch):
    monkeypatch.setattr(Engine, "coverage", lambda self, formats=(): None)  # the sample logs end 2024-03-17: skip coverage
    store = new_store()
    run = run_report(_berlin(), store, day=dt.date(2024, 4, 1))  # 2024-03-31T22:00Z .. 2024-04-01T22:00Z
    assert run.first_error is None
    ledger = Ledger.open(store / "ledger.sqlite")
    assert ledger.spent("2024-03").epsilon == pytest.approx(2.0) == ledger.spent("2024-04").epsilon
    assert [b.window for b in run.budgets] == ["2024-03", "2024-04"]
    doc = json.loads(render(run, "json"))
    assert doc["summary"]["straddles_budget_windows"] is True
    assert "straddle 2 budget windows (2024-03, 2024-04)" in render(run, "md")
    one = run_report(load_report_spec(NIGHTLY), store, day=dt.date(2024, 4, 1))
    assert [b.window for b in one.budgets] == ["2024-04"]


def test_engine_keeps_utc_buckets_by_default(new_store):
    eng = Engine.open(new_store())
    q = eng.sql('SELECT date_trunc(\'hour\', "@timestamp") AS h, COUNT(*) FROM logs GROUP BY 1',
                start="2024-03-12", end="2024-03-13", epsilon=0.5, max_groups=2, max_rows_per_group=2)
    assert q.release(caller="test").data["h"][0] == dt.datetime(2024, 3, 12, tzinfo=UTC)


def test_day_buckets_of_a_zone_whose_clocks_skip_midnight_hold_that_days_events(tmp_path):
    """Santiago's clocks jump from 00:00 to 01:00 on 2024-09-08, so that local day starts at
    04:00 UTC (01:00 -03), where its events are cut. The key's public grid, stepped in the zone
    onto a midnight that does not exist, put the day at 03:00 UTC (23:00 the day before): the
    day's cell fell off the grid and its events were released as 0 + noise. The grid now starts
    each bucket where the events' own truncation does."""
    import polars as pl

    from dplogs.privacy.testing import exact_mode
    from dplogs.schema import conform

    events = conform(pl.DataFrame({"@timestamp": [dt.datetime(2024, 9, 8, h, tzinfo=UTC) for h in (5, 12, 20)],
                                   "user.name": ["a", "b", "c"]}))
    ledger = Ledger.open(tmp_path / "ledger.sqlite", create=True)
    ledger.set_caps(window_policy="month", epsilon=10.0)
    eng = Engine(scan=lambda: events.lazy(), privacy_unit="user.name", budget_window="month", ledger=ledger)
    q = eng.sql('SELECT date_trunc(\'day\', "@timestamp") AS day, COUNT(*) FROM logs GROUP BY 1',
                start="2024-09-07T04:00:00+00:00", end="2024-09-10T03:00:00+00:00", time_zone="America/Santiago",
                epsilon=1.0, max_groups=1, max_rows_per_group=1)
    with exact_mode():
        data = q.release(caller="test").data
    assert dict(zip(data["day"].to_list(), data["value"].to_list())) == {
        dt.datetime(2024, 9, 7, 4, tzinfo=UTC): 0, dt.datetime(2024, 9, 8, 4, tzinfo=UTC): 3,
        dt.datetime(2024, 9, 9, 3, tzinfo=UTC): 0}


@pytest.mark.parametrize("zone, start", [
    ("America/Santiago", dt.datetime(2024, 9, 6, tzinfo=UTC)),  # skips midnight
    ("America/Santiago", dt.datetime(2024, 4, 5, tzinfo=UTC)),  # repeats 23:00-24:00
    ("Australia/Lord_Howe", dt.datetime(2024, 4, 5, tzinfo=UTC)),  # moves back half an hour
    ("Australia/Lord_Howe", dt.datetime(2024, 10, 4, tzinfo=UTC)),
    ("Asia/Kathmandu", dt.datetime(2024, 3, 1, tzinfo=UTC)),  # +05:45
    ("Europe/Berlin", dt.datetime(2026, 10, 24, tzinfo=UTC)),
])
@pytest.mark.parametrize("bucket", ["hour", "day", "week"])
def test_a_time_keys_grid_is_where_its_events_are_cut(zone, start, bucket):
    """Every instant of the window is cut (Key.expr) to a bucket of the key's public grid, and
    every grid bucket is some instant's: a cell outside the grid is dropped from the release.
    Lord Howe's half-hour DST change put every later hour's events half an hour off the grid."""
    import polars as pl

    from dplogs.engine.plan import Key, KeyKind

    key = Key("t", "@timestamp", KeyKind.TIME, bucket=bucket, time_zone=zone)
    end = start + dt.timedelta(days=4)
    instants = pl.datetime_range(start, end, "5m", closed="left", eager=True, time_zone="UTC")
    cut = set(pl.select(key._truncate(pl.lit(instants))).to_series().to_list())
    assert key.domain(start, end).to_list() == sorted(cut)
