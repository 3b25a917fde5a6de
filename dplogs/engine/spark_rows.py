"""A plan's row-level work compiled to Spark: the twin of :func:`dplogs.engine.execute.prepare`.

The Spark backend gets the same rows, with the same derived columns, as the polars backend: the
query window, the WHERE filter compiled from the plan's :class:`~dplogs.engine.plan.Filter` objects
(never re-parsed SQL text), the public key domains, the key columns, the clamped / indicator value
columns, the histogram bins and the bounding unit ((unit, budget-window start) when a query spans
windows). Everything here is a Spark SQL expression evaluated on the executors; the module imports
pyspark only when called (the spark extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from dplogs.backends.spark import clamp, col
from dplogs.engine.plan import And, Cmp, Filter, In, IsNull, KeyKind, Like, Not, Or
from dplogs.engine.policy import PROTECTED, Policy
from dplogs.errors import InternalError
from dplogs.schema import TIMESTAMP, is_list
from dplogs.schema.units import PER_ROW, UnitRule

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from dplogs.engine.planner import Plan

ALL, BIN, UNIT = "__all__", "__bin__", "__unit__"  # the names execute.prepare gives these columns
EXACT = "exact_"  # execute's prefix of the unprotected rows' exact aggregates
_TRUNC = {"minute": "minute", "hour": "hour", "day": "day", "week": "week", "month": "month"}


def filter_column(f: Filter) -> Column:
    """The Spark predicate of a plan filter, with SQL's three-valued logic like the polars one
    (a comparison with a null column value is null, and a null row never matches)."""
    from pyspark.sql import functions as F

    if isinstance(f, Cmp):
        v = F.lit(f.value)
        if is_list(f.column):  # an ECS array: = means "contains", as in polars
            contains = any_element(f.column, lambda e: e == v)
            return contains if f.op == "=" else ~contains
        c = col(f.column)
        return {"=": c == v, "!=": c != v, "<": c < v, "<=": c <= v, ">": c > v, ">=": c >= v}[f.op]
    if isinstance(f, In):
        values = list(f.values)
        return any_element(f.column, lambda e: e.isin(values))
    if isinstance(f, Like):
        # the same anchored regex as polars'; Java's ``$`` also matches before a final newline,
        # so the end is anchored with ``\z`` (end of input) in both dialects' sense
        regex = f.regex()[:-1] + r"\z"
        return any_element(f.column, lambda e: e.rlike(regex))
    if isinstance(f, IsNull):
        c = col(f.column)
        null = (c.isNull() | (F.size(c) == 0)) if is_list(f.column) else c.isNull()
        return ~null if f.negate else null
    if isinstance(f, And):
        out = filter_column(f.parts[0])
        for p in f.parts[1:]:
            out = out & filter_column(p)
        return out
    if isinstance(f, Or):
        out = filter_column(f.parts[0])
        for p in f.parts[1:]:
            out = out | filter_column(p)
        return out
    if isinstance(f, Not):
        return ~filter_column(f.part)
    raise InternalError(f"no Spark translation for filter {type(f).__name__}")


def any_element(column: str, test: Any) -> Column:
    """``test`` of the column, or for an ECS array column whether any element passes (a null
    array stays null), like :func:`dplogs.engine.plan._any_element`."""
    from pyspark.sql import functions as F

    if not is_list(column):
        return test(col(column))
    return F.exists(col(column), test)


def first_element(column: str) -> Column:
    """An ECS array's primary (first) value, null for an empty or null array as polars'
    ``list.first()``. Not ``element_at``: under ANSI mode (Spark 4's default) it fails on an
    empty array, so one row's empty array failed the whole release (a refusal decided by one
    unit's data)."""
    from pyspark.sql import functions as F

    return F.try_element_at(col(column), F.lit(1))


def unit_column(rule: UnitRule) -> Column:
    """:meth:`dplogs.schema.units.UnitRule.expr` in Spark: the plain column for a single-field
    ``per-row`` rule, otherwise the struct (chain index of the first non-null field, its value),
    the shared unit being (len(fields), "") and a ``per-row`` chain leaving rows without identity
    null (each its own unit)."""
    from pyspark.sql import functions as F

    if rule.plain:
        return col(rule.fields[0])
    index = F.lit(len(rule.fields))
    for i in reversed(range(len(rule.fields))):
        index = F.when(col(rule.fields[i]).isNotNull(), F.lit(i)).otherwise(index)
    value = F.coalesce(*(col(f) for f in rule.fields))
    unit = F.struct(index.cast("int").alias("field"), F.coalesce(value, F.lit("")).alias("value"))
    return F.when(value.isNotNull(), unit) if rule.unattributed == PER_ROW else unit


_WIDTH_MICROS = {"minute": 60_000_000, "hour": 3_600_000_000}


def time_bucket(ts: Column, bucket: str, zone: str) -> Column:
    """:meth:`dplogs.engine.plan.Key.expr` of a time key in Spark: the start of the ``bucket``
    holding ``ts`` in ``zone`` (its local midnights and hours), as a UTC instant. The session is
    in UTC (:func:`~dplogs.backends.spark.in_utc`), so ``from_utc_timestamp`` gives the local wall
    clock: a minute or hour starts that far before ``ts`` (the instant keeps its own offset, so
    the hour a DST change repeats is two buckets, as in polars); a day or week is cut on the wall
    clock and converted back (a midnight the clocks skip moves forward to the day's first instant,
    as in polars). Cut in UTC, a local bucket's rows fell off the key's public grid and were lost."""
    from pyspark.sql import functions as F

    if zone == "UTC":
        return F.date_trunc(_TRUNC[bucket], ts)
    local = F.from_utc_timestamp(ts, zone)
    if bucket in _WIDTH_MICROS:
        return F.timestamp_micros(F.unix_micros(ts) - F.pmod(F.unix_micros(local), F.lit(_WIDTH_MICROS[bucket])))
    return F.to_utc_timestamp(F.date_trunc(_TRUNC[bucket], local), zone)


def bounding_unit(plan: Plan) -> Column:
    """:func:`dplogs.engine.execute.bounding_unit` in Spark: the unit, or (unit, window start)."""
    from pyspark.sql import functions as F

    unit = unit_column(plan.unit)
    if len(plan.budget_windows) <= 1:
        return unit
    window = F.date_trunc(_TRUNC[plan.window_policy], col(TIMESTAMP)).alias("window")
    return F.when(unit.isNotNull(), F.struct(unit.alias("unit"), window))


def prepare(plan: Plan, sdf: DataFrame, *, keep: Sequence[Column] = (), policy: Policy | None = None) -> DataFrame:
    """Rows in the window that pass WHERE and the public key domains, with the key and derived
    value columns of :func:`dplogs.engine.execute.prepare` (pre-noise; stays in the engine).
    Under a ``policy`` that leaves rows unprotected, each row also carries the boolean
    :data:`~dplogs.engine.policy.PROTECTED` (a function of the row alone, marked after the
    filters, which does not change it)."""
    from pyspark.sql import functions as F

    preds = [col(TIMESTAMP) >= F.lit(plan.start), col(TIMESTAMP) < F.lit(plan.end)]
    if plan.query.where is not None:
        preds.append(filter_column(plan.query.where))
    for k in plan.keys:
        if k.kind in (KeyKind.ENUM, KeyKind.DECLARED):
            domain = k.domain(plan.start, plan.end).to_list()
            key = first_element(k.column) if is_list(k.column) else col(k.column)
            preds.append(key.isin(domain))
    exprs = [bounding_unit(plan).alias(UNIT)]
    for k in plan.keys:
        if k.kind is KeyKind.TIME:
            exprs.append(time_bucket(col(TIMESTAMP), k.bucket, k.time_zone).alias(k.name))
        elif is_list(k.column):  # one group per row: its primary (first) value, as in polars
            exprs.append(first_element(k.column).alias(k.name))
        else:
            exprs.append(col(k.column).alias(k.name))
    if not plan.keys:
        exprs.append(F.lit(0).cast("int").alias(ALL))
    for s in plan.sums:
        if s.kind == "value":
            c = plan.clamps[s.column]
            exprs.append(F.coalesce(clamp(col(s.column).cast("double"), c.lo, c.hi), F.lit(0.0)).alias(s.alias))
        elif s.kind == "present":
            exprs.append(col(s.column).isNotNull().cast("double").alias(s.alias))
        else:
            exprs.append(F.coalesce(filter_column(s.aggregation.where), F.lit(False)).cast("double").alias(s.alias))
    for name, bins in plan.bins.items():
        edges = [float(e) for e in bins.edges]
        value = F.least(F.greatest(col(name).cast("double"), F.lit(edges[0])), F.lit(edges[-1]))
        # polars' search_sorted(side="right") over the inner edges: how many are <= the value
        index = sum((F.when(value >= F.lit(e), 1).otherwise(0) for e in edges[1:-1]), F.lit(0))
        exprs.append(F.when(col(name).isNull(), F.lit(None)).otherwise(index).cast("int").alias(f"{BIN}{name}"))
    where = preds[0]
    for p in preds[1:]:
        where = where & p
    rows = sdf.where(where)
    if policy is not None:
        rows = policy.mark_spark(rows, plan.unit)
        keep = [*keep, col(PROTECTED)]
    return rows.select(*exprs, *keep)


def exact_part(plan: Plan, rows: DataFrame, keys: list[str]) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """:func:`dplogs.engine.execute._exact` on Spark: plain per-group aggregates of the unprotected
    ``rows`` (no bounds, no noise; a row whose unit is null counts as its own unit)."""
    from pyspark.sql import functions as F

    units = F.count_distinct(col(UNIT)) + F.coalesce(F.sum(col(UNIT).isNull().cast("long")), F.lit(0))
    main = rows.groupBy(*(col(k) for k in keys)).agg(
        F.count(F.lit(1)).alias(f"{EXACT}rows"), units.cast("long").alias(f"{EXACT}units"),
        *(F.sum(col(s.alias)).alias(f"{EXACT}sum_{s.alias}") for s in plan.sums),
    )
    hists = {}
    for name in plan.bins:
        b = f"{BIN}{name}"
        frame = rows.where(col(b).isNotNull()).groupBy(*(col(k) for k in keys), col(b).alias(BIN)).agg(
            F.count(F.lit(1)).alias(f"{EXACT}rows"))
        hists[name] = pl.from_arrow(frame.toArrow()).with_columns(pl.col(BIN).cast(pl.Int32), pl.col(f"{EXACT}rows").cast(pl.Int64))
    out = pl.from_arrow(main.toArrow())
    return out.with_columns(pl.col(f"{EXACT}rows", f"{EXACT}units").cast(pl.Int64)), hists


def split_protected(rows: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(unprotected rows, protected rows without the mark) of rows from :func:`prepare`."""
    return rows.where(~col(PROTECTED)), rows.where(col(PROTECTED)).drop(PROTECTED)


def not_null(sdf: DataFrame, name: str) -> DataFrame:
    return sdf.where(col(name).isNotNull())


def per_unit_profile(plan: Plan, sdf: DataFrame, raw: dict[str, str], *, policy: Policy | None = None) -> pl.DataFrame:
    """The bound-choice profile of :func:`dplogs.engine.execute.profile` computed on Spark: per
    bounding unit its group count, largest cell row count and the largest clamped-below-at-0 value
    of each ``raw`` column, over the protected rows only under a ``policy``. Only these numbers
    come back to the driver, not the units."""
    from pyspark.sql import functions as F

    keep = [clamp(col(name).cast("double"), 0.0, float("inf")).alias(alias) for name, alias in raw.items()]
    base = prepare(plan, sdf, keep=keep, policy=policy)
    if policy is not None:
        base = split_protected(base)[1]
    keys = [col(k.name) for k in plan.keys] or [col(ALL)]
    cells = base.where(col(UNIT).isNotNull()).groupBy(col(UNIT), *keys).agg(
        F.count(F.lit(1)).alias("__rows"), *(F.max(col(a)).alias(a) for a in raw.values())
    )
    units = cells.groupBy(col(UNIT)).agg(
        F.count(F.lit(1)).alias("__groups"), F.max("__rows").alias("__rows"), *(F.max(col(a)).alias(a) for a in raw.values())
    ).select("__groups", "__rows", *(col(a) for a in raw.values()))
    nulls = base.where(col(UNIT).isNull()).select(
        F.lit(1).cast("long").alias("__groups"), F.lit(1).cast("long").alias("__rows"), *(col(a) for a in raw.values())
    )
    return pl.from_arrow(units.unionByName(nulls).toArrow())

