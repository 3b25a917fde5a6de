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
import functools
import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from dplogs.engine.policy import Policy
from dplogs.engine.plan import AggKind, Aggregation, Bins, Key, KeyKind, Query
from dplogs.errors import InternalError, PrivacyParameterError, QueryError, StoreError
from dplogs.privacy.bound_choice import (
    BOUND_NAMES, CLAMP_PREFIX, ChoicePlan, adaptive_share, check_share, expected_abs_noise, plan_choice,
)
from dplogs.privacy.bounds import Clamp, ContributionBounds
from dplogs.privacy.limits import MAX_BUDGET_WINDOWS, MAX_RELEASE_CELLS
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.mechanisms import Mechanism, NoisePlan, calibrate
from dplogs.privacy.selection import SelectionPlan, plan_selection
from dplogs.privacy.sensitivity import (
    count_sensitivity, distinct_units_sensitivity, reachable_bounds, sum_sensitivity,
)
from dplogs.privacy.windows import window_count, windows_for
from dplogs.schema import FIELDS, TIMESTAMP
from dplogs.schema.units import UnitRule

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
    unit: UnitRule
    """The store's privacy-unit rule (its ``label`` in prose, its ``expr()`` for the rows)."""
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
    reach: dict[str, int | None] = field(default_factory=dict)
    """Per grouping (MAIN or a histogram column), the most groups one unit can touch in one budget
    window, known from public key domains alone (None: private keys)."""
    choice: ChoicePlan | None = None
    """Bounds to choose from the data at release time; the bounds and clamps named there are
    provisional (1, [0, 1]) until :meth:`resolve`."""
    chosen: dict[str, Any] | None = None
    """On a resolved plan: the bounds that were chosen, how, and at what cost (disclosed)."""
    defaults: dict[str, Any] = field(default_factory=dict)
    policy: Policy | None = None
    """The store's protected-population policy (None or protect-everything: all rows bounded)."""
    defaults_used: dict[str, str] = field(default_factory=dict)
    """Parameters the query left out that fell back to dplogs' documented defaults (disclosed)."""
    anomalies: dict[str, Any] | None = None
    """None when the query reads the store's events; for the anomaly query type, the detector whose
    flagged unit-windows it reads instead (model card and threshold), disclosed with the release."""

    def __post_init__(self) -> None:
        # read-only views: a caller editing q.plan.clamps between explain() and release() changed
        # what the release disclosed (and the Spark rows' clamp) but not what was charged
        for name in ("clamps", "bins", "reach"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @property
    def private(self) -> bool:
        return self.selection is not None

    def resolve(self, chosen: dict[str, float], detail: dict[str, Any]) -> Plan:
        """The plan released once the choice picked ``chosen`` (bound name -> value): the same
        query with those bounds, spending the main share; its loss stays the reserved total."""
        if self.choice is None:
            raise InternalError("resolve() on a plan without bounds to choose")
        q = self.query
        main = {"epsilon": q.epsilon * (1 - self.choice.share)} if q.epsilon is not None else {"rho": q.rho * (1 - self.choice.share)}
        clamps = {n[len(CLAMP_PREFIX):]: Clamp(lo=0, hi=v) for n, v in chosen.items() if n.startswith(CLAMP_PREFIX)}
        explicit = q.with_options(**main, **{n: int(v) for n, v in chosen.items() if n in BOUND_NAMES}, clamps=clamps)
        for n in BOUND_NAMES:  # bounds fixed without choosing (e.g. one reachable group)
            if getattr(explicit, n) is None and n not in self.defaults:
                explicit = explicit.with_options(**{n: getattr(self.bounds, n)})
        plan = _plan_explicit(explicit, unit=self.unit, window_policy=self.window_policy, defaults=self.defaults)
        if not self.loss.covers(plan.loss):
            raise InternalError(f"the resolved plan spends {plan.loss}, more than the reserved {self.loss}")
        return replace(plan, query=q, loss=self.loss, policy=self.policy, defaults_used=self.defaults_used,
                       chosen={**self.choice.describe(), "values": dict(chosen), **detail})

    def noise_cost(self, name: str, tau: float, chosen: dict[str, float]) -> float | None:
        """The expected absolute noise, summed over the released cells, of the statistic bound
        ``name`` governs when it is ``tau`` (other bounds: ``chosen`` so far, else provisional).
        None when the noise does not depend on it (a histogram's range). Public: plan only."""
        if name.startswith(CLAMP_PREFIX):
            column = name[len(CLAMP_PREFIX):]
            value = [s for s in self.sums if s.kind == "value" and s.column == column]
            if not value:
                return None
            target = self.column(MAIN, f"sum_{value[0].alias}")
        else:
            target = next((c for c in self.columns if c.source == "rows"), self.columns[0])
        cells = self.grid_size or 1
        if target.grouping != MAIN:
            cells *= self.bins[target.grouping].n
        b = self.bounds
        values = {"max_groups": b.max_groups, "max_rows_per_group": b.max_rows_per_group, **chosen}
        if not name.startswith(CLAMP_PREFIX):
            values[name] = tau
        bounds = reachable_bounds(
            ContributionBounds(max_groups=int(values["max_groups"]), max_rows_per_group=int(values["max_rows_per_group"])),
            self.reach.get(target.grouping),
        )
        noise = target.noise
        if name.startswith(CLAMP_PREFIX):
            sens = sum_sensitivity(bounds, Clamp(lo=0, hi=tau))
        elif target.source == "units":
            sens = distinct_units_sensitivity(bounds)
        else:  # rows, or a sum measured in rows (its clamp is fixed while the bounds are chosen)
            sens = count_sensitivity(bounds)
        # the column's budget share is fixed; its scale grows with the sensitivity
        if noise.mechanism is Mechanism.LAPLACE:
            scale = sens.l1 * noise.scale / noise.sensitivity
        else:
            scale = sens.l2 * noise.scale / noise.sensitivity
        return cells * expected_abs_noise(replace(noise, scale=scale))

    def bounds_for(self, grouping: str) -> ContributionBounds:
        """The bounds enforced and charged for ``grouping``: L0 = min(max_groups, reach)."""
        return reachable_bounds(self.bounds, self.reach.get(grouping))

    def column(self, grouping: str, source: str) -> NoisedColumn:
        for c in self.columns:
            if c.grouping == grouping and c.source == source:
                return c
        raise InternalError(f"no noised column {grouping}/{source} in the plan")

    def bias_note(self) -> str:
        """The plain-words note on what bounding and clamping do to the released values."""
        b = self.bounds_for(MAIN)
        parts = [
            f"Each {self.unit} contributes to at most {b.max_groups} group(s) (picked by a secret random "
            f"rank) and at most {b.max_rows_per_group} row(s) per group"
            + (" (its sums scaled to that many rows)" if self.sums else "")
            + ", so released values are biased downward for heavy contributors."
        ]
        if len(self.budget_windows) > 1:
            parts.append(
                f"The query spans {len(self.budget_windows)} budget windows and bounds hold per {self.unit} per "
                f"window (the unit of the guarantee): a {self.unit} active in several windows contributes up to "
                f"those bounds in each, and a group spanning windows counts it once per window in distinct counts."
            )
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
        if self.chosen:
            parts.append(
                f"{', '.join(self.chosen['bounds'])} chosen from the data with DP: that choice sees {self.unit}s above "
                f"a bound only once at least about {self.chosen['sees_tails_of']} of them share one power-of-two bin, so fewer "
                f"heavy {self.unit}s are cut unseen and the values may be far below the truth; give the bound "
                "if you know it."
                + ("" if self.policy is not None and not self.policy.protects_everything else
                   " If the heaviest are no one's (root, service accounts, names an attacker guessed, outside "
                   "addresses), declare who the people are with `dplogs protect`: rows it leaves unprotected are "
                   "counted exactly, without bounds.")
            )
        parts.append("Noisy counts may be negative; they are left unbiased rather than clipped.")
        return " ".join(parts)


# The most time buckets of a grain that one budget window can intersect (UTC; buckets up to a
# day and ISO weeks align with the windows; a month meets at most 6 Monday-started weeks).
_BUCKETS_PER_WINDOW = {
    ("minute", "day"): 1440, ("minute", "week"): 10080, ("minute", "month"): 44640,
    ("hour", "day"): 24, ("hour", "week"): 168, ("hour", "month"): 744,
    ("day", "day"): 1, ("day", "week"): 7, ("day", "month"): 31,
    ("week", "day"): 1, ("week", "week"): 1, ("week", "month"): 6,
}


def groups_per_window(keys: tuple[Key, ...], start: dt.datetime, end: dt.datetime, policy: str,
                      unit: UnitRule | None = None) -> int | None:
    """How many groups one unit can touch inside one budget window, from the public key domains
    alone: the product of the enumerated/declared domain sizes and the time buckets of the query
    window that one budget window can meet; ``None`` when a key is private (its values are not
    known in advance). Bounding is per (unit, window), so this caps the L0 that can be used.

    A key on the first field of the unit rule (``GROUP BY user.name`` on a ``user.name`` store)
    takes ONE value per unit, whatever its domain: a unit from that field has its own value there,
    and every other unit (a later chain field, the shared or a per-row unit) has null there, by the
    first-non-null rule. It contributes a factor 1, public or private.

    >>> from dplogs.engine.plan import Key, KeyKind
    >>> t = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    >>> hour = Key("bucket", "@timestamp", KeyKind.TIME, bucket="hour")
    >>> outcome = Key("event.outcome", "event.outcome", KeyKind.ENUM, values=("success", "failure", "unknown"))
    >>> groups_per_window((), t, t + dt.timedelta(days=3), "month")
    1
    >>> groups_per_window((hour, outcome), t, t + dt.timedelta(days=3), "day")
    72
    >>> account = Key("user.name", "user.name", KeyKind.PRIVATE)
    >>> groups_per_window((account, outcome), t, t + dt.timedelta(days=3), "day", UnitRule(("user.name",)))
    3
    """
    groups = 1
    for k in keys:
        if unit is not None and k.column == unit.fields[0]:
            continue  # constant within each unit
        if k.kind is KeyKind.PRIVATE:
            return None
        if k.kind is KeyKind.TIME:
            # buckets of another zone need not align with the UTC windows: one more can be cut in two
            most = _BUCKETS_PER_WINDOW[(k.bucket, policy)] + (k.time_zone != "UTC")
            size = k.domain_size(start, end)  # counted, not built
            if k.time_zone != "UTC":  # local buckets: the UTC arithmetic can be off by one
                size = k.domain(start, end).len() if size <= MAX_RELEASE_CELLS else size + 1
            groups *= min(size, most)
        else:
            groups *= len(k.values or ())
    return groups


def resolve_keys(query: Query) -> tuple[Key, ...]:
    keys = []
    for spec in query.keys:
        if spec.column == TIMESTAMP:
            keys.append(Key(spec.output, spec.column, KeyKind.TIME, bucket=spec.bucket, time_zone=query.time_zone))
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


def tail_at_best(provisional: Plan, names: list[str]) -> float:
    """About how many units the best bound leaves above it (Amin et al. 2019): the release's
    expected noise per unit of bound, at the provisional bounds of 1 where one unit above a bound
    loses one unit of bias per unit of bound, the fewest over the bounds to choose; infinite when
    no bound moves the noise (a histogram's range). Public: from the plan alone."""
    slopes = [provisional.noise_cost(n, 2.0, {}) - provisional.noise_cost(n, 1.0, {})
              for n in names if provisional.noise_cost(n, 1.0, {}) is not None]
    return min(slopes, default=math.inf)


def plan_query(query: Query, *, unit: str | UnitRule, window_policy: str, defaults: dict[str, Any] | None = None) -> Plan:
    """Resolve and validate ``query`` for a store whose privacy-unit rule is ``unit`` (a
    :class:`~dplogs.schema.units.UnitRule` or its spelling, e.g. ``"user.name"``).

    Bounds and clamps that neither the query nor the store's defaults give are chosen from the
    data at release time (:mod:`dplogs.privacy.bound_choice`): the plan then reserves the whole
    budget, spends ``bound_share`` of it on the choice (when neither the query nor the store gives
    it, :func:`~dplogs.privacy.bound_choice.adaptive_share` of 10–30%), and carries provisional bounds (1, and
    clamps [0, 1]) whose noise scales grow with the chosen bounds; :meth:`Plan.resolve` gives
    the plan that is released."""
    defaults = check_defaults(defaults)
    _check_window(query, window_policy)
    missing = missing_bounds(query, defaults)
    if not missing:
        return _plan_explicit(query, unit=unit, window_policy=window_policy, defaults=defaults)
    reach = groups_per_window(resolve_keys(query), *_window(query), window_policy, UnitRule.parse(unit))
    fixed: dict[str, Any] = {}
    if "max_groups" in missing and reach is not None and reach <= 1:
        fixed["max_groups"] = 1  # one group: nothing to choose
    if "max_rows_per_group" in missing and all(a.kind is AggKind.UNITS for a in query.aggregations):
        fixed["max_rows_per_group"] = 1  # distinct units do not depend on rows per group
    names = [n for n in missing if n not in fixed]
    if not names:
        return _plan_explicit(query.with_options(**fixed), unit=unit, window_policy=window_policy, defaults=defaults)
    mechanism, epsilon, rho = _mechanism(query)
    candidates = {}
    if "max_groups" in names and reach is not None:  # a unit cannot touch more than reach groups
        candidates["max_groups"] = tuple(float(2**i) for i in range(reach.bit_length()) if 2**i < reach) + (float(reach),)

    def at(share: float) -> tuple[Plan, ChoicePlan]:
        """The provisional plan (bounds 1, clamps [0, 1], the main budget) and the choice at ``share``."""
        main = {"epsilon": epsilon * (1 - share)} if epsilon is not None else {"rho": rho * (1 - share)}
        provisional_query = query.with_options(
            **main, **fixed,
            **{n: 1 for n in BOUND_NAMES if n in names},
            clamps={n[len(CLAMP_PREFIX):]: Clamp(lo=0, hi=1) for n in names if n.startswith(CLAMP_PREFIX)},
        )
        provisional = _plan_explicit(provisional_query, unit=unit, window_policy=window_policy, defaults=defaults)
        return provisional, plan_choice(
            names, mechanism=mechanism, candidates=candidates, share=share,
            **({"epsilon": epsilon * share} if epsilon is not None else {"rho": rho * share}),
        )

    at = functools.cache(at)
    given = query.bound_share if query.bound_share is not None else defaults.get("bound_share")
    share = check_share(given) if given is not None else adaptive_share(
        lambda s: at(s)[1].visible_tail(), lambda s: tail_at_best(at(s)[0], names),
    )
    provisional, choice = at(share)
    choice = replace(choice, adaptive=given is None)
    main_budget = {"epsilon": epsilon * (1 - share)} if epsilon is not None else {"rho": rho * (1 - share)}
    # reserve the nominal budget: the resolved plan's columns spend main_budget (up to float
    # rounding), its partition selection at most the query's delta
    nominal = choice.loss + PrivacyLoss(**main_budget, delta=query.delta if provisional.private else 0.0)
    # the plan keeps the query as asked: resolve() takes the main share of its budget once (the
    # provisional query's already reduced budget spent 81% instead of 90% of ε on the release)
    return replace(provisional, query=query, choice=choice, loss=nominal, defaults=dict(defaults))


def missing_bounds(query: Query, defaults: dict[str, Any]) -> list[str]:
    """Bounds and clamps the release needs that neither ``query`` nor the store defaults give:
    ``max_groups``, ``max_rows_per_group`` and ``clamp:<column>``, in that order."""
    missing = [n for n in BOUND_NAMES if getattr(query, n) is None and defaults.get(n) is None]
    given = set(query.clamps) | set((defaults.get("clamp") or {}) if isinstance(defaults.get("clamp"), dict) else ())
    for agg in query.aggregations:
        needs = agg.kind in (AggKind.SUM, AggKind.MEAN) or (
            agg.kind in (AggKind.HISTOGRAM, AggKind.QUANTILES) and agg.column not in query.bins
        )
        name = f"{CLAMP_PREFIX}{agg.column}"
        if needs and agg.column not in given and name not in missing:
            missing.append(name)
    return missing


def _window(query: Query) -> tuple[dt.datetime, dt.datetime]:
    if query.start is None or query.end is None:
        raise QueryError(
            "the query needs a time window: pass --start and --end (ISO 8601; the window is [start, end)), "
            "or constrain \"@timestamp\" >= ... AND < ... in the SQL"
        )
    return query.start, query.end


def _check_window(query: Query, window_policy: str) -> None:
    """The window is given and touches at most MAX_BUDGET_WINDOWS budget windows (counted, not listed)."""
    start, end = _window(query)
    windows = window_count(start, end, window_policy)
    if windows > MAX_BUDGET_WINDOWS:
        raise QueryError(
            f"the query window {start.date()} .. {end.date()} touches {windows:,} {window_policy} budget "
            f"windows, more than the limit of {MAX_BUDGET_WINDOWS}; query a shorter window"
        )


def _plan_explicit(query: Query, *, unit: str | UnitRule, window_policy: str, defaults: dict[str, Any]) -> Plan:
    unit = UnitRule.parse(unit)
    _check_window(query, window_policy)
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

    reach = {MAIN: groups_per_window(keys, query.start, query.end, window_policy, unit)}
    for col, b in bins.items():
        reach[col] = None if reach[MAIN] is None else reach[MAIN] * b.n
    columns = []
    for (grouping, source), (kind, param, used_by, what) in merged.items():
        reachable = reachable_bounds(bounds, reach[grouping])
        if kind == "count":
            sens, integer = count_sensitivity(reachable), True
        elif kind == "units":
            sens, integer = distinct_units_sensitivity(reachable), True
        else:
            sens, integer = sum_sensitivity(reachable, param), False
        # sums are exact multiples of the clamp's public grid (backends/polars_backend.py)
        lattice = None if integer else param.grid
        noise = calibrate(mechanism=mechanism, sensitivity=sens, integer=integer, grid=lattice, **share)
        columns.append(NoisedColumn(grouping, source, noise, tuple(used_by), what))

    selection = None
    if private:
        # one unit moves at most L0 keys' unit counts: the reachable L0 (1 when grouping by the unit)
        selection = plan_selection(mechanism=mechanism, bounds=reachable_bounds(bounds, reach[MAIN]),
                                   delta=query.delta, **share)
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
        reach=reach,
    )
