"""Run a report: release each section for one period, idempotently.

Every section is released with the idempotency key ``report:<name>:<period start>:<section>``, so
running the same report for the same period again (a retried cron job, a re-render) returns the
stored releases from the ledger and spends nothing. A section that cannot be released (budget
exhausted, a bad query) is kept in the result with its error, so the rest of the report still
renders and the caller can exit with that error's code.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from dplogs.engine.api import Engine
from dplogs.engine.release import Release
from dplogs.errors import DplogsError
from dplogs.report.spec import ReportSpec, Section


@dataclass(frozen=True)
class SectionResult:
    """Public: a section and either its release or the error that stopped it."""

    section: Section
    release: Release | None
    error: DplogsError | None = None


@dataclass(frozen=True)
class ReportRun:
    """Public: everything a renderer needs; holds only releases, never raw data."""

    spec: ReportSpec
    start: dt.date
    end: dt.date
    privacy_unit: str
    budget_window: str
    sections: tuple[SectionResult, ...]

    @property
    def first_error(self) -> DplogsError | None:
        return next((s.error for s in self.sections if s.error is not None), None)


def run_report(spec: ReportSpec, store: str | os.PathLike[str], *, day: dt.date) -> ReportRun:
    """Release every section of ``spec`` for the period containing ``day``."""
    engine = Engine.open(store)
    start, end = spec.period_bounds(day)
    results = []
    for index, section in enumerate(spec.sections):
        key = f"report:{spec.name}:{start.isoformat()}:{index}:{section.query.stem}"
        try:
            prepared = engine.query_file(section.query, start=start.isoformat(), end=end.isoformat(), **section.options)
            results.append(SectionResult(section, prepared.release(caller="report", idempotency_key=key)))
        except DplogsError as exc:
            results.append(SectionResult(section, None, exc))
    return ReportRun(
        spec=spec, start=start, end=end, privacy_unit=engine.privacy_unit,
        budget_window=engine.budget_window, sections=tuple(results),
    )
