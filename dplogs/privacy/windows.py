"""Budget windows: the calendar periods a privacy guarantee is stated over.

The neighbouring relation adds or removes all events of one unit inside one window, so every
release is charged to each window its time range touches. Keys are UTC calendar periods:
``"2026-11"`` (month), ``"2026-W47"`` (ISO week), ``"2026-11-22"`` (day).

>>> import datetime as dt
>>> window_key(dt.datetime(2026, 11, 22, 13, 5), "week")
'2026-W47'
>>> windows_for(dt.date(2026, 10, 30), dt.date(2026, 11, 2), "month")
['2026-10', '2026-11']
>>> windows_for(dt.datetime(2026, 11, 1), dt.datetime(2026, 12, 1), "month")
['2026-11']
"""

from __future__ import annotations

import datetime as dt
import re

import polars as pl

from dplogs.errors import UsageError

POLICIES = ("day", "week", "month")

_KEY_PATTERNS = {
    "day": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "week": re.compile(r"^\d{4}-W\d{2}$"),
    "month": re.compile(r"^\d{4}-\d{2}$"),
}


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise UsageError(f"budget window policy {policy!r} is invalid; use one of: {', '.join(POLICIES)}")
    return policy


def _utc(ts: dt.datetime | dt.date | str) -> dt.datetime:
    if isinstance(ts, str):
        try:
            ts = dt.datetime.fromisoformat(ts)
        except ValueError:
            raise UsageError(f"cannot read {ts!r} as a time; use ISO 8601, e.g. 2026-11-22T13:05:00Z") from None
    if not isinstance(ts, dt.datetime):  # a date: its midnight
        ts = dt.datetime(ts.year, ts.month, ts.day)
    if ts.tzinfo is not None:  # naive times are taken as UTC, like the store's timestamps
        ts = ts.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return ts


def window_key(ts: dt.datetime | dt.date | str, policy: str) -> str:
    """The key of the window of ``policy`` that contains ``ts`` (naive times are UTC)."""
    check_policy(policy)
    t = _utc(ts)
    if policy == "day":
        return t.strftime("%Y-%m-%d")
    if policy == "month":
        return t.strftime("%Y-%m")
    year, week, _ = t.isocalendar()
    return f"{year:04d}-W{week:02d}"


_TRUNCATE = {"day": "1d", "week": "1w", "month": "1mo"}


def window_start(column: str, policy: str) -> pl.Expr:
    """Per row, the start of the ``policy`` window containing UTC timestamp ``column``: the
    vectorised twin of :func:`window_key` (one value per window; weeks start on ISO Monday).
    Used to bound each unit per budget window, the unit of the neighbouring relation."""
    return pl.col(column).dt.convert_time_zone("UTC").dt.truncate(_TRUNCATE[check_policy(policy)])


def check_window(key: str, policy: str) -> str:
    """Validate that ``key`` is a window key of ``policy``.

    >>> check_window("2026-W47", "month")
    Traceback (most recent call last):
    ...
    dplogs.errors.UsageError: window '2026-W47' is not a month window key; expected e.g. 2026-11
    """
    check_policy(policy)
    example = {"day": "2026-11-22", "week": "2026-W47", "month": "2026-11"}[policy]
    if not isinstance(key, str) or not _KEY_PATTERNS[policy].match(key) or _start(key, policy) is None:
        raise UsageError(f"window {key!r} is not a {policy} window key; expected e.g. {example}")
    return key


def _start(key: str, policy: str) -> dt.datetime | None:
    try:
        if policy == "day":
            return dt.datetime.strptime(key, "%Y-%m-%d")
        if policy == "month":
            return dt.datetime.strptime(key, "%Y-%m")
        return dt.datetime.fromisocalendar(int(key[:4]), int(key[6:]), 1)
    except ValueError:
        return None


def _floor(t: dt.datetime, policy: str) -> dt.datetime:
    day = dt.datetime(t.year, t.month, t.day)
    if policy == "day":
        return day
    if policy == "week":
        return day - dt.timedelta(days=day.weekday())
    return dt.datetime(t.year, t.month, 1)


def _next(start: dt.datetime, policy: str) -> dt.datetime:
    if policy == "day":
        return start + dt.timedelta(days=1)
    if policy == "week":
        return start + dt.timedelta(weeks=1)
    return dt.datetime(start.year + start.month // 12, start.month % 12 + 1, 1)


def window_count(start: dt.datetime | str, end: dt.datetime | str, policy: str) -> int:
    """``len(windows_for(start, end, policy))`` for a half-open datetime range, by arithmetic:
    nothing is enumerated, so a request for too many windows is refused before any work.

    >>> window_count(dt.datetime(2024, 3, 1), dt.datetime(2325, 3, 1), "month")
    3612
    """
    check_policy(policy)
    lo, hi = _utc(start), _utc(end)
    if hi < lo:
        raise UsageError(f"time range ends ({hi.isoformat()}) before it starts ({lo.isoformat()})")
    last = hi if hi == lo else hi - dt.timedelta(microseconds=1)
    first, final = _floor(lo, policy), _floor(last, policy)
    if policy == "month":
        return (final.year - first.year) * 12 + final.month - first.month + 1
    return (final - first).days // (7 if policy == "week" else 1) + 1


def windows_for(
    start: dt.datetime | dt.date | str, end: dt.datetime | dt.date | str, policy: str
) -> list[str]:
    """Keys of every ``policy`` window that the time range touches, in order.

    Datetimes describe the half-open range ``[start, end)``; dates describe whole days, both
    included. ``start == end`` touches the one window containing it.
    """
    check_policy(policy)
    whole_days = not isinstance(end, (dt.datetime, str)) or (
        isinstance(end, str) and len(end) == 10
    )
    lo, hi = _utc(start), _utc(end)
    if hi < lo:
        raise UsageError(f"time range ends ({hi.isoformat()}) before it starts ({lo.isoformat()})")
    if whole_days:
        hi = hi + dt.timedelta(days=1)
    last = hi if hi == lo else hi - dt.timedelta(microseconds=1)
    keys = []
    cur = _floor(lo, policy)
    while cur <= last:
        keys.append(window_key(cur, policy))
        cur = _next(cur, policy)
    return keys


def window_start_of(day: dt.date, policy: str) -> dt.datetime:
    """The UTC start of the ``policy`` window containing ``day``."""
    start = _floor(dt.datetime(day.year, day.month, day.day), check_policy(policy))
    return start.replace(tzinfo=dt.timezone.utc)


def window_end_of(start: dt.datetime, policy: str) -> dt.datetime:
    """The end of the window starting at ``start`` (the next one's start)."""
    return _next(start.replace(tzinfo=None), check_policy(policy)).replace(tzinfo=dt.timezone.utc)
