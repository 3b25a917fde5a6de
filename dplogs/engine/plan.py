"""The logical query: what an analyst asked, as frozen, validated value objects.

Every front-end (SQL, query files, the Python builder) produces a :class:`Query`. A query names
store columns only (:data:`dplogs.schema.FIELDS`); filters, keys and aggregations validate their
columns and values here, so a bad query fails before anything is computed or charged.
:mod:`dplogs.engine.planner` then resolves a query against a store (privacy unit, defaults) into a
:class:`~dplogs.engine.planner.Plan` with bounds, noise plans and the budget split.

>>> q = Query(
...     aggregations=(Aggregation.count(),),
...     keys=(KeySpec("@timestamp", bucket="hour"), KeySpec("event.outcome")),
...     where=Cmp("event.category", "=", "authentication"),
... )
>>> [a.label for a in q.aggregations], q.where.describe()
(['count'], "event.category = 'authentication'")
>>> Cmp("user.nme", "=", "x")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
dplogs.errors.QueryError: unknown column 'user.nme'; did you mean: user.name, user.target.name, user.id? known columns: @timestamp, ...
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import numbers
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import polars as pl

from dplogs.backends.base import ROWS, SUM_PREFIX, UNITS
from dplogs.engine.release import CELL_COLUMNS, EXACT_COLUMN
from dplogs.errors import PrivacyParameterError, QueryError
from dplogs.ingest.formats import check_format_names
from dplogs.privacy.bounds import Clamp, ContributionBounds
from dplogs.privacy.limits import EARLIEST_TIME, LATEST_TIME, MAX_BINS, MAX_CLAMP, MAX_DECLARED_KEYS
from dplogs.privacy.params import check_delta, check_epsilon, check_number, check_rho
from dplogs.schema import ALIASES, FIELDS, TIMESTAMP, is_list

TIME_BUCKETS: dict[str, str] = {"minute": "1m", "hour": "1h", "day": "1d", "week": "1w"}
"""Public time-bucket grains and their polars truncation intervals (weeks start on Monday)."""
_BUCKET_WIDTH = {"minute": dt.timedelta(minutes=1), "hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1),
                 "week": dt.timedelta(weeks=1)}


def bucket_width(bucket: str) -> dt.timedelta:
    """The nominal width of a time bucket (a day bucket in a zone with DST may be an hour off)."""
    return _BUCKET_WIDTH[bucket]


_NUMERIC = (pl.Int32, pl.Int64, pl.Float64)
_INT_RANGE = {pl.Int32: (-(2**31), 2**31 - 1), pl.Int64: (-(2**63), 2**63 - 1)}


def check_column(name: str) -> str:
    """Return ``name`` if it is a store column, else a :class:`QueryError` suggesting the nearest."""
    if name in FIELDS:
        return name
    known = ALIASES.get(name.lower()) or ALIASES.get(name.strip('`"').lower())
    if known is not None:
        raise QueryError(f"unknown column {name!r}: dplogs stores it as {known} ({FIELDS[known].description.rstrip('.')}); "
                         f"known columns: {', '.join(FIELDS)}")
    if name.strip('`"').lower() in TIME_BUCKETS:  # GROUP BY day: a time bucket, not a column
        bucket = name.strip('`"').lower()
        hint = (f"time buckets are expressions: date_trunc('{bucket}', \"@timestamp\") AS {bucket} in the SELECT "
                f"(then GROUP BY {bucket}), or --bucket {bucket}; ")
    else:
        near = difflib.get_close_matches(name, list(FIELDS), n=3)
        hint = f"did you mean: {', '.join(near)}? " if near else ""
    raise QueryError(f"unknown column {name!r}; {hint}known columns: {', '.join(FIELDS)}")


def _is_numeric(column: str) -> bool:
    return isinstance(FIELDS[column].dtype, _NUMERIC)


def parse_time(value: str | dt.datetime | dt.date, *, what: str = "time") -> dt.datetime:
    """An aware UTC datetime from ISO 8601 text, a date (its midnight) or a datetime (naive = UTC).

    >>> parse_time("2026-11-01")
    datetime.datetime(2026, 11, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise QueryError(f"cannot read {what} {value!r}; use ISO 8601, e.g. 2026-11-01T00:00:00Z") from None
    if not isinstance(value, dt.date):
        raise QueryError(f"{what} must be a date or time (ISO 8601 text), got {value!r}")
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    try:
        return value.astimezone(dt.timezone.utc)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00
        raise QueryError(f"{what} {value.isoformat()} is outside the calendar in UTC") from None


def check_time_zone(name: str) -> str:
    """``name`` if it is an IANA time zone (``Europe/Berlin``, ``UTC``), else a QueryError.

    >>> check_time_zone("Mars/Olympus")
    Traceback (most recent call last):
    ...
    dplogs.errors.QueryError: unknown time zone 'Mars/Olympus'; use an IANA name such as Europe/Berlin or UTC
    """
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise QueryError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC") from None
    return name


def coerce_value(column: str, value: Any) -> Any:
    """``value`` converted to the column's dtype, or a QueryError saying what was expected."""
    dtype = FIELDS[column].dtype
    if value is None:
        raise QueryError(f"comparison of {column} with NULL; use IS NULL / IS NOT NULL")
    if column == TIMESTAMP:
        return parse_time(value, what=f"{column} value")
    if isinstance(dtype, (pl.Int32, pl.Int64)):
        f = value if isinstance(value, int) and not isinstance(value, bool) else _number(column, value)
        if isinstance(f, float) and not f.is_integer():
            raise QueryError(f"{column} is an integer column; {value!r} is not an integer")
        lo, hi = _INT_RANGE[type(dtype)]
        if not lo <= f <= hi:
            raise QueryError(f"{column} is a {dtype} column; {value!r} is outside its range [{lo}, {hi}]")
        return int(f)
    if isinstance(dtype, pl.Float64):
        f = _number(column, value)
        if not math.isfinite(f):
            raise QueryError(f"{column}: compare with a finite number, not {value!r}")
        return f
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise QueryError(f"{column} is a text column; compare it with a string, not {value!r}")
    return str(value)


def _number(column: str, value: Any) -> float:
    """A numeric column's comparison value: a number, or text that reads as one (not a bool)."""
    if isinstance(value, bool):
        raise QueryError(f"{column} is a numeric column; {value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise QueryError(f"{column} is a numeric column; {value!r} is not a number") from None


def _scalar_dtype(column: str) -> pl.DataType:
    """The type of one value of ``column`` (the element type of an array column)."""
    dtype = FIELDS[column].dtype
    return dtype.inner if isinstance(dtype, pl.List) else dtype


def _lit(column: str, value: Any) -> pl.Expr:
    return pl.lit(value, dtype=_scalar_dtype(column))


def _any_element(column: str, test: Callable[[pl.Expr], pl.Expr]) -> pl.Expr:
    """``test`` of the column, or for an array column (ECS ``event.category``): whether any element
    passes, so ``event.category = 'authentication'`` means "contains" (null arrays stay null)."""
    if not is_list(column):
        return test(pl.col(column))
    return pl.col(column).list.eval(test(pl.element())).list.any()


def _show(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return f"'{value.isoformat()}'"
    return repr(value)


# -- filters (WHERE) ------------------------------------------------------------------------------


class Filter:
    """A row predicate over store columns. Public; built by the front-ends."""

    def expr(self) -> pl.Expr:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def columns(self) -> frozenset[str]:  # pragma: no cover - abstract
        raise NotImplementedError


_OPS = {"=", "!=", "<", "<=", ">", ">="}


@dataclass(frozen=True)
class Cmp(Filter):
    """``column op value`` with op one of = != < <= > >=. Rows where the column is null never match."""

    column: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        check_column(self.column)
        if self.op not in _OPS:
            raise QueryError(f"unsupported comparison {self.op!r}; use one of {', '.join(sorted(_OPS))}")
        if is_list(self.column) and self.op not in ("=", "!="):
            raise QueryError(f"{self.column} is an array of values; compare it with = (contains), != or IN")
        if self.column.endswith(".ip") and self.op not in ("=", "!="):
            # stored as text: '10.0.0.9' > '10.0.0.10' and '9.0.0.1' > '10.0.0.1', so a range would
            # silently select the wrong addresses
            raise QueryError(f"{self.column} {self.op} ... would compare addresses as text, character by character; "
                             f"use = / != / IN, or LIKE for a prefix ({self.column} LIKE '10.0.%')")
        object.__setattr__(self, "value", coerce_value(self.column, self.value))

    def expr(self) -> pl.Expr:
        v = _lit(self.column, self.value)
        if is_list(self.column):  # contains / does not contain
            contains = _any_element(self.column, lambda e: e == v)
            return contains if self.op == "=" else ~contains
        c = pl.col(self.column)
        return {"=": c == v, "!=": c != v, "<": c < v, "<=": c <= v, ">": c > v, ">=": c >= v}[self.op]

    def describe(self) -> str:
        return f"{self.column} {self.op} {_show(self.value)}"

    def columns(self) -> frozenset[str]:
        return frozenset({self.column})


@dataclass(frozen=True)
class In(Filter):
    """``column IN (values)``."""

    column: str
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        check_column(self.column)
        if not self.values:
            raise QueryError(f"IN list for {self.column} is empty; give at least one value")
        object.__setattr__(self, "values", tuple(coerce_value(self.column, v) for v in self.values))

    def expr(self) -> pl.Expr:
        values = pl.lit(pl.Series(list(self.values), dtype=_scalar_dtype(self.column))).implode()
        return _any_element(self.column, lambda e: e.is_in(values))

    def describe(self) -> str:
        return f"{self.column} IN ({', '.join(_show(v) for v in self.values)})"

    def columns(self) -> frozenset[str]:
        return frozenset({self.column})


_REGEX_META = set("\\.+*?()|[]{}^$#&-~")


@dataclass(frozen=True)
class Like(Filter):
    """``column LIKE pattern``: ``%`` matches any run of characters, ``_`` exactly one.

    >>> Like("user.name", "adm_n%").expr().meta.is_column()
    False
    """

    column: str
    pattern: str

    def __post_init__(self) -> None:
        check_column(self.column)
        if _scalar_dtype(self.column) != pl.String():
            raise QueryError(f"LIKE needs a text column; {self.column} is not text")
        if not isinstance(self.pattern, str):
            raise QueryError(f"LIKE needs a string pattern, got {self.pattern!r}")

    def regex(self) -> str:
        out = []
        for ch in self.pattern:
            out.append(".*" if ch == "%" else "." if ch == "_" else ("\\" + ch if ch in _REGEX_META else ch))
        return "(?s)^" + "".join(out) + "$"

    def expr(self) -> pl.Expr:
        regex = self.regex()
        return _any_element(self.column, lambda e: e.str.contains(regex))

    def describe(self) -> str:
        return f"{self.column} LIKE {self.pattern!r}"

    def columns(self) -> frozenset[str]:
        return frozenset({self.column})


@dataclass(frozen=True)
class IsNull(Filter):
    """``column IS NULL`` (or IS NOT NULL with ``negate``)."""

    column: str
    negate: bool = False

    def __post_init__(self) -> None:
        check_column(self.column)

    def expr(self) -> pl.Expr:
        c = pl.col(self.column)
        null = (c.is_null() | (c.list.len() == 0)) if is_list(self.column) else c.is_null()
        return ~null if self.negate else null

    def describe(self) -> str:
        return f"{self.column} IS {'NOT ' if self.negate else ''}NULL"

    def columns(self) -> frozenset[str]:
        return frozenset({self.column})


@dataclass(frozen=True)
class And(Filter):
    parts: tuple[Filter, ...]

    def __post_init__(self) -> None:
        if len(self.parts) < 2:
            raise QueryError("AND needs at least two parts")

    def expr(self) -> pl.Expr:
        return pl.all_horizontal([p.expr() for p in self.parts])

    def describe(self) -> str:
        return " AND ".join(f"({p.describe()})" if isinstance(p, Or) else p.describe() for p in self.parts)

    def columns(self) -> frozenset[str]:
        return frozenset().union(*(p.columns() for p in self.parts))


@dataclass(frozen=True)
class Or(Filter):
    parts: tuple[Filter, ...]

    def __post_init__(self) -> None:
        if len(self.parts) < 2:
            raise QueryError("OR needs at least two parts")

    def expr(self) -> pl.Expr:
        return pl.any_horizontal([p.expr() for p in self.parts])

    def describe(self) -> str:
        return " OR ".join(p.describe() for p in self.parts)

    def columns(self) -> frozenset[str]:
        return frozenset().union(*(p.columns() for p in self.parts))


@dataclass(frozen=True)
class Not(Filter):
    part: Filter

    def expr(self) -> pl.Expr:
        return ~self.part.expr()  # SQL three-valued logic: NOT of a null comparison stays null (no match)

    def describe(self) -> str:
        return f"NOT ({self.part.describe()})"

    def columns(self) -> frozenset[str]:
        return self.part.columns()


def conjunction(parts: list[Filter]) -> Filter | None:
    """AND of ``parts`` (None when empty)."""
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else And(tuple(parts))


# -- keys -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeySpec:
    """A group key as asked: a column, or ``@timestamp`` with a time ``bucket`` (minute, hour, day,
    week). ``name`` is the output column (default: the column, or ``bucket`` for time keys)."""

    column: str
    bucket: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        check_column(self.column)
        if self.column == TIMESTAMP:
            if not isinstance(self.bucket, str) or self.bucket not in TIME_BUCKETS:
                raise QueryError(
                    f"grouping by {TIMESTAMP} needs a time bucket; use one of: {', '.join(TIME_BUCKETS)}"
                )
        elif self.bucket is not None:
            raise QueryError(f"a time bucket applies to {TIMESTAMP} only, not {self.column}")
        if FIELDS[self.column].dtype == pl.Float64():
            raise QueryError(f"{self.column} is a float column and cannot be a group key; use HISTOGRAM bins")

    @property
    def output(self) -> str:
        return self.name or ("bucket" if self.column == TIMESTAMP else self.column)


class KeyKind(str, Enum):
    TIME = "time"
    ENUM = "enum"
    DECLARED = "declared"
    PRIVATE = "private"


@dataclass(frozen=True)
class Key:
    """A resolved group key. Public keys (time, ECS enumeration, declared list) have a domain known
    without the data; private keys are released only through partition selection."""

    name: str
    column: str
    kind: KeyKind
    bucket: str | None = None
    values: tuple[Any, ...] | None = None
    time_zone: str = "UTC"
    """Time buckets start at this zone's midnights and hours (values stay UTC instants)."""

    def __post_init__(self) -> None:
        if (self.kind in (KeyKind.ENUM, KeyKind.DECLARED)) != (self.values is not None):
            raise QueryError(f"key {self.name}: only enumerated or declared keys carry a value list")

    def _truncate(self, t: pl.Expr) -> pl.Expr:
        if self.time_zone == "UTC":
            return t.dt.truncate(TIME_BUCKETS[self.bucket])
        local = t.dt.convert_time_zone(self.time_zone).dt.truncate(TIME_BUCKETS[self.bucket])
        return local.dt.convert_time_zone("UTC")

    @property
    def public(self) -> bool:
        return self.kind is not KeyKind.PRIVATE

    def expr(self) -> pl.Expr:
        if self.kind is KeyKind.TIME:
            return self._truncate(pl.col(TIMESTAMP)).alias(self.name)
        if is_list(self.column):  # one group per row: its primary (first) value
            return pl.col(self.column).list.first().alias(self.name)
        return pl.col(self.column).alias(self.name)

    def dtype(self) -> pl.DataType:
        return _scalar_dtype(self.column)

    def domain_size(self, start: dt.datetime, end: dt.datetime) -> int:
        """``domain(start, end).len()``, by arithmetic (nothing is built)."""
        if self.kind is not KeyKind.TIME:
            return len(self.domain(start, end))
        first = start.replace(second=0, microsecond=0)
        if self.bucket != "minute":
            first = first.replace(minute=0)
        if self.bucket in ("day", "week"):
            first = first.replace(hour=0) - dt.timedelta(days=first.weekday() if self.bucket == "week" else 0)
        return -((first - end) // _BUCKET_WIDTH[self.bucket])  # buckets starting in [first, end)

    def domain(self, start: dt.datetime, end: dt.datetime) -> pl.Series:
        """Every value this public key can take in ``[start, end)``."""
        if self.kind is KeyKind.TIME:
            first = pl.select(self._truncate(pl.lit(start))).item()
            if self.time_zone != "UTC" and self.bucket != "minute":
                # a zone's clocks may skip its midnight (Santiago, Havana, Beirut) or move by half an
                # hour (Lord Howe): a range stepped in the zone lands on other instants than the
                # events' own truncation there, and their cells fell off the grid. So the grid is
                # the truncation of instants a quarter hour apart (every zone's offsets are
                # multiples of one: every bucket start is one of them)
                points = pl.datetime_range(first, end, "15m", closed="left", eager=True, time_unit="us", time_zone="UTC")
                return pl.select(self._truncate(pl.lit(points))).to_series().unique(maintain_order=True).alias(self.name)
            zone = ZoneInfo(self.time_zone)
            local = pl.datetime_range(  # stepped in the zone: a local day of a DST change is 23 or 25 h
                first.astimezone(zone), end.astimezone(zone), TIME_BUCKETS[self.bucket], closed="left",
                eager=True, time_unit="us", time_zone=self.time_zone,
            )
            return local.dt.convert_time_zone("UTC").alias(self.name)
        if self.values is None:
            raise QueryError(f"key {self.name} is private and has no public domain")
        return pl.Series(self.name, list(self.values), dtype=self.dtype())

    def handling(self) -> str:
        return {
            KeyKind.TIME: f"public: {self.bucket} buckets of the query window"
            + ("" if self.time_zone == "UTC" else f" ({self.time_zone})"),
            KeyKind.ENUM: f"public: ECS allowed values ({len(self.values or ())})",
            KeyKind.DECLARED: f"public: declared list ({len(self.values or ())} values)",
            KeyKind.PRIVATE: "private: DP partition selection",
        }[self.kind]


# -- aggregations ---------------------------------------------------------------------------------


class AggKind(str, Enum):
    COUNT = "count"
    UNITS = "count_distinct_units"
    SUM = "sum"
    MEAN = "mean"
    QUANTILES = "quantiles"
    HISTOGRAM = "histogram"
    RATIO = "ratio"


_NEEDS_COLUMN = {AggKind.SUM, AggKind.MEAN, AggKind.QUANTILES, AggKind.HISTOGRAM}


@dataclass(frozen=True)
class Aggregation:
    """One released statistic. Use the constructors: ``Aggregation.count()``, ``.units()``,
    ``.sum(col)``, ``.mean(col)``, ``.quantiles(col, [0.5, 0.95])``, ``.histogram(col)``,
    ``.ratio(filter)`` (share of rows matching ``filter``)."""

    kind: AggKind
    column: str | None = None
    quantiles: tuple[float, ...] = ()
    where: Filter | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", AggKind(self.kind))
        if self.kind in _NEEDS_COLUMN:
            if self.column is None:
                raise QueryError(f"{self.kind.value} needs a numeric column")
            check_column(self.column)
            if not _is_numeric(self.column):
                raise QueryError(f"{self.kind.value}({self.column}): the column is not numeric")
        elif self.column is not None:
            raise QueryError(f"{self.kind.value} takes no column")
        if self.kind is AggKind.QUANTILES:
            qs = tuple(float(q) for q in self.quantiles)
            if not qs or not all(0 < q < 1 for q in qs):
                raise QueryError(f"quantiles must lie strictly between 0 and 1, got {self.quantiles!r}")
            object.__setattr__(self, "quantiles", tuple(sorted(set(qs))))
        elif self.quantiles:
            raise QueryError("only a quantiles aggregation takes quantile levels")
        if (self.kind is AggKind.RATIO) != (self.where is not None):
            raise QueryError("a ratio needs a condition (the numerator), and only a ratio takes one")

    @classmethod
    def count(cls, *, name: str | None = None) -> Aggregation:
        return cls(AggKind.COUNT, name=name)

    @classmethod
    def units(cls, *, name: str | None = None) -> Aggregation:
        return cls(AggKind.UNITS, name=name)

    @classmethod
    def sum(cls, column: str, *, name: str | None = None) -> Aggregation:
        return cls(AggKind.SUM, column, name=name)

    @classmethod
    def mean(cls, column: str, *, name: str | None = None) -> Aggregation:
        return cls(AggKind.MEAN, column, name=name)

    @classmethod
    def quantile_set(cls, column: str, levels: list[float] | tuple[float, ...], *, name: str | None = None) -> Aggregation:
        return cls(AggKind.QUANTILES, column, quantiles=tuple(levels), name=name)

    @classmethod
    def histogram(cls, column: str, *, name: str | None = None) -> Aggregation:
        return cls(AggKind.HISTOGRAM, column, name=name)

    @classmethod
    def ratio(cls, where: Filter, *, name: str | None = None) -> Aggregation:
        return cls(AggKind.RATIO, where=where, name=name)

    @property
    def label(self) -> str:
        """The released name (the SQL alias when one was given)."""
        if self.name:
            return self.name
        if self.kind is AggKind.COUNT:
            return "count"
        if self.kind is AggKind.UNITS:
            return "distinct_units"
        if self.kind is AggKind.RATIO:
            return "ratio"
        return f"{self.kind.value}({self.column})"

    def quantile_labels(self) -> list[str]:
        """One released name per quantile level, e.g. ``p95(source.bytes)``."""
        prefix = f"{self.name}_" if self.name else ""
        return [f"{prefix}p{_pct(q)}({self.column})" for q in self.quantiles]


def _pct(q: float) -> str:
    p = q * 100
    return str(int(p)) if p.is_integer() else f"{p:g}"


@dataclass(frozen=True)
class Bins:
    """Public histogram bins: ascending finite edges; values are clamped into ``[edges[0], edges[-1]]``.

    >>> Bins.spaced(0, 1000, 3, scale="linear").edges
    (0.0, 333.3333333333333, 666.6666666666666, 1000.0)
    >>> [round(e) for e in Bins.spaced(0, 10_000, 4, scale="log").edges]
    [0, 1, 22, 464, 10000]
    """

    edges: tuple[float, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.edges, (list, tuple)):
            raise QueryError(f"bin edges must be a list of numbers, got {self.edges!r}")
        if len(self.edges) > MAX_BINS + 1:  # before any conversion: refusing is cheap
            raise QueryError(f"at most {MAX_BINS} bins (got {len(self.edges) - 1}); use fewer, wider bins")
        edges = tuple(_bin_number(e) for e in self.edges)
        if len(edges) < 2:
            raise QueryError("bins need at least two finite edges")
        if any(b <= a for a, b in zip(edges, edges[1:])):
            raise QueryError(f"bin edges must be strictly increasing, got {edges}")
        object.__setattr__(self, "edges", edges)

    @classmethod
    def spaced(cls, lo: float, hi: float, n: int, *, scale: str = "log") -> Bins:
        """``n`` bins over ``[lo, hi]``. ``log``: for ``lo >= 0``, the first bin is ``[lo, max(lo, 1)]``
        and the other ``n - 1`` are geometric up to ``hi`` (fine resolution for heavy-tailed sizes);
        ``linear``: equal widths."""
        lo, hi = _bin_number(lo), _bin_number(hi)
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or not 1 <= n <= MAX_BINS:
            raise QueryError(f"bins need an integer n between 1 and {MAX_BINS}, got n={n!r}")
        n = int(n)  # a numpy integer is read as the integer it is, as max_groups is
        if not lo < hi:
            raise QueryError(f"bins need lo < hi, got [{lo}, {hi}]")
        if scale not in ("log", "linear"):
            raise QueryError(f"bin scale must be 'log' or 'linear', got {scale!r}")
        first = max(lo, 1.0)
        if scale == "linear" or lo < 0 or n == 1 or first >= hi:
            return cls(tuple(lo + (hi - lo) * i / n for i in range(n + 1)))
        if lo >= 1:
            edges = [lo * (hi / lo) ** (i / n) for i in range(n + 1)]
        else:  # [lo, 1] then n - 1 geometric bins from 1 to hi
            edges = [lo] + [(hi) ** (i / (n - 1)) for i in range(n)]
        edges[-1] = hi
        return cls(tuple(edges))

    @property
    def n(self) -> int:
        return len(self.edges) - 1


def _bin_number(value: Any) -> float:
    try:
        x = check_number("a bin edge", value)
    except PrivacyParameterError as exc:
        raise QueryError(str(exc)) from None
    if not (math.isfinite(x) and abs(x) <= MAX_CLAMP):
        raise QueryError(f"bin edges must be finite numbers within ±{MAX_CLAMP:g}, got {value!r}")
    return x


# -- the query ------------------------------------------------------------------------------------

RESERVED_KEY_NAMES = frozenset({*CELL_COLUMNS, EXACT_COLUMN, "bin_lo", "bin_hi", ROWS, UNITS})
"""Column names of a release (its cells, a histogram's bin edges) and of the backends' bounded
aggregates, which a key's output name must not take."""
_RESERVED_KEY_PREFIXES = ("__", SUM_PREFIX, "exact_")  # internal columns; the engine's exact parts


@dataclass(frozen=True)
class Query:
    """A query as asked, before it is resolved against a store. Privacy parameters left ``None``
    come from the store manifest's ``defaults`` or fail resolution; nothing is guessed from data.

    The time window ``[start, end)`` bounds the rows read, is the domain of public time buckets
    and decides which budget windows are charged.
    """

    aggregations: tuple[Aggregation, ...]
    keys: tuple[KeySpec, ...] = ()
    where: Filter | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    top_k: int | None = None
    order_by: str | None = None
    mechanism: str | None = None
    epsilon: float | None = None
    rho: float | None = None
    delta: float | None = None
    max_groups: int | None = None
    max_rows_per_group: int | None = None
    clamps: dict[str, Clamp] = field(default_factory=dict)
    declared: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    bins: dict[str, Bins] = field(default_factory=dict)
    bound_share: float | None = None
    """Share of the budget spent choosing bounds the query leaves out (default 10%)."""
    time_zone: str = "UTC"
    """IANA zone whose days and hours the time buckets follow (the window stays [start, end))."""
    name: str = "adhoc"
    text: str = ""
    logs: str = ""
    """Which logs the query reads, in words (a query file's ``logs``): shown with its answers,
    since on a store without such logs every value is noise."""
    formats: tuple[str, ...] = ()
    """The input formats that can hold the events the query reads (a query file's ``formats``;
    empty: any). Its coverage counts only inputs of these formats or of one that may hold any
    events, so a window without such logs is refused before anything is charged."""

    def __post_init__(self) -> None:
        if not self.aggregations:
            raise QueryError("a query needs at least one aggregation (COUNT(*), SUM(col), ...)")
        labels = [lab for a in self.aggregations for lab in (a.quantile_labels() if a.kind is AggKind.QUANTILES else [a.label])]
        dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
        if dupes:
            raise QueryError(f"duplicate output names {dupes}; give each aggregation its own alias (AS name)")
        names = [k.output for k in self.keys]
        if len(set(names)) != len(names) or set(names) & set(labels):
            raise QueryError(f"output names must be unique across keys and aggregations, got keys {names}")
        taken = sorted(n for n in names if n in RESERVED_KEY_NAMES or n.startswith(_RESERVED_KEY_PREFIXES))
        if taken:  # found after the charge, they crashed the release (exit 70) or replaced a key's values
            raise QueryError(f"key name(s) {', '.join(map(repr, taken))} are taken by the release's own columns "
                             f"({', '.join(sorted(RESERVED_KEY_NAMES))}, or starting {', '.join(_RESERVED_KEY_PREFIXES)}); "
                             "give the key another name (AS ...)")
        if len({k.column for k in self.keys if k.column != TIMESTAMP}) != len([k for k in self.keys if k.column != TIMESTAMP]):
            raise QueryError("a column appears twice among the group keys")
        if sum(k.column == TIMESTAMP for k in self.keys) > 1:
            raise QueryError("at most one time bucket per query")
        check_time_zone(self.time_zone)
        for name in ("start", "end"):
            v = getattr(self, name)
            if v is not None:
                t = parse_time(v, what=f"--{name}")
                if not EARLIEST_TIME <= t <= LATEST_TIME:
                    raise QueryError(
                        f"--{name} {t.isoformat()} is outside the supported range "
                        f"{EARLIEST_TIME.date().isoformat()} .. {LATEST_TIME.date().isoformat()}"
                    )
                object.__setattr__(self, name, t)
        if self.start is not None and self.end is not None and not self.start < self.end:
            raise QueryError(f"the query window is empty: start {self.start} is not before end {self.end}")
        self._check_privacy_options()
        if self.formats:
            object.__setattr__(self, "formats", check_format_names(self.formats))
        if self.top_k is not None:
            if isinstance(self.top_k, (bool, np.bool_)) or not isinstance(self.top_k, numbers.Integral) or self.top_k < 1:
                raise QueryError(f"top-k must be an integer >= 1, got {self.top_k!r}")
            object.__setattr__(self, "top_k", int(self.top_k))
            if self.order_by is None:
                raise QueryError("top-k needs an aggregation to rank by (ORDER BY <aggregate> DESC)")
        if self.order_by is not None and self.order_by not in labels:
            raise QueryError(f"can only rank by a released aggregate ({', '.join(labels)}), not {self.order_by!r}")
        for col in list(self.clamps) + list(self.bins) + list(self.declared):
            check_column(col)
        for col, vals in self.declared.items():
            if not isinstance(vals, (list, tuple)):
                raise QueryError(f"declared keys for {col} must be a list of values, got {vals!r}")
            if len(vals) > MAX_DECLARED_KEYS:  # before any conversion: refusing is cheap
                raise QueryError(
                    f"declared keys for {col}: {len(vals):,} values are more than the limit of "
                    f"{MAX_DECLARED_KEYS:,}; declare fewer values or group by a coarser column"
                )
        object.__setattr__(
            self, "declared",
            {c: tuple(coerce_value(c, v) for v in vals) for c, vals in self.declared.items()},
        )
        for col, vals in self.declared.items():
            if not vals or len(set(vals)) != len(vals):
                raise QueryError(f"declared keys for {col} must be a non-empty list of distinct values")
        for name in ("clamps", "declared", "bins"):  # frozen like the rest: a plan is checked once
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def _check_privacy_options(self) -> None:
        """Privacy options are checked as given (numbers, not bools or text); whether they suffice
        for this query is the planner's question."""
        for name, check in (("epsilon", check_epsilon), ("rho", check_rho), ("delta", check_delta)):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check(getattr(self, name)))
        if self.mechanism is not None and self.mechanism not in ("laplace", "gaussian"):
            raise PrivacyParameterError(f"unknown mechanism {self.mechanism!r}; use laplace or gaussian")
        if self.max_groups is not None or self.max_rows_per_group is not None:
            ContributionBounds(max_groups=1 if self.max_groups is None else self.max_groups,
                               max_rows_per_group=1 if self.max_rows_per_group is None else self.max_rows_per_group)
        for col, clamp in self.clamps.items():
            if not isinstance(clamp, Clamp):
                raise QueryError(f"the clamp of {col} must be a Clamp(lo, hi), got {clamp!r}")
        for col, bins in self.bins.items():
            if not isinstance(bins, Bins):
                raise QueryError(f"the bins of {col} must be Bins, got {bins!r}")

    def with_options(self, **options: Any) -> Query:
        """A copy with the given options set; ``None`` values are ignored and mappings are merged,
        so command-line options override a query file's."""
        changes: dict[str, Any] = {}
        for name, value in options.items():
            if value is None or value == {}:
                continue
            if name in ("clamps", "declared", "bins"):
                changes[name] = {**getattr(self, name), **value}
            else:
                changes[name] = value
        if "bucket" in changes:
            changes["keys"] = self._with_bucket(changes.pop("bucket"))
        return replace(self, **changes)

    def _with_bucket(self, bucket: str) -> tuple[KeySpec, ...]:
        if any(k.column == TIMESTAMP for k in self.keys):
            # a time key named after its grain ("day") is renamed with it: hours under "day" mislead
            return tuple(
                KeySpec(TIMESTAMP, bucket=bucket, name=bucket if k.name in TIME_BUCKETS else k.name)
                if k.column == TIMESTAMP else k for k in self.keys
            )
        return (KeySpec(TIMESTAMP, bucket=bucket), *self.keys)
