"""Audits of the unit rule (dplogs/schema/units.py) on the engine's real release path: the
neighbour that removes the shared unattributed unit (the worst case: it is the heaviest
contributor) stays within the claim, and a path that treats those rows per-row is caught."""

from __future__ import annotations

import datetime as dt

import polars as pl

from dplogs.audit.engine import Victim, audit_plan, heaviest_unit
from dplogs.backends.polars_backend import PolarsBackend
from dplogs.engine import execute
from dplogs.engine.api import Engine
from dplogs.engine.plan import Aggregation
from dplogs.schema import conform
from dplogs.schema.units import PER_ROW, UnitRule
from tests.audit.audit_paths import assert_within_claim

T = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
RULE = UnitRule(("user.name", "host.name"))


def _plan(rule: UnitRule = RULE):
    eng = Engine(scan=lambda: None, privacy_unit=rule, budget_window="month", ledger=None)
    return eng.build(Aggregation.count(), keys=["event.outcome"], epsilon=1.0, max_groups=1, max_rows_per_group=2,
                     start="2026-11-01", end="2026-12-01").plan


def _store(unattributed_rows: int = 12) -> pl.LazyFrame:
    """30 users with one failure each, a host unit with one, and ``unattributed_rows`` failures
    without any identity (one shared unit)."""
    users = [f"u{i}" for i in range(30)] + [None] + [None] * unattributed_rows
    hosts = ["h"] * 30 + ["web1"] + [None] * unattributed_rows
    n = len(users)
    return conform(pl.LazyFrame({"@timestamp": [T] * n, "user.name": users, "host.name": hosts,
                                 "event.outcome": ["failure"] * n}))


def test_removing_the_shared_unit_stays_within_the_claim():
    plan, d = _plan(), _store()
    victim = heaviest_unit(plan, d)
    assert victim == Victim(unit=RULE.shared_value, window=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    d_prime = victim.remove(plan, d)
    assert d_prime.collect().height == 31
    r = audit_plan(plan, PolarsBackend(), d, d_prime, trials=30_000, name="count, shared unit removed")
    assert_within_claim(r)
    assert r.epsilon_lb >= 0.8, r.summary()  # tight: the shared unit moves the count by the full L∞


def test_shared_rows_treated_per_row_is_caught(monkeypatch):
    """The planted bug: unattributed rows each their own unit although the store's rule says
    shared (today's behaviour before the rule): the 12 rows count in full against a sensitivity of 2."""
    plan, d = _plan(), _store()
    d_prime = Victim(unit=RULE.shared_value, window=dt.datetime(2026, 11, 1, tzinfo=dt.UTC)).remove(plan, d)
    monkeypatch.setattr(execute, "bounding_unit", lambda p: UnitRule(p.unit.fields, PER_ROW).expr())
    r = audit_plan(plan, PolarsBackend(), d, d_prime, trials=10_000, name="BROKEN: shared rows per-row")
    assert r.violated, r.summary()
