"""Bounds left out of a query are chosen from the data with DP (privacy/bound_choice.py): the plan
reserves the whole budget, the choice's histograms have sensitivity 1 under the per-window
neighbour, the ledger records one composed loss, and the choice finds bounds the data supports."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from dplogs.audit.engine import audit_plan
from dplogs.backends.base import get_backend
from dplogs.engine import Aggregation, time_bucket
from dplogs.engine.api import Engine
from dplogs.engine.execute import profile
from dplogs.privacy.bound_choice import VALUE_CANDIDATES, ChoiceStep, choose, noisy_tails, plan_choice
from dplogs.privacy.charge import Charge
from dplogs.privacy.loss import PrivacyLoss
from tests.audit.audit_paths import assert_within_claim
from tests.audit.engine_data import WINDOW, neighbours


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.timezone.utc)


def frame(units: int = 3000, rows: int = 4, value: float = 1000.0) -> pl.DataFrame:
    """``units`` users, each with exactly ``rows`` failed logins on one day of Nov 2-4, each worth ``value`` bytes."""
    ts, users = [], []
    for i in range(units):
        for j in range(rows):
            ts.append(utc(2026, 11, 2 + i % 3, 10, j))
            users.append(f"u{i}")
    return pl.DataFrame({"@timestamp": ts, "user.name": users, "source.bytes": [value] * len(ts),
                         "event.outcome": ["failure"] * len(ts)})


def test_plan_reserves_the_whole_budget_and_explains_the_choice(make_engine):
    eng = make_engine(frame(units=30))
    q = eng.build(Aggregation.count(), Aggregation.sum("source.bytes"), keys=[time_bucket("day")], epsilon=1.0,
                  start="2026-11-01", end="2026-11-08")
    plan = q.plan
    assert plan.choice.names() == ["max_groups", "max_rows_per_group", "clamp:source.bytes"]
    assert plan.loss.epsilon == pytest.approx(1.0) and plan.choice.loss.epsilon == pytest.approx(0.1)
    assert sum(c.noise.loss.epsilon for c in plan.columns) == pytest.approx(0.9)
    assert plan.choice.steps[0].candidates == (1.0, 2.0, 4.0, 7.0)  # a unit reaches at most 7 days
    text = q.explain().text
    assert "to be chosen at release" in text and "10% of the budget" in text


def test_one_reachable_group_needs_no_choice(make_engine):
    eng = make_engine(frame(units=30))
    plan = eng.build(Aggregation.count(), epsilon=1.0, max_rows_per_group=2, **WINDOW).plan
    assert plan.choice is None and plan.bounds.max_groups == 1


def test_choice_histograms_move_by_one_under_the_window_neighbour(make_engine):
    """Removing one unit's events in one budget window changes each profile histogram by exactly
    one in one bin: the sensitivity the choice's noise is calibrated to."""
    d = frame(units=40).vstack(pl.DataFrame({
        "@timestamp": [utc(2026, 11, 30, 23), utc(2026, 12, 1, 1), utc(2026, 12, 1, 2)], "user.name": ["u1"] * 3,
        "source.bytes": [5e6] * 3, "event.outcome": ["failure"] * 3,
    }))
    d_prime = d.filter(~((pl.col("user.name") == "u1") & (pl.col("@timestamp") >= utc(2026, 12, 1))))
    plans = [make_engine(x).build(Aggregation.sum("source.bytes"), keys=[time_bucket("day")], epsilon=1.0,
                                  start="2026-11-01", end="2026-12-08").plan for x in (d, d_prime)]
    a, b = (profile(p, make_engine(x).scan()) for p, x in zip(plans, (d, d_prime)))
    assert set(a) == {"max_groups", "max_rows_per_group", "clamp:source.bytes"}
    for name in a:
        assert int(np.abs(a[name] - b[name]).sum()) == 1, name


def test_release_charges_one_composed_loss_and_discloses_the_choice(make_engine):
    eng = make_engine(frame(units=3000))
    rel = eng.build(Aggregation.count(), Aggregation.sum("source.bytes"), keys=[time_bucket("day")], epsilon=1.0,
                    start="2026-11-01", end="2026-11-08").release(caller="test")
    (entry,) = eng.ledger.history()
    assert entry.loss.epsilon == pytest.approx(1.0) and rel.privacy["epsilon"] == pytest.approx(1.0)
    choice = rel.privacy["bound_choice"]
    assert choice["epsilon"] == pytest.approx(0.1) and choice["when"].startswith("chosen at release")
    # every user has 1 day, 4 rows, 1000 bytes: the choice finds bounds that keep all of it
    assert choice["values"] == {"max_groups": 1.0, "max_rows_per_group": 4.0, "clamp:source.bytes": 1024.0}
    assert rel.privacy["bounds"]["max_rows_per_group"] == 4
    json.dumps(rel.privacy)  # the disclosure is JSON-ready


@pytest.mark.slow
def test_chosen_bounds_are_found_in_most_runs(make_engine):
    """Statistical: 20 releases at ε = 1 over 3000 users; the chosen L∞ keeps every row."""
    eng = make_engine(frame(units=3000, rows=6))
    q = eng.build(Aggregation.count(), keys=[time_bucket("day")], epsilon=1.0, max_groups=1,
                  start="2026-11-01", end="2026-11-08")
    got = [q.release(caller="test").privacy["bound_choice"]["values"]["max_rows_per_group"] for _ in range(20)]
    assert sum(v == 8.0 for v in got) >= 18, got


def test_noisy_tails_read_pure_noise_as_empty():
    step = plan_choice(["clamp:x"], mechanism="laplace", epsilon=0.2).steps[0]
    counts = step.bins(np.full(500, 3000.0))  # 500 units all in one bin
    charge = Charge.for_audit(PrivacyLoss(epsilon=step.noise.loss.epsilon * 200))
    chosen = []
    for _ in range(200):
        tau, detail = choose(step, counts, charge=charge, noise_cost=lambda t: 0.01 * t)
        chosen.append(tau)
    # the one real tail (500 units above 1024) is found; noise never pushes the clamp far out
    assert max(chosen) <= 4096.0 and sum(t == 4096.0 for t in chosen) >= 195, sorted(set(chosen))
    assert noisy_tails(np.zeros(len(VALUE_CANDIDATES) + 1), step.noise).sum() == 0


@pytest.mark.slow
def test_audit_of_a_release_with_chosen_bounds():
    d, d_prime = neighbours(victim_rows=5)
    eng = Engine(scan=lambda: None, privacy_unit="user.name", budget_window="month", ledger=None)
    plan = eng.build(Aggregation.count(), keys=["event.outcome"], epsilon=1.0, **WINDOW).plan
    assert plan.choice is not None
    r = audit_plan(plan, get_backend("polars"), d, d_prime, trials=1_000, name="count with chosen bounds")
    assert_within_claim(r)
