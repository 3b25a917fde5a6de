"""Empirical audits of the engine's real release path (planner → polars backend bounding with a
fresh seed → noise/selection/post-processing): ε_lb never exceeds the plan's claimed loss, and
the Laplace count is tight. See tests/audit/test_release_audits.py for the power calculation."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from dplogs.audit.engine import Victim, audit_plan, claimed_loss, heaviest_unit
from dplogs.backends.base import get_backend
from dplogs.backends.polars_backend import PolarsBackend
from dplogs.engine import execute, time_bucket
from dplogs.engine.api import Engine
from dplogs.engine.plan import Aggregation
from dplogs.privacy import PrivacyLoss
from dplogs.privacy.accounting import zcdp_to_epsilon
from tests.audit.audit_paths import assert_within_claim
from tests.audit.engine_data import TWO_WINDOWS, VICTIM, WINDOW, neighbours, window_neighbours

BACKEND = get_backend("polars")
ENGINE = Engine(scan=lambda: None, privacy_unit="user.name", budget_window="month", ledger=None)
BOUNDS = {"max_groups": 1, "max_rows_per_group": 2}


def _plan(*aggs, keys=("event.outcome",), **options):
    return ENGINE.build(*aggs, keys=list(keys), **BOUNDS, **WINDOW, **options).plan


def test_claimed_loss_conversions():
    assert claimed_loss(PrivacyLoss(epsilon=0.7)) == (0.7, 0.0)
    eps, delta = claimed_loss(PrivacyLoss(rho=0.5), delta=1e-5)
    assert delta == 1e-5 and eps == pytest.approx(zcdp_to_epsilon(0.5, 1e-5))


def test_engine_laplace_count_is_tight():
    d, d_prime = neighbours(victim_rows=5)  # 5 rows, L∞ = 2: the bound must cut the victim
    r = audit_plan(_plan(Aggregation.count(), epsilon=1.0), BACKEND, d, d_prime, trials=100_000, name="engine count")
    assert_within_claim(r)
    assert r.epsilon_lb >= 0.9, r.summary()


def test_engine_gaussian_count():
    d, d_prime = neighbours(victim_rows=5)
    plan = _plan(Aggregation.count(), mechanism="gaussian", rho=0.5)
    r = audit_plan(plan, BACKEND, d, d_prime, trials=10_000, delta=1e-5, name="engine gaussian count")
    assert_within_claim(r)
    assert r.epsilon_lb > 0.5, r.summary()


def test_engine_clamped_sum():
    d, d_prime = neighbours(victim_rows=5, victim_bytes=1e9)
    plan = _plan(Aggregation.sum("source.bytes"), epsilon=1.0, clamp={"source.bytes": (0, 100)})
    r = audit_plan(plan, BACKEND, d, d_prime, trials=10_000, name="engine sum")
    assert_within_claim(r)
    assert r.epsilon_lb > 0.6, r.summary()


def test_engine_distinct_units():
    d, d_prime = neighbours(victim_rows=5)
    r = audit_plan(_plan(Aggregation.units(), epsilon=1.0), BACKEND, d, d_prime, trials=20_000, name="engine units")
    assert_within_claim(r)
    assert r.epsilon_lb > 0.85, r.summary()


@pytest.mark.slow
def test_engine_quantiles():
    """Quantiles are post-processed from a noisy histogram: the audit draws that histogram's noise
    (vectorised on the seed-independent bounded histogram); that the quantiles read nothing else
    is checked in test_path_audits.py."""
    d, d_prime = neighbours(victim_rows=5, victim_bytes=99.0)
    plan = _plan(Aggregation.quantile_set("source.bytes", [0.5, 0.9]), keys=(), epsilon=1.0,
                 bins={"source.bytes": {"lo": 0, "hi": 100, "n": 16}})
    r = audit_plan(plan, BACKEND, d, d_prime, trials=2_000, name="engine quantiles")
    assert_within_claim(r)


@pytest.mark.slow
def test_engine_partition_selection():
    """A private key (host.name) used by the victim and by threshold − 1 other users: the victim
    decides whether the key is released. The output is (released?, noisy count) of that key."""
    plan = _plan(Aggregation.count(), keys=("host.name",), epsilon=1.0, delta=1e-6)
    assert plan.private and plan.selection is not None
    share = plan.selection.threshold - 1
    d, d_prime = neighbours(victim_rows=5, others=share + 10, host_share=share)
    r = audit_plan(plan, BACKEND, d, d_prime, trials=4_000, track=[("h-victim",)], name="engine selection")
    assert_within_claim(r)
    assert r.epsilon_lb > 0.2, r.summary()


# -- the per-window neighbour (remove one budget window's events of a unit, keep its others) ----

FEB27, MAR1 = 2, 4  # output cells of the day-bucket grid Feb 25 ... Mar 5


def _across_month_end():
    return ENGINE.build(Aggregation.count(), keys=[time_bucket("day")], max_groups=1, max_rows_per_group=1,
                        epsilon=1.0, **TWO_WINDOWS).plan


def _quadrant(out):
    """The victim's February cell below its D′ value and its March cell above: where a path that
    bounds over the whole range puts ½ + ½e² times the D′ mass (ε up to 1.43 at a claim of 1)."""
    return np.minimum(out[:, MAR1] - 2, 1 - out[:, FEB27])


def test_count_across_a_month_end_holds_for_the_window_neighbour():
    d, d_prime = window_neighbours()
    plan = _across_month_end()
    assert plan.budget_windows == ("2026-02", "2026-03")
    for statistic in (None, _quadrant):
        r = audit_plan(plan, BACKEND, d, d_prime, trials=100_000, statistic=statistic, name="count across month end")
        assert_within_claim(r)
    assert r.epsilon_lb >= 0.8, r.summary()  # the quadrant test still sees the March cell move


@pytest.mark.slow
def test_whole_range_bounding_is_caught_by_the_window_neighbour(monkeypatch):
    """The planted bug: the engine as it was, bounding each unit over the whole query range."""
    monkeypatch.setattr(execute, "bounding_unit", lambda plan: plan.unit.expr())
    d, d_prime = window_neighbours()
    r = audit_plan(_across_month_end(), PolarsBackend(engine="in-memory"), d.collect().lazy(), d_prime.collect().lazy(),
                   trials=5_000, statistic=_quadrant, name="BROKEN: whole-range bounding")
    assert r.violated, r.summary()


def test_the_shipped_neighbour_removes_one_window_of_the_heaviest_unit():
    d, _ = window_neighbours(march_days=3)
    plan = _across_month_end()
    victim = heaviest_unit(plan, d)
    assert victim == Victim(unit=plan.unit.value("user.name", VICTIM), window=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    left = victim.remove(plan, d).filter(pl.col("user.name") == VICTIM).collect()
    assert left["@timestamp"].to_list() == [dt.datetime(2026, 2, 27, 10, tzinfo=dt.UTC)]
    assert victim.remove(plan, d).collect().height == d.collect().height - 3


def test_scalar_count_charged_for_one_group_holds():
    """A scalar count asks L0 = 5 but one unit can reach one group: sensitivity L∞ = 2, not 10."""
    d, d_prime = neighbours(victim_rows=5)
    plan = ENGINE.build(Aggregation.count(), max_groups=5, max_rows_per_group=2, epsilon=1.0, **WINDOW).plan
    assert plan.columns[0].noise.sensitivity == 2
    r = audit_plan(plan, BACKEND, d, d_prime, trials=100_000, name="scalar count, reachable L0 = 1")
    assert_within_claim(r)
    assert r.epsilon_lb >= 0.9, r.summary()
