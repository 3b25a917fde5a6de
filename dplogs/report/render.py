"""Render a :class:`~dplogs.report.run.ReportRun` as HTML (inline SVG charts), Markdown or JSON.

Renderers see only releases: noisy values, their 95% intervals and the privacy metadata. Every
format states the privacy model and, per section, ε/δ/ρ, mechanism, noise scale and bias note.

Released keys are log text an attacker may choose, so every text reaches its format inert: control
characters as visible escapes (:func:`dplogs.escape.visible`), HTML-escaped in HTML, HTML-escaped
and Markdown-escaped (``|`` too) in Markdown, JSON-escaped in JSON.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from typing import Any

import polars as pl

from dplogs.engine.release import CELL_COLUMNS
from dplogs.escape import markdown_text, visible
from dplogs.report.run import ReportRun, SectionResult

FORMATS = ("html", "md", "json")
_PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2")


def privacy_statement(run: ReportRun) -> str:
    return (
        f"Every number in this report is differentially private with respect to adding or removing "
        f"all events of one {run.privacy_unit} within one {run.budget_window} budget window. Values "
        f"carry calibrated noise (shown with 95% intervals); counts are also biased downward where "
        f"contribution bounds truncate heavy contributors, as each section notes."
    )


def render(run: ReportRun, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(_as_dict(run), indent=2) + "\n"
    if fmt == "md":
        return _markdown(run)
    if fmt == "html":
        return _html(run)
    raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")


def _loss_text(privacy: dict[str, Any]) -> str:
    parts = [f"{name}={privacy[name]:g}" for name in ("epsilon", "delta", "rho") if privacy.get(name)]
    return ", ".join(parts) or "no loss recorded"


def _as_dict(run: ReportRun) -> dict[str, Any]:
    return {
        "report": run.spec.name, "title": run.spec.title,
        "period": {"start": run.start.isoformat(), "end": run.end.isoformat()},
        "privacy_model": privacy_statement(run),
        "sections": [
            {"title": s.section.title, "query": s.section.query.stem, **(
                s.release.to_dict() if s.release else {"error": str(s.error), "exit_code": s.error.exit_code}
            )}
            for s in run.sections
        ],
    }


def _key_columns(data: pl.DataFrame) -> list[str]:
    return [c for c in data.columns if c not in CELL_COLUMNS]


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M") if (v.hour or v.minute) else v.strftime("%Y-%m-%d")
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return visible(str(v))


def _markdown(run: ReportRun) -> str:
    md = markdown_text
    out = [f"# {md(run.spec.title)}", "", f"Period: {run.start} to {run.end} (end exclusive).", "",
           f"> {md(privacy_statement(run))}", ""]
    for s in run.sections:
        out += [f"## {md(s.section.title)}", ""]
        if s.release is None:
            out += [f"**Not released:** {md(str(s.error))}", ""]
            continue
        p = s.release.privacy
        out += [f"Privacy: {md(_loss_text(p))}; bounds {md(str(p.get('bounds', {})))}.", ""]
        data = s.release.data
        cols = _key_columns(data) + ["aggregate", "value", "ci_low", "ci_high"]
        out.append("| " + " | ".join(md(c) for c in cols) + " |")
        out.append("|" + "---|" * len(cols))
        for row in data.select(cols).iter_rows():
            out.append("| " + " | ".join(md(_fmt(v)) for v in row) + " |")
        if p.get("bias_note"):
            out += ["", f"_Bias: {md(p['bias_note'])}_"]
        out.append("")
    return "\n".join(out)


def _html(run: ReportRun) -> str:
    body = [f"<h1>{html.escape(run.spec.title)}</h1>",
            f"<p class=period>Period {run.start} to {run.end} (end exclusive) · report "
            f"<code>{html.escape(run.spec.name)}</code></p>",
            f"<p class=privacy>{html.escape(privacy_statement(run))}</p>"]
    for s in run.sections:
        body.append(_html_section(s))
    return _PAGE.replace("{title}", html.escape(run.spec.title)).replace("{body}", "\n".join(body))


def _html_section(s: SectionResult) -> str:
    head = f"<section><h2>{html.escape(s.section.title)}</h2>"
    if s.release is None:
        return head + f"<p class=error>Not released: {html.escape(visible(str(s.error)))}</p></section>"
    p, data = s.release.privacy, s.release.data
    meta = (f"<p class=meta>{html.escape(_loss_text(p))} · mechanism {html.escape(', '.join(sorted(set(data['mechanism'].drop_nulls()))))}"
            f" · bounds {html.escape(json.dumps(p.get('bounds', {})))}"
            + (" · replayed from the ledger (nothing spent)" if p.get("replayed") else "") + "</p>")
    keys = _key_columns(data)
    chart = ""
    if s.section.chart != "table" and data.height and len([k for k in keys if k not in ("bin_hi",)]) == 1:
        chart = "".join(
            _svg(data.filter(pl.col("aggregate") == agg), keys[0], s.section.chart, agg)
            for agg in data["aggregate"].unique(maintain_order=True)
        )
    bias = f"<p class=bias>Bias: {html.escape(p['bias_note'])}</p>" if p.get("bias_note") else ""
    return head + meta + chart + _html_table(data, keys) + bias + "</section>"


def _html_table(data: pl.DataFrame, keys: list[str]) -> str:
    cols = keys + ["aggregate", "value", "ci_low", "ci_high", "scale"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in data.select(cols).head(200).iter_rows()
    )
    more = f"<p class=meta>{data.height - 200} more rows in the JSON output.</p>" if data.height > 200 else ""
    return f"<details><summary>{data.height} released cells</summary><table><tr>{head}</tr>{rows}</table>{more}</details>"


def _x_labels(values: list[Any]) -> list[str]:
    """Short x labels: times of day when all points share a date, dates when all are midnight."""
    if values and all(isinstance(v, dt.datetime) for v in values):
        if len({v.date() for v in values}) == 1:
            return [v.strftime("%H:%M") for v in values]
        if all(v.hour == 0 and v.minute == 0 for v in values):
            return [v.strftime("%m-%d") for v in values]
        return [v.strftime("%m-%d %H:%M") for v in values]
    return [_fmt(v) for v in values]


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^k steps) covering [lo, hi]."""
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    return [first + i * step for i in range(int(math.ceil((hi - first) / step)) + 1)]


def _svg(data: pl.DataFrame, x: str, kind: str, label: str) -> str:
    """A line (with a CI band) or bar (with CI whiskers) chart of one aggregate."""
    w, h, left, bottom, top = 760, 230, 56, 36, 18
    xs = _x_labels(data[x].to_list())
    val = [float(v) if v is not None else 0.0 for v in data["value"].to_list()]
    lo = [float(v) if v is not None else y for v, y in zip(data["ci_low"].to_list(), val)]
    hi = [float(v) if v is not None else y for v, y in zip(data["ci_high"].to_list(), val)]
    n = len(xs)
    ticks = _nice_ticks(min(0.0, *lo), max(1.0, *hi))
    ymin, ymax = ticks[0], ticks[-1]
    pw, ph = w - left - 10, h - top - bottom

    def sy(y: float) -> float:
        return top + ph * (1 - (y - ymin) / (ymax - ymin))

    def sx(i: int) -> float:
        return left + (pw * (i + 0.5) / n)

    parts = [f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{html.escape(label)}">']
    for yv in ticks:  # y grid and ticks
        parts.append(f'<line x1="{left}" x2="{w - 10}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" class=grid />'
                     f'<text x="{left - 6}" y="{sy(yv) + 4:.1f}" class=ytick>{html.escape(_fmt(yv))}</text>')
    parts.append(f'<line x1="{left}" x2="{w - 10}" y1="{sy(0):.1f}" y2="{sy(0):.1f}" class=zero />')
    if kind == "line":
        band = [f"{sx(i):.1f},{sy(hi[i]):.1f}" for i in range(n)] + [f"{sx(i):.1f},{sy(lo[i]):.1f}" for i in reversed(range(n))]
        parts.append(f'<polygon points="{" ".join(band)}" fill="{_PALETTE[0]}" opacity="0.15" />')
        pts = " ".join(f"{sx(i):.1f},{sy(v):.1f}" for i, v in enumerate(val))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{_PALETTE[0]}" stroke-width="1.6" />')
    else:
        bw = max(pw / n * 0.7, 1.0)
        for i, v in enumerate(val):
            y0, y1 = sorted((sy(0), sy(v)))
            parts.append(f'<rect x="{sx(i) - bw / 2:.1f}" y="{y0:.1f}" width="{bw:.1f}" height="{max(y1 - y0, 0.5):.1f}" fill="{_PALETTE[0]}"><title>{html.escape(xs[i])}: {html.escape(_fmt(v))}</title></rect>'
                         f'<line x1="{sx(i):.1f}" x2="{sx(i):.1f}" y1="{sy(lo[i]):.1f}" y2="{sy(hi[i]):.1f}" class=ci />')
    step = max(1, n // 8)  # at most ~8 x labels
    for i in range(0, n, step):
        parts.append(f'<text x="{sx(i):.1f}" y="{h - bottom + 16}" class=xtick>{html.escape(xs[i][:16])}</text>')
    parts.append(f'<text x="{left}" y="12" class=label>{html.escape(label)} (noisy value; shaded/whiskers: 95% interval)</text></svg>')
    return "".join(parts)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;max-width:860px;margin:2em auto;color:#111827;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #e5e7eb}
.period,.meta{color:#4b5563;font-size:.9em} .privacy{background:#eff6ff;border-left:4px solid #2563eb;padding:.6em .9em}
.bias{color:#6b7280;font-size:.85em} .error{color:#b91c1c}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} td,th{border:1px solid #e5e7eb;padding:2px 8px;text-align:right}
svg text{font-size:11px;fill:#374151} .ytick{text-anchor:end} .xtick{text-anchor:middle} .label{font-weight:600}
.grid{stroke:#f3f4f6} .zero{stroke:#9ca3af} .ci{stroke:#111827;stroke-width:1}
</style></head><body>
{body}
</body></html>
"""
