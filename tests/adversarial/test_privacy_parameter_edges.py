"""Privacy parameters at the edges of what the mechanisms can certify: refused as 64 before any
charge, never an internal error (70)."""

from __future__ import annotations

import pytest

from tests.adversarial.conftest import invoke, ledger_state

PRIVATE_KEY = ["--sql", "SELECT host.name, COUNT(*) FROM logs GROUP BY host.name",
               "--start", "2024-03-01", "--end", "2024-04-01", "--max-groups", "1", "--max-rows-per-group", "1"]


@pytest.mark.parametrize("budget", [["--epsilon", "0.01"], ["--epsilon", "1"], ["--rho", "0.5"]])
@pytest.mark.parametrize("delta", ["1e-17", "1e-20", "1e-300", "5e-324"])
def test_selection_delta_below_what_opendp_certifies_is_a_usage_error(store, budget, delta):
    # OpenDP's threshold maps certify no δ below 2^-53; the search for a threshold ran past the
    # mechanism's i32 and died with "2147483648 is not representable by i32" (exit 70)
    before = ledger_state(store)
    for command in ("explain", "query"):
        res = invoke(command, "--store", store, *PRIVATE_KEY, *budget, "--delta", delta)
        assert res.exit_code == 64, (command, res.output)
        assert "delta" in res.output and "bug" not in res.output, res.output
    assert ledger_state(store) == before


def test_smallest_certifiable_selection_delta_still_releases(store):
    res = invoke("explain", "--store", store, *PRIVATE_KEY, "--epsilon", "1", "--delta", "2e-16")
    assert res.exit_code == 0, res.output
