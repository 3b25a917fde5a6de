"""Feature rows per (privacy unit, time window), bounded so the detector's guarantee is per unit
per budget window.

Every feature is scaled into [0, 1] with PUBLIC constants (caps declared here, never estimated from
the data), so no statistic of the data leaks through the standardisation. Then:

- each unit keeps at most ``max_windows_per_unit`` (K) windows per budget window, chosen by a keyed
  pseudo-random rank with a fresh secret seed (no bias towards busy or quiet windows);
- each row is clipped to L2 norm ``clip_norm`` (C).

The training loops consume the rows as ``pyarrow.RecordBatch`` es with columns ``unit_id``
(int64, dense per (unit, budget window)) and ``x`` (fixed-size list of float64), see :func:`feature_batches`.

>>> import polars as pl, datetime as dt
>>> from dplogs.schema import conform
>>> t = dt.datetime(2026, 11, 2, 3, tzinfo=dt.timezone.utc)
>>> lf = conform(pl.DataFrame({"@timestamp": [t, t], "user.name": ["a", "a"],
...                            "event.outcome": ["failure", "success"]})).lazy()
>>> ft = extract_features(lf, unit="user.name", spec=FeatureSpec(max_windows_per_unit=2, clip_norm=3.0))
>>> ft.frame.height, ft.row(0)["failure_ratio"], ft.row(0)["off_hours_share"]
(1, 0.5, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from dplogs.errors import InternalError, PrivacyParameterError, UsageError
from dplogs.privacy.randomness import secret_seed
from dplogs.schema import FIELDS, TIMESTAMP
from dplogs.schema.units import PER_ROW, UnitRule

CATEGORIES: tuple[str, ...] = tuple(FIELDS["event.category"].allowed or ())
COUNT_CAP = 1_000  # a category count above this saturates the feature at 1
TOTAL_CAP = 10_000
DISTINCT_CAP = 16  # distinct hosts / source IPs / destination ports saturate here
BYTES_CAP = 1e9
OFF_HOURS = (6, 20)  # UTC hours [6, 20) on weekdays are office hours
RISE_CAP = 6.0  # log2 rise over the unit's own usual (64x) saturates the history features at 1
RISE_FLOORS = {"_events": 10.0, "_bytes": 1e6}  # a rise from (near) nothing counts from these floors
HISTORY_WARMUP = 2  # earlier windows a unit needs before its history features are computed
NOVELTY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("source.ip", "new_source_ips_share"),
    ("host.name", "new_hosts_share"),
    ("process.name", "new_processes_share"),
    ("process.parent.executable", "new_parents_share"),
)
"""Columns whose values are tracked per unit: a value is "new" in the first window of the budget
window where this unit shows it."""

FEATURE_NAMES: tuple[str, ...] = (
    *(f"category.{c}" for c in CATEGORIES),
    "events_total",
    "failure_ratio",
    "distinct_hosts",
    "distinct_source_ips",
    "distinct_destination_ports",
    "bytes_log_mean",
    "http_error_share",
    "off_hours_share",
    "events_rise_vs_own_history",
    "bytes_rise_vs_own_history",
    *(name for _, name in NOVELTY_COLUMNS),
)
"""Public feature vocabulary, in column order."""

WINDOWS = {"5min": "5m", "15min": "15m", "hour": "1h", "day": "1d"}
"""Feature windows (public) and their polars truncation periods."""
_BUDGET_FORMATS = {"day": "%Y-%m-%d", "week": "%G-W%V", "month": "%Y-%m"}


@dataclass(frozen=True)
class FeatureSpec:
    """Public: how feature rows are cut and bounded. ``window`` is the feature window (5min|15min|hour|day),
    ``budget_window`` the ledger window the per-unit bound K applies to (day|week|month)."""

    max_windows_per_unit: int
    clip_norm: float
    window: str = "day"
    budget_window: str = "month"

    def __post_init__(self) -> None:
        k = self.max_windows_per_unit
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise PrivacyParameterError(f"max_windows_per_unit must be an integer >= 1, got {k!r}; pass --max-windows")
        if not (isinstance(self.clip_norm, (int, float)) and math.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise PrivacyParameterError(f"clip_norm must be finite and > 0, got {self.clip_norm!r}; pass --clip-norm")
        if self.window not in WINDOWS:
            raise UsageError(f"feature window {self.window!r} is invalid; pass --window {', '.join(WINDOWS)}")
        if self.budget_window not in _BUDGET_FORMATS:
            raise UsageError(f"budget window {self.budget_window!r} is invalid; use day, week or month")
        object.__setattr__(self, "clip_norm", float(self.clip_norm))


@dataclass(frozen=True)
class FeatureTable:
    """Bounded feature rows. Inside the trust boundary: never released as such.

    ``frame`` columns: ``unit``, ``budget_window``, ``window_start``, ``host`` (the unit's most
    frequent host.name in the window), ``module`` (its most frequent event.module: the peer group
    of :mod:`dplogs.detect.peers`), ``events`` and ``bytes`` (the window's raw volumes),
    ``processes`` (the window's distinct process executables, lower-cased: the peers' process
    table), ``unit_id``, then one Float64 column per feature name."""

    frame: pl.DataFrame
    names: tuple[str, ...]
    spec: FeatureSpec

    def __post_init__(self) -> None:
        missing = [c for c in ("unit_id", *self.names) if c not in self.frame.columns]
        if missing:
            raise InternalError(f"feature table misses columns {missing}")

    @property
    def dim(self) -> int:
        return len(self.names)

    def row(self, i: int) -> dict:
        return self.frame.row(i, named=True)

    def matrix(self) -> np.ndarray:
        return self.frame.select(self.names).to_numpy().astype(np.float64, copy=False)

    def batches(self, rows_per_batch: int = 65_536) -> list[pa.RecordBatch]:
        return feature_batches(self.matrix(), self.frame["unit_id"].to_numpy(), rows_per_batch=rows_per_batch)


def _scaled_log(expr: pl.Expr, cap: float) -> pl.Expr:
    return (expr.cast(pl.Float64).clip(0, cap).log1p() / math.log1p(cap))


def extract_features(lf: pl.LazyFrame, *, unit: str | UnitRule, spec: FeatureSpec, seed: int | None = None) -> FeatureTable:
    """Bounded, clipped feature rows per (unit, window) from a store LazyFrame; ``unit`` is the
    store's :class:`~dplogs.schema.units.UnitRule` (or its spelling: rows without identity then
    form one shared unit).

    ``seed`` keys the rank that picks ≤ K windows per unit per budget window; leave it ``None``
    (a fresh secret) outside tests.
    """
    rule = UnitRule.parse(unit)
    seed = secret_seed() if seed is None else seed
    ts = pl.col(TIMESTAMP)
    unit_key = unit_keys(rule).alias("unit")
    hour = ts.dt.hour()
    off = (hour < OFF_HOURS[0]) | (hour >= OFF_HOURS[1]) | (ts.dt.weekday() >= 6)
    # added as floats: int64 byte counts near 2^63 (a hostile log's) wrapped to a negative sum
    nbytes = pl.sum_horizontal(pl.col("source.bytes", "destination.bytes", "http.response.body.bytes")
                               .cast(pl.Float64).fill_null(0.0))
    aggs = [
        *(_scaled_log(pl.col("event.category").list.contains(c).sum(), COUNT_CAP).alias(f"category.{c}") for c in CATEGORIES),
        _scaled_log(pl.len(), TOTAL_CAP).alias("events_total"),
        ((pl.col("event.outcome") == "failure").sum() / pl.len()).cast(pl.Float64).alias("failure_ratio"),
        *((pl.col(col).drop_nulls().n_unique().clip(0, DISTINCT_CAP) / DISTINCT_CAP).cast(pl.Float64).alias(name)
          for col, name in (("host.name", "distinct_hosts"), ("source.ip", "distinct_source_ips"),
                            ("destination.port", "distinct_destination_ports"))),
        (nbytes.clip(0, BYTES_CAP).log1p().mean() / math.log1p(BYTES_CAP)).alias("bytes_log_mean"),
        ((pl.col("http.response.status_code") >= 400).sum() / pl.len()).cast(pl.Float64).alias("http_error_share"),
        (off.sum() / pl.len()).cast(pl.Float64).alias("off_hours_share"),
    ]
    keys = ["unit", "budget_window", "window_start"]
    events = (
        lf.filter(ts.is_not_null())
        .with_columns(unit_key)
        .with_columns(
            ts.dt.truncate(WINDOWS[spec.window]).alias("window_start"),
            ts.dt.strftime(_BUDGET_FORMATS[spec.budget_window]).alias("budget_window"),
        )
    )
    rows = (
        events.group_by(keys)
        .agg(*aggs, pl.col("host.name").drop_nulls().mode().sort().first().alias("host"),
             pl.col("event.module").drop_nulls().mode().sort().first().alias("module"),
             pl.col("process.executable").drop_nulls().str.to_lowercase().unique().sort().alias("processes"),
             pl.len().alias("_events"), nbytes.clip(0, BYTES_CAP).sum().alias("_bytes"),
             *(pl.col(col).drop_nulls().n_unique().alias(f"_distinct:{col}") for col, _ in NOVELTY_COLUMNS))
    )
    rows = _with_own_history(rows, events, keys)
    rows = (
        rows.with_columns(pl.col(FEATURE_NAMES).fill_null(0.0))
        .filter(
            pl.struct("unit", "window_start").hash(seed=seed).rank("ordinal").over("unit", "budget_window")
            <= spec.max_windows_per_unit
        )
        # the sampling/bounding unit is (unit, budget window): the neighbouring relation changes
        # one unit inside ONE budget window, i.e. at most the K rows of one unit_id
        .with_columns(pl.struct("unit", "budget_window").rank("dense").cast(pl.Int64).sub(1).alias("unit_id"))
        .sort("unit", "window_start")
        .collect()
    )
    x = clip_rows(rows.select(FEATURE_NAMES).to_numpy().astype(np.float64), spec.clip_norm)
    frame = rows.with_columns(pl.Series(name, x[:, i]) for i, name in enumerate(FEATURE_NAMES))
    return FeatureTable(frame=frame, names=FEATURE_NAMES, spec=spec)


def unit_keys(rule: UnitRule) -> pl.Expr:
    """Each row's unit as the detector groups by it: :meth:`UnitRule.expr`, except under the
    ``per-row`` opt-in, where a row without identity is its own unit, keyed by its row number as
    ``{field: len(fields) + 1, value}``, an index no field has (a single-field rule is spelled as a
    one-field chain here). The old key of such a row under a single-field rule, the string
    "\\x00null:<row>", was a user name a JSON log can carry, and that user merged with the row.

    >>> import polars as pl
    >>> lf = pl.LazyFrame({"user.name": ["\\x00null:1", None]})
    >>> lf.select(unit_keys(UnitRule(("user.name",), PER_ROW))).collect().to_series().to_list()
    [{'field': 0, 'value': '\\x00null:1'}, {'field': 2, 'value': '1'}]
    """
    if rule.unattributed != PER_ROW:
        return rule.expr()
    named = rule.expr()
    if rule.plain:
        value = pl.col(rule.fields[0])
        named = pl.when(value.is_not_null()).then(pl.struct(pl.lit(0, pl.UInt8).alias("field"), value.alias("value")))
    row = pl.int_range(pl.len()).cast(pl.String)
    alone = pl.struct(pl.lit(len(rule.fields) + 1, pl.UInt8).alias("field"), row.alias("value"))
    return pl.when(named.is_null()).then(alone).otherwise(named)


def _rise(now: pl.Expr, usual: pl.Expr, floor: float) -> pl.Expr:
    """How far ``now`` rises above ``usual`` (log2 of (now + floor) / (usual + floor), from 0 = not
    above to 1 = RISE_CAP doublings); the public floor keeps a first few events or kilobytes after a
    quiet history from counting as a rise."""
    return (((now + floor) / (usual + floor)).log(2).clip(0, RISE_CAP) / RISE_CAP).cast(pl.Float64)


def _with_own_history(rows: pl.LazyFrame, events: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Features comparing a unit-window with the SAME unit's earlier windows of the SAME budget
    window (the history restarts each budget window, so a row depends only on its unit's data in
    its budget window, which is what the K bound and the ledger account for):

    - ``events_rise_vs_own_history`` / ``bytes_rise_vs_own_history``: the rise of the window's
      event count / bytes over the mean of the unit's earlier windows;
    - ``new_*_share``: the share of the window's distinct source IPs, hosts, processes and parent
      executables that this unit had not shown in an earlier window.

    A unit with fewer than HISTORY_WARMUP earlier windows has too little history (on day 2 every
    host is "new"): all of them are 0 there."""
    unit_bw = ["unit", "budget_window"]
    order = pl.col("window_start").rank("ordinal").over(unit_bw)  # 1 = the unit's first window
    for col, name in NOVELTY_COLUMNS:
        firsts = (events.filter(pl.col(col).is_not_null()).group_by(*unit_bw, col)
                  .agg(pl.col("window_start").min()).group_by(keys).agg(pl.len().alias(f"_new:{col}")))
        rows = rows.join(firsts, on=keys, how="left")
    prev_n = order - 1
    usual = {c: (pl.col(c).cum_sum().over(unit_bw, order_by="window_start") - pl.col(c)) / prev_n
             for c in ("_events", "_bytes")}
    history = order > HISTORY_WARMUP
    return rows.with_columns(
        pl.when(history).then(_rise(pl.col("_events"), usual["_events"], RISE_FLOORS["_events"])).otherwise(0.0)
        .alias("events_rise_vs_own_history"),
        pl.when(history).then(_rise(pl.col("_bytes"), usual["_bytes"], RISE_FLOORS["_bytes"])).otherwise(0.0)
        .alias("bytes_rise_vs_own_history"),
        *(pl.when(history & (pl.col(f"_distinct:{col}") > 0))
          .then(pl.col(f"_new:{col}").fill_null(0) / pl.col(f"_distinct:{col}")).otherwise(0.0)
          .cast(pl.Float64).alias(name) for col, name in NOVELTY_COLUMNS),
    ).drop(*(f"_{kind}:{col}" for col, _ in NOVELTY_COLUMNS for kind in ("new", "distinct"))).rename(
        {"_events": "events", "_bytes": "bytes"})


def clip_rows(x: np.ndarray, clip_norm: float) -> np.ndarray:
    """Scale each row down to L2 norm ≤ ``clip_norm`` (rows already inside are unchanged).

    >>> clip_rows(np.array([[3.0, 4.0], [0.3, 0.4]]), 1.0).round(3).tolist()
    [[0.6, 0.8], [0.3, 0.4]]
    """
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    scale = np.minimum(1.0, clip_norm / np.maximum(norms, 1e-300))
    return x * scale[:, None]


def feature_batches(x: np.ndarray, unit_id: np.ndarray, *, rows_per_batch: int = 65_536) -> list[pa.RecordBatch]:
    """Rows as Arrow record batches (``unit_id`` int64, ``x`` fixed-size list of float64), the
    input of every training loop (and what Spark's ``mapInArrow`` hands it, see
    :mod:`dplogs.detect.spark_loop`).

    >>> b = feature_batches(np.eye(3), np.arange(3), rows_per_batch=2)
    >>> [x.num_rows for x in b], batch_arrays(b[1])[1].tolist()
    ([2, 1], [[0.0, 0.0, 1.0]])
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    unit_id = np.asarray(unit_id, dtype=np.int64)
    if x.ndim != 2 or len(unit_id) != len(x):
        raise InternalError("feature matrix and unit ids disagree in shape")
    d = x.shape[1]
    out = []
    for s in range(0, len(x), rows_per_batch):
        xs = x[s:s + rows_per_batch]
        col = pa.FixedSizeListArray.from_arrays(pa.array(xs.ravel()), d)
        out.append(pa.RecordBatch.from_arrays([pa.array(unit_id[s:s + rows_per_batch]), col], ["unit_id", "x"]))
    return out


def empty_batch(dim: int) -> pa.RecordBatch:
    """A feature batch of no rows and ``dim`` features (what a per-batch function sees of no data)."""
    col = pa.FixedSizeListArray.from_arrays(pa.array([], pa.float64()), dim)
    return pa.RecordBatch.from_arrays([pa.array([], pa.int64()), col], ["unit_id", "x"])


class FeatureBatches:
    """Bounded feature rows held on this machine as Arrow batches: the source the training loops
    read. :meth:`total` runs a per-batch function (clipped sums, counts, gradient sums) over every
    batch and adds the results; :class:`dplogs.detect.spark_loop.SparkFeatureBatches` is the same
    source with the batches on Spark executors."""

    def __init__(self, batches: list[pa.RecordBatch], dim: int) -> None:
        self.batches = list(batches)
        self.dim = dim

    def total(self, fn: Any, *args: Any) -> tuple[np.ndarray, ...]:
        """The element-wise sum over batches of ``fn(batch, *args)`` (a tuple of arrays)."""
        out = None
        for b in self.batches:
            part = fn(b, *args)
            out = part if out is None else tuple(a + p for a, p in zip(out, part))
        return fn(empty_batch(self.dim), *args) if out is None else out

    def unit_count(self, max_rows_per_unit: int) -> int:
        return check_unit_bound(self.batches, max_rows_per_unit)

    def close(self) -> None:
        """Nothing to release here (the Spark source unpersists its rows)."""


def as_source(batches: Any, dim: int) -> Any:
    """A list of feature batches as a :class:`FeatureBatches`; a source as it is."""
    return FeatureBatches(batches, dim) if isinstance(batches, list) else batches


def batch_arrays(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """(unit_id, X) numpy views of one feature batch."""
    col = batch.column("x")
    d = col.type.list_size
    x = col.values.to_numpy(zero_copy_only=False).reshape(-1, d)
    return batch.column("unit_id").to_numpy(zero_copy_only=False), x


def check_unit_bound(batches: list[pa.RecordBatch], max_rows_per_unit: int) -> int:
    """Number of units; raises if any unit has more than K rows (the loop's sensitivity would be
    wrong, so this is a bug upstream, not a user error)."""
    counts: np.ndarray = np.zeros(0, dtype=np.int64)
    for b in batches:
        u = b.column("unit_id").to_numpy(zero_copy_only=False)
        if len(u) == 0:
            continue
        c = np.bincount(u)
        if len(c) > len(counts):
            counts = np.pad(counts, (0, len(c) - len(counts)))
        counts[: len(c)] += c
    if len(counts) and counts.max() > max_rows_per_unit:
        raise InternalError(f"a unit has {counts.max()} feature rows, more than the bound K={max_rows_per_unit}")
    return len(counts)

