"""Property tests: public keys always come back complete, and one unit never moves the released
(pre-noise) aggregates by more than its bounds allow."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dplogs.engine import Aggregation, time_bucket
from dplogs.privacy.testing import exact_mode
from dplogs.schema import FIELDS

OUTCOMES = list(FIELDS["event.outcome"].allowed)
START = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)

rows = st.lists(
    st.tuples(
        st.integers(min_value=-30, max_value=24 * 5),  # hours from the window start; some outside
        st.sampled_from(["a", "b", "c", "d", None]),
        st.sampled_from(OUTCOMES + [None, "other"]),
    ),
    max_size=60,
)


def to_frame(data) -> pl.DataFrame:
    return pl.DataFrame(
        {"@timestamp": [START + dt.timedelta(hours=h) for h, _, _ in data], "user.name": [u for _, u, _ in data],
         "event.outcome": [o for _, _, o in data]},
        schema={"@timestamp": pl.Datetime("us", "UTC"), "user.name": pl.String, "event.outcome": pl.String},
    )


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=rows, bucket=st.sampled_from(["hour", "day"]), days=st.integers(min_value=1, max_value=4))
def test_public_keys_always_complete(make_engine, data, bucket, days):
    eng = make_engine(to_frame(data))
    end = START + dt.timedelta(days=days)
    q = eng.build(Aggregation.count(), Aggregation.units(), keys=[time_bucket(bucket), "event.outcome"],
                  epsilon=1.0, max_groups=2, max_rows_per_group=2, start=START, end=end)
    rel = q.release(caller="cli").data
    per_bucket = 24 if bucket == "hour" else 1
    expected = {(START + dt.timedelta(hours=24 // per_bucket * i), o) for i in range(days * per_bucket) for o in OUTCOMES}
    for agg in ("count", "distinct_units"):
        cells = rel.filter(pl.col("aggregate") == agg).select("bucket", "event.outcome")
        assert cells.height == len(expected)
        assert set(cells.iter_rows()) == expected


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hours=st.lists(st.integers(min_value=0, max_value=24 * 3 - 1), min_size=1, max_size=80),
       l0=st.integers(min_value=1, max_value=4), linf=st.integers(min_value=1, max_value=4))
def test_one_unit_stays_within_its_bounds(make_engine, hours, l0, linf):
    frame = pl.DataFrame({"@timestamp": [START + dt.timedelta(hours=h) for h in hours], "user.name": ["mallory"] * len(hours)})
    eng = make_engine(frame)
    q = eng.build(Aggregation.count(), Aggregation.units(), keys=[time_bucket("hour")], epsilon=1.0,
                  max_groups=l0, max_rows_per_group=linf, start=START, end=START + dt.timedelta(days=3))
    with exact_mode():
        rel = q.release(caller="cli").data
    counts = rel.filter(pl.col("aggregate") == "count")["value"]
    units = rel.filter(pl.col("aggregate") == "distinct_units")["value"]
    touched = len(set(hours))
    assert (counts > 0).sum() == min(l0, touched) and counts.max() <= linf
    assert counts.sum() <= l0 * linf and units.sum() == min(l0, touched)
