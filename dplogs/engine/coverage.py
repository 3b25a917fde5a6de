"""Coverage: which days of a query window the store holds ingested data for.

The store records, per ingested input, the UTC days of its first and last event
(:meth:`~dplogs.ingest.store.Store.coverage`): coarse operator metadata that docs/privacy.md
declares public. Days without events inside a span still count as covered, so coverage never
reveals one day's activity. A release whose window meets no covered day would spend budget on
pure noise: it is refused before anything is charged. Partial coverage is disclosed.

>>> spans = [(dt.date(2026, 11, 1), dt.date(2026, 11, 10))]
>>> check(dt.datetime(2026, 11, 8, tzinfo=dt.UTC), dt.datetime(2026, 11, 15, tzinfo=dt.UTC), spans)
{'covered_days': 3, 'window_days': 7, 'store_spans': [['2026-11-01', '2026-11-10']]}
"""

from __future__ import annotations

import datetime as dt

from dplogs.errors import NoDataInWindow
from dplogs.privacy.limits import LATEST_TIME
from dplogs.privacy.windows import window_end_of, window_start_of


def _days(start: dt.datetime, end: dt.datetime) -> tuple[dt.date, dt.date]:
    """The UTC days a half-open window [start, end) touches (first, last)."""
    last = (end - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date()
    return start.astimezone(dt.UTC).date(), last


def check(start: dt.datetime, end: dt.datetime, spans: list[tuple[dt.date, dt.date]] | None) -> dict | None:
    """How much of ``[start, end)`` the store covers; :class:`NoDataInWindow` when nothing.
    None when the store cannot tell (inputs ingested before coverage was recorded)."""
    if spans is None:
        return None
    lo, hi = _days(start, end)
    covered = sum(max(0, (min(hi, b) - max(lo, a)).days + 1) for a, b in spans)
    shown = [[a.isoformat(), b.isoformat()] for a, b in spans]
    if covered == 0:
        have = ", ".join(f"{a} to {b}" for a, b in shown) or "nothing yet (ingest logs first)"
        days = f"UTC day {lo}" if lo == hi else f"UTC days {lo} to {hi} (inclusive)"
        hint = ""
        if spans:  # a query file's [window] (the shipped ones: the sample logs' fortnight) is only a default
            a, b = max(spans, key=lambda s: s[1])
            hint = (f". Ask about days it covers, e.g. --start {a} --end {b + dt.timedelta(days=b < dt.date.max)} "
                    "(start=/end= in Python; a query file's [window] is only its default)")
        raise NoDataInWindow(
            f"the window ({days}) holds no ingested data, so a release would spend budget on pure noise; "
            f"nothing was charged. The store covers: {have}{hint}"
        )
    return {"covered_days": covered, "window_days": (hi - lo).days + 1, "store_spans": shown}


def buckets_covered(starts: list[dt.datetime], width: dt.timedelta,
                    spans: list[tuple[dt.date, dt.date]] | None) -> list[bool]:
    """Per time bucket ``[start, start + width)``: whether it touches a covered day (all True when
    the store cannot tell). A bucket that touches none holds pure noise: a series must not score it
    or put it in a baseline.

    >>> spans = [(dt.date(2026, 11, 1), dt.date(2026, 11, 2))]
    >>> days = [dt.datetime(2026, 11, d, tzinfo=dt.UTC) for d in (1, 2, 3)]
    >>> buckets_covered(days, dt.timedelta(days=1), spans)
    [True, True, False]
    """
    if spans is None:
        return [True] * len(starts)
    out = []
    for start in starts:
        if not isinstance(start, dt.datetime):  # a date bucket
            start = dt.datetime.combine(start, dt.time(), dt.UTC)
        elif start.tzinfo is None:  # the store's instants are UTC
            start = start.replace(tzinfo=dt.UTC)
        lo, hi = _days(start, start + width)
        out.append(any(a <= hi and lo <= b for a, b in spans))
    return out


def latest_window(spans: list[tuple[dt.date, dt.date]] | None, policy: str,
                  today: dt.date | None = None) -> tuple[dt.datetime, dt.datetime] | None:
    """``[start, end)`` of the latest budget window (``policy``: day, week, month) the coverage
    reaches up to ``today`` (UTC, by default the current day): the default window of a query or a
    training that names none. Days after today count only when nothing else is covered: one log
    record stamped 2099-12-31 would otherwise make every such release answer about (and spend on)
    2099-12. None when the store covers nothing or cannot tell.

    >>> latest_window([(dt.date(2024, 3, 4), dt.date(2024, 3, 17))], "month")[0].isoformat()
    '2024-03-01T00:00:00+00:00'
    >>> latest_window([(dt.date(2024, 3, 4), dt.date(2099, 12, 31))], "month", dt.date(2026, 12, 6))[0].isoformat()
    '2026-12-01T00:00:00+00:00'
    """
    if not spans:
        return None
    today = today or dt.datetime.now(dt.UTC).date()
    past = [min(b, today) for a, b in spans if a <= today]
    last = max(past) if past else max(b for _, b in spans)
    # a query's window ends by LATEST_TIME: coverage in year 9999 (ingest --time-range allows it) made
    # the window end in year 10000, a ValueError (found by faults4: exit 70)
    start = window_start_of(min(last, LATEST_TIME.date() - dt.timedelta(days=1)), policy)
    return start, window_end_of(start, policy)
