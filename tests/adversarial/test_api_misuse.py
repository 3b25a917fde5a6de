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


def test_a_prepared_plan_cannot_be_edited_between_explain_and_release(store):
    # q.plan.clamps was a plain dict: editing it after explain() made the release disclose (and the
    # Spark rows use) a clamp of [0, 60000] while it was charged and computed for [0, 10]
    from dplogs.privacy.bounds import Clamp

    q = Engine.open(store).sql("SELECT SUM(source.port) AS s FROM logs", epsilon=0.5,
                               clamp={"source.port": (0, 10)}, **WINDOW)
    for mapping in (q.plan.clamps, q.plan.bins, q.plan.reach, q.plan.query.clamps, q.plan.query.declared,
                    q.plan.query.bins):
        with pytest.raises(TypeError):
            mapping["source.port"] = Clamp(lo=0, hi=60000)
    release = q.release(caller="test")
    assert release.privacy["clamps"] == {"source.port": [0.0, 10.0]}


def test_an_idempotency_key_reused_for_another_query_is_refused_not_answered_with_the_first(store):
    # before, the second query got the first one's cells back as its answer (exit 0, "replayed")
    from dplogs.errors import UsageError

    eng = Engine.open(store)
    first = eng.sql("SELECT event.outcome, COUNT(*) FROM logs GROUP BY 1", epsilon=0.1, **WINDOW).release(
        caller="test", idempotency_key="nightly")
    before = ledger_state(store)
    for other in ("SELECT COUNT(*) FROM logs", "SELECT event.outcome, COUNT(*) FROM logs WHERE user.name = 'root' GROUP BY 1",
                  "SELECT event.outcome, COUNT(DISTINCT user.name) FROM logs GROUP BY 1"):
        with pytest.raises(UsageError, match="another query"):
            eng.sql(other, epsilon=0.1, **WINDOW).release(caller="test", idempotency_key="nightly")
    with pytest.raises(UsageError, match="another query"):  # the same question over another window
        eng.sql("SELECT event.outcome, COUNT(*) FROM logs GROUP BY 1", epsilon=0.1,
                **{**WINDOW, "start": "2024-03-02"}).release(caller="test", idempotency_key="nightly")
    assert ledger_state(store) == before
    again = eng.sql("SELECT event.outcome, COUNT(*) FROM logs GROUP BY 1", epsilon=0.1, **WINDOW).release(
        caller="test", idempotency_key="nightly")
    assert again.privacy["replayed"] and again.to_polars().equals(first.to_polars())


def test_store_defaults_take_numpy_integers(store, tmp_path):
    # save_defaults(max_groups=np.int64(5)) validated it, then failed writing the manifest (TypeError, 70)
    import json
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    eng = Engine.open(copy)
    eng.save_defaults(max_groups=np.int64(5), max_rows_per_group=np.int32(3))
    assert json.loads((copy / "manifest.json").read_text())["defaults"] == {"max_groups": 5, "max_rows_per_group": 3}
    assert Engine.open(copy).sql("SELECT COUNT(*) FROM logs", epsilon=0.1, start="2024-03-01",
                                 end="2024-04-01").plan.bounds.max_rows_per_group == 3


def test_numpy_integers_are_counts_everywhere(store):
    # max_groups took np.int64(2), but top_k and a histogram's n refused np.int64 as "not an integer"
    eng = Engine.open(store)
    top = eng.sql("SELECT event.outcome, COUNT(*) AS c FROM logs GROUP BY 1 ORDER BY c DESC LIMIT 1", epsilon=0.1,
                  top_k=np.int64(2), **WINDOW)
    assert top.plan.query.top_k == 2 and type(top.plan.query.top_k) is int
    hist = eng.sql("SELECT HISTOGRAM(source.port) FROM logs", epsilon=0.1,
                   bins={"source.port": {"lo": 0, "hi": 65536, "n": np.int64(4)}}, **WINDOW)
    assert hist.plan.bins["source.port"].n == 4
    with pytest.raises(Exception, match="top-k"):
        eng.sql("SELECT event.outcome, COUNT(*) AS c FROM logs GROUP BY 1 ORDER BY c DESC LIMIT 1", epsilon=0.1,
                top_k=np.bool_(True), **WINDOW)
