"""The detector's feature rows computed by Spark SQL: the twin of
:func:`dplogs.detect.features.extract_features`.

Same public scaling constants, same features per (unit, budget window, feature window), the same
history restarting each budget window, the same bound (≤ K windows per unit per budget window,
picked by a keyed rank under a fresh per-run secret) and the same L2 clip, all as Spark SQL
functions on the executors (no Python UDF touches a row). Two things differ, neither of which
the guarantee depends on:

- the keyed rank is Spark's seeded ``xxhash64`` of (unit, window start), not polars' hash, so with
  the same seed the two backends keep the same *number* of windows per unit but, when K binds,
  not the same windows (as for the query backends, see docs/spark.md);
- units follow the store's rule as in polars (chain namespaces, one shared unattributed unit),
  spelled as strings (``_unit``); under the ``per-row`` opt-in a row without identity is its own
  unit, named by ``monotonically_increasing_id`` instead of the row index.

The result stays on the executors (persisted); only per-batch sums reach the driver
(:mod:`dplogs.detect.spark_loop`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from dplogs.backends.spark import col, seeded_hash
from dplogs.detect.features import (
    BYTES_CAP, CATEGORIES, COUNT_CAP, DISTINCT_CAP, FEATURE_NAMES, HISTORY_WARMUP, NOVELTY_COLUMNS, OFF_HOURS, RISE_CAP,
    RISE_FLOORS, TOTAL_CAP, FeatureSpec,
)
from dplogs.errors import UsageError
from dplogs.privacy.randomness import secret_seed
from dplogs.schema import FIELDS, TIMESTAMP
from dplogs.schema.units import PER_ROW, UnitRule

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

WINDOW_MICROS = {"5min": 300_000_000, "15min": 900_000_000, "hour": 3_600_000_000, "day": 86_400_000_000}
"""Feature windows in microseconds: epoch-aligned in UTC, as polars' ``dt.truncate`` of UTC times."""
_KEYS = ["unit", "budget_window", "window_start"]
PEER_INPUTS = ("module", "events", "bytes", "processes")
"""The window's own data the peer baseline reads (:func:`dplogs.detect.peers.peer_totals`): its
most frequent event.module, raw volumes and distinct executables, as in polars."""


def _unit(rule: UnitRule) -> Column:
    """The store's unit rule (:class:`~dplogs.schema.units.UnitRule`) as one string per row:
    ``"i:value"`` for a value from chain field ``i`` (a single field is a one-field chain), and
    ``"n:"`` (n = the number of fields, an index no field has) for the shared unattributed unit,
    so the namespaces never merge. A row without identity under ``per-row`` is its own unit, named
    by a row id that no ``"i:value"`` can spell (it does not start with a digit; the bare column a
    single-field rule used here could: redteam5)."""
    from pyspark.sql import functions as F

    own_row = F.concat(F.lit("\x00null:"), F.monotonically_increasing_id().cast("string"))
    index = F.lit(len(rule.fields))
    for i in reversed(range(len(rule.fields))):
        index = F.when(col(rule.fields[i]).isNotNull(), F.lit(i)).otherwise(index)
    value = F.coalesce(*(col(f) for f in rule.fields))
    named = F.concat(index.cast("string"), F.lit(":"), F.coalesce(value, F.lit("")))
    return F.when(value.isNull(), own_row).otherwise(named) if rule.unattributed == PER_ROW else named
_UNIT_BW = ["unit", "budget_window"]
_BYTE_COLUMNS = ("source.bytes", "destination.bytes", "http.response.body.bytes")


def _scaled_log(expr: Column, cap: float) -> Column:
    from pyspark.sql import functions as F

    return F.log1p(F.least(F.greatest(expr.cast("double"), F.lit(0.0)), F.lit(float(cap)))) / math.log1p(cap)


def _budget_window(ts: Column, policy: str) -> Column:
    """The budget window's label, as ``strftime`` gives it in polars (%Y-%m-%d, %G-W%V, %Y-%m)."""
    from pyspark.sql import functions as F

    if policy == "day":
        return F.date_format(ts, "yyyy-MM-dd")
    if policy == "month":
        return F.date_format(ts, "yyyy-MM")
    thursday = F.date_add(F.to_date(F.date_trunc("week", ts)), 3)  # ISO: the week's Thursday names its year
    return F.concat(F.year(thursday).cast("string"), F.lit("-W"), F.lpad(F.weekofyear(ts).cast("string"), 2, "0"))


def feature_rows(sdf: DataFrame, *, unit: str | UnitRule, spec: FeatureSpec, seed: int | None = None) -> DataFrame:
    """Bounded, clipped feature rows per (unit, window): columns ``unit``, ``budget_window``,
    ``window_start``, ``unit_id`` (dense per (unit, budget window), in their sorted order as in
    polars) and one double column per feature name. ``seed`` keys the rank that keeps ≤ K windows
    per unit per budget window; leave it ``None`` (a fresh secret) outside tests."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rule = UnitRule.parse(unit)
    if any(f not in FIELDS for f in rule.fields):
        raise UsageError(f"privacy unit {rule.label!r} is not a store column")
    seed = secret_seed() if seed is None else seed
    ts = col(TIMESTAMP)
    micros = F.unix_micros(ts)
    step = F.lit(WINDOW_MICROS[spec.window])
    events = sdf.where(ts.isNotNull()).select(
        _unit(rule).alias("unit"),
        _budget_window(ts, spec.budget_window).alias("budget_window"),
        F.timestamp_micros(micros - F.pmod(micros, step)).alias("window_start"),
        F.hour(ts).alias("_hour"), F.dayofweek(ts).alias("_dow"),
        # added as doubles: a hostile log's byte counts near 2^63 overflowed the long sum (an error
        # under ANSI mode, Spark 4's default, that failed the training)
        sum((F.coalesce(col(c).cast("double"), F.lit(0.0)) for c in _BYTE_COLUMNS), F.lit(0.0)).alias("_nbytes"),
        *(col(c) for c in ("event.category", "event.outcome", "http.response.status_code", "host.name", "source.ip",
                           "destination.port", "process.name", "process.parent.executable", "event.module")),
        F.lower(col("process.executable")).alias("_executable"),
    )
    n = F.count(F.lit(1))
    share = lambda cond: F.coalesce(F.sum(cond.cast("int")), F.lit(0)) / n  # noqa: E731 (nulls count as false)
    off = (col("_hour") < OFF_HOURS[0]) | (col("_hour") >= OFF_HOURS[1]) | col("_dow").isin(1, 7)  # Sun=1, Sat=7
    clipped_bytes = F.least(F.greatest(col("_nbytes"), F.lit(0.0)), F.lit(BYTES_CAP))
    rows = events.groupBy(*_KEYS).agg(
        *(_scaled_log(F.coalesce(F.sum(F.array_contains(col("event.category"), c).cast("int")), F.lit(0)), COUNT_CAP)
          .alias(f"category.{c}") for c in CATEGORIES),
        _scaled_log(n, TOTAL_CAP).alias("events_total"),
        share(col("event.outcome") == "failure").alias("failure_ratio"),
        *((F.least(F.count_distinct(col(c)), F.lit(DISTINCT_CAP)) / DISTINCT_CAP).alias(name)
          for c, name in (("host.name", "distinct_hosts"), ("source.ip", "distinct_source_ips"),
                          ("destination.port", "distinct_destination_ports"))),
        (F.avg(F.log1p(clipped_bytes)) / math.log1p(BYTES_CAP)).alias("bytes_log_mean"),
        share(col("http.response.status_code") >= 400).alias("http_error_share"),
        share(off).alias("off_hours_share"),
        n.alias("_events"), F.sum(clipped_bytes).alias("_bytes"),
        *(F.count_distinct(col(c)).alias(f"_distinct:{c}") for c, _ in NOVELTY_COLUMNS),
        F.array_sort(F.collect_set(col("_executable"))).alias("processes"),
    ).join(_modules(events), on=_KEYS, how="left")
    rows = _with_own_history(rows, events)
    rows = rows.select(*_KEYS, *(F.coalesce(col(f), F.lit(0.0)).cast("double").alias(f) for f in FEATURE_NAMES),
                       "module", col("_events").alias("events"), col("_bytes").alias("bytes"), "processes")
    rank = Window.partitionBy(*_UNIT_BW).orderBy(seeded_hash(seed, col("unit"), col("window_start")), col("window_start"))
    rows = rows.withColumn("_rank", F.row_number().over(rank)).where(col("_rank") <= spec.max_windows_per_unit).drop("_rank")
    # the bounding unit is (unit, budget window): dense ids in sorted order, over the distinct
    # pairs only (one small window; the rows are joined back)
    ids = rows.select(*_UNIT_BW).distinct().withColumn(
        "unit_id", (F.row_number().over(Window.orderBy(*_UNIT_BW)) - 1).cast("long"))
    rows = rows.join(ids, on=_UNIT_BW)
    return _clipped(rows, spec.clip_norm)


def _modules(events: DataFrame) -> DataFrame:
    """Per (unit, budget window, window) the most frequent event.module, the smallest name on a
    tie (polars' ``mode().sort().first()``); windows without one get no row (a null module)."""
    from pyspark.sql import functions as F

    counts = events.where(col("event.module").isNotNull()).groupBy(*_KEYS, col("event.module").alias("_m")).count()
    best = F.min(F.struct((-col("count")).alias("rank"), col("_m").alias("module")))
    return counts.groupBy(*_KEYS).agg(best.getField("module").alias("module"))


def _with_own_history(rows: DataFrame, events: DataFrame) -> DataFrame:
    """:func:`dplogs.detect.features._with_own_history` in Spark SQL: rises over the unit's earlier
    windows of the same budget window, and the shares of values new to the unit; 0 until the unit
    has more than HISTORY_WARMUP earlier windows."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    for c, _ in NOVELTY_COLUMNS:
        firsts = (events.where(col(c).isNotNull()).groupBy(*_UNIT_BW, col(c)).agg(F.min("window_start").alias("window_start"))
                  .groupBy(*_KEYS).agg(F.count(F.lit(1)).alias(f"_new:{c}")))
        rows = rows.join(firsts, on=_KEYS, how="left")
    ordered = Window.partitionBy(*_UNIT_BW).orderBy("window_start")
    order = F.row_number().over(ordered)  # 1 = the unit's first window
    running = ordered.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    rows = rows.withColumn("_order", order)
    prev_n = F.greatest(col("_order") - 1, F.lit(1))  # only read where _order > HISTORY_WARMUP
    history = col("_order") > HISTORY_WARMUP

    def rise(c: str) -> Column:
        usual = (F.sum(col(c)).over(running) - col(c)) / prev_n
        floor = F.lit(RISE_FLOORS[c])
        return F.when(history, F.least(F.greatest(F.log2((col(c) + floor) / (usual + floor)), F.lit(0.0)),
                                       F.lit(RISE_CAP)) / RISE_CAP).otherwise(F.lit(0.0))

    novelty = [
        F.when(history & (col(f"_distinct:{c}") > 0), F.coalesce(col(f"_new:{c}"), F.lit(0)) / col(f"_distinct:{c}"))
        .otherwise(F.lit(0.0)).alias(name) for c, name in NOVELTY_COLUMNS
    ]
    return rows.select(
        "*", rise("_events").alias("events_rise_vs_own_history"), rise("_bytes").alias("bytes_rise_vs_own_history"),
        *novelty,
    )


def _clipped(rows: DataFrame, clip_norm: float) -> DataFrame:
    """Each feature row scaled down to L2 norm ≤ ``clip_norm`` (:func:`~dplogs.detect.features.clip_rows`)."""
    from pyspark.sql import functions as F

    norm = F.sqrt(sum((col(f) * col(f) for f in FEATURE_NAMES), F.lit(0.0)))
    scale = F.least(F.lit(1.0), F.lit(float(clip_norm)) / F.greatest(norm, F.lit(1e-300)))
    rows = rows.withColumn("_scale", scale)
    return rows.select(*_KEYS, "unit_id", *((col(f) * col("_scale")).alias(f) for f in FEATURE_NAMES),
                       *PEER_INPUTS)
