"""Run a report: release each section for one period, idempotently; catch up on missed periods.

Every section is released with the idempotency key ``report:<name>:<period>:<section>`` (the
period is its start date, followed by ``@<zone>`` unless the report's zone is UTC), so running the
same report for the same period again (a retried cron job, a re-render) returns the stored
releases from the ledger and spends nothing. A catch-up reads those keys back from the ledger to
find the newest period released and releases every period after it, oldest first. A section that cannot be released (budget
exhausted, a bad query) is kept in the result with its error, so the rest of the report still
renders and the caller can exit with that error's code.

Two runs of the same report and period at once would race for the same keys; the second waits
(bounded) on a per-report-period lock file in ``STORE/locks/`` and then replays what the first
released, or gives up with :class:`~dplogs.errors.ConcurrentRun` (exit 75, retryable). Holding
that lock, a run knows a section left reserved under its key is a killed run's (whatever host or
pid it names) and releases it anew, charged on top; the dead reservation stays spent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from dplogs.engine.api import Engine
from dplogs.engine.release import Release
from dplogs.engine.coverage import check as check_coverage
from dplogs.errors import (
    ConcurrentRun, DplogsError, LedgerError, LedgerIOError, NoDataInWindow, NoLogsForPeriod, NoLogsOfKind, QueryError,
    UsageError,
)
from dplogs.files import lock_file
from dplogs.privacy.limits import MAX_CATCH_UP_PERIODS
from dplogs.report.spec import ReportSpec, Section

if TYPE_CHECKING:
    from dplogs.privacy.ledger import WindowBudget


@dataclass(frozen=True)
class SectionResult:
    """Public: a section and either its release or the error that stopped it."""

    section: Section
    release: Release | None
    error: DplogsError | None = None
    left: tuple[WindowBudget, ...] = ()
    """The budget windows the section is charged to, read from the ledger right after it: what
    they have left once it was released (or refused)."""
    bucket: str | None = None
    """The section's time bucket (hour, day, ...), when it has one."""

    @property
    def not_applicable(self) -> bool:
        """The store holds none of the logs the section reads for the period (its query's
        ``formats``, per public metadata): nothing was spent, and the report did not fail."""
        return isinstance(self.error, NoLogsOfKind)


@dataclass(frozen=True)
class Coverage:
    """Public: whether the store holds logs for a period: ``covered``, ``no-data`` or ``unknown``,
    and a sentence for the reader."""

    state: str
    note: str


def period_coverage(engine: Engine, start: dt.datetime, end: dt.datetime) -> Coverage:
    """Whether the store holds logs for ``[start, end)``, from its public coverage metadata only
    (the day spans of ingested inputs, docs/privacy.md)."""
    store_spans = engine.coverage()  # read once: ingested.json
    try:
        covered = check_coverage(start, end, store_spans)
    except NoDataInWindow:
        spans = ", ".join(f"{a} to {b}" for a, b in store_spans or []) or "nothing yet"
        last = f"; report a day it covers with --date, e.g. --date {max(b for _, b in store_spans)}" if store_spans else ""
        return Coverage("no-data", f"no logs were ingested for this period (the store covers: {spans}{last}); "
                                   "nothing was released or charged")
    if covered is None:
        return Coverage("unknown", "the store cannot tell whether logs for this period were ingested (inputs "
                                   "ingested before coverage was recorded): an all-quiet report may also mean missing logs")
    if covered["covered_days"] < covered["window_days"]:
        return Coverage("partial", f"the store holds logs for {covered['covered_days']} of the period's "
                                   f"{covered['window_days']} day(s); cells of the days without logs hold noise "
                                   "only and are left out of what stands out")
    return Coverage("covered", "")


@dataclass(frozen=True)
class ReportRun:
    """Public: everything a renderer needs; holds only releases and public facts (the period, the
    zone, the budget windows with their caps and spend), never raw data."""

    spec: ReportSpec
    start: dt.date
    end: dt.date
    privacy_unit: str
    budget_window: str
    sections: tuple[SectionResult, ...]
    utc_start: dt.datetime | None = None
    utc_end: dt.datetime | None = None
    budgets: tuple[WindowBudget, ...] = ()
    coverage: Coverage = Coverage("unknown", "")
    unit_rule: str = ""
    """The store's privacy-unit rule in words (chain, shared or per-row unattributed rows)."""

    @property
    def inapplicable(self) -> bool:
        """No section applies to the store's logs for this period: the report does not fit the store."""
        return bool(self.sections) and all(s.not_applicable for s in self.sections)

    @property
    def first_error(self) -> DplogsError | None:
        """The error the run exits with: the first section's that failed. A section not applicable
        to the store is not a failure, unless no section applies (the report does not fit the store)."""
        if self.inapplicable:
            return self.sections[0].error
        return next((s.error for s in self.sections if s.error is not None and not s.not_applicable), None)

    @property
    def tz(self) -> str:
        return self.spec.tz

    @property
    def complete(self) -> bool:
        return all(s.release is not None for s in self.sections)


DEFAULT_WAIT_S = 60.0


def run_report(
    spec: ReportSpec, store: str | os.PathLike[str], *, day: dt.date, wait: float = DEFAULT_WAIT_S,
    backend: str = "polars", spark_master: str | None = None,
) -> ReportRun:
    """Release every section of ``spec`` for the period containing ``day`` (local to
    ``spec.tz``). Every section is planned first, so a bad query charges nothing. While another
    run of the same report and period holds its lock, wait up to ``wait`` seconds, then raise
    :class:`ConcurrentRun`. ``backend``/``spark_master`` choose where sections are bounded."""
    engine = Engine.open(store, backend=backend, spark_master=spark_master)
    start, end = spec.period_bounds(day)
    utc_start, utc_end = spec.utc_range(day)
    window = {"start": utc_start.isoformat(), "end": utc_end.isoformat(), "time_zone": spec.tz}
    prepared = [
        (engine if s.model is None else engine.over_anomalies(s.model, threshold=s.threshold))
        .query_file(s.query, **window, **s.options)
        for s in spec.sections
    ]
    for section, query in zip(spec.sections, prepared):  # a typo'd column must not pass silently (found by faults4)
        unused = sorted(set(section.options.get("declared", {})) - {k.column for k in query.plan.keys})
        if unused:
            raise QueryError(f"section {section.title!r}: keys name {', '.join(unused)}, which its query "
                             f"{section.query.name} does not group by (it groups by "
                             f"{', '.join(k.column for k in query.plan.keys) or 'nothing'}); nothing was charged")
    results = []
    windows = prepared[0].plan.budget_windows
    coverage = period_coverage(engine, utc_start, utc_end)
    if coverage.state == "no-data":  # nothing to release: say so, spend nothing
        left = tuple(engine.ledger.budget(w) for w in windows)
        results = [SectionResult(s, None, NoLogsForPeriod(coverage.note), left) for s in spec.sections]
    else:
        with _period_lock(Path(store), spec.name, spec.period_token(start), wait):
            for index, (section, query) in enumerate(zip(spec.sections, prepared)):
                try:
                    release = query.release(caller="report", idempotency_key=spec.section_key(start, index))
                    result = SectionResult(section, release)
                except DplogsError as exc:
                    result = SectionResult(section, None, exc)
                left = tuple(engine.ledger.budget(w) for w in query.plan.budget_windows)
                bucket = next((k.bucket for k in query.plan.keys if k.bucket is not None), None)
                results.append(replace(result, left=left, bucket=bucket))
    budgets = tuple(engine.ledger.budget(w) for w in windows)
    return ReportRun(
        spec=spec, start=start, end=end, privacy_unit=engine.privacy_unit, budget_window=engine.budget_window,
        sections=tuple(results), utc_start=utc_start, utc_end=utc_end, budgets=budgets,
        coverage=coverage, unit_rule=engine.unit.describe() if hasattr(engine, "unit") else "",
    )


@dataclass(frozen=True)
class CatchUp:
    """Public: the periods a catch-up ran (oldest first), the ones it left, and why it stopped."""

    runs: tuple[ReportRun, ...]
    left: tuple[dt.date, ...]
    error: DplogsError | None = None


def released_periods(spec: ReportSpec, store: str | os.PathLike[str]) -> dict[dt.date, int]:
    """Per period start (in ``spec.tz``), how many of the spec's sections the ledger holds as
    committed releases: read through the ledger's keys, never the ledger file itself."""
    ledger = Engine.open(store).ledger
    prefix = f"report:{spec.name}:"
    wanted = {spec.section_id(i) for i in range(len(spec.sections))}
    counts: dict[dt.date, int] = {}
    for key in ledger.committed_keys(prefix):
        token, _, section = key[len(prefix):].partition(":")
        try:
            start = dt.date.fromisoformat(token[:10])
        except ValueError:
            continue
        if spec.period_token(start) == token and section in wanted:
            counts[start] = counts.get(start, 0) + 1
    return counts


def catch_up_periods(
    spec: ReportSpec, store: str | os.PathLike[str], *, today: dt.date,
    since: dt.date | None = None, until: dt.date | None = None, written: Callable[[dt.date], bool] = lambda start: True,
    other_sections: Callable[[dt.date], bool] = lambda start: False,
) -> list[dt.date]:
    """Start days of the periods a catch-up releases, oldest first: from the period containing
    ``since`` (default: the oldest period after the newest one fully released, or the newest one
    itself if some of its sections are missing or ``written(start)`` says its files are not (a run
    killed between the charge and the files: found by faults4, its files were never written); with
    no history, only the last ended period) to the last period that has ended by ``today``
    (local), and none starting after ``until``. A newest period whose files hold sections this
    spec would not write back (``other_sections``: the spec was edited since) counts as done: a
    rerun would be refused, and the nightly run would stop there for good."""
    last = spec.last_complete_period(today)
    if until is not None:
        last = min(last, spec.period_bounds(until)[0])
    if since is None:
        done = released_periods(spec, store)
        if not done:
            return [last]
        newest = max(done)
        # a replay spends nothing
        again = not written(newest) or (done[newest] < len(spec.sections) and not other_sections(newest))
        since = newest if again else spec.period_bounds(newest)[1]
    periods = spec.periods(since, last) if spec.period_bounds(since)[0] <= last else []
    if len(periods) > MAX_CATCH_UP_PERIODS:
        raise UsageError(f"the catch-up from {periods[0]} to {periods[-1]} covers {len(periods):,} {spec.period} periods, "
                         f"more than the limit of {MAX_CATCH_UP_PERIODS:,}; bound it with --since/--until (nothing "
                         "was charged)")
    return periods


def catch_up(
    spec: ReportSpec, store: str | os.PathLike[str], *, today: dt.date, since: dt.date | None = None,
    until: dt.date | None = None, wait: float = DEFAULT_WAIT_S, written: Callable[[dt.date], bool] = lambda start: True,
    on_run: Callable[[ReportRun], None] = lambda run: None, backend: str = "polars", spark_master: str | None = None,
    check: Callable[[list[dt.date]], None] = lambda periods: None,
    other_sections: Callable[[dt.date], bool] = lambda start: False,
) -> CatchUp:
    """Release every period :func:`catch_up_periods` names, oldest first, each under its own
    idempotency keys (a period already released replays and spends nothing). ``check`` gets the
    periods before anything is released and may refuse them all (their outputs cannot be written).
    ``on_run`` gets each period's run as soon as it is done (to write its outputs). Stops at the
    first period that is not fully released (budget exhausted, a concurrent run): the rest are
    returned as ``left``."""
    periods = catch_up_periods(spec, store, today=today, since=since, until=until, written=written,
                               other_sections=other_sections)
    check(periods)
    runs: list[ReportRun] = []
    for i, start in enumerate(periods):
        try:
            run = run_report(spec, store, day=start, wait=wait, backend=backend, spark_master=spark_master)
        except ConcurrentRun as exc:
            return CatchUp(tuple(runs), tuple(periods[i:]), exc)
        runs.append(run)
        on_run(run)
        if isinstance(run.first_error, (NoLogsForPeriod, NoLogsOfKind)):
            continue  # a period without (such) logs: reported as such, nothing spent, the catch-up goes on
        if run.first_error is not None:
            return CatchUp(tuple(runs), tuple(periods[i:]), run.first_error)
    return CatchUp(tuple(runs), ())


@contextlib.contextmanager
def _period_lock(store: Path, name: str, period: str, wait: float) -> Iterator[None]:
    """Hold ``STORE/locks/report-<hash of name and period>.lock`` exclusively (``flock``: the
    kernel frees it when a run dies). Neither the directory nor the file is followed if it is a
    symbolic link."""
    locks = store / "locks"
    digest = hashlib.sha256(f"{name}\n{period}".encode()).hexdigest()[:24]
    try:
        fd = lock_file(locks, f"report-{digest}.lock", wait=wait)
    except TimeoutError:
        raise ConcurrentRun(
            f"another run of report {name!r} for the period starting {period} is still going in "
            f"{store} (waited {wait:g} s); nothing was charged by this run — retry later and it will "
            "replay what that run released"
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise LedgerError(f"the report lock in {locks} is a symbolic link; remove it and retry") from None
        raise LedgerIOError(
            f"cannot take the report lock in {locks} ({exc.strerror}): an I/O problem (disk full, read-only "
            "store or no permission), not corruption; make the store writable and retry (nothing was released)"
        ) from None
    try:
        yield
    finally:
        os.close(fd)
