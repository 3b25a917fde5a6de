"""The Apache Spark backend: the same contribution bounding, run by an existing distributed engine.

The bounding rule is the polars backend's (:mod:`dplogs.backends.polars_backend`), step for step,
written in Spark SQL functions (no Python UDF touches a row):

1. **Cells.** ``groupBy(unit, keys)`` gives per cell its row count ``n`` and, per value column,
   the sum ``s`` of the values clamped into ``[lo, hi]`` (null and NaN count 0; ±inf clamp).
2. **L0.** Each unit keeps the ``max_groups`` cells with the smallest keyed rank, ties broken by
   the cell code and then the key values. The code is the top ``64 - key_bits`` bits of the
   unit's seeded hash, then the top ``key_bits`` bits of the keys' seeded hash; the rank is the
   seeded hash of the code. Hashes are Spark's ``xxhash64`` with the per-query secret as the first
   hashed value (``xxhash64(seed, col, ...)`` = ``XXH64(col; XXH64(seed; 42))``), so the rank of a
   unit's cells is a function of its own data and the secret only. A struct unit ((unit, budget
   window), from :func:`dplogs.engine.execute.bounding_unit`) is hashed over its fields.
   Step 1 always groups on the values, never on codes, so colliding hashes cost nothing: they only
   reach the tie-break.
3. **L∞.** ``rows = min(n, max_rows_per_group)``; sums are rescaled ``s · rows / n``, re-clamped
   to ``rows·[min(lo, 0), max(hi, 0)]``, truncated toward zero onto the public grid and added in
   int64 (exact whatever the order of additions on the executors).
4. **Null units**: each such row is its own unit (one row, always kept). 5. ``groupBy(keys)``.

The hash is not polars' (polars' seeded hash cannot be computed by Spark SQL functions), so the
two backends keep the *same number* of cells per unit chosen by the *same kind* of keyed rank, but
not the same cells whenever an L0 bound binds; when it does not, their aggregates are identical.
The shared suite (``tests/backends``) checks the rule itself on both.

What executors receive: the plan's filters and derived columns as Spark expressions and the
per-query seed (a fresh 64-bit secret, useless after the query). What comes back to the driver:
the bounded per-group aggregates, as Arrow. Noise, the ledger and key completion stay on the
driver in :mod:`dplogs.engine` and :mod:`dplogs.privacy`, exactly as for polars.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from dplogs.backends.base import ROWS, SUM_PREFIX, UNITS
from dplogs.errors import InternalError, QueryError, UsageError
from dplogs.privacy.limits import MAX_EXACT_SUM_UNITS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from dplogs.privacy.bounds import Clamp, ContributionBounds

DEFAULT_MASTER = "local[*]"
INSTALL_HINT = "install the spark extra: pip install 'dplogs[spark]' (needs Java 17 or newer)"

_N = "__dplogs_n"
_CODE = "__dplogs_code"
_RANK = "__dplogs_rank"
_KEEP = "__dplogs_keep"
_GLOBAL = "__dplogs_global"
_U64_MAX = 2**64 - 1
_KEY_SALT = 0x9E3779B97F4A7C15  # the polars backend's salts: one secret, three independent hashes
_RANK_SALT = 0xD1B54A32D192ED03


def require_pyspark() -> Any:
    try:
        import pyspark
    except ImportError:
        raise UsageError(f"the spark backend needs pyspark: {INSTALL_HINT}") from None
    return pyspark


def spark_session(master: str | None = None) -> SparkSession:
    """The active SparkSession, or a new one on ``master`` (default ``local[*]``: this machine's
    cores, no cluster needed). Under ``spark-submit`` or on Databricks the session that already
    exists is used as it is. Timestamps are read and truncated in UTC, like the store's."""
    require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        session = active
    else:
        if active is None and not (os.environ.get("JAVA_HOME") or shutil.which("java")):
            raise UsageError(f"the spark backend needs a Java runtime (17 or newer) on PATH or in JAVA_HOME; {INSTALL_HINT}")
        if (master or DEFAULT_MASTER).startswith("local"):
            # local Python workers (the detector's mapInArrow loop) run this interpreter, whose
            # environment has dplogs, numpy and pyarrow; pyspark would otherwise start `python3`
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.appName("dplogs").master(master or DEFAULT_MASTER)
        # no web UI or console progress bars (stderr belongs to dplogs' messages)
        builder = builder.config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
        try:
            session = builder.getOrCreate()
        except Exception as exc:  # the JVM could not start: say what to install, not a py4j trace
            raise UsageError(f"could not start Spark on master {master or DEFAULT_MASTER!r} ({exc.__class__.__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}); {INSTALL_HINT}") from None
        session.sparkContext.setLogLevel("ERROR")
    return in_utc(session)


def in_utc(session: SparkSession) -> SparkSession:
    """``session`` with its time zone set to UTC: bounding per budget window, time buckets and
    feature windows truncate timestamps in the session's zone, and the ledger's windows are UTC."""
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return session


@dataclass(frozen=True)
class SparkBackend:
    """Public: the Spark backend. ``master`` picks the session when none is active (``local[*]``
    by default, or ``spark://host:7077``, ``yarn``, ``k8s://…``). ``key_bits`` is the share of a
    cell code given to the keys (as in the polars backend)."""

    master: str | None = None
    key_bits: int = 24
    name: str = "spark"

    def __post_init__(self) -> None:
        if isinstance(self.key_bits, bool) or not isinstance(self.key_bits, int) or not 1 <= self.key_bits <= 63:
            raise UsageError(f"key_bits must be an integer in [1, 63], got {self.key_bits!r}")

    @property
    def session(self) -> SparkSession:
        return spark_session(self.master)

    def frame(self, source: Any) -> DataFrame:
        """``source`` as a Spark DataFrame: a Spark DataFrame as it is (its session set to UTC,
        :func:`in_utc`), a polars frame through Arrow (small inputs and the shared tests)."""
        if isinstance(source, pl.LazyFrame):
            source = source.collect()
        if isinstance(source, pl.DataFrame):
            # Spark has no unsigned types: the store's event.hash (u64 words, ingest's dedup key,
            # never queried) is left out like read_events leaves it out
            source = source.drop(c for c, t in source.schema.items() if _unsigned(t))
            # the oldest Arrow layout (large_string, no string views) is the one Spark reads
            table = source.to_arrow(compat_level=pl.CompatLevel.oldest())
            if table.num_rows == 0:  # Spark infers nothing from an empty Arrow table's batches
                return self.session.createDataFrame([], schema=_spark_schema(source.schema))
            return self.session.createDataFrame(table)
        in_utc(source.sparkSession)  # a caller's DataFrame (Engine.from_spark): its session may be in another zone
        return source

    def bounded_aggregate(
        self,
        lf: Any,
        *,
        unit: str,
        keys: Sequence[str],
        bounds: ContributionBounds,
        sums: Mapping[str, Clamp],
        seed: int,
    ) -> pl.DataFrame:
        """Bounded per-group ``rows``, ``units`` and ``sum_<name>``; see the module docstring."""
        from pyspark.sql import functions as F

        sdf, keys = _checked(self.frame(lf), unit=unit, keys=keys, sums=sums, seed=seed)
        by = keys or [_GLOBAL]
        cells = self._cells(sdf, unit=unit, keys=keys, bounds=bounds, sums=sums, seed=seed)
        if not keys:
            cells = cells.withColumn(_GLOBAL, F.lit(0))
        names = [f"{SUM_PREFIX}{name}" for name in sums]
        out = cells.groupBy(*(col(k) for k in by)).agg(
            F.sum(col(ROWS)).cast("long").alias(ROWS),
            F.count(F.lit(1)).alias(UNITS),
            # grid units summed exactly as decimal(38, 0) (cannot overflow), then saturated at
            # ±MAX_EXACT_SUM_UNITS as the polars backend does: 1-Lipschitz, no data-dependent refusal
            *(F.greatest(F.least(F.sum(col(c).cast("decimal(38,0)")), F.lit(MAX_EXACT_SUM_UNITS)),
                         F.lit(-MAX_EXACT_SUM_UNITS)).cast("bigint").alias(c) for c in names),
        )
        frame = _to_polars(out)
        frame = frame.select(*by, ROWS, UNITS, *(_from_grid(f"{SUM_PREFIX}{n}", c.grid) for n, c in sums.items()))
        frame = frame.sort(by, nulls_last=True)
        return frame.drop(_GLOBAL) if not keys else frame

    def bounded_units(
        self,
        lf: Any,
        *,
        unit: str,
        keys: Sequence[str],
        bounds: ContributionBounds,
        sums: Mapping[str, Clamp],
        seed: int,
    ) -> pl.DataFrame:
        """The kept (unit, group) cells: ``unit``, keys, ``rows`` and ``sum_<name>``. Raw
        per-unit data for the shared tests and the auditor; never released."""
        sdf, keys = _checked(self.frame(lf), unit=unit, keys=keys, sums=sums, seed=seed)
        cells = self._cells(sdf, unit=unit, keys=keys, bounds=bounds, sums=sums, seed=seed)
        others = [k for k in keys if k != unit]
        frame = _to_polars(cells)
        frame = frame.with_columns(_from_grid(f"{SUM_PREFIX}{n}", c.grid) for n, c in sums.items())
        return frame.sort([unit, *others], nulls_last=True)

    def cell_ranks(self, cells: Any, *, unit: str, others: Sequence[str], seed: int) -> pl.DataFrame:
        """The keyed rank and code of each (unit, others) row of ``cells``: the one primitive the
        shared suite's reference rule borrows from the backend."""
        sdf = self.frame(cells)
        code = _code(unit, list(others), seed, self.key_bits)
        out = sdf.select(col(unit), *(col(k) for k in others), code.alias(_CODE))
        return _to_polars(out.withColumn(_RANK, seeded_hash(_RANK_SALT ^ seed, col(_CODE))))

    def _cells(
        self, sdf: DataFrame, *, unit: str, keys: list[str], bounds: ContributionBounds,
        sums: Mapping[str, Clamp], seed: int,
    ) -> DataFrame:
        """The kept cells (``unit``, keys, ``rows``, sums as int64 grid units) of the rule."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        l0, linf = bounds.max_groups, bounds.max_rows_per_group
        others = [k for k in keys if k != unit]  # the unit may itself be a key (top-k users)
        group = [col(unit), *(col(k) for k in others)]
        names = {name: f"{SUM_PREFIX}{name}" for name in sums}
        clamped = []
        for name, bound in sums.items():
            clamped.append(clamp(col(name).cast("double"), bound.lo, bound.hi).alias(names[name]))
        rows_in = sdf.select(*group, *clamped)

        cells = rows_in.where(col(unit).isNotNull()).groupBy(*group).agg(
            F.count(F.lit(1)).alias(_N), *(F.coalesce(F.sum(col(c)), F.lit(0.0)).alias(c) for c in names.values())
        )
        cells = cells.withColumn(_CODE, _code(unit, others, seed, self.key_bits))
        cells = cells.withColumn(_RANK, seeded_hash(_RANK_SALT ^ seed, col(_CODE)))
        order = Window.partitionBy(col(unit)).orderBy(col(_RANK), col(_CODE), *(col(k).asc_nulls_first() for k in others))
        kept = cells.withColumn(_KEEP, F.row_number().over(order)).where(col(_KEEP) <= l0)
        rows = F.least(col(_N), F.lit(linf).cast("long"))
        per_cell = []
        for name, c in names.items():
            bound = sums[name]
            rescaled = F.least(F.greatest(col(c) * rows / col(_N), rows * float(min(bound.lo, 0.0))),
                               rows * float(max(bound.hi, 0.0)))
            # truncation toward zero onto the public grid (cast to long truncates)
            per_cell.append((rescaled / F.lit(float(bound.grid))).cast("long").alias(c))
        bounded = kept.select(*group, rows.alias(ROWS), *per_cell)
        nulls = rows_in.where(col(unit).isNull()).select(
            *group, F.lit(1).cast("long").alias(ROWS),
            *((F.coalesce(col(c), F.lit(0.0)) / F.lit(float(sums[name].grid))).cast("long").alias(c)
              for name, c in names.items()),
        )
        return bounded.unionByName(nulls)


def clamp(v: Column, lo: float, hi: float) -> Column:
    """``v`` clamped into ``[lo, hi]``, with null and NaN staying null (Spark's ``greatest`` and
    ``least`` skip nulls and order NaN above +inf, so neither may reach them)."""
    from pyspark.sql import functions as F

    return F.when(v.isNull() | F.isnan(v), F.lit(None)).otherwise(F.least(F.greatest(v, F.lit(float(lo))), F.lit(float(hi))))


def _signed(x: int) -> int:
    """A u64 as the signed long Spark literals hold (same 64 bits)."""
    return x - 2**64 if x >= 2**63 else x


def seeded_hash(seed: int, *cols: Column) -> Column:
    """Spark's seeded xxhash64: the secret hashed first, so it seeds the hash of the columns."""
    from pyspark.sql import functions as F

    return F.xxhash64(F.lit(_signed(seed & _U64_MAX)).cast("long"), *cols)


def _code(unit: str, others: list[str], seed: int, key_bits: int) -> Column:
    """The 64-bit cell code: the unit hash's top ``64 - key_bits`` bits, then the key hash's top
    ``key_bits`` bits (a signed long holding the same bits as the polars backend's u64 layout)."""
    from pyspark.sql import functions as F

    unit_id = F.shiftrightunsigned(seeded_hash(seed, col(unit)), key_bits)
    if not others:
        return F.shiftleft(unit_id, key_bits)
    key_id = F.shiftrightunsigned(seeded_hash(seed ^ _KEY_SALT, *(col(k) for k in others)), 64 - key_bits)
    return F.shiftleft(unit_id, key_bits).bitwiseOR(key_id)


def _from_grid(column: str, grid: float) -> pl.Expr:
    return (pl.col(column).cast(pl.Float64) * grid).alias(column)


def _to_polars(out: DataFrame) -> pl.DataFrame:
    """Collect ``out`` as Arrow (the only data that reaches the driver) into polars, with Int64
    counts, and an empty frame carrying the contract schema."""
    frame = pl.from_arrow(out.toArrow())
    if not isinstance(frame, pl.DataFrame):  # pragma: no cover - from_arrow of a table is a frame
        raise InternalError("Spark returned no table")
    return frame.with_columns(pl.col(c).cast(pl.Int64) for c in (ROWS, UNITS) if c in frame.columns)


def spark_type(dtype: pl.DataType) -> Any:
    """The Spark type of a polars dtype (store columns, struct units, test frames)."""
    from pyspark.sql import types as T

    if isinstance(dtype, pl.Struct):
        return T.StructType([T.StructField(f.name, spark_type(f.dtype)) for f in dtype.fields])
    if isinstance(dtype, pl.List):  # ECS arrays (event.category, event.type)
        return T.ArrayType(spark_type(dtype.inner))
    if dtype == pl.String:
        return T.StringType()
    if dtype == pl.Boolean:
        return T.BooleanType()
    if dtype == pl.Int32:
        return T.IntegerType()
    if dtype.is_integer():
        return T.LongType()
    if dtype.is_float():
        return T.DoubleType()
    if dtype == pl.Date:
        return T.DateType()
    if isinstance(dtype, pl.Datetime):
        return T.TimestampType() if dtype.time_zone else T.TimestampNTZType()
    raise QueryError(f"the spark backend cannot read columns of type {dtype}")


def _unsigned(dtype: pl.DataType) -> bool:
    if isinstance(dtype, pl.Array | pl.List):
        return _unsigned(dtype.inner)
    return dtype.is_unsigned_integer()


def _spark_schema(schema: pl.Schema) -> Any:
    from pyspark.sql import types as T

    return T.StructType([T.StructField(name, spark_type(dtype)) for name, dtype in schema.items()])


def col(name: str) -> Column:
    """A column by its exact name: store columns contain dots (``user.name``), which Spark would
    otherwise read as struct field access."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def read_events(session: SparkSession, files: Sequence[str]) -> DataFrame:
    """Store event files as one Spark DataFrame with the store schema (a column a file left out
    because it was all null there reads as null, as in ``Store.scan``). ``files`` may be local
    paths or Hadoop-compatible URIs (``s3a://…``, ``abfss://…``)."""
    from pyspark.sql import types as T

    from dplogs.schema import STORE_SCHEMA

    # event.hash (two u64 words) is ingest's dedup key; no query reads it, and Spark has no u64
    schema = T.StructType([T.StructField(n, spark_type(t)) for n, t in STORE_SCHEMA.items() if n != "event.hash"])
    if not files:
        return session.createDataFrame([], schema=schema)
    return session.read.schema(schema).parquet(*[str(f) for f in files])


def _checked(
    sdf: DataFrame, *, unit: str, keys: Sequence[str], sums: Mapping[str, Clamp], seed: int
) -> tuple[DataFrame, list[str]]:
    """The request checked against the DataFrame's schema, with the polars backend's messages."""
    from pyspark.sql import types as T

    keys = list(keys)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _U64_MAX:
        raise InternalError(f"the bounding seed must be a 64-bit secret from secret_seed(), got {seed!r}")
    fields = {f.name: f.dataType for f in sdf.schema.fields}
    missing = [c for c in (unit, *keys, *sums) if c not in fields]
    if missing:
        raise QueryError(
            f"unknown column(s) {', '.join(missing)}: use columns of the store (available: {', '.join(fields)})"
        )
    if len(set(keys)) != len(keys):
        raise QueryError(f"group keys must be distinct, got {', '.join(keys)}")
    reserved = {ROWS, UNITS, _GLOBAL, _CODE, _RANK, _KEEP, _N, *(f"{SUM_PREFIX}{n}" for n in sums)}
    clash = sorted(reserved.intersection(keys))
    if clash:
        raise QueryError(f"group key(s) {', '.join(clash)} clash with output columns: rename them")
    for name in sums:
        if not isinstance(fields[name], T.NumericType):
            raise QueryError(f"cannot sum {name!r} of type {fields[name].simpleString()}: sum a numeric column")
    return sdf, keys
