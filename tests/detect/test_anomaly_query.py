"""End to end: anomaly rows → the engine's ordinary DP count per day → time-series scores.

The engine is given a scan over :func:`anomaly_events` instead of the raw store (``Engine``'s
``scan`` argument), so no engine change is needed for "DP counts of anomalous unit-windows per day".
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from dplogs.detect.anomaly_counts import anomaly_events
from dplogs.detect.features import FEATURE_NAMES
from dplogs.detect.kmeans import KMeansModel
from dplogs.detect.timeseries import baseline_scores
from dplogs.engine.api import Engine, time_bucket
from dplogs.engine.plan import Aggregation
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.testing import exact_mode
from tests.detect.detect_helpers import synthetic_events


def _engine(tmp_path, k):
    ledger = Ledger.open(tmp_path / "ledger.sqlite", create=True)
    ledger.set_caps(window_policy="month", epsilon=5.0, delta=1e-5)
    events = synthetic_events()
    model = KMeansModel(centroids=np.zeros((1, len(FEATURE_NAMES))))

    def scan():
        return anomaly_events(events.lazy(), model=model, unit="user.name", threshold=0.3,
                              max_windows_per_unit=k, clip_norm=3.0, seed=7)

    eng = Engine(scan=scan, privacy_unit="user.name", budget_window="month", ledger=ledger)
    q = eng.build(Aggregation.count(), keys=[time_bucket("day")], epsilon=1.0, max_groups=k,
                  max_rows_per_group=1, start="2026-11-01", end="2026-12-01")
    return scan, q, ledger


def test_exact_mode_day_counts_equal_a_group_by_of_the_anomaly_rows(tmp_path):
    scan, q, ledger = _engine(tmp_path, k=3)
    with exact_mode():
        rel = q.release()
    got = rel.to_polars().select(pl.col("bucket").dt.date().alias("day"), pl.col("value").cast(pl.Int64))
    want = scan().collect().group_by(pl.col("@timestamp").dt.date().alias("day")).agg(pl.len().cast(pl.Int64).alias("value"))
    joined = got.join(want, on="day", how="left").with_columns(pl.col("value_right").fill_null(0))
    assert got.height == 30 and (joined["value"] == joined["value_right"]).all()
    assert want["value"].sum() > 0
    assert ledger.spent("2026-11").epsilon == 1.0  # the count is a charged release


def test_time_series_scores_post_process_the_released_counts(tmp_path):
    _, q, ledger = _engine(tmp_path, k=3)
    rel = q.release()
    frame = rel.to_polars().sort("bucket")
    std = frame["scale"][0] * math.sqrt(2)  # discrete Laplace with scale b has std ≈ b√2
    z = baseline_scores(frame["value"].to_numpy(), history=7, noise_std=std)
    assert np.isnan(z[:7]).all() and np.isfinite(z[7:]).all()
    v = frame["value"].to_numpy()
    prev = v[3:10]
    spread = math.sqrt(max(prev.var(ddof=1), std**2) * (1 + 1 / 7))
    assert z[10] == pytest.approx((v[10] - prev.mean()) / spread, rel=1e-12)
