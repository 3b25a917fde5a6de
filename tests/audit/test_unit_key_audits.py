"""Grouping by the unit's own field (``GROUP BY user.name`` on a ``user.name`` store): each unit
takes one value of that key, so the plan charges L0 = 1 whatever ``max_groups`` says
(``planner.groups_per_window``). Audited on the real release path with the heaviest unit removed,
and a planted bug (a key that is NOT constant per unit treated as if it were) is caught."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from dplogs.audit.engine import audit_plan, heaviest_unit
from dplogs.backends.polars_backend import PolarsBackend
from dplogs.engine import planner
from dplogs.engine.api import Engine
from dplogs.engine.plan import Aggregation
from dplogs.schema import conform
from tests.audit.audit_paths import assert_within_claim

T = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
USERS = [f"u{i}" for i in range(5)]
HOSTS = [f"h{i}" for i in range(6)]


def _plan(key: str):
    eng = Engine(scan=lambda: None, privacy_unit="user.name", budget_window="month", ledger=None)
    return eng.build(Aggregation.count(), keys=[key], epsilon=1.0, max_groups=6, max_rows_per_group=1,
                     declared={"user.name": USERS, "host.name": HOSTS},
                     start="2026-11-01", end="2026-12-01").plan


def _store() -> pl.LazyFrame:
    """Five users; u0 fails once on each of the 6 hosts, the others once on h0."""
    users = ["u0"] * len(HOSTS) + USERS[1:]
    hosts = list(HOSTS) + ["h0"] * 4
    return conform(pl.LazyFrame({"@timestamp": [T] * len(users), "user.name": users, "host.name": hosts,
                                 "event.outcome": ["failure"] * len(users)}))


def test_grouping_by_the_unit_charges_one_group():
    plan = _plan("user.name")
    (column,) = plan.columns
    assert plan.bounds.max_groups == 6 and column.noise.sensitivity == 1  # L0 1 × L∞ 1, not 6 × 1


def test_grouping_by_the_unit_stays_within_the_claim():
    plan, d = _plan("user.name"), _store()
    victim = heaviest_unit(plan, d)
    d_prime = victim.remove(plan, d)
    assert d.collect().height - d_prime.collect().height == len(HOSTS)
    r = audit_plan(plan, PolarsBackend(), d, d_prime, trials=10_000, name="count by the unit's own field")
    assert_within_claim(r)


def test_a_key_that_varies_within_a_unit_treated_as_constant_is_caught(monkeypatch):
    """The planted bug: host.name reaches 6 groups per unit, the plan charges one, and the backend
    is handed the nominal max_groups (6). (With the reachable L0 handed to the backend, as the
    engine does, the misreport alone would only cut the victim to one group: bounds are enforced
    as charged.)"""
    real = planner.groups_per_window
    monkeypatch.setattr(planner, "groups_per_window", lambda keys, *a, **k: 1 if keys and keys[0].column == "host.name"
                        else real(keys, *a, **k))
    monkeypatch.setattr(planner.Plan, "bounds_for", lambda self, grouping: self.bounds)
    plan, d = _plan("host.name"), _store()
    (column,) = plan.columns
    assert column.noise.sensitivity == 1
    d_prime = heaviest_unit(plan, d).remove(plan, d)
    r = audit_plan(plan, PolarsBackend(), d, d_prime, trials=10_000, statistic=lambda out: np.asarray(out).sum(axis=1),
                   name="BROKEN: host.name charged as one group")
    assert r.violated, r.summary()


@pytest.mark.parametrize("rule", ["user.name,host.name", "host.name,user.name"])
def test_only_the_first_chain_field_is_constant_per_unit(rule):
    """In a chain, a unit from a later field has null in the first one (first non-null rule); the
    later fields vary within units of the first, so they keep their domain."""
    eng = Engine(scan=lambda: None, privacy_unit=rule, budget_window="month", ledger=None)
    for key, l0 in (("user.name", 1 if rule.startswith("user") else 5), ("host.name", 1 if rule.startswith("host") else 5)):
        plan = eng.build(Aggregation.count(), keys=[key], epsilon=1.0, max_groups=5, max_rows_per_group=2,
                         declared={"user.name": USERS, "host.name": HOSTS}, start="2026-11-01", end="2026-12-01").plan
        assert plan.columns[0].noise.sensitivity == 2 * l0, (rule, key)
