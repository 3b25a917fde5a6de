"""Feature rows are bounded: ≤ K rows per unit per budget window, every row norm ≤ C, scaled with
public constants only."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from tests.detect.detect_helpers import synthetic_events
from hypothesis import given, settings
from hypothesis import strategies as st

from dplogs.detect.features import (
    FEATURE_NAMES, FeatureSpec, batch_arrays, check_unit_bound, extract_features, feature_batches,
)
from dplogs.errors import InternalError, PrivacyParameterError
from dplogs.schema import conform


events = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", None]), st.integers(0, 24 * 70 - 1),
              st.sampled_from(["authentication", "process", "web", None]),
              st.sampled_from(["failure", "success", None])),
    min_size=1, max_size=80,
)


@settings(max_examples=40, deadline=None)
@given(rows=events, k=st.integers(1, 4), c=st.floats(0.1, 3.0), seed=st.integers(0, 2**63))
def test_no_unit_exceeds_k_rows_per_budget_window_and_rows_are_clipped(rows, k, c, seed):
    t0 = dt.datetime(2026, 10, 20, tzinfo=dt.UTC)
    lf = conform(pl.DataFrame({
        "@timestamp": [t0 + dt.timedelta(hours=h) for _, h, _, _ in rows],
        "user.name": [u for u, *_ in rows],
        "event.category": [cat for *_, cat, _ in rows],
        "event.outcome": [o for *_, o in rows],
    }, schema_overrides={"user.name": pl.String, "event.category": pl.String, "event.outcome": pl.String})).lazy()
    ft = extract_features(lf, unit="user.name", spec=FeatureSpec(max_windows_per_unit=k, clip_norm=c), seed=seed)
    per_unit = ft.frame.group_by("unit", "budget_window").len()
    assert per_unit["len"].max() <= k
    x = ft.matrix()
    assert np.all(np.linalg.norm(x, axis=1) <= c * (1 + 1e-12))
    assert np.all(x >= 0)
    # null units are each their own unit: one event, so one row each at most
    nulls = ft.frame.filter(pl.col("unit").str.starts_with("\x00null:"))
    assert nulls.height == sum(1 for u, *_ in rows if u is None)


def test_scaling_uses_public_constants_not_other_units():
    base = synthetic_events(600, users=6, days=3)
    extra = synthetic_events(400, users=4, days=3).with_columns(
        pl.col("user.name") + "-other", pl.col("source.bytes") * 1000)
    spec = FeatureSpec(max_windows_per_unit=10, clip_norm=100.0)
    a = extract_features(base.lazy(), unit="user.name", spec=spec, seed=1).frame
    b = extract_features(pl.concat([base, extra]).lazy(), unit="user.name", spec=spec, seed=1).frame
    b = b.filter(~pl.col("unit").str.ends_with("-other"))
    assert a.select("unit", "window_start", *FEATURE_NAMES).equals(b.select("unit", "window_start", *FEATURE_NAMES))


def test_window_choice_is_keyed_by_the_seed():
    lf = synthetic_events(3000, users=5, days=20).lazy()
    spec = FeatureSpec(max_windows_per_unit=2, clip_norm=10.0)
    picks = {tuple(extract_features(lf, unit="user.name", spec=spec, seed=s).frame["window_start"].to_list())
             for s in range(6)}
    assert len(picks) > 1


def test_feature_values_match_a_hand_count():
    t = dt.datetime(2026, 11, 3, 23, tzinfo=dt.UTC)  # a Tuesday, off hours
    lf = conform(pl.DataFrame({
        "@timestamp": [t, t, t.replace(hour=10)],
        "user.name": ["a"] * 3, "host.name": ["h1", "h2", "h2"],
        "event.outcome": ["failure", "success", "failure"], "http.response.status_code": [200, 404, 500],
    })).lazy()
    row = extract_features(lf, unit="user.name", spec=FeatureSpec(max_windows_per_unit=1, clip_norm=100.0)).row(0)
    assert row["failure_ratio"] == pytest.approx(2 / 3)
    assert row["off_hours_share"] == pytest.approx(2 / 3)
    assert row["http_error_share"] == pytest.approx(2 / 3)
    assert row["distinct_hosts"] == pytest.approx(2 / 16)
    assert row["events_total"] == pytest.approx(np.log1p(3) / np.log1p(10_000))
    assert row["host"] == "h2"


def test_spec_validation_says_the_fix():
    with pytest.raises(PrivacyParameterError, match="--max-windows"):
        FeatureSpec(max_windows_per_unit=0, clip_norm=1.0)
    with pytest.raises(PrivacyParameterError, match="--clip-norm"):
        FeatureSpec(max_windows_per_unit=1, clip_norm=float("inf"))


def test_batches_round_trip_and_unit_bound_check():
    x = np.arange(12, dtype=float).reshape(6, 2)
    units = np.array([0, 0, 1, 2, 2, 2])
    batches = feature_batches(x, units, rows_per_batch=4)
    got = np.vstack([batch_arrays(b)[1] for b in batches])
    assert np.array_equal(got, x)
    assert check_unit_bound(batches, 3) == 3
    with pytest.raises(InternalError, match="more than the bound K=2"):
        check_unit_bound(batches, 2)


def test_unit_ids_are_per_budget_window_so_multi_window_training_keeps_k():
    t = [dt.datetime(2026, 10, 30, tzinfo=dt.UTC), dt.datetime(2026, 10, 31, tzinfo=dt.UTC),
         dt.datetime(2026, 11, 1, tzinfo=dt.UTC), dt.datetime(2026, 11, 2, tzinfo=dt.UTC)]
    lf = conform(pl.DataFrame({"@timestamp": t, "user.name": ["a"] * 4})).lazy()
    ft = extract_features(lf, unit="user.name", spec=FeatureSpec(max_windows_per_unit=2, clip_norm=1.0))
    assert ft.frame.height == 4 and ft.frame["unit_id"].n_unique() == 2
    assert check_unit_bound(ft.batches(), 2) == 2
