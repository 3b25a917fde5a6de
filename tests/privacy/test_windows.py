"""Budget window keys and the windows a time range touches."""

from __future__ import annotations

import datetime as dt

import pytest

from dplogs.errors import UsageError
from dplogs.privacy.windows import check_window, window_key, windows_for


@pytest.mark.parametrize(
    "ts, policy, key",
    [
        (dt.datetime(2026, 11, 22, 23, 59), "day", "2026-11-22"),
        (dt.datetime(2026, 11, 22, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=-2))), "day", "2026-11-23"),
        (dt.date(2027, 1, 1), "week", "2026-W53"),  # ISO: Friday 1 Jan 2027 is in 2026's week 53
        (dt.date(2026, 1, 1), "week", "2026-W01"),
        (dt.date(2024, 12, 30), "week", "2025-W01"),
        ("2026-11-30T10:00:00Z", "month", "2026-11"),
    ],
)
def test_window_key(ts, policy, key):
    assert window_key(ts, policy) == key
    assert check_window(key, policy) == key


def test_ranges():
    assert windows_for(dt.date(2026, 11, 30), dt.date(2026, 12, 1), "day") == ["2026-11-30", "2026-12-01"]
    assert windows_for(dt.datetime(2026, 11, 30), dt.datetime(2026, 12, 1), "day") == ["2026-11-30"]
    assert windows_for(dt.datetime(2026, 11, 30), dt.datetime(2026, 12, 1, 0, 0, 1), "day") == ["2026-11-30", "2026-12-01"]
    assert windows_for("2026-12-28", "2027-01-04", "week") == ["2026-W53", "2027-W01"]
    assert windows_for("2026-11-05", "2027-02-01", "month") == ["2026-11", "2026-12", "2027-01", "2027-02"]
    assert len(windows_for(dt.date(2024, 1, 1), dt.date(2024, 12, 31), "day")) == 366
    assert windows_for(dt.datetime(2026, 11, 5, 3), dt.datetime(2026, 11, 5, 3), "month") == ["2026-11"]


def test_bad_input():
    with pytest.raises(UsageError, match="ends .* before it starts"):
        windows_for(dt.date(2026, 11, 2), dt.date(2026, 11, 1), "day")
    with pytest.raises(UsageError, match="use one of"):
        windows_for(dt.date(2026, 11, 2), dt.date(2026, 11, 3), "year")
    with pytest.raises(UsageError, match="ISO 8601"):
        window_key("yesterday", "day")
    for bad, policy in [("2026-13", "month"), ("2026-W54", "week"), ("2026-02-30", "day"), ("2026-11", "day")]:
        with pytest.raises(UsageError):
            check_window(bad, policy)
