"""Explain a plan without spending anything: keys, bounds, sensitivities, mechanisms, scales,
selection thresholds, expected 95% CI half-widths and the budget split.

The same dictionary (:func:`describe`) is the ``privacy`` metadata of every :class:`Release`, so
what ``dplogs explain`` promises is what the release states.

>>> from dplogs.engine.plan import Aggregation, KeySpec, Query
>>> from dplogs.engine.planner import plan_query
>>> q = Query(aggregations=(Aggregation.count(),), keys=(KeySpec("event.outcome"),),
...           start="2026-11-01", end="2026-11-02", epsilon=1.0, max_groups=1, max_rows_per_group=3)
>>> print(explain(plan_query(q, unit="user.name", window_policy="month")).text)  # doctest: +ELLIPSIS
query: adhoc
privacy unit: user.name; guarantee per user.name per month budget window; charged to: 2026-11
window: [2026-11-01T00:00:00Z, 2026-11-02T00:00:00Z)
...
  count  rows  discrete laplace  sensitivity 3  scale 3  ±9 (95%)  epsilon=1
...
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from dplogs.engine.planner import MAIN, Plan
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.mechanisms import NoisePlan


@dataclass(frozen=True)
class Explanation:
    """Public: the plan in words (``text``) and as data (``data``)."""

    text: str
    data: dict[str, Any]


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def noise_name(noise: NoisePlan) -> str:
    name = ("discrete " if noise.discrete else "") + noise.mechanism.value
    return name + (f" (grid 2^{math.frexp(noise.grid)[1] - 1})" if noise.grid is not None else "")


def _loss(loss: PrivacyLoss) -> dict[str, float]:
    return {"epsilon": loss.epsilon, "delta": loss.delta, "rho": loss.rho}


def describe(plan: Plan, *, entry_id: str | None = None) -> dict[str, Any]:
    """The privacy metadata of ``plan`` (JSON-ready)."""
    q = plan.query
    data: dict[str, Any] = {
        "query": q.name,
        "text": q.text,
        **({"logs": q.logs} if q.logs else {}),
        **({"formats": list(q.formats)} if q.formats else {}),
        "privacy_unit": plan.unit.label,
        "unit_rule": plan.unit.to_json(),
        "guarantee": f"per {plan.unit} per {plan.window_policy} budget window",
        "window": {"start": _iso(plan.start), "end": _iso(plan.end)},
        "budget_windows": list(plan.budget_windows),
        **_loss(plan.loss),
        "mechanism": plan.mechanism.value,
        "bounds": {
            "max_groups": plan.bounds.max_groups,
            "max_rows_per_group": plan.bounds.max_rows_per_group,
            # per grouping, the L0 enforced and charged: min(max_groups, groups one unit can reach per window)
            "effective_max_groups": {g: plan.bounds_for(g).max_groups for g in plan.reach},
            "reachable_groups_per_window": dict(plan.reach),
        },
        "clamps": {c: [v.lo, v.hi] for c, v in plan.clamps.items()},
        "bins": {c: list(b.edges) for c, b in plan.bins.items()},
        "keys": [{"name": k.name, "column": k.column, "handling": k.handling()} for k in plan.keys],
        "where": q.where.describe() if q.where else None,
        "budget_split": (f"{plan.choice.share if plan.choice else plan.chosen['share']:.0%} to choosing bounds, the rest in "
                         if plan.choice or plan.chosen else "")
        + f"{plan.shares} equal share(s) of "
        + (f"epsilon={q.epsilon:g}" if q.epsilon is not None else f"rho={q.rho:g}")
        + (f"; delta={q.delta:g} to partition selection" if plan.selection else ""),
        "columns": [
            {
                "statistic": c.what,
                "source": c.source if not c.grouping else f"{c.grouping}:{c.source}",
                "used_by": list(c.used_by),
                "mechanism": noise_name(c.noise),
                "sensitivity": c.noise.sensitivity,
                "scale": c.noise.scale,
                "ci95_halfwidth": c.noise.ci_halfwidth(0.95),
                **_loss(c.noise.loss),
            }
            for c in plan.columns
        ],
        "selection": None,
        "top_k": {"k": q.top_k, "by": q.order_by, "method": "post-processing: rank released noisy values"} if q.top_k else None,
        "bias_note": plan.bias_note(),
        "ledger_entry": entry_id,
        "bound_choice": _bound_choice(plan),
        "defaults_used": dict(plan.defaults_used),
        "protection": (plan.policy.describe(plan.unit, unit_rows=plan.anomalies is not None) if plan.policy is not None
                       else {"version": 0, "rule": "every row is protected"}),
    }
    if plan.anomalies is not None:  # the rows are a detector's flags, not the events the SQL names
        data["anomalies"] = dict(plan.anomalies)
    if plan.selection is not None:
        s = plan.selection
        data["selection"] = {
            "mechanism": s.name,
            "scale": s.scale,
            "threshold": s.threshold,
            "on": f"distinct {plan.unit} per key (each {plan.unit} in at most {s.max_groups} keys)",
            "ci95_halfwidth": s.ci_halfwidth(0.95),
            **_loss(s.loss),
        }
    return data


def _bound_choice(plan: Plan) -> dict[str, Any] | None:
    """How the bounds the query left out were (or will be) chosen, and what that costs."""
    if plan.chosen is not None:
        return {**plan.chosen, "when": "chosen at release from the data (DP)"}
    if plan.choice is not None:
        return {**plan.choice.describe(), "when": "to be chosen at release from the data (DP); "
                "the bounds, scales and intervals shown are provisional (bound 1, clamp [0, 1]) "
                "and grow with the chosen bounds"}
    return None


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _anomaly_line(a: dict[str, Any]) -> str:
    return (f"rows: the unit-windows the {a['detector']} model {a['model']} scores above {_fmt(a['score_threshold'])} "
            f"(--threshold {a['threshold']}), one row each; model trained in {', '.join(a['trained_on'])} "
            f"(ledger entry {a['model_ledger_entry']})")


def _coverage_line(c: dict[str, Any]) -> str:
    if "refused" in c:
        return f"coverage: a release would be refused: {c['refused']}"
    return f"coverage: the store holds logs it reads for {c['covered_days']} of the window's {c['window_days']} day(s)"


def render(data: dict[str, Any]) -> str:
    """The text form of :func:`describe`'s dictionary."""
    lines = [
        f"query: {data['query']}",
        *([f"logs it reads: {data['logs']}"] if data.get("logs") else []),
        *([f"input formats it reads: {', '.join(data['formats'])} (and formats that may hold any events)"]
          if data.get("formats") else []),
        *([_coverage_line(data["coverage"])] if data.get("coverage") else []),
        f"privacy unit: {data['privacy_unit']}; guarantee {data['guarantee']}; charged to: {', '.join(data['budget_windows'])}",
        f"window: [{data['window']['start']}, {data['window']['end']})",
        f"where: {data['where'] or '(all rows)'}",
        *([_anomaly_line(data["anomalies"])] if data.get("anomalies") else []),
        "total loss: " + ", ".join(f"{k}={_fmt(data[k])}" for k in ("epsilon", "delta", "rho") if data[k]),
        f"budget split: {data['budget_split']}",
        f"bounds: max_groups={data['bounds']['max_groups']} (L0), max_rows_per_group={data['bounds']['max_rows_per_group']} (L∞)",
    ]
    for grouping, reach in data["bounds"]["reachable_groups_per_window"].items():
        if reach is not None and reach < data["bounds"]["max_groups"]:
            what = "the main grouping" if grouping == MAIN else f"the {grouping} histogram"
            lines.append(f"  a unit can reach at most {reach} group(s) of {what} per budget window: L0 = {reach} there")
    for c, (lo, hi) in data["clamps"].items():
        lines.append(f"clamp: {c} to [{_fmt(lo)}, {_fmt(hi)}]")
    for c, edges in data["bins"].items():
        lines.append(f"bins: {c}: {len(edges) - 1} public bins over [{_fmt(edges[0])}, {_fmt(edges[-1])}]")
    lines.append("keys:" if data["keys"] else "keys: none (one total)")
    for k in data["keys"]:
        lines.append(f"  {k['name']} ({k['column']}): {k['handling']}")
    if data["selection"]:
        s = data["selection"]
        loss = ", ".join(f"{k}={_fmt(s[k])}" for k in ("epsilon", "rho", "delta") if s[k])
        lines.append(
            f"selection: {s['mechanism']} on {s['on']}: scale {_fmt(s['scale'])}, keep if noisy count >= "
            f"{s['threshold']}, ±{_fmt(s['ci95_halfwidth'])} (95%), {loss}"
        )
    lines.append("noised columns (statistic  source  mechanism  sensitivity  scale  95% CI half-width  loss):")
    for c in data["columns"]:
        loss = ", ".join(f"{k}={_fmt(c[k])}" for k in ("epsilon", "rho") if c[k])
        lines.append(
            f"  {', '.join(c['used_by'])}  {c['source']}  {c['mechanism']}  sensitivity {_fmt(c['sensitivity'])}  "
            f"scale {_fmt(c['scale'])}  ±{_fmt(c['ci95_halfwidth'])} (95%)  {loss}"
        )
        lines.append(f"      ({c['statistic']})")
    choice = data.get("bound_choice")
    if choice:
        spent = ", ".join(f"{k}={_fmt(choice[k])}" for k in ("epsilon", "rho") if choice[k])
        lines.append(f"bounds chosen: {', '.join(choice['bounds'])}: {choice['when']}; "
                     f"{choice['share']:.0%} of the budget ({spent}; share {choice['share_rule']}); {choice['method']}")
        for name, value in (choice.get("values") or {}).items():
            lines.append(f"  {name} = {_fmt(value)}")
    if data["top_k"]:
        lines.append(f"top-k: {data['top_k']['k']} by {data['top_k']['by']} ({data['top_k']['method']})")
    for name, why in (data.get("defaults_used") or {}).items():
        lines.append(f"default used: {name} = {why}")
    if data.get("unit_rule"):
        lines.append(f"unit rule: {data['unit_rule']['rule']}")
    prot = data.get("protection") or {}
    lines.append(f"protection policy v{prot.get('version', 0)}: {prot.get('rule', 'every row is protected')}")
    lines.append(f"bias: {data['bias_note']}")
    return "\n".join(lines)


def explain(plan: Plan, *, coverage: dict[str, Any] | None = None) -> Explanation:
    """Explain ``plan``; spends nothing. ``coverage``: what the store's public coverage says of its
    window (the days covered, or ``{"refused": why}``), when known."""
    data = describe(plan)
    if coverage is not None:
        data["coverage"] = coverage
    return Explanation(text=render(data), data=data)
