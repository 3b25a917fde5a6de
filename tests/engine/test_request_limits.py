"""Request-size limits in the engine: public time-bucket domains are counted by arithmetic (equal to
the built domain), and exact sums saturate instead of refusing by row count."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dplogs.backends import polars_backend
from dplogs.backends.polars_backend import PolarsBackend
from dplogs.engine.plan import TIME_BUCKETS, Key, KeyKind
from dplogs.privacy.bounds import Clamp, ContributionBounds

UTC = dt.timezone.utc
_starts = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(_starts, st.integers(min_value=1, max_value=3 * 10**12), st.sampled_from(sorted(TIME_BUCKETS)), st.booleans())
def test_time_domain_size_is_the_built_domain_length(start, span_us, bucket, on_boundary):
    if on_boundary:
        start = start.replace(second=0, microsecond=0)
        span_us -= span_us % (60 * 10**6) or 0
        span_us = max(span_us, 60 * 10**6)
    end = start + dt.timedelta(microseconds=span_us if bucket != "minute" else span_us // 1000)
    key = Key("t", "@timestamp", KeyKind.TIME, bucket=bucket)
    assert key.domain_size(start, end) == key.domain(start, end).len()


def test_exact_sums_saturate_without_a_row_count_refusal(monkeypatch):
    """Regression: a fixed row limit refused sums depending on the data and printed the row count.
    Now group sums are exact in Int128 and clipped at ±MAX_EXACT_SUM_UNITS grid units (shrunk here
    to 1000 units so a small frame reaches it); the clip is 1-Lipschitz, so sensitivity holds."""
    monkeypatch.setattr(polars_backend, "MAX_EXACT_SUM_UNITS", 1000)
    clamp = Clamp(lo=0, hi=1)  # grid 2^-24: each row adds 2^24 units
    lf = pl.LazyFrame({"u": [f"u{i}" for i in range(50)], "g": ["a"] * 25 + ["b"] * 25, "v": [1.0] * 25 + [0.0] * 25})
    out = PolarsBackend().bounded_aggregate(
        lf, unit="u", keys=["g"], bounds=ContributionBounds(max_groups=1, max_rows_per_group=1), sums={"v": clamp}, seed=3
    )
    sums = dict(zip(out["g"], out["sum_v"]))
    assert sums == {"a": 1000 * clamp.grid, "b": 0.0}
