"""Report specs: a named list of query files to release together for one period.

A spec is a TOML file (the shipped one is ``queries/reports/nightly.toml``)::

    name = "nightly-soc"
    title = "Nightly SOC privacy-preserving summary"
    period = "day"                      # day | week | month: the span one run covers

    [[section]]
    query = "../failed_logins_per_hour.toml"   # relative to the spec file
    chart = "line"                      # line | bar | table
    title = "Failed logins per hour"

Each section is released with the run's period as its query window, so the spec carries no
dates; privacy options of a section (``epsilon = 0.5``…) override its query file's.

>>> spec = ReportSpec(name="r", title="R", period="day",
...                   sections=(Section(query=Path("q.toml"), chart="bar", title="Q"),))
>>> spec.period_bounds(dt.date(2026, 11, 21))
(datetime.date(2026, 11, 21), datetime.date(2026, 11, 22))
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dplogs.engine.queryfile import read_toml
from dplogs.errors import QueryError

PERIODS = ("day", "week", "month")
CHARTS = ("line", "bar", "table")
_OPTION_KEYS = ("epsilon", "rho", "delta", "mechanism", "max_groups", "max_rows_per_group", "bucket")


@dataclass(frozen=True)
class Section:
    """Public: one query of a report and how to show it."""

    query: Path
    chart: str = "table"
    title: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.chart not in CHARTS:
            raise QueryError(f"chart must be one of {', '.join(CHARTS)}, got {self.chart!r}")
        unknown = set(self.options) - set(_OPTION_KEYS)
        if unknown:
            raise QueryError(f"unknown section option(s) {sorted(unknown)}; allowed: {', '.join(_OPTION_KEYS)}")


@dataclass(frozen=True)
class ReportSpec:
    """Public: a report's name (part of every idempotency key), title, period and sections."""

    name: str
    title: str
    period: str
    sections: tuple[Section, ...]

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in ":/ "):
            raise QueryError(f"report name must be non-empty without ':', '/' or spaces, got {self.name!r}")
        if self.period not in PERIODS:
            raise QueryError(f"period must be one of {', '.join(PERIODS)}, got {self.period!r}")
        if not self.sections:
            raise QueryError("a report needs at least one [[section]]")

    def period_bounds(self, day: dt.date) -> tuple[dt.date, dt.date]:
        """[start, end) of the period containing ``day``."""
        if self.period == "day":
            return day, day + dt.timedelta(days=1)
        if self.period == "week":
            start = day - dt.timedelta(days=day.weekday())
            return start, start + dt.timedelta(days=7)
        start = day.replace(day=1)
        return start, (start + dt.timedelta(days=32)).replace(day=1)


def load_report_spec(path: str | os.PathLike[str]) -> ReportSpec:
    """Read a report spec; query paths are resolved relative to the spec file."""
    p = Path(path)
    doc = read_toml(p, what="report spec")
    unknown = set(doc) - {"name", "title", "period", "section"}
    if unknown:
        raise QueryError(f"{p}: unknown entries {sorted(unknown)}; allowed: name, title, period, [[section]]")
    text = {"name": p.stem, "title": p.stem, "period": "day"}
    for key in text:
        value = doc.get(key, text[key])
        if not isinstance(value, str):
            raise QueryError(f"{p}: `{key}` must be a string, got {value!r}")
        text[key] = value
    raw_sections = doc.get("section", [])
    if not isinstance(raw_sections, list):
        raise QueryError(f"{p}: sections are [[section]] tables, got section = {raw_sections!r}")
    sections = []
    for i, raw in enumerate(raw_sections):
        if not isinstance(raw, dict) or not isinstance(raw.get("query"), str):
            raise QueryError(f"{p}: section {i + 1} needs a `query = \"file.toml\"` entry")
        raw = dict(raw)
        query = (p.parent / raw.pop("query")).resolve()
        chart = raw.pop("chart", "table")
        title = raw.pop("title", query.stem.replace("_", " "))
        if not isinstance(title, str):
            raise QueryError(f"{p}: section {i + 1} title must be a string, got {title!r}")
        sections.append(Section(query=query, chart=chart, title=title, options=raw))
    return ReportSpec(name=text["name"], title=text["title"], period=text["period"], sections=tuple(sections))
