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
from dplogs.schema.units import PER_ROW, UnitRule


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
    spec = FeatureSpec(max_windows_per_unit=k, clip_norm=c)
    # the default rule: rows without user.name are one shared unit, bounded to K rows like any unit
    shared = extract_features(lf, unit="user.name", spec=spec, seed=seed).frame
    assert shared.group_by("unit", "budget_window").len()["len"].max() <= k
    ft = extract_features(lf, unit=UnitRule(("user.name",), PER_ROW), spec=spec, seed=seed)
    per_unit = ft.frame.group_by("unit", "budget_window").len()
    assert per_unit["len"].max() <= k
    x = ft.matrix()
    assert np.all(np.linalg.norm(x, axis=1) <= c * (1 + 1e-12))
    assert np.all(x >= 0)
    # under the per-row opt-in null units are each their own unit: one event, so one row each at most
    nulls = ft.frame.filter(pl.col("unit").struct.field("field") == 2)  # the index no field has
    assert nulls.height == sum(1 for u, *_ in rows if u is None)


def test_scaling_uses_public_constants_not_other_units():
    base = synthetic_events(600, users=6, days=3)
    extra = synthetic_events(400, users=4, days=3).with_columns(
        pl.col("user.name") + "-other", pl.col("source.bytes") * 1000)
    spec = FeatureSpec(max_windows_per_unit=10, clip_norm=100.0)
    a = extract_features(base.lazy(), unit="user.name", spec=spec, seed=1).frame
    b = extract_features(pl.concat([base, extra]).lazy(), unit="user.name", spec=spec, seed=1).frame
    b = b.filter(~pl.col("unit").bin.ends_with(b"-other"))
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


def _events(rows):
    """rows: (user, day of 2026-11 or (month, day), hour, source.ip, source.bytes)."""
    def ts(d, h):
        m, d = d if isinstance(d, tuple) else (11, d)
        return dt.datetime(2026, m, d, h, tzinfo=dt.UTC)
    return conform(pl.DataFrame({
        "@timestamp": [ts(d, h) for _, d, h, _, _ in rows], "user.name": [u for u, *_ in rows],
        "source.ip": [ip for *_, ip, _ in rows], "source.bytes": [b for *_, b in rows],
    })).lazy()


def _row(ft, unit, day):
    return ft.frame.filter((pl.col("unit") == pl.lit(unit.encode(), pl.Binary)) & (pl.col("window_start").dt.day() == day)).row(0, named=True)


def test_history_features_compare_a_unit_with_its_own_earlier_windows():
    usual = [("a", d, 10, "10.0.0.1", 1_000) for d in (2, 3, 4) for _ in range(20)]
    burst = [("a", 5, 10, "10.0.0.1", 500_000_000) for _ in range(160)] + [("a", 5, 11, "10.0.0.9", 1_000)]
    ft = extract_features(_events(usual + burst), unit="user.name",
                          spec=FeatureSpec(max_windows_per_unit=10, clip_norm=10.0), seed=0)
    first, quiet, spike = _row(ft, "a", 2), _row(ft, "a", 3), _row(ft, "a", 5)
    for name in ("events_rise_vs_own_history", "bytes_rise_vs_own_history", "new_source_ips_share"):
        assert first[name] == 0.0 and quiet[name] == 0.0  # no history / nothing above the usual
    # 161 events against a usual 20 (floor 10): log2(171/30)/6; bytes saturate (64x cap)
    assert spike["events_rise_vs_own_history"] == pytest.approx(np.log2(171 / 30) / 6)
    assert spike["bytes_rise_vs_own_history"] == 1.0
    assert spike["new_source_ips_share"] == 0.5  # 10.0.0.9 is new, 10.0.0.1 is not


def test_history_restarts_each_budget_window():
    # the guarantee is per unit per budget window: a November row must not depend on October data
    nov = [("a", d, 10, "10.0.0.1", 1_000) for d in (2, 3) for _ in range(5)]
    octo = [("a", (10, 30), 10, "10.0.0.7", 9_000_000) for _ in range(50)]
    spec = FeatureSpec(max_windows_per_unit=10, clip_norm=10.0)
    a = extract_features(_events(nov), unit="user.name", spec=spec, seed=3).frame
    b = extract_features(_events(nov + octo), unit="user.name", spec=spec, seed=3).frame
    b = b.filter(pl.col("budget_window") == "2026-11")
    assert a.select("window_start", *FEATURE_NAMES).equals(b.select("window_start", *FEATURE_NAMES))


@pytest.mark.parametrize("window,rows", [("5min", 3), ("15min", 2)])
def test_short_feature_windows(window, rows):
    t0 = dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC)
    lf = conform(pl.DataFrame({"@timestamp": [t0 + dt.timedelta(minutes=m) for m in (0, 4, 6, 16)],
                               "user.name": ["a"] * 4})).lazy()
    ft = extract_features(lf, unit="user.name", spec=FeatureSpec(max_windows_per_unit=10, clip_norm=1.0,
                                                                  window=window), seed=0)
    assert ft.frame.height == rows
