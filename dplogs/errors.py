"""One error hierarchy for the whole package.

Every error a user can cause is a :class:`DplogsError` subclass whose class-level ``exit_code`` the
CLI returns, and whose message says how to fix the problem (``pass --delta``, ``budget left: 0.2``).
Exit codes follow sysexits(3) where one fits, so shell scripts and schedulers can branch on them.

>>> from dplogs.errors import BudgetExhausted
>>> BudgetExhausted("budget left: 0.2").exit_code
77
"""

from __future__ import annotations


class DplogsError(Exception):
    """Base class of every error dplogs raises on purpose."""

    exit_code: int = 1


class UsageError(DplogsError):
    """A bad option or argument (mutually exclusive options, a missing required value)."""

    exit_code = 64  # EX_USAGE


class QueryError(UsageError):
    """A query that cannot be planned: unknown column, unsupported SQL, malformed query file."""

    exit_code = 64


class PrivacyParameterError(QueryError):
    """An ε, δ, ρ or bound that is missing, zero, negative, NaN or infinite, or a private key
    released without δ. Raised during validation, before anything is charged."""

    exit_code = 64


class NoDataInWindow(QueryError):
    """The query window holds no ingested data (per the store's public coverage): nothing to
    release, nothing charged."""

    exit_code = 64


class NoLogsOfKind(NoDataInWindow):
    """The store holds logs for the query window, but none of the kind the query reads (its query
    file's ``formats``, per the store's public input formats): nothing charged. A report shows such a
    section as not applicable to the store rather than failing."""

    exit_code = 64


class NoLogsForPeriod(DplogsError):
    """A report period the store holds no ingested logs for (per its public coverage): the report
    says so and nothing is charged. Schedulers: not a failure of dplogs; ingest the logs, then
    rerun (or let the next catch-up pick the period up)."""

    exit_code = 66  # EX_NOINPUT


class DataError(DplogsError):
    """Input data that cannot be used: too many malformed lines (``--max-errors``), bad encoding,
    a corrupt detector model file."""

    exit_code = 65  # EX_DATAERR


class InputNotFound(DplogsError):
    """A named input path, store or model file does not exist."""

    exit_code = 66  # EX_NOINPUT


class StoreError(DplogsError):
    """The store is missing, unreadable or has an incompatible manifest."""

    exit_code = 66


class StoreWriteError(DplogsError):
    """The store could not be written (disk full, read-only file system, no permission). Nothing
    half-written counts: rerunning the same ingest once the cause is fixed completes it exactly."""

    exit_code = 74  # EX_IOERR


class StoreDamaged(DplogsError):
    """A file of the store cannot be read as what it should be (truncated, overwritten, bit rot).
    Nothing is released from such a store: a release over part of the events would be silently wrong."""

    exit_code = 74  # EX_IOERR


class LedgerError(DplogsError):
    """The budget ledger is missing, corrupt or fails verification; nothing is released."""

    exit_code = 74  # EX_IOERR


class LedgerIOError(LedgerError):
    """The ledger (or a store file guarding it) cannot be read or written because of the storage:
    disk full, read-only file system, permission denied. Not corruption; nothing is released."""

    exit_code = 74


class ConcurrentRun(DplogsError):
    """Another run holds what this one needs (the same report period, the same idempotency key,
    the ledger's write lock) past the wait, or changed the protection policy this release was
    prepared under. Nothing was charged; retrying later is safe."""

    exit_code = 75  # EX_TEMPFAIL


class OutputWriteError(DplogsError):
    """A charged release could not be written out (disk full, a closed pipe). Its data is stored
    with its ledger entry; with an idempotency key, a rerun re-emits it without spending."""

    exit_code = 74  # EX_IOERR


class BudgetExhausted(DplogsError):
    """The release would exceed the budget cap of its window. Nothing was charged."""

    exit_code = 77  # EX_NOPERM


class EngineFailure(DplogsError):
    """The distributed engine (Spark) failed under a release: a lost executor, a stopped session, a
    cluster out of memory. What was charged stays charged if noise may have been drawn; a rerun
    with the same idempotency key re-emits a release that was recorded."""

    exit_code = 69  # EX_UNAVAILABLE


class InternalError(DplogsError):
    """An internal invariant failed. This is a bug in dplogs; please report it."""

    exit_code = 70  # EX_SOFTWARE

    def __init__(self, message: str) -> None:
        super().__init__(f"{message} (this is a bug in dplogs)")


EXIT_CODES: dict[str, int] = {
    cls.__name__: cls.exit_code
    for cls in (
        DplogsError,
        UsageError,
        QueryError,
        PrivacyParameterError,
        NoDataInWindow,
        NoLogsForPeriod,
        DataError,
        InputNotFound,
        StoreError,
        StoreWriteError,
        StoreDamaged,
        EngineFailure,
        LedgerError,
        OutputWriteError,
        LedgerIOError,
        ConcurrentRun,
        BudgetExhausted,
        InternalError,
    )
}
"""Documented exit codes, by error class (the CLI's ``--help`` and the README list these)."""
