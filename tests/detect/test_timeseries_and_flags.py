"""Time-series scores are post-processing of DP counts; anomaly rows feed the engine's count path."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from tests.detect.detect_helpers import synthetic_events

from dplogs.detect.anomaly_counts import ACTION, anomaly_events
from dplogs.detect.features import FEATURE_NAMES
from dplogs.detect.kmeans import KMeansModel
from dplogs.detect.timeseries import baseline_scores, flag_buckets
from dplogs.errors import UsageError
from dplogs.privacy import Charge, PrivacyLoss, add_noise, calibrate, count_sensitivity, ContributionBounds
from dplogs.schema import STORE_SCHEMA


def _noisy(counts: np.ndarray, epsilon: float) -> tuple[np.ndarray, float]:
    plan = calibrate(mechanism="laplace", sensitivity=count_sensitivity(ContributionBounds(max_groups=1, max_rows_per_group=1)),
                     epsilon=epsilon, integer=True)
    return add_noise(counts, plan, charge=Charge.for_audit(PrivacyLoss(epsilon=epsilon))), plan.std


def test_a_spike_in_dp_counts_is_flagged_and_flat_series_rarely_are():
    true = np.full(60, 200, dtype=np.int64)
    true[45] = 400
    noisy, std = _noisy(true, 0.5)
    z = baseline_scores(noisy, history=14, noise_std=std)
    assert flag_buckets(z, threshold=4.0)[45]
    # false alarms on flat series stay rare: over 40 noisy series, ≤ 2% of buckets
    alarms = 0
    for _ in range(40):
        n, s = _noisy(np.full(60, 200, dtype=np.int64), 0.5)
        alarms += int(flag_buckets(baseline_scores(n, history=14, noise_std=s), threshold=4.0).sum())
    assert alarms <= 0.02 * 40 * 46


def test_baseline_scores_validate():
    with pytest.raises(UsageError, match="history"):
        baseline_scores(np.zeros(5), history=1, noise_std=1.0)
    assert np.isnan(baseline_scores(np.zeros(3), history=5, noise_std=1.0)).all()


def test_anomaly_events_are_store_rows_of_flagged_unit_windows_within_k():
    events = synthetic_events(3000, users=50, days=20)
    odd = pl.DataFrame({"@timestamp": [dt.datetime(2026, 11, 30, 3, tzinfo=dt.UTC)] * 50,
                        "user.name": ["mallory"] * 50, "host.name": ["dc1"] * 50,
                        "event.category": [["iam"]] * 50, "event.outcome": ["failure"] * 50}
                       ).with_columns(pl.col("@timestamp").dt.cast_time_unit("us"))
    lf = pl.concat([events, odd], how="diagonal_relaxed").lazy()
    normal = np.zeros((1, len(FEATURE_NAMES)))
    normal[0, FEATURE_NAMES.index("category.authentication")] = 0.2
    model = KMeansModel(centroids=normal)
    out = anomaly_events(lf, model=model, unit="user.name", threshold=0.5, max_windows_per_unit=2, clip_norm=3.0).collect()
    assert out.schema == STORE_SCHEMA
    assert out.filter(pl.col("user.name") == "mallory")["host.name"].to_list() == ["dc1"]
    assert set(out["event.action"]) == {ACTION}
    assert out.group_by("user.name").len()["len"].max() <= 2
    # what the engine would count per day (pre-noise): the spike day has the anomalous unit
    per_day = out.group_by(pl.col("@timestamp").dt.date()).len()
    assert per_day.filter(pl.col("@timestamp") == dt.date(2026, 11, 30))["len"].item() >= 1
