"""Report specs: a named list of query files to release together for one period.

A spec is a TOML file (the shipped one is ``queries/reports/nightly.toml``)::

    name = "nightly-soc"
    title = "Nightly SOC privacy-preserving summary"
    period = "day"                      # day | week | month: the span one run covers
    tz = "Europe/Berlin"                # whose days (and hours) those are; default UTC

    [[section]]
    query = "../failed_logins_per_hour.toml"   # relative to the spec file
    chart = "line"                      # line | bar | table
    title = "Failed logins per hour"

    [[section]]                         # an anomaly section: the query runs over the
    query = "../anomalous_per_hour.toml"  # unit-windows a trained detector flags
    model = "model.json"
    threshold = 0.8

Each section is released with the run's period as its query window, so the spec carries no
dates; privacy options of a section (``epsilon = 0.5``…) and its ``keys = { "host.name" = [...] }``
(public key lists, as ``--keys``) override its query file's. A period is a
run of local days of ``tz``: its query window is the UTC instants of its first and last local
midnights (23 or 25 hours for a day of a DST change), and time buckets follow the zone too.

>>> spec = ReportSpec(name="r", title="R", period="day",
...                   sections=(Section(query=Path("q.toml"), chart="bar", title="Q"),))
>>> spec.period_bounds(dt.date(2026, 11, 21))
(datetime.date(2026, 11, 21), datetime.date(2026, 11, 22))
>>> berlin = replace(spec, tz="Europe/Berlin")
>>> [t.isoformat() for t in berlin.utc_range(dt.date(2026, 3, 29))]
['2026-03-28T23:00:00+00:00', '2026-03-29T22:00:00+00:00']
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dplogs.engine.plan import check_time_zone
from dplogs.engine.queryfile import read_toml
from dplogs.errors import QueryError

PERIODS = ("day", "week", "month")
CHARTS = ("line", "bar", "table")
_OPTION_KEYS = ("epsilon", "rho", "delta", "mechanism", "max_groups", "max_rows_per_group", "bucket", "declared")
"""Section options passed to the query (``declared`` is the spec's ``keys``)."""


@dataclass(frozen=True)
class Section:
    """Public: one query of a report and how to show it."""

    query: Path
    chart: str = "table"
    title: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    model: Path | None = None
    """A trained detector (``dplogs train``): the query then runs over the unit-windows it flags."""
    threshold: float | None = None

    def __post_init__(self) -> None:
        if (self.model is None) != (self.threshold is None):
            raise QueryError("an anomaly section needs both `model = \"model.json\"` and `threshold = 0.8`")
        if self.chart not in CHARTS:
            raise QueryError(f"chart must be one of {', '.join(CHARTS)}, got {self.chart!r}")
        unknown = set(self.options) - set(_OPTION_KEYS)
        if unknown:
            allowed = ", ".join("keys" if k == "declared" else k for k in _OPTION_KEYS)
            raise QueryError(f"unknown section option(s) {sorted(unknown)}; allowed: {allowed}")


@dataclass(frozen=True)
class ReportSpec:
    """Public: a report's name (part of every idempotency key), title, period and sections."""

    name: str
    title: str
    period: str
    sections: tuple[Section, ...]
    tz: str = "UTC"

    def __post_init__(self) -> None:
        check_time_zone(self.tz)
        # the name is part of file names, idempotency keys and terminal lines: printable text only
        if not self.name or any(c in self.name for c in ":/ \\") or not self.name.isprintable():
            raise QueryError(f"report name must be non-empty printable text without ':', '/', '\\' or spaces, "
                             f"got {self.name!r}")
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

    def utc_range(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """[start, end) of the period containing ``day`` as UTC instants: its first local midnight
        in ``tz`` and the one after its last day (a midnight a DST gap skips maps to the gap's end)."""
        zone = ZoneInfo(self.tz)
        return tuple(  # type: ignore[return-value]
            dt.datetime.combine(d, dt.time(), tzinfo=zone).astimezone(dt.timezone.utc)
            for d in self.period_bounds(day)
        )

    def period_token(self, start: dt.date) -> str:
        """The period part of an idempotency key: the start date, with the zone unless UTC (a
        Berlin day and a UTC day are different releases)."""
        return start.isoformat() if self.tz == "UTC" else f"{start.isoformat()}@{self.tz}"

    def section_id(self, index: int) -> str:
        return f"{index}:{self.sections[index].query.stem}"

    def section_key(self, start: dt.date, index: int) -> str:
        """``report:<name>:<period>:<index>:<query stem>``: the idempotency key of one section."""
        return f"report:{self.name}:{self.period_token(start)}:{self.section_id(index)}"

    def periods(self, first: dt.date, last: dt.date) -> list[dt.date]:
        """Start days of every period from the one containing ``first`` to the one containing
        ``last``, oldest first."""
        out, start = [], self.period_bounds(first)[0]
        while start <= last:
            out.append(start)
            start = self.period_bounds(start)[1]
        return out

    def last_complete_period(self, today: dt.date) -> dt.date:
        """Start of the newest period that has ended by ``today`` (a local date): yesterday for a
        daily report, last week or last month otherwise."""
        return self.period_bounds(self.period_bounds(today)[0] - dt.timedelta(days=1))[0]

    def with_tz(self, tz: str | None) -> ReportSpec:
        return self if tz is None else replace(self, tz=tz)


def load_report_spec(path: str | os.PathLike[str]) -> ReportSpec:
    """Read a report spec; query paths are resolved relative to the spec file."""
    p = Path(path)
    doc = read_toml(p, what="report spec")
    unknown = set(doc) - {"name", "title", "period", "tz", "section"}
    if unknown:
        raise QueryError(f"{p}: unknown entries {sorted(unknown)}; allowed: name, title, period, tz, [[section]]")
    text = {"name": p.stem, "title": p.stem, "period": "day", "tz": "UTC"}
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
        model = raw.pop("model", None)
        if model is not None and not isinstance(model, str):
            raise QueryError(f"{p}: section {i + 1} model must be a file path string, got {model!r}")
        keys = raw.pop("keys", None)
        if keys is not None:  # this organisation's key lists, e.g. its hosts instead of the sample's
            if not isinstance(keys, dict) or not all(isinstance(v, list) for v in keys.values()):
                raise QueryError(f"{p}: section {i + 1} keys must be a table of value lists, e.g. "
                                 f"keys = {{ \"host.name\" = [\"web-1\", \"web-2\"] }}, got {keys!r}")
            raw["declared"] = {c: tuple(v) for c, v in keys.items()}
        threshold = raw.pop("threshold", None)
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float, str))):
            raise QueryError(f"{p}: section {i + 1} threshold must be a number or a percentile like \"p99\", got {threshold!r}")
        sections.append(Section(query=query, chart=chart, title=title, options=raw,
                                model=(p.parent / model).resolve() if model is not None else None, threshold=threshold))
    return ReportSpec(name=text["name"], title=text["title"], period=text["period"], sections=tuple(sections),
                      tz=text["tz"])
