"""Option values with a typo are refused, never read as something else."""

from __future__ import annotations

import pytest
from tests.adversarial.conftest import REPO, invoke, ledger_state


@pytest.mark.parametrize("value", ["1_0", "0_5", "١", "0.5x", "1e", ""])
def test_a_privacy_parameter_that_is_not_a_plain_number_is_refused_before_any_charge(store, value):
    before = ledger_state(store)
    res = invoke("query", "--store", store, "--sql", "SELECT COUNT(*) FROM logs", "--epsilon", value,
                 "--start", "2024-03-01", "--end", "2024-04-01")
    assert res.exit_code == 2 and "is not a number" in res.output, res.output
    assert ledger_state(store) == before


@pytest.mark.parametrize("value", ["0.5", "5e-1", ".5", "+0.5"])
def test_plain_numbers_are_read(store, value):
    res = invoke("explain", "--store", store, "--sql", "SELECT COUNT(*) FROM logs", "--epsilon", value,
                 "--start", "2024-03-01", "--end", "2024-04-01")
    assert res.exit_code == 0, res.output


def test_budget_caps_with_a_typo_are_refused(store):
    res = invoke("budget", "set", "--store", store, "--epsilon", "1_0")
    assert res.exit_code == 2 and "is not a number" in res.output


@pytest.mark.parametrize("unit", ["", " ", ","])
def test_an_empty_privacy_unit_is_refused_not_read_as_the_default(tmp_path, unit):
    res = invoke("ingest", "--store", tmp_path / "s", "--privacy-unit", unit, "--year", "2024",
                 REPO / "sample_logs" / "auth.log")
    assert res.exit_code == 64 and "names no field" in res.output, res.output
    assert not (tmp_path / "s").exists()
