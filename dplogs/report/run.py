"""Run a report: release each section for one period, idempotently.

Every section is released with the idempotency key ``report:<name>:<period start>:<section>``, so
running the same report for the same period again (a retried cron job, a re-render) returns the
stored releases from the ledger and spends nothing. A section that cannot be released (budget
exhausted, a bad query) is kept in the result with its error, so the rest of the report still
renders and the caller can exit with that error's code.

Two runs of the same report and period at once would race for the same keys; the second waits
(bounded) on a per-report-period lock file in ``STORE/locks/`` and then replays what the first
released, or gives up with :class:`~dplogs.errors.ConcurrentRun` (exit 75, retryable).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dplogs.engine.api import Engine
from dplogs.engine.release import Release
from dplogs.errors import ConcurrentRun, DplogsError, LedgerError, LedgerIOError
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


DEFAULT_WAIT_S = 60.0


def run_report(
    spec: ReportSpec, store: str | os.PathLike[str], *, day: dt.date, wait: float = DEFAULT_WAIT_S,
    backend: str = "polars", spark_master: str | None = None,
) -> ReportRun:
    """Release every section of ``spec`` for the period containing ``day``. While another run
    of the same report and period holds its lock, wait up to ``wait`` seconds, then raise
    :class:`ConcurrentRun`. ``backend``/``spark_master`` choose where sections are bounded."""
    engine = Engine.open(store, backend=backend, spark_master=spark_master)
    start, end = spec.period_bounds(day)
    results = []
    with _period_lock(Path(store), spec.name, start, wait):
        for index, section in enumerate(spec.sections):
            key = f"report:{spec.name}:{start.isoformat()}:{index}:{section.query.stem}"
            try:
                prepared = engine.query_file(section.query, start=start.isoformat(), end=end.isoformat(),
                                             **section.options)
                results.append(SectionResult(section, prepared.release(caller="report", idempotency_key=key)))
            except DplogsError as exc:
                results.append(SectionResult(section, None, exc))
    return ReportRun(
        spec=spec, start=start, end=end, privacy_unit=engine.privacy_unit,
        budget_window=engine.budget_window, sections=tuple(results),
    )


@contextlib.contextmanager
def _period_lock(store: Path, name: str, start: dt.date, wait: float) -> Iterator[None]:
    """Hold ``STORE/locks/report-<hash of name and period>.lock`` exclusively (``flock``: the
    kernel frees it when a run dies). Neither the directory nor the file is followed if it is a
    symbolic link."""
    locks = store / "locks"
    digest = hashlib.sha256(f"{name}\n{start.isoformat()}".encode()).hexdigest()[:24]
    try:
        with contextlib.suppress(FileExistsError):
            locks.mkdir(mode=0o700)
        if not stat.S_ISDIR(os.lstat(locks).st_mode):
            raise LedgerError(f"{locks} is not a directory (a symbolic link?); remove it and retry")
        fd = os.open(locks / f"report-{digest}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LedgerError(f"the report lock in {locks} is a symbolic link; remove it and retry") from None
        raise LedgerIOError(
            f"cannot take the report lock in {locks} ({exc.strerror}): an I/O problem (disk full, read-only "
            "store or no permission), not corruption; make the store writable and retry (nothing was released)"
        ) from None
    try:
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ConcurrentRun(
                        f"another run of report {name!r} for the period starting {start} is still going in "
                        f"{store} (waited {wait:g} s); nothing was charged by this run — retry later and it will "
                        "replay what that run released"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
