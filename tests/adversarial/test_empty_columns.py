"""Sums and means over a column the window holds no value of (auth.log has no bytes): released
like any other, with the same exit code as when one unit has a value. It was an internal error
(70) after the bound choice had drawn noise: a charge without a release, and an exit code that
told whether anyone in the window had a value."""

from __future__ import annotations

import json

import pytest

from dplogs.privacy.ledger import Ledger
from tests.adversarial.conftest import invoke

WINDOW = ["--start", "2024-03-01", "--end", "2024-04-01"]


@pytest.mark.parametrize("sql, bounds", [
    ("SELECT SUM(source.bytes) FROM logs", ["--clamp", "source.bytes=0:100", "--max-rows-per-group", "2"]),
    ("SELECT SUM(source.bytes) FROM logs", []),  # bounds chosen with DP first
    ("SELECT AVG(source.bytes) FROM logs", []),
    ("SELECT event.outcome, SUM(source.bytes) FROM logs GROUP BY event.outcome", ["--max-groups", "1"]),
])
def test_sum_over_a_column_without_values_is_released(store, sql, bounds):
    res = invoke("query", "--store", store, "--sql", sql, "--epsilon", "0.1", *WINDOW, *bounds, "--format", "json")
    assert res.exit_code == 0, res.output
    release = json.loads(res.stdout)
    assert release["data"], release
    with Ledger.open(store / "ledger.sqlite") as led:
        assert led.history(limit=1)[0].status == "committed"
