"""Resolve a :class:`~dplogs.engine.plan.Query` against a store into an executable :class:`Plan`.

Resolution decides everything that is fixed before data is touched: key handling (public time
bucket, ECS enumeration, declared list, or private with partition selection), contribution bounds
and clamps (from the query, else the store manifest's ``defaults``, else an error), histogram bins,
the budget split and every noise plan. All validation happens here, so a bad query fails before the
ledger reserves anything.

Budget split: the query's ε (Laplace) or ρ (Gaussian) is divided into equal shares, one per noised
column (a count, a distinct-unit count, a sum, each mean's sum and count, each ratio's numerator,
one per histogram/quantile column) plus one for partition selection when a key is private. Columns
that are the same statistic share one draw (a ratio's denominator is the count of rows). δ goes
entirely to partition selection.

Manifest ``defaults`` (all optional)::

    {"max_groups": 10, "max_rows_per_group": 5, "clamp": {"source.bytes": [0, 1000000]}}

>>> from dplogs.engine.plan import Aggregation, KeySpec, Query
>>> q = Query(aggregations=(Aggregation.count(),), keys=(KeySpec("event.outcome"),),
...           start="2026-11-01", end="2026-11-02", epsilon=1.0, max_groups=1, max_rows_per_group=3)
>>> p = plan_query(q, unit="user.name", window_policy="month")
>>> [(c.source, c.noise.scale) for c in p.columns], p.budget_windows, p.grid_size
([('rows', 3.0)], ('2026-11',), 3)
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from dplogs.engine.plan import AggKind, Aggregation, Bins, Key, KeyKind, Query
from dplogs.errors import InternalError, PrivacyParameterError, QueryError, StoreError
from dplogs.privacy.bounds import Clamp, ContributionBounds
from dplogs.privacy.limits import MAX_BUDGET_WINDOWS, MAX_RELEASE_CELLS
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.mechanisms import Mechanism, NoisePlan, calibrate
from dplogs.privacy.selection import SelectionPlan, plan_selection
from dplogs.privacy.sensitivity import count_sensitivity, distinct_units_sensitivity, sum_sensitivity
from dplogs.privacy.windows import window_count, windows_for
from dplogs.schema import FIELDS, TIMESTAMP

QUANTILE_BINS = 64
HISTOGRAM_BINS = 16
MAIN = ""
"""Grouping id of the main bounded aggregation (histograms use their column name)."""


@dataclass(frozen=True)
class NoisedColumn:
    """One vectorised noise draw: backend column ``source`` of grouping ``grouping`` (MAIN or a
    histogram column), noised per ``noise``. ``used_by`` lists the released aggregates it feeds."""

    grouping: str
    source: str
    noise: NoisePlan
    used_by: tuple[str, ...]
    what: str


@dataclass(frozen=True)
class SumSpec:
    """A derived column the backend clamps and sums per unit per group."""

    alias: str
    clamp: Clamp
    kind: str  # "value" (clamped column), "present" (non-null indicator), "match" (ratio numerator)
    column: str | None = None
    aggregation: Aggregation | None = None


@dataclass(frozen=True)
class Plan:
    """Public: a fully resolved query. Nothing in it depends on the data."""

    query: Query
    unit: str
    window_policy: str
    budget_windows: tuple[str, ...]
    start: dt.datetime
    end: dt.datetime
    keys: tuple[Key, ...]
    bounds: ContributionBounds
    clamps: dict[str, Clamp]
    bins: dict[str, Bins]
    sums: tuple[SumSpec, ...]
    mechanism: Mechanism
    columns: tuple[NoisedColumn, ...]
    selection: SelectionPlan | None
    shares: int
    loss: PrivacyLoss
    grid_size: int | None

    @property
    def private(self) -> bool:
        return self.selection is not None

    def column(self, grouping: str, source: str) -> NoisedColumn:
        for c in self.columns:
            if c.grouping == grouping and c.source == source:
                return c
        raise InternalError(f"no noised column {grouping}/{source} in the plan")

    def bias_note(self) -> str:
        """The plain-words note on what bounding and clamping do to the released values."""
        b = self.bounds
        parts = [
            f"Each {self.unit} contributes to at most {b.max_groups} group(s) (picked by a secret random "
            f"rank) and at most {b.max_rows_per_group} row(s) per group"
            + (" (its sums scaled to that many rows)" if self.sums else "")
            + ", so released values are biased downward for heavy contributors."
        ]
        if self.clamps:
            parts.append(
                "Values are clamped to " + ", ".join(f"{c}∈[{v.lo:g}, {v.hi:g}]" for c, v in self.clamps.items())
                + "; values outside are moved to the nearest bound (sums, means and quantiles are biased toward the range)."
            )
        if self.bins:
            parts.append(
                "Histogram values are clamped into the bin range ("
                + ", ".join(f"{c}∈[{b.edges[0]:g}, {b.edges[-1]:g}]" for c, b in self.bins.items()) + ")"
                + ("; quantiles are interpolated inside bins, so their error includes up to one bin width."
                   if any(a.kind is AggKind.QUANTILES for a in self.query.aggregations) else ".")
            )
        if any(k.kind in (KeyKind.ENUM, KeyKind.DECLARED) for k in self.keys):
            parts.append("Rows whose key is null or outside the public key list are not counted.")
        if self.selection is not None:
            parts.append(
                f"Private keys appear only if their noisy distinct-{self.unit} count reached "
                f"{self.selection.threshold}; rare keys are suppressed and the released counts of kept keys "
                "near the threshold are biased upward."
            )
        parts.append("Noisy counts may be negative; they are left unbiased rather than clipped.")
        return " ".join(parts)


def resolve_keys(query: Query) -> tuple[Key, ...]:
    keys = []
    for spec in query.keys:
        if spec.column == TIMESTAMP:
            keys.append(Key(spec.output, spec.column, KeyKind.TIME, bucket=spec.bucket))
        elif spec.column in query.declared:
            keys.append(Key(spec.output, spec.column, KeyKind.DECLARED, values=query.declared[spec.column]))
        elif FIELDS[spec.column].allowed is not None:
            keys.append(Key(spec.output, spec.column, KeyKind.ENUM, values=FIELDS[spec.column].allowed))
        else:
            keys.append(Key(spec.output, spec.column, KeyKind.PRIVATE))
    return tuple(keys)


def check_defaults(defaults: Any) -> dict[str, Any]:
    """``defaults`` if it has the shape above (the entries this module reads); a StoreError
    naming the manifest otherwise. Other entries are left to whoever wrote them."""
    if defaults is None:
        return {}
    if not isinstance(defaults, dict):
        raise StoreError(f"the store manifest's defaults must be a table, got {defaults!r}; fix manifest.json")
    if not isinstance(defaults.get("clamp", {}), dict):
        raise StoreError(f"the store manifest's defaults.clamp must be a table, got {defaults['clamp']!r}; fix manifest.json")
    return defaults


def _bounds(query: Query, defaults: dict[str, Any]) -> ContributionBounds:
    values = {}
    for name, flag in (("max_groups", "--max-groups"), ("max_rows_per_group", "--max-rows-per-group")):
        v = getattr(query, name)
        if v is None:
            v = defaults.get(name)
            if v is not None:
                try:
                    ContributionBounds(**{"max_groups": 1, "max_rows_per_group": 1, name: v})
                except PrivacyParameterError as exc:
                    raise StoreError(f"the store manifest's defaults: {exc}; fix manifest.json") from None
        if v is None:
            raise PrivacyParameterError(
                f"no {name} bound: pass {flag} N (or set it in the store manifest's defaults); "
                "bounds are never guessed from the data"
            )
        values[name] = v
    return ContributionBounds(**values)


def _clamp(query: Query, defaults: dict[str, Any], column: str) -> Clamp:
    if column in query.clamps:
        return query.clamps[column]
    given = defaults.get("clamp", {}).get(column)
    if given is None:
        raise PrivacyParameterError(
            f"{column} needs a clamping range: pass --clamp {column}=LO:HI (or set defaults.clamp in the store manifest)"
        )
    try:
        if not isinstance(given, list) or len(given) != 2:
            raise PrivacyParameterError(f"must be [lo, hi], got {given!r}")
        return Clamp(lo=given[0], hi=given[1])
    except PrivacyParameterError as exc:
        raise StoreError(f"the store manifest's defaults.clamp[{column!r}]: {exc}; fix manifest.json") from None


def _mechanism(query: Query) -> tuple[Mechanism, float | None, float | None]:
    if query.epsilon is not None and query.rho is not None:
        raise PrivacyParameterError("pass either --epsilon (Laplace) or --rho (Gaussian), not both")
    mech = query.mechanism
    if mech is None:
        mech = "gaussian" if query.rho is not None else "laplace"
    try:
        mechanism = Mechanism(mech)
    except ValueError:
        raise PrivacyParameterError(f"unknown mechanism {mech!r}; use laplace or gaussian") from None
    if mechanism is Mechanism.LAPLACE and query.epsilon is None:
        hint = " (the Laplace mechanism takes --epsilon; for --rho use --mechanism gaussian)" if query.rho is not None else ""
        raise PrivacyParameterError(f"no privacy budget: pass --epsilon E{hint}")
    if mechanism is Mechanism.GAUSSIAN and query.rho is None:
        raise PrivacyParameterError("the Gaussian mechanism is calibrated in zCDP: pass --rho R (not --epsilon)")
    return mechanism, query.epsilon, query.rho


def plan_query(query: Query, *, unit: str, window_policy: str, defaults: dict[str, Any] | None = None) -> Plan:
    """Resolve and validate ``query`` for a store whose privacy unit is ``unit``."""
    defaults = check_defaults(defaults)
    if unit not in FIELDS:
        raise QueryError(f"privacy unit {unit!r} is not a store column")
    if query.start is None or query.end is None:
        raise QueryError(
            "the query needs a time window: pass --start and --end (ISO 8601; the window is [start, end)), "
            "or constrain \"@timestamp\" >= ... AND < ... in the SQL"
        )
    windows = window_count(query.start, query.end, window_policy)
    if windows > MAX_BUDGET_WINDOWS:
        raise QueryError(
            f"the query window {query.start.date()} .. {query.end.date()} touches {windows:,} {window_policy} budget "
            f"windows, more than the limit of {MAX_BUDGET_WINDOWS}; query a shorter window"
        )
    keys = resolve_keys(query)
    if query.order_by is not None and any(
        a.kind is AggKind.HISTOGRAM and a.label == query.order_by for a in query.aggregations
    ):
        raise QueryError("cannot rank groups by a histogram (one value per bin); rank by a count, sum or quantile")
    mechanism, epsilon, rho = _mechanism(query)
    bounds = _bounds(query, defaults)
    private = any(not k.public for k in keys)
    if private and query.delta is None:
        raise PrivacyParameterError(
            "grouping by private key(s) "
            + ", ".join(k.column for k in keys if not k.public)
            + " needs DP partition selection: pass --delta (e.g. 1e-6), or declare the values with --keys COL=a,b,c"
        )

    clamps: dict[str, Clamp] = {}
    bins: dict[str, Bins] = {}
    sums: list[SumSpec] = []
    needs: list[tuple[str, str, str, Any, str, str]] = []  # grouping, source, kind, param, used_by, what

    def value_sum(column: str) -> str:
        clamp = clamps.setdefault(column, _clamp(query, defaults, column))
        alias = f"v{list(clamps).index(column)}"
        if not any(s.alias == alias for s in sums):
            # the backend clamps again; widen to include 0 so filled nulls (0) stay 0
            sums.append(SumSpec(alias, Clamp(lo=min(clamp.lo, 0.0), hi=max(clamp.hi, 0.0)), "value", column=column))
        return alias

    for agg in query.aggregations:
        lab = agg.label
        if agg.kind is AggKind.COUNT:
            needs.append((MAIN, "rows", "count", None, lab, "count of rows"))
        elif agg.kind is AggKind.UNITS:
            if not private:
                needs.append((MAIN, "units", "units", None, lab, f"distinct {unit}"))
        elif agg.kind is AggKind.SUM:
            alias = value_sum(agg.column)
            needs.append((MAIN, f"sum_{alias}", "sum", clamps[agg.column], lab, f"sum of clamped {agg.column}"))
        elif agg.kind is AggKind.MEAN:
            alias = value_sum(agg.column)
            needs.append((MAIN, f"sum_{alias}", "sum", clamps[agg.column], lab, f"sum of clamped {agg.column}"))
            present = f"n{list(clamps).index(agg.column)}"
            if not any(s.alias == present for s in sums):
                sums.append(SumSpec(present, Clamp(lo=0, hi=1), "present", column=agg.column))
            # the backend rescales sums of a truncated cell (s·rows/n), so indicator sums are not
            # integers: they are noised as sums clamped to [0, 1], not as counts
            needs.append((MAIN, f"sum_{present}", "sum", Clamp(lo=0, hi=1), lab, f"count of non-null {agg.column}"))
        elif agg.kind is AggKind.RATIO:
            alias = f"r{sum(s.kind == 'match' for s in sums)}"
            sums.append(SumSpec(alias, Clamp(lo=0, hi=1), "match", aggregation=agg))
            needs.append((MAIN, f"sum_{alias}", "sum", Clamp(lo=0, hi=1), lab, f"count of rows where {agg.where.describe()}"))
            needs.append((MAIN, "rows", "count", None, lab, "count of rows"))
        else:  # histogram / quantiles: a (keys, bin) grouping per column
            if agg.column not in bins:
                if agg.column in query.bins:
                    bins[agg.column] = query.bins[agg.column]
                else:
                    c = _clamp(query, defaults, agg.column)
                    n = QUANTILE_BINS if agg.kind is AggKind.QUANTILES else HISTOGRAM_BINS
                    bins[agg.column] = Bins.spaced(c.lo, c.hi, n, scale="log")
            needs.append((agg.column, "rows", "count", None, lab, f"histogram of {agg.column} ({bins[agg.column].n} bins)"))

    grid = None
    if not private:  # counted arithmetically: no domain is built before the grid is known to fit
        grid = math.prod(k.domain_size(query.start, query.end) for k in keys)
        cells = grid * (1 + sum(b.n for b in bins.values()))
        if cells > MAX_RELEASE_CELLS:
            binned = f" with {cells // grid - 1:,} histogram bins per group" if bins else ""
            raise QueryError(
                f"the public key grid has {grid:,} groups{binned}: {cells:,} cells, more than the limit of "
                f"{MAX_RELEASE_CELLS:,}; use a coarser --bucket, a shorter window, fewer keys or fewer bins"
            )

    merged: dict[tuple[str, str], list[Any]] = {}
    for grouping, source, kind, param, used_by, what in needs:
        entry = merged.setdefault((grouping, source), [kind, param, [], what])
        if used_by not in entry[2]:
            entry[2].append(used_by)
    shares = len(merged) + (1 if private else 0)
    share = {"epsilon": epsilon / shares} if mechanism is Mechanism.LAPLACE else {"rho": rho / shares}

    columns = []
    for (grouping, source), (kind, param, used_by, what) in merged.items():
        if kind == "count":
            sens, integer = count_sensitivity(bounds), True
        elif kind == "units":
            sens, integer = distinct_units_sensitivity(bounds), True
        else:
            sens, integer = sum_sensitivity(bounds, param), False
        # sums are exact multiples of the clamp's public grid (backends/polars_backend.py)
        lattice = None if integer else param.grid
        noise = calibrate(mechanism=mechanism, sensitivity=sens, integer=integer, grid=lattice, **share)
        columns.append(NoisedColumn(grouping, source, noise, tuple(used_by), what))

    selection = None
    if private:
        selection = plan_selection(mechanism=mechanism, bounds=bounds, delta=query.delta, **share)
    loss = PrivacyLoss()
    for c in columns:
        loss = loss + c.noise.loss
    if selection is not None:
        loss = loss + selection.loss
    if not loss.epsilon + loss.rho > 0 or math.isnan(loss.epsilon + loss.rho):
        raise InternalError("a release plan with no privacy loss")

    return Plan(
        query=query,
        unit=unit,
        window_policy=window_policy,
        budget_windows=tuple(windows_for(query.start, query.end, window_policy)),
        start=query.start,
        end=query.end,
        keys=keys,
        bounds=bounds,
        clamps=clamps,
        bins=bins,
        sums=tuple(sums),
        mechanism=mechanism,
        columns=tuple(columns),
        selection=selection,
        shares=shares,
        loss=loss,
        grid_size=grid,
    )
