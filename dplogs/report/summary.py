"""What stands out in a report: post-processing of its released values only (no extra spend).

A cell stands out when its interval lies above its section's baseline, the median of the other
released cells of the same aggregate (for an anomaly section, zero: anomalies are the exception).
A section of m cells asks m questions at once, so a bare 95% interval would flag about one quiet
cell in twenty; each cell's interval is therefore widened to hold for all m together (Bonferroni
with Laplace tails: the half-width below the value times ln(m/0.05)/ln(1/0.05)), and it must clear
zero as well as the baseline. The factor is value / baseline when the baseline is positive.
In a period the store covers only in part, cells whose time bucket meets no covered day hold
noise only: they are neither baseline nor standout (a week with two days of logs would otherwise
compare those days with five near-zero cells and flag both).

Only rows of the releases are read, so a private key appears here only if its release published
it (partition selection); nothing else about the data is looked at.

>>> round(_widen(24), 2)
2.06
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from dplogs.engine.coverage import buckets_covered
from dplogs.engine.plan import bucket_width
from dplogs.engine.release import key_columns
from dplogs.report.run import ReportRun, SectionResult

ALPHA = 0.05
MAX_PER_SECTION = 5


@dataclass(frozen=True)
class Standout:
    """Public: one released cell whose joint 95% interval lies above its section's baseline."""

    section: str
    cell: dict[str, Any]
    """The cell's released keys (column → value)."""
    aggregate: str
    value: float
    low: float
    """The lower end of the widened (joint) 95% interval."""
    baseline: float
    factor: float | None


@dataclass(frozen=True)
class Summary:
    """Public: the report's opening: standouts, spend, budget left per window, coverage."""

    standouts: tuple[Standout, ...]
    anomaly_sections: tuple[str, ...]
    not_released: tuple[str, ...]
    not_applicable: tuple[str, ...]
    """Sections reading logs the store does not hold for the period (nothing spent)."""
    epsilon: float
    delta: float
    straddles: bool


def _widen(m: int) -> float:
    """How much wider than a 95% interval each of ``m`` intervals must be to hold jointly."""
    return max(1.0, math.log(m / ALPHA) / math.log(1 / ALPHA))


def summarize(run: ReportRun) -> Summary:
    standouts: list[Standout] = []
    for s in run.sections:
        if s.release is not None:
            standouts += _section_standouts(s)
    released = [s.release for s in run.sections if s.release is not None]
    return Summary(
        standouts=tuple(standouts),
        anomaly_sections=tuple(s.section.title for s in run.sections if s.section.model is not None),
        not_released=tuple(s.section.title for s in run.sections if s.release is None and not s.not_applicable),
        not_applicable=tuple(s.section.title for s in run.sections if s.not_applicable),
        epsilon=sum(float(r.privacy.get("epsilon") or 0.0) for r in released),
        delta=sum(float(r.privacy.get("delta") or 0.0) for r in released),
        straddles=len(run.budgets) > 1,
    )


def covered_cells(s: SectionResult) -> list[bool] | None:
    """Per row of a released section: whether its time bucket touches a day the store holds logs
    for (the coverage its release disclosed: public metadata, of the inputs its query reads).
    None when every row does, or the section has no time bucket. A cell of an uncovered day holds
    noise only: it must neither stand out nor be drawn as a value."""
    if s.release is None or s.bucket is None:
        return None
    cov = s.release.privacy.get("coverage")
    if not cov or cov["covered_days"] >= cov["window_days"]:
        return None
    data = s.release.data
    time_key = next((k for k in key_columns(data) if isinstance(data.schema[k], pl.Datetime)), None)
    if time_key is None:
        return None
    spans = [(dt.date.fromisoformat(a), dt.date.fromisoformat(b)) for a, b in cov["store_spans"]]
    return buckets_covered(data[time_key].to_list(), bucket_width(s.bucket), spans)


def _section_standouts(s: SectionResult) -> list[Standout]:
    data = s.release.data  # type: ignore[union-attr]
    keys = key_columns(data)
    anomaly = s.section.model is not None
    found: list[Standout] = []
    covered = covered_cells(s)
    if covered is not None:
        data = data.filter(pl.Series(covered, dtype=pl.Boolean))
    for agg in data["aggregate"].unique(maintain_order=True).to_list():
        rows = [r for r in data.filter(data["aggregate"] == agg).iter_rows(named=True)
                if _finite(r["value"]) and _finite(r["ci_low"])]
        if len(rows) < (1 if anomaly else 3):  # a baseline needs at least two other cells
            continue
        widen = _widen(len(rows))
        values = [float(r["value"]) for r in rows]
        baselines = [0.0] * len(rows) if anomaly else leave_one_out_medians(values)
        for i, r in enumerate(rows):
            value = values[i]
            low = value - (value - float(r["ci_low"])) * widen
            baseline = baselines[i]
            if low > max(baseline, 0.0):
                found.append(Standout(
                    section=s.section.title, cell={k: r[k] for k in keys}, aggregate=agg, value=value, low=low,
                    baseline=baseline, factor=value / baseline if baseline > 0 else None,
                ))
    found.sort(key=lambda x: x.low - x.baseline, reverse=True)
    return found[:MAX_PER_SECTION]


def leave_one_out_medians(values: list[float]) -> list[float]:
    """Per value, the median of the others, from one sort (found by faults4: sorting the others
    anew for each cell made a report section of 100,000 declared keys take over an hour).

    >>> leave_one_out_medians([1.0, 5.0, 2.0, 9.0])
    [5.0, 2.0, 5.0, 2.0]
    """
    order = sorted(range(len(values)), key=values.__getitem__)
    ranked = [values[i] for i in order]
    n, out = len(values) - 1, [0.0] * len(values)  # n: how many values each median is over
    for p, i in enumerate(order):
        def rest(j: int) -> float:  # the j-th smallest of the others
            return ranked[j] if j < p else ranked[j + 1]
        out[i] = rest(n // 2) if n % 2 else (rest(n // 2 - 1) + rest(n // 2)) / 2
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def cell_label(cell: dict[str, Any], tz: str) -> str:
    """A released cell's keys as text, time buckets in the report's zone (not yet escaped)."""
    parts = []
    for k, v in cell.items():
        if isinstance(v, dt.datetime):
            parts.append(local_time(v, tz))
        else:
            parts.append(f"{k}={v}")
    return ", ".join(parts)


def local_time(v: dt.datetime, tz: str) -> str:
    """``v`` (UTC when naive) as a wall-clock time of ``tz``."""
    t = (v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)).astimezone(ZoneInfo(tz))
    return t.strftime("%Y-%m-%d %H:%M") if (t.hour or t.minute) else t.strftime("%Y-%m-%d")
