"""Per unit-window anomaly flags as store-shaped rows, for the engine's ordinary DP count path.

:func:`anomaly_events` scores each (unit, window) with a trained model and returns one row per
ANOMALOUS unit-window, conformed to the store schema: ``@timestamp`` = window start, the unit's
value in the identity field it came from (the other fields of the unit chain null before it, so the
store's :class:`~dplogs.schema.units.UnitRule` reads the same unit back, and the protection policy
sees the same source), ``host.name`` = the unit's most frequent host in that window where the chain
allows it, ``event.kind`` =
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
from dplogs.schema.units import SHARED_UNIT, UnitRule

ACTION = "dplogs.anomaly"


def anomaly_events(
    lf: pl.LazyFrame, *, model: Model, unit: str | UnitRule, threshold: float, max_windows_per_unit: int,
    clip_norm: float, window: str = "day", budget_window: str = "month", seed: int | None = None,
    peers: PeerBaseline | None = None,
) -> pl.LazyFrame:
    """Rows (store schema) of the unit-windows whose score exceeds the PUBLIC ``threshold``;
    ``peers``: the model's released peer baseline (its peer features are appended)."""
    if not math.isfinite(threshold):
        raise UsageError(f"threshold must be a finite number, got {threshold}; pass --threshold")
    spec = FeatureSpec(max_windows_per_unit=max_windows_per_unit, clip_norm=clip_norm, window=window,
                       budget_window=budget_window)
    rule = UnitRule.parse(unit)
    table = extract_features(lf, unit=rule, spec=spec, seed=seed)
    if peers is not None:
        table = with_peer_features(table, peers)
    scores = model.scores(table.matrix()) if table.frame.height else []
    flagged = table.frame.with_columns(pl.Series("score", scores, pl.Float64)).filter(pl.col("score") > threshold)
    if len(rule.fields) == 1 and not rule.plain:  # Binary units back to text; the shared unit has no user
        texts = [None if v == SHARED_UNIT else v.decode() for v in flagged["unit"].to_list()]
        flagged = flagged.with_columns(pl.Series("unit", texts, dtype=pl.String))
    rows = flagged.select(
        pl.col("window_start").alias(TIMESTAMP),
        *_identity(rule),
        pl.lit("alert").alias("event.kind"),
        pl.lit(ACTION).alias("event.action"),
        pl.lit("dplogs.detect").alias("event.dataset"),
    )
    return conform(rows.lazy())


def _identity(rule: UnitRule) -> list[pl.Expr]:
    """The chain fields of an anomaly row: its unit's value in the field it came from, null in
    the fields before (and after, except host.name, which carries the busiest host wherever the
    chain reads it only after the unit's field); a shared or per-row unit leaves the chain null."""
    if len(rule.fields) == 1 and not rule.plain:  # per-row units are spelled as a one-field chain's
        field = rule.fields[0]
        return [pl.col("unit").alias(field), *([pl.col("host").alias("host.name")] if field != "host.name" else [])]
    index, value = pl.col("unit").struct.field("field"), pl.col("unit").struct.field("value")
    out = []
    for i, field in enumerate(rule.fields):
        later = pl.col("host") if field == "host.name" else pl.lit(None, pl.String)
        out.append(pl.when(index == i).then(value).when(index < i).then(later).otherwise(None).alias(field))
    if "host.name" not in rule.fields:
        out.append(pl.col("host").alias("host.name"))
    return out
