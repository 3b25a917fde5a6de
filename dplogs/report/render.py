"""Render a :class:`~dplogs.report.run.ReportRun` as HTML (inline SVG charts), Markdown or JSON.

Renderers see only releases: noisy values, their 95% intervals and the privacy metadata, plus
public facts (the period, its zone, the budget windows' caps and spend). Every format opens with
what stands out (:mod:`dplogs.report.summary`), states the privacy model and, per section, ε/δ/ρ,
mechanism, noise scale and bias note. Times are shown in the report's zone; JSON writes them as
ISO 8601 with that zone's offset, and validates against ``report.schema.json`` (shipped with the
package, :data:`SCHEMA_PATH`).

Released keys are log text an attacker may choose, so every text reaches its format inert: control
characters as visible escapes (:func:`dplogs.escape.visible`), HTML-escaped in HTML, HTML-escaped
and Markdown-escaped (``|`` too) in Markdown, JSON-escaped in JSON.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
from pathlib import Path
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from dplogs.engine.release import key_columns
from dplogs.escape import markdown_text, visible
from dplogs.report.run import ReportRun, SectionResult
from dplogs.report.summary import Summary, cell_label, covered_cells, local_time, summarize

FORMATS = ("html", "md", "json")
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
SCHEMA_ID = "https://dplogs.invalid/report.schema.json"
_PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2")


def privacy_statement(run: ReportRun) -> str:
    return (
        f"Every number in this report is differentially private with respect to adding or removing "
        f"all events of one {run.privacy_unit} within one {run.budget_window} budget window. Values "
        f"carry calibrated noise (shown with 95% intervals); counts are also biased downward where "
        f"contribution bounds truncate heavy contributors, as each section notes."
        + (f" Privacy unit: {run.unit_rule}." if run.unit_rule else "")
    )


def render(run: ReportRun, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(_as_dict(run), indent=2) + "\n"
    if fmt == "md":
        return _markdown(run)
    if fmt == "html":
        return _html(run)
    raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")


def section_budget_text(s: SectionResult) -> str:
    """The section's own spend and what its budget windows have left after it, in words."""
    if s.not_applicable:
        spent = "spent nothing (the store holds none of the logs it reads for this period)"
    elif s.release is None:
        spent = "spent nothing (not released)"
    elif s.release.privacy.get("replayed"):
        spent = f"spent {_loss_text(s.release.privacy)} when first released (replayed now: nothing spent)"
    else:
        spent = f"spent {_loss_text(s.release.privacy)}"
    left = "; ".join(f"left in budget window {b.window}: ε={b.remaining.epsilon:g}, δ={b.remaining.delta:g}"
                     for b in s.left)
    return f"this section {spent}" + (f"; {left}" if left else "")


def _section_budget(s: SectionResult) -> dict[str, Any]:
    p = s.release.privacy if s.release is not None else {}
    return {
        "spent": {"epsilon": float(p.get("epsilon") or 0.0), "delta": float(p.get("delta") or 0.0)},
        "replayed": bool(p.get("replayed")),
        "left": [{"window": b.window, "epsilon": _num(b.remaining.epsilon), "delta": b.remaining.delta} for b in s.left],
    }


def _loss_text(privacy: dict[str, Any]) -> str:
    parts = [f"{name}={privacy[name]:g}" for name in ("epsilon", "delta", "rho") if privacy.get(name)]
    return ", ".join(parts) or "no loss recorded"


def _as_dict(run: ReportRun) -> dict[str, Any]:
    summary = summarize(run)
    return {
        "$schema": SCHEMA_ID,
        "report": run.spec.name, "title": run.spec.title,
        "period": {"start": run.start.isoformat(), "end": run.end.isoformat(), "tz": run.tz,
                   "utc_start": _iso(run.utc_start, "UTC"), "utc_end": _iso(run.utc_end, "UTC")},
        "privacy_model": privacy_statement(run),
        "summary": {
            "standouts": [
                {"section": x.section, "cell": {k: _json_value(v, run.tz) for k, v in x.cell.items()},
                 "aggregate": x.aggregate, "value": x.value, "joint_ci_low": x.low, "baseline": x.baseline,
                 "factor": x.factor}
                for x in summary.standouts
            ],
            "anomaly_sections": list(summary.anomaly_sections),
            "not_released": list(summary.not_released),
            "not_applicable": list(summary.not_applicable),
            "spent": {"epsilon": summary.epsilon, "delta": summary.delta},
            "budget_windows": [
                {"window": b.window, "cap": None if b.caps is None else {"epsilon": b.caps.epsilon, "delta": b.caps.delta},
                 "spent": {"epsilon": _num(b.spent.epsilon), "delta": b.spent.delta},
                 "left": {"epsilon": b.remaining.epsilon, "delta": b.remaining.delta}}
                for b in run.budgets
            ],
            "straddles_budget_windows": summary.straddles,
            "coverage": {"state": run.coverage.state, "note": run.coverage.note},
        },
        "sections": [
            {"title": s.section.title, "query": s.section.query.stem, "budget": _section_budget(s), **(
                {"data": [{k: _json_value(v, run.tz) for k, v in row.items()} for row in s.release.data.to_dicts()],
                 "privacy": s.release.privacy}
                if s.release else {"error": str(s.error), "exit_code": s.error.exit_code, "not_applicable": s.not_applicable}
            )}
            for s in run.sections
        ],
    }


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _iso(v: dt.datetime | None, tz: str) -> str | None:
    return None if v is None else v.astimezone(ZoneInfo(tz)).isoformat()


def _json_value(v: Any, tz: str) -> Any:
    if isinstance(v, dt.datetime):
        return _iso(v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc), tz)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _fmt(v: Any, tz: str = "UTC", *, clock: bool = False) -> str:
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return _local(v, tz).strftime("%Y-%m-%d %H:%M") if clock else local_time(v, tz)
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return visible(str(v))


def _period_text(run: ReportRun) -> str:
    utc = "" if run.tz == "UTC" or run.utc_start is None else (
        f" = {_iso(run.utc_start, 'UTC')} to {_iso(run.utc_end, 'UTC')}")
    return f"{run.start} to {run.end} (end exclusive), time zone {run.tz}{utc}"


def _standout_text(x: Any, tz: str) -> str:
    base = f"baseline {_fmt(x.baseline)}" + (f", ×{x.factor:.3g}" if x.factor is not None else "")
    return (f"{x.section} — {cell_label(x.cell, tz)}: {x.aggregate} {_fmt(x.value)} "
            f"(joint 95% interval from {_fmt(x.low)}; {base})")


def _summary_lines(run: ReportRun, summary: Summary) -> tuple[str, list[str], list[str]]:
    """The summary as (headline, items, notes) of plain text, escaped by each format."""
    if run.coverage.state == "no-data":
        headline = "No data for this period: the store holds no logs for it."
    elif run.sections and len(summary.not_applicable) == len(run.sections):
        headline = "No section of this report applies to this store: it holds none of the logs they read for this period."
    elif summary.standouts:
        headline = f"{len(summary.standouts)} released cell(s) stand out above their section's baseline:"
    else:
        headline = "Nothing stands out: no released cell's joint 95% interval lies above its section's baseline."
    items = [_standout_text(x, run.tz) for x in summary.standouts]
    notes = []
    if items:  # simulated: 1.9-2.3% of pure-noise sections of 2-24 cells (a Windows section on Linux logs)
        notes.append("Intervals hold jointly per section at 95%: a section with nothing unusual (or holding only "
                     "noise, such as one reading logs this store lacks) still shows a cell here about once in 50 reports.")
    for title in summary.anomaly_sections:
        hits = sum(x.section == title for x in summary.standouts)
        notes.append(f"Anomaly section {title!r}: " + (f"{hits} cell(s) with anomalies above zero (listed above)."
                                                      if hits else "no cell with anomalies clearly above zero."))
    if summary.not_released:
        notes.append("Not released: " + ", ".join(summary.not_released) + " (see the sections below).")
    if summary.not_applicable:
        notes.append("Not applicable to this store (it holds none of the logs they read for this period; nothing "
                     "spent): " + ", ".join(summary.not_applicable) + ".")
    if any(s.release is not None and (s.release.privacy.get("protection") or {}).get("version") == 0 for s in run.sections):
        # the real auth.log's brute force (306 failures from one address) did not stand out until then
        notes.append("Every row is protected (no `dplogs protect` policy): an attack from outside counts like one "
                     "person's activity, bounded and noised, and may not show. Declare your networks and people with "
                     "`dplogs protect --networks CIDR,... --users FILE` to count outside sources and unknown "
                     "accounts exactly.")
    notes.append(f"This report's releases spent ε={summary.epsilon:g}, δ={summary.delta:g} "
                 "(a rerun replays them and spends nothing).")
    for b in run.budgets:
        cap = "no cap set" if b.caps is None else f"cap ε={b.caps.epsilon:g}, δ={b.caps.delta:g}"
        # with zCDP releases (dplogs train) in the window the spent δ is the cap, at which their ρ
        # is converted, while δ is still left for partition selection: say so, or the two look at odds
        converted = (f"; its zCDP releases' ρ={b.spent.rho:g} counted at the δ cap" if b.spent.rho else "")
        notes.append(f"Budget window {b.window}: spent ε={b.spent.epsilon:g}, δ={b.spent.delta:g} ({cap}{converted}); "
                     f"left for one more release ε={b.remaining.epsilon:g}, δ={b.remaining.delta:g}.")
    if summary.straddles:
        notes.append(f"This period's local days straddle {len(run.budgets)} budget windows "
                     f"({', '.join(b.window for b in run.budgets)}): every section was charged to each.")
    if run.coverage.state != "covered" and run.coverage.note:
        notes.append(f"Coverage: {run.coverage.note}.")
    return headline, items, notes


def _markdown(run: ReportRun) -> str:
    md = markdown_text
    tz = run.tz
    headline, items, notes = _summary_lines(run, summarize(run))
    out = [f"# {md(run.spec.title)}", "", f"Period: {md(_period_text(run))}.", "",
           "## What stands out", "", f"**{md(headline)}**", ""]
    out += [f"- {md(i)}" for i in items] + ([""] if items else [])
    out += [f"- {md(n)}" for n in notes] + [""]
    out += [f"> {md(privacy_statement(run))}", ""]
    for s in run.sections:
        out += [f"## {md(s.section.title)}", ""]
        if s.release is None:
            what = "Not applicable" if s.not_applicable else "Not released"
            out += [f"**{what}:** {md(str(s.error))}", "", f"Budget: {md(section_budget_text(s))}.", ""]
            continue
        p = s.release.privacy
        out += [f"Privacy: {md(_loss_text(p))}; bounds: {md(bounds_text(p))}.", "",
                f"Budget: {md(section_budget_text(s))}.", ""]
        out += [md(logs_text(p)), ""] if p.get("logs") else []
        data = s.release.data
        cols = key_columns(data) + ["aggregate", "value", "ci_low", "ci_high"]
        out.append("| " + " | ".join(md(c) for c in cols) + " |")
        out.append("|" + "---|" * len(cols))
        for row in _table_rows(data, cols, tz, covered_cells(s)):
            out.append("| " + " | ".join(md(v) for v in row) + " |")
        if p.get("bias_note"):
            out += ["", f"_Bias: {md(p['bias_note'])}_"]
        out.append("")
    return "\n".join(out)


def _html(run: ReportRun) -> str:
    esc = html.escape
    headline, items, notes = _summary_lines(run, summarize(run))
    summary = (f"<section class=summary><h2>What stands out</h2><p class=headline>{esc(visible(headline))}</p>"
               + ("<ul>" + "".join(f"<li>{esc(visible(i))}</li>" for i in items) + "</ul>" if items else "")
               + "<ul class=notes>" + "".join(f"<li>{esc(visible(n))}</li>" for n in notes) + "</ul></section>")
    body = [f"<h1>{esc(run.spec.title)}</h1>",
            f"<p class=period>Period {esc(_period_text(run))} · report "
            f"<code>{esc(run.spec.name)}</code></p>", summary,
            f"<p class=privacy>{esc(privacy_statement(run))}</p>"]
    for s in run.sections:
        body.append(_html_section(s, run.tz))
    return _PAGE.replace("{title}", esc(run.spec.title)).replace("{body}", "\n".join(body))


def logs_text(privacy: dict[str, Any]) -> str:
    """Which logs a section's query reads (its query file's ``logs``): on a store without them its
    values are pure noise, which nothing else in the report can say (that would read the data)."""
    return f"Reads {privacy['logs']}; on logs without these, every value here is noise."


def _html_section(s: SectionResult, tz: str) -> str:
    head = f"<section><h2>{html.escape(s.section.title)}</h2>"
    budget = f"<p class=meta>Budget: {html.escape(section_budget_text(s))}.</p>"
    if s.release is None:
        what, css = ("Not applicable", "skipped") if s.not_applicable else ("Not released", "error")
        return head + f"<p class={css}>{what}: {html.escape(visible(str(s.error)))}</p>{budget}</section>"
    p, data = s.release.privacy, s.release.data
    meta = (f"<p class=meta>{html.escape(_loss_text(p))} · mechanism {html.escape(_mechanisms_text(data))}"
            f" · bounds: {html.escape(bounds_text(p))}"
            + (" · replayed from the ledger (nothing spent)" if p.get("replayed") else "") + "</p>" + budget
            + (f"<p class=meta>{html.escape(logs_text(p))}</p>" if p.get("logs") else ""))
    keys = key_columns(data)
    covered = covered_cells(s)
    chart = ""
    if s.section.chart != "table" and data.height and len([k for k in keys if k not in ("bin_hi",)]) == 1:
        marked = data if covered is None else data.with_columns(pl.Series(COVERED, covered, dtype=pl.Boolean))
        chart = "".join(
            _chart(marked.filter(pl.col("aggregate") == agg), keys[0], s.section.chart, agg, tz)
            for agg in data["aggregate"].unique(maintain_order=True)
        )
    bias = f"<p class=bias>Bias: {html.escape(p['bias_note'])}</p>" if p.get("bias_note") else ""
    return head + meta + chart + _html_table(data, keys, tz, covered, shown=not chart) + bias + "</section>"


def _local(v: dt.datetime, tz: str) -> dt.datetime:
    return (v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)).astimezone(ZoneInfo(tz))


COVERED = "__covered"
"""A chart frame's column: whether the cell's day holds ingested logs (:func:`covered_cells`)."""
NO_LOGS = " (no logs that day: noise only)"
"""Appended to the value of a cell whose time bucket the store holds no logs for."""


def _table_rows(data: pl.DataFrame, cols: list[str], tz: str, covered: list[bool] | None = None) -> Iterator[list[str]]:
    """``data``'s rows as text; a time column shows the clock on every row once one row has it, so
    an hourly table's midnight row reads 2026-03-30 00:00, not 2026-03-30 (a day's total). A row
    that ``covered`` marks False says its value is noise only."""
    clock = {c for c in cols if isinstance(data.schema[c], pl.Datetime)
             and any(_local(v, tz).time() != dt.time(0) for v in data[c].drop_nulls())}
    for i, row in enumerate(data.select(cols).iter_rows()):
        text = [_fmt(v, tz, clock=c in clock) for c, v in zip(cols, row)]
        if covered is not None and not covered[i]:
            text[cols.index("value")] += NO_LOGS
        yield text


def _html_table(data: pl.DataFrame, keys: list[str], tz: str, covered: list[bool] | None = None, *,
                shown: bool = False) -> str:
    """The released cells, folded under their chart; ``shown``: unfolded, for a section without a
    chart (``chart = "table"``, several keys), whose numbers would otherwise be hidden behind a click."""
    cols = keys + ["aggregate", "value", "ci_low", "ci_high", "scale"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = "".join(
        ("<tr class=nolog>" if covered is not None and not covered[i] else "<tr>")
        + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
        for i, row in enumerate(_table_rows(data.head(200), cols, tz, covered))
    )
    more = f"<p class=meta>{data.height - 200} more rows in the JSON output.</p>" if data.height > 200 else ""
    return f"<details{' open' if shown else ''}><summary>{data.height} released cells</summary><table><tr>{head}</tr>{rows}</table>{more}</details>"


def _x_labels(values: list[Any], tz: str) -> list[str]:
    """Short x labels in the report's zone: times of day when all points share a date, dates when
    all are midnight."""
    if values and all(isinstance(v, dt.datetime) for v in values):
        zone = ZoneInfo(tz)
        local = [(v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)).astimezone(zone) for v in values]
        if len({v.date() for v in local}) == 1:
            return [v.strftime("%H:%M") for v in local]
        if all(v.hour == 0 and v.minute == 0 for v in local):
            return [v.strftime("%m-%d") for v in local]
        return [v.strftime("%m-%d %H:%M") for v in local]
    return [_fmt(v) for v in values]


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^k steps) covering [lo, hi]."""
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    return [first + i * step for i in range(int(math.ceil((hi - first) / step)) + 1)]


def _runs(values: list[float | None]) -> list[list[int]]:
    """Indices of the consecutive non-null stretches of ``values``."""
    runs: list[list[int]] = []
    for i, v in enumerate(values):
        if v is None:
            continue
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def bounds_text(privacy: dict[str, Any]) -> str:
    """The release's contribution bounds in words (and how they were chosen)."""
    b, unit = privacy.get("bounds") or {}, privacy.get("privacy_unit", "unit")
    if not b:
        return ""
    l0 = min((b.get("effective_max_groups") or {"": b["max_groups"]}).values())
    text = (f"each {unit} counts in at most {l0} group(s) per budget window, with at most "
            f"{b['max_rows_per_group']} row(s) in each")
    clamps = privacy.get("clamps") or {}
    if clamps:
        text += "; values clamped to " + ", ".join(f"{c} in [{_fmt(lo)}, {_fmt(hi)}]" for c, (lo, hi) in clamps.items())
    choice = privacy.get("bound_choice")
    if choice and choice.get("values"):
        text += f" ({', '.join(choice['bounds'])} chosen from the data with DP, {choice['share']:.0%} of the budget)"
    return text


def _mechanisms_text(data: pl.DataFrame) -> str:
    names = sorted({re.sub(r"; not enough data[^)]*", "", m) for m in data["mechanism"].drop_nulls()})
    quiet = data["value"].null_count()
    return ", ".join(names) + (f"; {quiet} cell(s) not enough data (shown as gaps)" if quiet else "")


def _chart(data: pl.DataFrame, x: str, kind: str, label: str, tz: str) -> str:
    """The aggregate's chart, or a sentence when no cell has a value (an empty frame of axes
    would look like a chart with nothing to see, not like a question the data cannot answer)."""
    shown = data if COVERED not in data.columns else data.filter(pl.col(COVERED))
    if shown["value"].drop_nulls().drop_nans().len() == 0:
        return (f"<p class=meta>{html.escape(label)}: not enough data in any cell (every 95% interval spans more "
                "than half the possible range), so no chart; a coarser bucket or a larger ε can answer it.</p>")
    return _svg(data, x, kind, label, tz)


def _svg(data: pl.DataFrame, x: str, kind: str, label: str, tz: str) -> str:
    """A line (with a CI band) or bar (with CI whiskers) chart of one aggregate; time axes in ``tz``."""
    w, h, left, bottom, top = 760, 230, 56, 36, 18
    xs = _x_labels(data[x].to_list(), tz)
    # a null value is "not enough data", a cell of a day without logs noise only: both drawn as a gap, never as 0
    nolog = [not c for c in data[COVERED].to_list()] if COVERED in data.columns else [False] * data.height
    val = [None if v is None or v != v or gone else float(v) for v, gone in zip(data["value"].to_list(), nolog)]
    lo = [float(v) if v is not None and y is not None else y for v, y in zip(data["ci_low"].to_list(), val)]
    hi = [float(v) if v is not None and y is not None else y for v, y in zip(data["ci_high"].to_list(), val)]
    n = len(xs)
    shown = [v for v in lo + hi if v is not None]
    ticks = _nice_ticks(min([0.0, *shown]), max([1.0, *shown]))
    ymin, ymax = ticks[0], ticks[-1]
    pw, ph = w - left - 10, h - top - bottom

    def sy(y: float) -> float:
        return top + ph * (1 - (y - ymin) / (ymax - ymin))

    def sx(i: int) -> float:
        return left + (pw * (i + 0.5) / n)

    parts = [f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{html.escape(label)}">']
    for i in (i for i, gone in enumerate(nolog) if gone):  # grey slots: no logs ingested that day
        parts.append(f'<rect x="{sx(i) - pw / n / 2:.1f}" y="{top}" width="{pw / n:.1f}" height="{ph}" class=nolog>'
                     f'<title>{html.escape(xs[i])}: no logs ingested (noise only, not drawn)</title></rect>')
    for yv in ticks:  # y grid and ticks
        parts.append(f'<line x1="{left}" x2="{w - 10}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" class=grid />'
                     f'<text x="{left - 6}" y="{sy(yv) + 4:.1f}" class=ytick>{html.escape(_fmt(yv))}</text>')
    parts.append(f'<line x1="{left}" x2="{w - 10}" y1="{sy(0):.1f}" y2="{sy(0):.1f}" class=zero />')
    if kind == "line":
        for run_ in _runs(val):  # one band and line per stretch of cells with data
            band = [f"{sx(i):.1f},{sy(hi[i]):.1f}" for i in run_] + [f"{sx(i):.1f},{sy(lo[i]):.1f}" for i in reversed(run_)]
            parts.append(f'<polygon points="{" ".join(band)}" fill="{_PALETTE[0]}" opacity="0.15" />')
            pts = " ".join(f"{sx(i):.1f},{sy(val[i]):.1f}" for i in run_)
            if len(run_) == 1:
                parts.append(f'<circle cx="{sx(run_[0]):.1f}" cy="{sy(val[run_[0]]):.1f}" r="2.5" fill="{_PALETTE[0]}" />')
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{_PALETTE[0]}" stroke-width="1.6" />')
    else:
        bw = max(pw / n * 0.7, 1.0)
        for i, v in enumerate(val):
            if v is None:
                continue
            y0, y1 = sorted((sy(0), sy(v)))
            parts.append(f'<rect x="{sx(i) - bw / 2:.1f}" y="{y0:.1f}" width="{bw:.1f}" height="{max(y1 - y0, 0.5):.1f}" fill="{_PALETTE[0]}"><title>{html.escape(xs[i])}: {html.escape(_fmt(v))}</title></rect>'
                         f'<line x1="{sx(i):.1f}" x2="{sx(i):.1f}" y1="{sy(lo[i]):.1f}" y2="{sy(hi[i]):.1f}" class=ci />')
    step = max(1, n // 8)  # at most ~8 x labels
    for i in range(0, n, step):
        room = max(8, int(pw / min(n, 8) / 6.5))  # characters that fit under one label slot
        text = xs[i] if len(xs[i]) <= room else xs[i][: room - 1] + "…"
        parts.append(f'<text x="{sx(i):.1f}" y="{h - bottom + 16}" class=xtick><title>{html.escape(xs[i])}</title>{html.escape(text)}</text>')
    axis = f", times {tz}" if data.height and isinstance(data[x][0], dt.datetime) else ""
    gaps = ("; gaps: not enough data" if any(v is None and not gone for v, gone in zip(val, nolog)) else "")
    gaps += "; grey: no logs ingested, noise only" if any(nolog) else ""
    parts.append(f'<text x="{left}" y="12" class=label>{html.escape(label)} (noisy value; shaded/whiskers: 95% interval{html.escape(axis + gaps)})</text></svg>')
    return "".join(parts)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;max-width:860px;margin:2em auto;color:#111827;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #e5e7eb}
.period,.meta{color:#4b5563;font-size:.9em} .privacy{background:#eff6ff;border-left:4px solid #2563eb;padding:.6em .9em}
.bias{color:#6b7280;font-size:.85em} .error{color:#b91c1c} .skipped{color:#6b7280} rect.nolog{fill:#e5e7eb} tr.nolog td{color:#9ca3af}
.summary{background:#fffbeb;border-left:4px solid #d97706;padding:.2em .9em} .summary h2{margin-top:.4em;border:0}
.headline{font-weight:600} .notes{color:#4b5563;font-size:.9em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} td,th{border:1px solid #e5e7eb;padding:2px 8px;text-align:right}
svg text{font-size:11px;fill:#374151} .ytick{text-anchor:end} .xtick{text-anchor:middle} .label{font-weight:600}
.grid{stroke:#f3f4f6} .zero{stroke:#9ca3af} .ci{stroke:#111827;stroke-width:1}
</style></head><body>
{body}
</body></html>
"""
