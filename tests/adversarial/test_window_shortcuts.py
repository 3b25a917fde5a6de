"""`--last` / `--day` windows at the edges of the calendar: refused as usage errors (64) that
charge nothing, never an internal error (70)."""

from __future__ import annotations

import pytest

from tests.adversarial.conftest import invoke, ledger_state

SQL = ["--sql", "SELECT COUNT(*) FROM logs", "--epsilon", "0.1", "--max-rows-per-group", "1"]


@pytest.mark.parametrize("window", [
    ["--last", "99999999999d"],                 # timedelta overflow
    ["--last", "1000000000w"],
    ["--last", "9999999999999999999999m"],
    ["--last", "5000000d"],                      # fits a timedelta, starts before year 1
    ["--day", "9999-12-31"],                     # the next day does not exist
    ["--day", "9999-06-01"],                     # a real day after the supported range
])
def test_window_shortcut_beyond_the_calendar_is_a_usage_error(store, window):
    before = ledger_state(store)
    for command in ("query", "explain"):
        res = invoke(command, "--store", store, *SQL, *window)
        assert res.exit_code == 64, (command, res.output)
        assert "bug" not in res.output and "range" in res.output, res.output
    assert ledger_state(store) == before


def test_last_takes_ascii_digits_only(store):
    res = invoke("explain", "--store", store, *SQL, "--last", "\u0663d")  # ARABIC-INDIC DIGIT THREE
    assert res.exit_code == 64 and "--last takes" in res.output, res.output
