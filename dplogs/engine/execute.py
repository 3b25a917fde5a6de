"""Run a :class:`~dplogs.engine.planner.Plan`: bounded aggregation, key completion, ledger charge,
noise and selection, then the :class:`~dplogs.engine.release.Release`.

Order of events (DESIGN.md §1): the plan is already validated; the backend computes the bounded
pre-noise aggregates; public keys are completed onto their full grid (missing cells are 0, so an
empty bucket is indistinguishable from a quiet one); then the ledger durably reserves the plan's
whole loss, and only inside that charge are keys selected and noise drawn, one vectorised draw per
noised column. The release payload is recorded with the ledger entry so an idempotent rerun
re-emits it without spending.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from dplogs.engine.explain import describe, noise_name
from dplogs.engine.plan import AggKind, Aggregation, KeyKind
from dplogs.engine.planner import MAIN, NoisedColumn, Plan
from dplogs.engine.policy import PROTECTED
from dplogs.engine.release import NOT_ENOUGH_DATA_TEXT
from dplogs.engine.release import Release
from dplogs.errors import InternalError, PrivacyParameterError, UsageError
from dplogs.ingest.store import UNIT as STORE_UNIT
from dplogs.ingest.store import UNIT_CODE
from dplogs.privacy.bound_choice import CLAMP_PREFIX, choose
from dplogs.privacy.charge import Charge
from dplogs.privacy.ledger import ANY_PROTECTION
from dplogs.privacy.mechanisms import add_noise
from dplogs.privacy.quantiles import bin_level, histogram_quantiles
from dplogs.privacy.randomness import secret_seed
from dplogs.privacy.selection import select
from dplogs.privacy.testing import in_exact_mode
from dplogs.privacy.windows import window_start
from dplogs.schema import TIMESTAMP

ALL = "__all__"  # constant key of a query without keys: one global group
BIN = "__bin__"
EXACT = "exact_"  # prefix of the unprotected rows' exact aggregates beside the bounded ones
UNIT = "__unit__"


def _key_names(plan: Plan) -> list[str]:
    return [k.name for k in plan.keys] or [ALL]


def bounding_unit(plan: Plan) -> pl.Expr:
    """What the backend bounds: the privacy unit (the store's :class:`~dplogs.schema.units.UnitRule`:
    first non-null field of its chain, namespaced by field; rows without identity one shared unit,
    or null under the ``per-row`` opt-in, each such row its own unit) within one budget window.

    The neighbouring relation removes one unit's events in *one* window, so bounds hold per
    (unit, window). Bounding a unit over a range spanning windows would let its events in one
    window decide which of its cells in another are kept (removing its March events frees L0
    slots for February cells: an L1 change of 2·L0·L∞, twice the sensitivity charged). A query
    inside one window bounds on the unit alone (same rule, no per-row struct); a null unit
    stays null (each such row its own unit)."""
    unit = plan.unit.expr()
    if len(plan.budget_windows) <= 1:
        return unit
    return pl.when(unit.is_not_null()).then(
        pl.struct(unit.alias("unit"), window_start(TIMESTAMP, plan.window_policy).alias("window"))
    )


def coded(plan: Plan, unit_values: pl.DataFrame | None) -> bool:
    """Whether the bounding unit is the store's unit code (``lf`` carries ``UNIT_CODE`` and
    ``unit_values`` is its dictionary, :meth:`~dplogs.ingest.store.Store.unit_codes`): within one
    budget window the bounding unit is the unit itself, which the code stands for one to one."""
    return unit_values is not None and len(plan.budget_windows) <= 1


def prepare(plan: Plan, lf: pl.LazyFrame, *, keep: Sequence[pl.Expr] = (), unit_code: bool = False) -> pl.LazyFrame:
    """Rows in the window that pass WHERE and the public key domains, with key and derived value
    columns (pre-noise; stays inside the engine), plus the ``keep`` expressions (the auditor's).
    ``unit_code``: the unit is the store's code column (see :func:`coded`), not the rule's value."""
    if guarded(plan):
        lf = marked(plan, lf)
        keep = [*keep, pl.col(PROTECTED)]
    preds = [in_window(plan)]
    if plan.query.where is not None:
        preds.append(plan.query.where.expr())
    for k in plan.keys:
        if k.kind in (KeyKind.ENUM, KeyKind.DECLARED):
            # the key's own value: an ECS array's first element (is_in on the list itself matched
            # no row, so a GROUP BY event.category released pure noise)
            preds.append(k.expr().is_in(pl.lit(k.domain(plan.start, plan.end)).implode()))
    exprs = [(pl.col(UNIT_CODE) if unit_code else bounding_unit(plan)).alias(UNIT)]
    exprs += [k.expr() for k in plan.keys] or [pl.lit(0, pl.Int32).alias(ALL)]
    for s in plan.sums:
        if s.kind == "value":
            c = plan.clamps[s.column]
            exprs.append(pl.col(s.column).cast(pl.Float64).clip(c.lo, c.hi).fill_null(0.0).alias(s.alias))
        elif s.kind == "present":
            exprs.append(pl.col(s.column).is_not_null().cast(pl.Float64).alias(s.alias))
        else:
            exprs.append(s.aggregation.where.expr().fill_null(False).cast(pl.Float64).alias(s.alias))
    for col, bins in plan.bins.items():
        inner = pl.Series(bins.edges[1:-1], dtype=pl.Float64)
        value = pl.col(col).cast(pl.Float64).clip(bins.edges[0], bins.edges[-1])
        index = pl.lit(inner).search_sorted(value, side="right").cast(pl.Int32)
        # a null has no bin (search_sorted put it in the lowest one); as on Spark and in the exact part
        exprs.append(pl.when(pl.col(col).is_null()).then(None).otherwise(index).alias(f"{BIN}{col}"))
    return lf.filter(pl.all_horizontal(preds)).select(*exprs, *keep)


def in_window(plan: Plan) -> pl.Expr:
    """True on the rows inside the plan's window ``[start, end)``."""
    start, end = (pl.lit(t).dt.cast_time_unit("us") for t in (plan.start, plan.end))
    return (pl.col(TIMESTAMP) >= start) & (pl.col(TIMESTAMP) < end)


def marked(plan: Plan, lf: pl.LazyFrame) -> pl.LazyFrame:
    """``lf`` with :data:`~dplogs.engine.policy.PROTECTED` under the plan's policy; the rows of an
    anomaly query each stand for a unit-window (:meth:`~dplogs.engine.policy.Policy.mark`'s
    ``unit_rows``)."""
    return plan.policy.mark(lf, plan.unit, unit_rows=plan.anomalies is not None)


def guarded(plan: Plan) -> bool:
    """Whether a protected-population policy leaves some rows unprotected (exactly aggregated)."""
    return plan.policy is not None and not plan.policy.protects_everything


def _exact(plan: Plan, rows: pl.LazyFrame, keys: list[str]) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """The exact part: plain per-group aggregates of the unprotected rows (no bounds, no noise;
    a row whose unit is null counts as its own unit)."""
    units = pl.col(UNIT).drop_nulls().n_unique() + pl.col(UNIT).null_count()
    main = rows.group_by(keys).agg(
        pl.len().cast(pl.Int64).alias(f"{EXACT}rows"), units.cast(pl.Int64).alias(f"{EXACT}units"),
        *(pl.col(s.alias).sum().alias(f"{EXACT}sum_{s.alias}") for s in plan.sums),
    ).collect()
    hists = {}
    for col in plan.bins:
        b = f"{BIN}{col}"
        hists[col] = rows.filter(pl.col(b).is_not_null()).group_by(*keys, b).agg(
            pl.len().cast(pl.Int64).alias(f"{EXACT}rows")
        ).rename({b: BIN}).with_columns(pl.col(BIN).cast(pl.Int32)).collect()
    return main, hists


def _with_exact(frame: pl.DataFrame, exact: pl.DataFrame, on: list[str]) -> pl.DataFrame:
    """Bounded and exact parts of the same groups side by side (a group in either part appears)."""
    exact = exact.with_columns(pl.col(k).cast(frame.schema[k]) for k in on)
    out = frame.join(exact, on=on, how="full", coalesce=True, nulls_equal=True)
    return out.with_columns(pl.exclude(on).fill_null(0))


def aggregate(
    plan: Plan, lf: pl.LazyFrame, backend: Any, unit_values: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """The bounded pre-noise aggregates: the main grouping and one (keys, bin) grouping per
    histogram column, each completed onto the public key grid when all keys are public. Under a
    protection policy, only protected rows are bounded; the unprotected rows' exact aggregates
    ride along in ``exact_*`` columns (on either backend). ``unit_values``: ``lf`` is a coded
    store's scan and this its unit dictionary (polars backend only)."""
    if coded(plan, unit_values) and not _on_spark(backend):
        try:
            return _aggregate(plan, lf, backend, unit_values)
        except pl.exceptions.OutOfBoundsError:
            # codes its dictionary lacks (a store whose units/ was not copied with its events):
            # the values are in the rows, so bound on them
            pass
    return _aggregate(plan, lf, backend, None)


def _aggregate(
    plan: Plan, lf: pl.LazyFrame, backend: Any, unit_values: pl.DataFrame | None
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    unit_code = unit_values is not None
    # the polars backend bounds on the codes and hashes each unit's value once, from the dictionary
    codes = {"unit_values": unit_values.rename({STORE_UNIT: UNIT})} if unit_code else {}
    base, not_null = _rows(plan, lf, backend, unit_code=unit_code)
    keys = _key_names(plan)
    exact = None
    if guarded(plan) and _on_spark(backend):
        from dplogs.engine import spark_rows

        unprotected, base = spark_rows.split_protected(base)
        exact = spark_rows.exact_part(plan, unprotected, keys)
    elif guarded(plan):
        exact = _exact(plan, base.filter(~pl.col(PROTECTED)), keys)
        base = base.filter(pl.col(PROTECTED)).drop(PROTECTED)
    grid = {}
    if unit_code and not plan.private:  # public keys: their grid holds every key tuple, no pass finds them
        schema = base.collect_schema()
        grid["key_values"] = _grid(plan).select(pl.col(k).cast(schema[k], strict=False) for k in keys)
    main = backend.bounded_aggregate(
        base, unit=UNIT, keys=keys, bounds=plan.bounds_for(MAIN), sums={s.alias: s.clamp for s in plan.sums}, seed=secret_seed(),
        **codes, **grid,
    )
    main = main.select(*keys, "rows", "units", *(f"sum_{s.alias}" for s in plan.sums))
    hists = {}
    for col in plan.bins:
        b = f"{BIN}{col}"
        frame = backend.bounded_aggregate(
            not_null(base, b), unit=UNIT, keys=[*keys, b], bounds=plan.bounds_for(col), sums={}, seed=secret_seed(), **codes
        )
        hists[col] = frame.select(*keys, pl.col(b).cast(pl.Int32).alias(BIN), "rows")
    if exact is not None:
        main = _with_exact(main, exact[0], keys)
        hists = {col: _with_exact(frame, exact[1][col], [*keys, BIN]) for col, frame in hists.items()}
    if not plan.private:
        grid = _grid(plan)
        main = _complete(grid, main, keys)
        for col, frame in hists.items():
            bins = pl.DataFrame({BIN: pl.arange(0, plan.bins[col].n, eager=True, dtype=pl.Int32)})
            hists[col] = _complete(grid.join(bins, how="cross"), frame, [*keys, BIN])
    return main, hists


def _rows(plan: Plan, source: Any, backend: Any, *, unit_code: bool = False) -> tuple[Any, Callable[[Any, str], Any]]:
    """The prepared rows in the backend's own frame type, and how to keep the rows where a column
    is not null: polars expressions for the polars backend, Spark ones (compiled from the same
    plan objects) for Spark, so the polars path stays exactly as it was."""
    if _on_spark(backend):
        from dplogs.engine import spark_rows

        policy = plan.policy if guarded(plan) else None
        return spark_rows.prepare(plan, backend.frame(source), policy=policy), spark_rows.not_null
    return prepare(plan, source, unit_code=unit_code), lambda frame, name: frame.filter(pl.col(name).is_not_null())


def _on_spark(backend: Any) -> bool:
    return getattr(backend, "name", None) == "spark"


def _grid(plan: Plan) -> pl.DataFrame:
    if not plan.keys:
        return pl.DataFrame({ALL: [0]}, schema={ALL: pl.Int32})
    grid = None
    for k in plan.keys:
        dom = k.domain(plan.start, plan.end).to_frame()
        grid = dom if grid is None else grid.join(dom, how="cross")
    return grid


def _complete(grid: pl.DataFrame, frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    frame = frame.with_columns(pl.col(k).cast(grid.schema[k]) for k in keys)
    out = grid.join(frame, on=keys, how="left", nulls_equal=True, maintain_order="left")
    if out.height != grid.height:
        raise InternalError("completing public keys changed the grid (duplicate groups from the backend)")
    return out.with_columns(pl.exclude(keys).fill_null(0))


def run(plan: Plan, lf: pl.LazyFrame, *, backend: Any, ledger: Any, caller: str, idempotency_key: str | None = None,
        unit_values: pl.DataFrame | None = None, disclose: dict[str, Any] | None = None,
        protection: Any = ANY_PROTECTION) -> Release:
    """Release ``plan`` over ``lf``, charging ``ledger``. Returns the stored release on an
    idempotent replay. ``unit_values``: see :func:`aggregate`. ``disclose``: public facts added to
    the release's privacy block and stored with it (the store's coverage of the window), so a
    replay re-emits them too. ``protection``: the sealed policy ``plan.policy`` must still be at
    the charge (:meth:`~dplogs.privacy.ledger.Ledger.charge`)."""
    # pre-noise work before the charge, so a failure there costs nothing
    pre = aggregate(plan, lf, backend, unit_values) if plan.choice is None else profile(plan, lf, backend)
    mechanisms = sorted({noise_name(c.noise) for c in plan.columns} | ({plan.selection.name} if plan.selection else set()))
    with ledger.charge(
        plan.loss, windows=list(plan.budget_windows), caller=caller, query=plan.query.text or plan.query.name,
        idempotency_key=idempotency_key, mechanisms=mechanisms, protection=protection,
    ) as charge:
        if getattr(charge, "replayed_payload", None) is not None:
            stored = Release.from_payload(charge.replayed_payload)
            _check_same_question(plan, stored, idempotency_key)
            return Release(data=stored.data, privacy={**stored.privacy, "replayed": True})
        release = finish(plan, lf, pre, backend=backend, charge=charge, unit_values=unit_values)
        release = Release(data=release.data, privacy={**release.privacy, **(disclose or {}),
                                                      "ledger_entry": charge.entry_id})
        charge.record(release.to_payload())
    return release


def _question(privacy: dict[str, Any]) -> dict[str, Any]:
    """What a release answers, from its privacy metadata: the query, its rows, keys and aggregates
    (not its budget or bounds, which a rerun may change and the replay discloses as released)."""
    return {
        **{k: privacy.get(k) for k in ("query", "text", "window", "where", "anomalies")},
        "keys": [k["column"] for k in privacy.get("keys") or []],
        "aggregates": sorted({a for c in privacy.get("columns") or [] for a in c["used_by"]}),
    }


def _check_same_question(plan: Plan, stored: Release, key: str | None) -> None:
    """Refuse to re-emit a stored release as the answer to another question: before, a key reused
    for a different query returned the first query's cells (exit 0). A public key's cells must lie
    in the value list asked now (found by faults4: a report section whose declared hosts were
    changed replayed the old hosts' cells). Nothing is charged here."""
    asked, answered = _question(describe(plan)), _question(stored.privacy)
    asked["key values"] = answered["key values"] = True
    for k in plan.keys:
        if k.values is not None and k.name in stored.data.columns:
            answered["key values"] &= set(stored.data[k.name].drop_nulls().to_list()) <= set(k.values)
    if asked != answered:
        diff = ", ".join(k for k in asked if asked[k] != answered[k])
        raise UsageError(f"idempotency key {key!r} already holds the release of another query (its {diff} "
                         "differ); use a new key for this one (nothing was charged)")


def finish(plan: Plan, lf: pl.LazyFrame, pre: Any, *, backend: Any, charge: Charge,
           unit_values: pl.DataFrame | None = None) -> Release:
    """Everything after the charge: for a plan with bounds to choose, the noisy choice on the
    profile ``pre``, then bounding with the chosen bounds and the release; otherwise the release
    of the bounded aggregates ``pre``."""
    if plan.choice is None:
        main, hists = pre
        return noisy_release(plan, main, hists, charge=charge)
    final = choose_bounds(plan, pre, charge=charge)
    main, hists = aggregate(final, lf, backend, unit_values)
    return noisy_release(final, main, hists, charge=charge)


def profile(plan: Plan, lf: Any, backend: Any = None) -> dict[str, np.ndarray]:
    """Exact pre-noise histograms for the bounds ``plan`` chooses: one value per bounding unit
    ((unit, budget window)) over each step's candidates. A row whose unit is null is its own
    unit (one group, one row). Under a protection policy only protected rows count (otherwise a
    unit's unprotected rows would keep its entry, moved between bins by its protected ones: a
    sensitivity of 2). Stays inside the engine; only its noisy form leaves."""
    steps = plan.choice.steps
    raw = {s.name: f"__raw{i}" for i, s in enumerate(steps) if s.name.startswith(CLAMP_PREFIX)}
    column = {"max_groups": "__groups", "max_rows_per_group": "__rows", **raw}
    if _on_spark(backend):
        from dplogs.engine.spark_rows import per_unit_profile

        per_unit = per_unit_profile(plan, backend.frame(lf), {name[len(CLAMP_PREFIX):]: a for name, a in raw.items()},
                                    policy=plan.policy if guarded(plan) else None)
        return {s.name: s.bins(per_unit[column[s.name]].cast(pl.Float64).fill_null(0.0).to_numpy()) for s in steps}
    keep = [
        pl.col(name[len(CLAMP_PREFIX):]).cast(pl.Float64).fill_nan(None).clip(lower_bound=0.0).alias(alias)
        for name, alias in raw.items()
    ]
    base = prepare(plan, lf, keep=keep)
    if guarded(plan):  # only protected rows: a unit's unprotected rows must not move its entry
        base = base.filter(pl.col(PROTECTED)).drop(PROTECTED)
    keys = _key_names(plan)
    cells = base.filter(pl.col(UNIT).is_not_null()).group_by(UNIT, *keys).agg(
        pl.len().alias("__rows"), *(pl.col(a).max() for a in raw.values())
    )
    units = cells.group_by(UNIT).agg(
        pl.len().alias("__groups"), pl.col("__rows").max(), *(pl.col(a).max() for a in raw.values())
    ).select("__groups", "__rows", *raw.values())
    # one row per null-unit row (a bare literal would broadcast to a single row when raw is empty)
    one = pl.col(UNIT).is_null().cast(pl.UInt32)
    nulls = base.filter(pl.col(UNIT).is_null()).select(one.alias("__groups"), one.alias("__rows"), *raw.values())
    per_unit = pl.concat([units, nulls], how="vertical_relaxed").collect()
    return {
        s.name: s.bins(per_unit[column[s.name]].cast(pl.Float64).fill_null(0.0).to_numpy()) for s in steps
    }


def choose_bounds(plan: Plan, counts: dict[str, np.ndarray], *, charge: Charge) -> Plan:
    """Draw each choice histogram's noise against ``charge`` and pick its bound (post-processing
    from there on); the resolved plan says what was chosen and how."""
    chosen: dict[str, float] = {}
    detail: dict[str, Any] = {}
    for step in plan.choice.steps:
        cost = plan.noise_cost(step.name, 1.0, chosen)
        noise_cost = None if cost is None else (lambda tau, name=step.name: plan.noise_cost(name, tau, chosen))
        # what one unit above a candidate loses per unit of excess: a dropped group about a full
        # cell of rows; an excess row one row; an excess value on each of the rows it may keep
        bounds = {"max_groups": plan.bounds.max_groups, "max_rows_per_group": plan.bounds.max_rows_per_group, **chosen}
        weight = {"max_groups": float(bounds["max_rows_per_group"]), "max_rows_per_group": 1.0}.get(
            step.name, float(bounds["max_groups"] * bounds["max_rows_per_group"])
        )
        chosen[step.name], detail[step.name] = choose(step, counts[step.name], charge=charge, noise_cost=noise_cost, weight=weight)
    return _resolve_within_limits(plan, chosen, detail)


def _resolve_within_limits(plan: Plan, chosen: dict[str, float], detail: dict[str, Any]) -> Plan:
    """``plan.resolve(chosen)``, with the chosen ``max_groups`` / ``max_rows_per_group`` lowered
    to the candidate below (the larger bound first) until every column's noise fits the limits of
    docs/privacy.md: a sum's scale is 2^24·L0·L∞/ε of its grid, so a large choice at a small ε
    passed no limit, and the release failed after the choice had drawn its noise (exit 64 for a
    spent budget). Post-processing of the noisy choice; the release discloses it."""
    below = {s.name: [c for c in s.candidates] for s in plan.choice.steps if s.name in ("max_groups", "max_rows_per_group")}
    original, capped = dict(chosen), {}
    while True:
        extra = {"capped_to_fit_the_noise_limit": capped} if capped else {}
        try:
            return plan.resolve(chosen, {"detail": detail, **extra})
        except PrivacyParameterError:
            lower = {n: max((c for c in grid if c < chosen[n]), default=None) for n, grid in below.items()}
            lower = {n: c for n, c in lower.items() if c is not None}
            if not lower:
                raise
            name = max(lower, key=lambda n: chosen[n])
            chosen = {**chosen, name: lower[name]}
            capped[name] = {"chosen": original[name], "used": chosen[name]}


def noisy_release(plan: Plan, main: pl.DataFrame, hists: dict[str, pl.DataFrame], *, charge: Charge) -> Release:
    """Selection and noise over the bounded aggregates, then the release cells."""
    keys = _key_names(plan)
    hists = dict(hists)  # completed per selection below; the caller's dict stays as it was
    selected_units = None
    if plan.selection is not None:
        # one distinct string per group (OpenDP's thresholding takes string keys), vectorised
        encoded = main.select(pl.struct(keys).struct.json_encode()).to_series().to_list()
        # keys that unprotected rows carry are public through those rows: kept, still noised
        always = (main[f"{EXACT}rows"] > 0).to_numpy() if f"{EXACT}rows" in main.columns else None
        kept, noisy_units = select(encoded, main["units"].to_numpy(), plan.selection, charge=charge, always=always)
        main = main[kept]
        selected_units = noisy_units.astype(np.float64)
        if f"{EXACT}units" in main.columns:
            selected_units = selected_units + main[f"{EXACT}units"].to_numpy()
        grid = main.select(keys)
        for col, frame in hists.items():
            bins = pl.DataFrame({BIN: pl.arange(0, plan.bins[col].n, eager=True, dtype=pl.Int32)})
            hists[col] = _complete(grid.join(bins, how="cross"), frame.join(grid, on=keys, how="semi", nulls_equal=True), [*keys, BIN])
    # group id per main row, so histogram cells line up with their group
    main = main.with_row_index("__gid")
    frames = {MAIN: main}
    for col, frame in hists.items():
        frames[col] = frame.join(main.select(*keys, "__gid"), on=keys, how="inner", nulls_equal=True).sort("__gid", BIN)

    noisy: dict[tuple[str, str], np.ndarray] = {}
    exact: dict[tuple[str, str], np.ndarray] = {}
    for c in plan.columns:
        values = frames[c.grouping][c.source].to_numpy()
        if c.noise.integer:
            values = values.astype(np.int64)  # rows / units: Int64 from the backend
        noisy[(c.grouping, c.source)] = add_noise(values, c.noise, charge=charge).astype(np.float64)
        if f"{EXACT}{c.source}" in frames[c.grouping].columns:  # the unprotected rows, exactly
            part = frames[c.grouping][f"{EXACT}{c.source}"].to_numpy().astype(np.float64)
            noisy[(c.grouping, c.source)] += part
            exact[(c.grouping, c.source)] = part

    key_frame = main.select("__gid", *keys)  # release order: the grid's (time, then domain order)
    parts = []
    for agg in plan.query.aggregations:
        parts.extend(_cells(plan, agg, key_frame, frames, noisy, selected_units, exact))
    data = pl.concat(parts, how="diagonal_relaxed")
    ordered = [k for k in keys if k != ALL] + [c for c in ("bin_lo", "bin_hi") if c in data.columns]
    extra = ["exact"] if guarded(plan) else []
    if extra and "exact" not in data.columns:
        data = data.with_columns(exact=pl.lit(None, pl.Float64))
    data = data.sort("__gid", maintain_order=True).select(*ordered, "aggregate", "value", *extra, "mechanism", "scale", "ci_low", "ci_high")
    if plan.query.top_k is not None:
        data = _top_k(data, [k for k in keys if k != ALL], plan.query.order_by, plan.query.top_k)
    return Release(data=data, privacy=describe(plan))


def _frame(keys: pl.DataFrame, label: str, value: np.ndarray, mech: str, scale: float | None, lo: np.ndarray, hi: np.ndarray) -> pl.DataFrame:
    return keys.with_columns(
        aggregate=pl.lit(label),
        value=pl.Series(value, dtype=pl.Float64),
        mechanism=pl.lit(mech),
        scale=pl.lit(scale, dtype=pl.Float64),
        ci_low=pl.Series(lo, dtype=pl.Float64),
        ci_high=pl.Series(hi, dtype=pl.Float64),
    ).with_columns(pl.col("value", "ci_low", "ci_high").fill_nan(None))


def _direct(keys: pl.DataFrame, label: str, col: NoisedColumn, value: np.ndarray) -> pl.DataFrame:
    h = col.noise.ci_halfwidth(0.95)
    return _frame(keys, label, value, noise_name(col.noise), col.noise.scale, value - h, value + h)


RATIO_Z = 2.1
"""z of the ratio intervals: above the normal 1.96 because the noise is Laplace (heavier tails);
tests/engine/test_ratio_intervals.py checks ≥ 95% coverage by simulation."""

NOT_ENOUGH_DATA = 0.5
"""A ratio or mean whose interval spans more than this share of its possible range says nothing
useful: it is released as null, "not enough data" (post-processing, no extra spend)."""


def _quotient(num: np.ndarray, den: np.ndarray, sn: float, sd: float, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """num/den and a 95% Fieller interval from the noisy numerator and denominator together
    (independent noise of standard deviations ``sn`` and ``sd``): the ratios r with
    (num − r·den)² ≤ z²(sn² + r²·sd²). Unbounded (den not clearly above 0), wider than
    :data:`NOT_ENOUGH_DATA` of ``[lo, hi]`` (once clipped to it), wholly outside ``[lo, hi]``, or
    with num/den more than half that share outside it: value and interval null. The last two catch
    what clipping hides: where the noise swamps both counts, a denominator pushed far up by its
    noise makes a narrow interval around a quotient its numerator's noise put far outside the range
    (−0.5 clipped to [0, 0.08]); such cells, ~0.4% of a hopeless query's, covered the true rate
    1–80% of the time."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    z2 = RATIO_Z**2
    a = den**2 - z2 * sd**2
    disc = z2 * (sn**2 * den**2 + sd**2 * num**2 - z2 * sn**2 * sd**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(np.maximum(disc, 0.0))
        raw_lo, raw_hi, raw = (num * den - root) / a, (num * den + root) / a, num / den
        ci_lo, ci_hi, value = np.clip(raw_lo, lo, hi), np.clip(raw_hi, lo, hi), np.clip(raw, lo, hi)
    margin = NOT_ENOUGH_DATA / 2 * (hi - lo)
    useless = (a <= 0) | (disc < 0) | (den <= 0) | ((ci_hi - ci_lo) > NOT_ENOUGH_DATA * (hi - lo)) \
        | (raw < lo - margin) | (raw > hi + margin) | (raw_hi < lo) | (raw_lo > hi)
    if in_exact_mode():  # test-only: noise off, so keep every pre-noise quotient
        useless = den <= 0
    nan = np.full(num.shape, np.nan)
    return np.where(useless, nan, value), np.where(useless, nan, ci_lo), np.where(useless, nan, ci_hi)


def _cells(plan: Plan, agg: Aggregation, keys: pl.DataFrame, frames: dict[str, pl.DataFrame],
           noisy: dict[tuple[str, str], np.ndarray], selected_units: np.ndarray | None,
           exact: dict[tuple[str, str], np.ndarray]) -> list[pl.DataFrame]:
    """The released cells of one aggregation; ``exact`` holds the unprotected rows' exact part of
    the directly noised columns (shown in an ``exact`` column under a protection policy)."""
    return [
        f.with_columns(exact=pl.Series(exact[src], dtype=pl.Float64)) if src in exact else f
        for f, src in _cells_of(plan, agg, keys, frames, noisy, selected_units)
    ]


def _cells_of(plan: Plan, agg: Aggregation, keys: pl.DataFrame, frames: dict[str, pl.DataFrame],
              noisy: dict[tuple[str, str], np.ndarray], selected_units: np.ndarray | None) -> list[tuple[pl.DataFrame, Any]]:
    lab = agg.label
    if agg.kind is AggKind.COUNT:
        return [(_direct(keys, lab, plan.column(MAIN, "rows"), noisy[(MAIN, "rows")]), (MAIN, "rows"))]
    if agg.kind is AggKind.UNITS:
        if selected_units is not None:
            h = plan.selection.ci_halfwidth(0.95)
            frame = _frame(keys, lab, selected_units, plan.selection.name, plan.selection.scale, selected_units - h, selected_units + h)
            if f"{EXACT}units" in frames[MAIN].columns:
                frame = frame.with_columns(exact=frames[MAIN][f"{EXACT}units"].cast(pl.Float64))
            return [(frame, None)]
        return [(_direct(keys, lab, plan.column(MAIN, "units"), noisy[(MAIN, "units")]), (MAIN, "units"))]
    if agg.kind is AggKind.SUM:
        alias = next(s.alias for s in plan.sums if s.kind == "value" and s.column == agg.column)
        return [(_direct(keys, lab, plan.column(MAIN, f"sum_{alias}"), noisy[(MAIN, f"sum_{alias}")]), (MAIN, f"sum_{alias}"))]
    if agg.kind in (AggKind.MEAN, AggKind.RATIO):
        if agg.kind is AggKind.MEAN:
            num_src = "sum_" + next(s.alias for s in plan.sums if s.kind == "value" and s.column == agg.column)
            den_src = "sum_" + next(s.alias for s in plan.sums if s.kind == "present" and s.column == agg.column)
            lo, hi, what = plan.clamps[agg.column].lo, plan.clamps[agg.column].hi, "sum/count"
        else:
            num_src = "sum_" + next(s.alias for s in plan.sums if s.kind == "match" and s.aggregation == agg)
            den_src, lo, hi, what = "rows", 0.0, 1.0, "matching rows/rows"
        num_c, den_c = plan.column(MAIN, num_src), plan.column(MAIN, den_src)
        value, ci_lo, ci_hi = _quotient(noisy[(MAIN, num_src)], noisy[(MAIN, den_src)], num_c.noise.std, den_c.noise.std, lo, hi)
        mech = np.where(np.isnan(value), f"{plan.mechanism.value} (post-processed: {what}; {NOT_ENOUGH_DATA_TEXT}: "
                        f"95% interval wider than {NOT_ENOUGH_DATA:.0%} of the range)",
                        f"{plan.mechanism.value} (post-processed: {what})")
        frame = _frame(keys, lab, value, "", None, ci_lo, ci_hi).with_columns(mechanism=pl.Series(mech, dtype=pl.String))
        return [(frame, None)]
    col = plan.column(agg.column, "rows")
    bins = plan.bins[agg.column]
    counts = noisy[(agg.column, "rows")].reshape(keys.height, bins.n)
    edges = np.asarray(bins.edges)
    if agg.kind is AggKind.HISTOGRAM:
        h = col.noise.ci_halfwidth(0.95)
        flat = counts.reshape(-1)
        rep = (
            keys.with_row_index("__g").join(pl.DataFrame({"__b": np.arange(bins.n)}), how="cross")
            .sort("__g", "__b").drop("__g", "__b")
        )
        idx = np.tile(np.arange(bins.n), keys.height)
        frame = _frame(rep, lab, flat, noise_name(col.noise), col.noise.scale, flat - h, flat + h)
        return [(frame.with_columns(bin_lo=pl.Series(edges[idx]), bin_hi=pl.Series(edges[idx + 1])), (agg.column, "rows"))]
    est = histogram_quantiles(counts, edges, list(agg.quantiles), halfwidth=col.noise.ci_halfwidth(bin_level(0.95, bins.n)))
    mech = f"{plan.mechanism.value} (post-processed: histogram CDF)"
    return [
        (_frame(keys, name, est.value[:, i], mech, None, est.ci_low[:, i], est.ci_high[:, i]), None)
        for i, name in enumerate(agg.quantile_labels())
    ]


def _top_k(data: pl.DataFrame, keys: list[str], by: str, k: int) -> pl.DataFrame:
    """Keep the k groups with the largest released ``by`` value, best first (post-processing)."""
    if not keys:
        return data
    top = (
        data.filter(pl.col("aggregate") == by)
        .sort("value", descending=True, nulls_last=True, maintain_order=True)
        .head(k)
        .select(keys)
        .with_row_index("__rank")
    )
    return data.join(top, on=keys, how="inner", nulls_equal=True, maintain_order="left").sort("__rank", maintain_order=True).drop("__rank")
