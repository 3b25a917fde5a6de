"""Per unit-window anomaly flags as store-shaped rows, for the engine's ordinary DP count path.

:func:`anomaly_events` scores each (unit, window) with a trained model and returns one row per
ANOMALOUS unit-window, conformed to the store schema: ``@timestamp`` = window start, the privacy
unit column, ``host.name`` = the unit's most frequent host in that window, ``event.kind`` =
``"alert"``, ``event.action`` = ``"dplogs.anomaly"``. A DP ``count`` query over it grouped by day
(public key) or host (private key, partition selection) then releases "anomalous unit-windows per
day/host". Each unit keeps at most K unit-windows per budget window (the same keyed rank as
training), so the engine's bounds L0 = K days, L∞ = 1 row per day hold by construction (the engine
still enforces its own).

The frame itself is NOT a release: it stays inside the engine/backends like any store scan.

>>> import polars as pl, datetime as dt, numpy as np
>>> from dplogs.schema import conform
>>> from dplogs.detect.kmeans import KMeansModel
>>> t = dt.datetime(2026, 11, 2, 12, tzinfo=dt.timezone.utc)
>>> lf = conform(pl.DataFrame({"@timestamp": [t, t], "user.name": ["a", "b"], "host.name": ["h1", "h2"],
...                            "event.outcome": ["failure", "success"]})).lazy()
>>> model = KMeansModel(centroids=np.zeros((1, len(FEATURE_NAMES))))
>>> out = anomaly_events(lf, model=model, unit="user.name", threshold=0.9, max_windows_per_unit=3, clip_norm=3.0)
>>> out.select("user.name", "host.name", "event.action").collect().rows()
[('a', 'h1', 'dplogs.anomaly')]
"""

from __future__ import annotations

import math

import polars as pl

from dplogs.detect.features import FEATURE_NAMES, FeatureSpec, extract_features  # noqa: F401 (doctest)
from dplogs.detect.model import Model
from dplogs.detect.peers import PeerBaseline, with_peer_features
from dplogs.errors import UsageError
from dplogs.schema import TIMESTAMP, conform

ACTION = "dplogs.anomaly"


def anomaly_events(
    lf: pl.LazyFrame, *, model: Model, unit: str, threshold: float, max_windows_per_unit: int,
    clip_norm: float, window: str = "day", budget_window: str = "month", seed: int | None = None,
    peers: PeerBaseline | None = None,
) -> pl.LazyFrame:
    """Rows (store schema) of the unit-windows whose score exceeds the PUBLIC ``threshold``;
    ``peers``: the model's released peer baseline (its peer features are appended)."""
    if not math.isfinite(threshold):
        raise UsageError(f"threshold must be a finite number, got {threshold}; pass --threshold")
    spec = FeatureSpec(max_windows_per_unit=max_windows_per_unit, clip_norm=clip_norm, window=window,
                       budget_window=budget_window)
    table = extract_features(lf, unit=unit, spec=spec, seed=seed)
    if peers is not None:
        table = with_peer_features(table, peers)
    scores = model.scores(table.matrix()) if table.frame.height else []
    flagged = table.frame.with_columns(pl.Series("score", scores, pl.Float64)).filter(pl.col("score") > threshold)
    rows = flagged.select(
        pl.col("window_start").alias(TIMESTAMP),
        pl.col("unit").alias(unit),
        *([pl.col("host").alias("host.name")] if unit != "host.name" else []),
        pl.lit("alert").alias("event.kind"),
        pl.lit(ACTION).alias("event.action"),
        pl.lit("dplogs.detect").alias("event.dataset"),
    )
    return conform(rows.lazy())

