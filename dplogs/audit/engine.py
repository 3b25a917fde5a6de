"""Audit the engine's real release path: a :class:`~dplogs.engine.planner.Plan` on a backend.

One run of the path is :func:`~dplogs.engine.execute.aggregate` (bounding with a fresh secret seed
on the backend) followed by :func:`~dplogs.engine.execute.noisy_release` (selection, noise,
post-processing) under an audit-only charge. :func:`engine_path` runs it as follows, so that every
shortcut draws from exactly the distribution of the full path:

- the bounded aggregates are computed ``checks`` times with fresh seeds; if they differ, every
  trial is a full run;
- otherwise, when no key is private or tracked, each noised column's (main or histogram
  grouping, both completed onto their public grids) noise is drawn for all trials in one
  vectorised :func:`add_noise` call on the fixed aggregate; the output is the noisy columns
  themselves. The released cells (means, ratios, quantiles, top-k included) are computed from
  them alone, so this audits at least as much as the cells do (that the post-processing reads
  nothing else is checked on its own: tests/audit/test_path_audits.py gives D and D′ the same
  noisy columns and compares their cells);
- otherwise (selection) :func:`noisy_release` runs once per trial on the fixed aggregates (≈1 ms).

:func:`claimed_loss` turns a plan's loss into the (ε, δ) the audit compares against.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from dplogs.audit.auditor import AuditResult, ReleasePath, audit
from dplogs.engine.execute import (
    EXACT, _key_names, _on_spark, aggregate, finish, guarded, in_window, marked, noisy_release, profile,
)
from dplogs.engine.plan import AggKind
from dplogs.engine.planner import MAIN, Plan
from dplogs.engine.policy import PROTECTED
from dplogs.engine.release import Release
from dplogs.privacy.accounting import compose
from dplogs.privacy.charge import Charge
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.mechanisms import add_noise
from dplogs.privacy.windows import window_start
from dplogs.schema import TIMESTAMP

_WINDOW = "__audit_window"
_VALUE = "__audit_unit"


def claimed_loss(loss: PrivacyLoss, *, delta: float = 1e-6) -> tuple[float, float]:
    """(ε, δ) of one release of ``loss``, spending at least ``delta`` on converting its zCDP part.

    >>> claimed_loss(PrivacyLoss(epsilon=0.5))
    (0.5, 0.0)
    """
    total = compose([loss], delta_cap=max(delta, loss.delta) if loss.rho > 0 else loss.delta)
    return float(total.epsilon), float(total.delta)


def _values(plan: Plan, release: Release, track: Sequence[tuple[Any, ...]] | None) -> np.ndarray:
    data = release.data
    if track is None:
        if plan.private:
            raise ValueError("a plan with private keys releases a data-dependent set of rows: pass track=[key tuples]")
        value = data["value"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        if _direct_only(plan):
            return value
        # a mean or ratio cell may be null ("not enough data"): that is an output too, so it is
        # one more coordinate, and the value a finite number the threshold test can order
        return np.concatenate([np.nan_to_num(value, nan=0.0), np.isnan(value).astype(np.float64)])
    keys = _key_names(plan)
    cells = _cells_per_key(plan)
    out = []
    for key in track:
        hit = data.filter(pl.all_horizontal(pl.col(k) == v for k, v in zip(keys, key, strict=True)))
        values = hit["value"].cast(pl.Float64).fill_null(0.0).to_list() if hit.height else [0.0] * cells
        if len(values) != cells:
            raise ValueError(f"a tracked key has {len(values)} cells, expected {cells}")
        out += [float(hit.height > 0), *values]
    return np.array(out)


def _cells_per_key(plan: Plan) -> int:
    """How many cells a released key has (one per aggregate; a histogram's bins; a quantile set's levels)."""
    n = 0
    for a in plan.query.aggregations:
        n += plan.bins[a.column].n if a.kind is AggKind.HISTOGRAM else len(a.quantiles) if a.kind is AggKind.QUANTILES else 1
    return n


def _same(a: tuple[pl.DataFrame, dict[str, pl.DataFrame]], b: tuple[pl.DataFrame, dict[str, pl.DataFrame]]) -> bool:
    return a[0].equals(b[0]) and a[1].keys() == b[1].keys() and all(a[1][k].equals(b[1][k]) for k in a[1])


_DIRECT = (AggKind.COUNT, AggKind.UNITS, AggKind.SUM, AggKind.HISTOGRAM)


def _direct_only(plan: Plan) -> bool:
    """Every released cell is one noised column's value (nothing post-processed from several)."""
    return all(a.kind in _DIRECT for a in plan.query.aggregations) and plan.query.top_k is None


def engine_path(
    plan: Plan, backend: Any, *, checks: int = 8, track: Sequence[tuple[Any, ...]] | None = None
) -> ReleasePath:
    """The engine's release path for ``plan`` on ``backend``; datasets are LazyFrames of
    :data:`dplogs.schema.STORE_SCHEMA`. ``track`` lists key tuples whose presence and cell values
    (0 when absent) are the output (required for private keys)."""
    if checks < 2:
        raise ValueError("checks must be >= 2")

    def one(lf: pl.LazyFrame, aggs: tuple[pl.DataFrame, dict[str, pl.DataFrame]] | None = None) -> np.ndarray:
        if plan.choice is not None:  # the whole release: noisy bound choice, bounding, noise
            return _values(plan, finish(plan, lf, profile(plan, lf), backend=backend, charge=Charge.for_audit(plan.loss)), track)
        main, hists = aggs if aggs is not None else aggregate(plan, lf, backend)
        rel = noisy_release(plan, main, dict(hists), charge=Charge.for_audit(plan.loss))
        return _values(plan, rel, track)

    def run(lf: pl.LazyFrame, trials: int) -> np.ndarray:
        lf = _window_rows(plan, lf, backend)
        if plan.choice is not None:  # bounds depend on noise: every trial is a full run
            return np.stack([one(lf) for _ in range(trials)])
        aggs = [aggregate(plan, lf, backend) for _ in range(checks)]
        if not all(_same(aggs[0], a) for a in aggs[1:]):
            return np.stack([one(lf) for _ in range(trials)])
        if track is None and not plan.private:
            main, hists = aggs[0]
            cols = []
            for c in plan.columns:
                # a histogram's grouping is completed onto its (key, bin) grid in a fixed order
                frame = main if c.grouping == MAIN else hists[c.grouping]
                values = frame[c.source].to_numpy()
                if c.noise.integer:
                    values = np.rint(values).astype(np.int64)
                noisy = add_noise(np.tile(values, trials), c.noise, charge=Charge.for_audit(c.noise.loss))
                noisy = noisy.reshape(trials, len(values)).astype(np.float64)
                if f"{EXACT}{c.source}" in frame.columns:  # the unprotected rows' exact part
                    noisy = noisy + frame[f"{EXACT}{c.source}"].to_numpy().astype(np.float64)
                cols.append(noisy)
            return np.concatenate(cols, axis=1)
        return np.stack([one(lf, aggs[0]) for _ in range(trials)])

    return run


def _window_rows(plan: Plan, lf: pl.LazyFrame, backend: Any) -> pl.LazyFrame:
    """``lf``'s rows inside the plan's window, read once into memory (polars backend): every run
    reads only those (the first filter of :func:`~dplogs.engine.execute.prepare`; the policy's
    marks are per row), and re-reading a store's files on each of thousands of runs was two
    thirds of an audit's time."""
    if _on_spark(backend) or not isinstance(lf, pl.LazyFrame):
        return lf
    return lf.filter(in_window(plan)).collect().lazy()


def _noisy_columns(plan: Plan, aggs: tuple[pl.DataFrame, dict[str, pl.DataFrame]]) -> np.ndarray:
    """The pre-noise value of every cell, in the order :func:`engine_path`'s vectorised runs
    output them."""
    main, hists = aggs
    values = []
    for c in plan.columns:
        frame = main if c.grouping == MAIN else hists[c.grouping]
        v = frame[c.source].to_numpy().astype(np.float64)
        if f"{EXACT}{c.source}" in frame.columns:
            v = v + frame[f"{EXACT}{c.source}"].to_numpy().astype(np.float64)
        values.append(v)
    return np.concatenate(values)


def corner_statistic(plan: Plan, backend: Any, d: pl.LazyFrame, d_prime: pl.LazyFrame) -> Callable[[np.ndarray], np.ndarray]:
    """The test "every cell the victim moves lies at least the victim's shift beyond its D′ value",
    as a scalar for the threshold search: min over moved cells i of (x_i − c′_i)/Δ_i (c′ the D′
    aggregate, Δ = D − D′; the test s ≥ 1 is that corner). Laplace noise gives each moved cell the
    likelihood ratio e^{|Δ_i|/b_i} beyond its shift, so the corner reaches the full e^ε of the
    composed release, which a projection on the mean difference does not (a sum of Laplace draws
    is not Laplace). Fixed from the exact aggregates before any noisy run (inside the trust
    boundary)."""
    on_d, on_d_prime = _noisy_columns(plan, aggregate(plan, d, backend)), _noisy_columns(plan, aggregate(plan, d_prime, backend))
    return corner(on_d, on_d_prime)


def corner(on_d: np.ndarray, on_d_prime: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`corner_statistic` from the pre-noise outputs on D and D′ (one value per output cell)."""
    shift = np.asarray(on_d, np.float64) - np.asarray(on_d_prime, np.float64)
    moved = np.flatnonzero(shift)
    if moved.size == 0:
        raise ValueError("the neighbours give the same aggregate: nothing to audit")
    centre, step = np.asarray(on_d_prime, np.float64)[moved], shift[moved]

    def statistic(out: np.ndarray) -> np.ndarray:
        return np.min((np.asarray(out)[:, moved] - centre) / step, axis=1)

    return statistic


def audit_plan(
    plan: Plan, backend: Any, d: pl.LazyFrame, d_prime: pl.LazyFrame, *, trials: int, delta: float = 1e-6,
    track: Sequence[tuple[Any, ...]] | None = None, statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    name: str | None = None,
) -> AuditResult:
    """Audit ``plan`` on the neighbours ``d`` / ``d_prime`` against its own claimed loss."""
    eps, dl = claimed_loss(plan.loss, delta=delta)
    return audit(
        engine_path(plan, backend, track=track), d, d_prime, trials=trials, claimed_epsilon=eps, delta=dl,
        statistic=statistic, name=name or _title(plan),
    )


def _title(plan: Plan) -> str:
    return plan.query.name if plan.query.name != "adhoc" else " ".join(plan.query.text.split()) or "adhoc"


@dataclass(frozen=True)
class Victim:
    """The neighbour's difference: every event of ``unit`` (a value of the plan's privacy-unit
    rule, :meth:`~dplogs.schema.units.UnitRule.expr`: the plain value under per-row, its bytes for a
    single field, ``{"field": i, "value": v}`` for a chain; ``rule.shared_value`` is the shared
    unattributed unit) inside the budget window
    starting at ``window``, the neighbouring relation of
    docs/privacy.md. The unit's events in other windows stay: a path that bounds a unit over the
    whole query range instead of per window is caught by exactly this neighbour."""

    unit: Any
    window: dt.datetime

    def rows(self, plan: Plan) -> pl.Expr:
        """True on the victim's rows (never on rows whose unit is null: under ``per-row`` each is its own unit).
        Under a protection policy, only its protected rows: the guarantee covers those alone, and
        a neighbour that also removed unprotected (exactly counted) rows would report a leak the
        claim never made."""
        hit = plan.unit.matches(self.unit) & (window_start(TIMESTAMP, plan.window_policy) == self.window)
        if guarded(plan):
            hit &= pl.col(PROTECTED)
        return hit.fill_null(False)

    def remove(self, plan: Plan, lf: pl.LazyFrame) -> pl.LazyFrame:
        """D′: ``lf`` without the victim's rows."""
        if guarded(plan):
            return marked(plan, lf).filter(~self.rows(plan)).drop(PROTECTED)
        return lf.filter(~self.rows(plan))

    def of(self, plan: Plan, lf: pl.LazyFrame) -> pl.LazyFrame:
        """The victim's rows of ``lf`` (what D′ leaves out)."""
        if guarded(plan):
            return marked(plan, lf).filter(self.rows(plan)).drop(PROTECTED)
        return lf.filter(self.rows(plan))


def heaviest_unit(plan: Plan, lf: pl.LazyFrame) -> Victim:
    """The (unit, budget window) with the most rows the plan reads: the default worst-case
    neighbour (it is cut hardest by the bounds). Reads raw data: the audit runs inside the trust
    boundary."""
    from dplogs.engine.execute import prepare

    rows = prepare(plan, lf, keep=[plan.unit.expr().alias(_VALUE), window_start(TIMESTAMP, plan.window_policy).alias(_WINDOW)])
    if guarded(plan):  # the heaviest contributor of protected rows: the only ones the claim covers
        rows = rows.filter(pl.col(PROTECTED))
    top = (
        rows.filter(pl.col(_VALUE).is_not_null()).group_by(_VALUE, _WINDOW).len()
        .sort("len", _WINDOW, descending=[True, False]).head(1).collect()
    )
    if top.height == 0:
        raise ValueError("the query reads no rows of any unit in its window: nothing to audit")
    return Victim(unit=top[_VALUE][0], window=top[_WINDOW][0])


def _unit_value(plan: Plan, unit: Any) -> Any:
    """The rule's value for the auditor's ``unit`` (text ``FIELD=VALUE`` for a chain)."""
    if not isinstance(unit, str) or plan.unit.plain:
        return unit
    field, sep, value = unit.partition("=")
    if sep and field in plan.unit.fields:
        return plan.unit.value(field, value)
    return plan.unit.value(plan.unit.fields[0], unit)


def audit_prepared(prepared: Any, *, trials: int, unit: Any = None, delta: float = 1e-6) -> AuditResult:
    """Audit a :class:`~dplogs.engine.api.PreparedQuery` on its own store: D is the store, D′ the
    store without every event of one unit in one budget window (default: :func:`heaviest_unit`;
    ``unit`` picks the unit, and its heaviest window: a value of the rule, or text, which for a
    unit chain reads ``FIELD=VALUE`` (a bare value: the chain's first field)). Spends nothing. The result's name never
    shows the unit's value (audit output leaves the trust boundary in CI logs and tickets)."""
    from dplogs.engine.execute import prepare

    plan = prepared.plan
    d = prepared.engine.scan()
    who = "heaviest contributor" if unit is None else "given unit"  # never the raw value: it is personal data
    if unit is not None:
        d = d.filter(plan.unit.matches(_unit_value(plan, unit)))  # pick the unit's heaviest window
    victim = heaviest_unit(plan, d)
    d = prepared.engine.scan()
    d_prime = victim.remove(plan, d)
    track = None
    if plan.private:  # follow the victim's most frequent key: it may appear or vanish
        keys = _key_names(plan)
        rows = prepare(plan, victim.of(plan, d)).group_by(keys).len().sort("len", descending=True).head(1).collect()
        track = [tuple(rows.row(0)[: len(keys)])]
    return audit_plan(plan, prepared.engine.backend, d, d_prime, trials=trials, delta=delta, track=track,
                      name=f"{_title(plan)} ({plan.unit}: the {who} removed from one budget window)")
