"""The Python API misused the way an embedding pipeline might: numbers of every Python and numpy
kind as privacy parameters and bounds. Each is read as the number it is, or refused with the
documented error (exit 64 on the CLI) before anything is charged; never an internal error."""

from __future__ import annotations

import numpy as np
import pytest

from dplogs.engine.api import Engine
from dplogs.errors import PrivacyParameterError
from tests.adversarial.conftest import invoke, ledger_state

WINDOW = {"start": "2024-03-01", "end": "2024-04-01", "max_groups": 1, "max_rows_per_group": 2}
HUGE = 10**400  # an int no float holds


@pytest.mark.parametrize("option", [
    {"epsilon": HUGE}, {"epsilon": -HUGE}, {"rho": HUGE}, {"delta": HUGE},
    {"epsilon": 0.5, "clamp": {"source.port": (0, HUGE)}},
    {"epsilon": 0.5, "clamp": {"source.port": (-HUGE, 0)}},
])
def test_an_integer_beyond_float_is_a_privacy_parameter_error(store, option):
    # float(10**400) overflows; the check then called math.copysign(inf, 10**400), which converts
    # its second argument to float as well: OverflowError, an internal error (exit 70)
    before = ledger_state(store)
    eng = Engine.open(store)
    with pytest.raises(PrivacyParameterError):
        eng.sql("SELECT SUM(source.port) FROM logs", **{**WINDOW, **option})
    assert ledger_state(store) == before


def test_a_query_file_with_an_integer_beyond_float_is_refused_64(store, tmp_path):
    path = tmp_path / "q.toml"
    path.write_text(f'name = "q"\nsql = "SELECT COUNT(*) FROM logs"\n[privacy]\nepsilon = {HUGE}\n')
    before = ledger_state(store)
    res = invoke("query", path, "--store", store, "--start", "2024-03-01", "--end", "2024-04-01",
                 "--max-groups", "1", "--max-rows-per-group", "1")
    assert res.exit_code == 64, res.output
    assert "epsilon" in res.output
    assert ledger_state(store) == before


@pytest.mark.parametrize("value", [np.float64(0.5), np.float32(0.5), np.int64(1)])
def test_numpy_numbers_are_read_as_the_numbers_they_are(store, value):
    release_plan = Engine.open(store).sql("SELECT COUNT(*) FROM logs", epsilon=value, **WINDOW).plan
    assert release_plan.loss.epsilon == pytest.approx(float(value))


@pytest.mark.parametrize("value", [np.bool_(True), np.float64("nan"), np.array([0.5])])
def test_numpy_values_that_are_not_a_budget_are_refused(store, value):
    with pytest.raises(PrivacyParameterError):
        Engine.open(store).sql("SELECT COUNT(*) FROM logs", epsilon=value, **WINDOW)
