"""The plan is tested exactly: key handling, bounds, sensitivities, scales, thresholds, budget split,
and every validation error (raised before anything is charged)."""

from __future__ import annotations

import math
import re

import pytest

from dplogs.engine.plan import Aggregation, Bins, Cmp, KeyKind, KeySpec, Query
from dplogs.engine.planner import plan_query
from dplogs.engine.sql import parse_sql
from dplogs.errors import PrivacyParameterError, QueryError
from dplogs.privacy.bounds import Clamp
from dplogs.privacy.mechanisms import Mechanism
from dplogs.schema import ALIASES, FIELDS

WINDOW = {"start": "2026-11-01", "end": "2026-11-08"}


def plan(*aggs, keys=(), unit="user.name", policy="month", defaults=None, **kw):
    q = Query(aggregations=tuple(aggs), keys=tuple(KeySpec(k) if isinstance(k, str) else k for k in keys), **{**WINDOW, **kw})
    return plan_query(q, unit=unit, window_policy=policy, defaults=defaults)


def test_public_keys_and_grid():
    p = plan(Aggregation.count(), keys=[KeySpec("@timestamp", bucket="day"), "event.outcome"],
             epsilon=1.0, max_groups=2, max_rows_per_group=3)
    assert [k.kind for k in p.keys] == [KeyKind.TIME, KeyKind.ENUM]
    assert p.grid_size == 7 * 3
    assert p.selection is None and p.loss.delta == 0


def test_declared_key_is_public_and_coerced_to_dtype():
    p = plan(Aggregation.count(), keys=["http.response.status_code"], declared={"http.response.status_code": ["200", 404]},
             epsilon=1.0, max_groups=1, max_rows_per_group=1)
    assert p.keys[0].kind is KeyKind.DECLARED and p.keys[0].values == (200, 404)


def test_laplace_count_scale_and_sensitivity_from_bounds():
    p = plan(Aggregation.count(), keys=["event.outcome"], epsilon=0.5, max_groups=4, max_rows_per_group=3,
             declared={"event.outcome": ["a", "b", "c", "d", "e"]})
    (c,) = p.columns
    assert c.noise.mechanism is Mechanism.LAPLACE and c.noise.integer
    assert c.noise.sensitivity == 12 and c.noise.scale == pytest.approx(24.0)
    assert p.loss.epsilon == pytest.approx(0.5)


def test_gaussian_count_uses_l2_and_rho():
    p = plan(Aggregation.count(), keys=[KeySpec("@timestamp", bucket="day")], rho=0.5, max_groups=4, max_rows_per_group=3)
    (c,) = p.columns
    assert c.noise.sensitivity == pytest.approx(math.sqrt(4) * 3)
    assert c.noise.scale == pytest.approx(6.0 / math.sqrt(2 * 0.5))
    assert p.loss.rho == pytest.approx(0.5) and p.loss.epsilon == 0


def test_budget_split_and_shared_columns():
    # the count and the ratio's denominator are one statistic (one draw): shares = rows, matches, sum
    p = plan(Aggregation.count(), Aggregation.ratio(Cmp("event.outcome", "=", "failure")), Aggregation.sum("source.bytes"),
             keys=["event.outcome"], epsilon=1.5, max_groups=2, max_rows_per_group=5,
             clamps={"source.bytes": Clamp(lo=-10, hi=100)})
    assert p.shares == 3
    sources = {c.source: c for c in p.columns}
    assert set(sources) == {"rows", "sum_r0", "sum_v0"}
    assert all(c.noise.loss.epsilon == pytest.approx(0.5) for c in p.columns)
    assert sources["sum_v0"].noise.sensitivity == 2 * 5 * 100  # L0·L∞·max(|lo|,|hi|)
    assert sources["sum_r0"].noise.sensitivity == 10 and not sources["sum_r0"].noise.integer
    assert p.loss.epsilon == pytest.approx(1.5)


def test_private_key_selection_threshold_and_delta():
    p = plan(Aggregation.count(), Aggregation.units(), keys=["source.ip"], epsilon=1.0, delta=1e-6,
             max_groups=3, max_rows_per_group=2)
    assert p.keys[0].kind is KeyKind.PRIVATE
    # units come from the selection's noisy counts: shares = rows + selection
    assert p.shares == 2 and [c.source for c in p.columns] == ["rows"]
    s = p.selection
    assert s.scale == pytest.approx(3 / 0.5)  # L1 of distinct-unit counts = L0
    assert 0 < s.loss.delta <= 1e-6 and s.loss.epsilon == pytest.approx(0.5)
    # the threshold is the smallest meeting delta: one lower would exceed it
    from dplogs.privacy.selection import _true_delta

    assert _true_delta(s.mechanism, s.scale, s.threshold - 1, 3) > 1e-6
    assert p.loss.delta == s.loss.delta


def test_private_key_without_delta_says_how_to_fix():
    with pytest.raises(PrivacyParameterError, match="pass --delta"):
        plan(Aggregation.count(), keys=["source.ip"], epsilon=1.0, max_groups=1, max_rows_per_group=1)


def test_missing_budget_is_an_error_and_missing_bounds_are_chosen_with_dp():
    p = plan(Aggregation.count(), keys=["event.outcome"], epsilon=1.0, max_rows_per_group=1)
    assert p.choice.names() == ["max_groups"] and p.loss.epsilon == pytest.approx(1.0)
    m = plan(Aggregation.mean("source.bytes"), epsilon=1.0, max_groups=1, max_rows_per_group=1)
    assert m.choice.names() == ["clamp:source.bytes"]
    with pytest.raises(PrivacyParameterError, match="between 0 and 1"):
        plan(Aggregation.count(), keys=["event.outcome"], epsilon=1.0, bound_share=1.5)
    with pytest.raises(PrivacyParameterError, match="--epsilon"):
        plan(Aggregation.count(), max_groups=1, max_rows_per_group=1)
    with pytest.raises(PrivacyParameterError, match="--rho"):
        plan(Aggregation.count(), mechanism="gaussian", epsilon=1.0, max_groups=1, max_rows_per_group=1)


def test_bounds_and_clamps_from_manifest_defaults():
    defaults = {"max_groups": 3, "max_rows_per_group": 2, "clamp": {"source.bytes": [0, 50]}}
    p = plan(Aggregation.sum("source.bytes"), keys=["event.outcome"], epsilon=1.0, defaults=defaults)
    assert (p.bounds.max_groups, p.bounds.max_rows_per_group) == (3, 2)
    assert p.clamps["source.bytes"] == Clamp(lo=0, hi=50)
    assert p.columns[0].noise.sensitivity == 3 * 2 * 50


def test_window_required_and_budget_windows():
    q = Query(aggregations=(Aggregation.count(),), epsilon=1.0, max_groups=1, max_rows_per_group=1)
    with pytest.raises(QueryError, match="--start and --end"):
        plan_query(q, unit="user.name", window_policy="month")
    p = plan(Aggregation.count(), epsilon=1.0, max_groups=1, max_rows_per_group=1, policy="week")
    assert p.budget_windows == ("2026-W44", "2026-W45")  # Sun 1 Nov is in W44, the rest in W45


def test_grid_too_large_is_refused():
    with pytest.raises(QueryError, match="coarser --bucket"):
        plan(Aggregation.count(), keys=[KeySpec("@timestamp", bucket="minute"), "event.category"],
             epsilon=1.0, max_groups=1, max_rows_per_group=1, end="2026-12-31")


def test_quantile_bins_default_from_clamp_and_explicit_bins():
    p = plan(Aggregation.quantile_set("source.bytes", [0.5, 0.99]), epsilon=1.0, max_groups=1, max_rows_per_group=1,
             clamps={"source.bytes": Clamp(lo=0, hi=1e6)})
    b = p.bins["source.bytes"]
    assert b.n == 64 and b.edges[0] == 0 and b.edges[-1] == 1e6
    p2 = plan(Aggregation.histogram("source.bytes"), epsilon=1.0, max_groups=1, max_rows_per_group=1,
              bins={"source.bytes": Bins((0, 10, 20))})
    assert p2.bins["source.bytes"].edges == (0.0, 10.0, 20.0) and p2.clamps == {}


@pytest.mark.parametrize("make", [
    lambda: Cmp("no.such", "=", 1),
    lambda: Cmp("source.port", "=", "abc"),
    lambda: Aggregation.sum("user.name"),
    lambda: Aggregation.quantile_set("source.bytes", [1.5]),
    lambda: KeySpec("@timestamp"),
    lambda: KeySpec("@timestamp", bucket="year"),
    lambda: Bins((1, 1, 2)),
    lambda: Query(aggregations=()),
    lambda: Query(aggregations=(Aggregation.count(), Aggregation.count())),
    lambda: Query(aggregations=(Aggregation.count(),), start="2026-11-02", end="2026-11-01"),
    lambda: Query(aggregations=(Aggregation.count(),), top_k=3),
])
def test_invalid_queries_raise_query_errors(make):
    with pytest.raises(QueryError):
        make()


def test_unknown_column_error_names_known_columns():
    with pytest.raises(QueryError, match="did you mean: event.action.*known columns: @timestamp"):
        Cmp("event.acton", "=", "x")


@pytest.mark.parametrize(("asked", "stored"), [
    ("winlog.event_id", "event.code"), ("EventID", "event.code"), ("src_ip", "source.ip"), ("id.orig_h", "source.ip"),
    ("status", "http.response.status_code"), ("Computer", "host.name"), ("user", "user.name"),
    ("LogonType", "winlog.logon.type"), ("sourceIPAddress", "source.ip"), ("url.path", "url.original"),
])
def test_a_column_named_as_other_tools_name_it_points_at_the_store_field(asked, stored):
    """A SOC engineer's first guesses (Winlogbeat's winlog.event_id, Splunk's src_ip, Zeek's
    id.orig_h) found no suggestion, or a wrong one (winlog.event_id -> nothing at all)."""
    with pytest.raises(QueryError, match=rf"unknown column '{re.escape(asked)}': dplogs stores it as {re.escape(stored)} "):
        parse_sql(f"SELECT {asked}, COUNT(*) FROM logs GROUP BY 1")


def test_grouping_by_a_bare_time_bucket_says_how_to_make_one():
    """`GROUP BY day` (a SOC engineer's first try at failed logins per day) was 'unknown column
    'day'' with the column list and no word of date_trunc or --bucket."""
    with pytest.raises(QueryError, match=r"unknown column 'day'; time buckets are expressions: "
                                         r"date_trunc\('day', \"@timestamp\"\) AS day .* or --bucket day"):
        parse_sql("SELECT COUNT(*) FROM logs WHERE event.outcome = 'failure' GROUP BY day")
    query = parse_sql("SELECT date_trunc('day', \"@timestamp\") AS day, COUNT(*) FROM logs GROUP BY day")
    assert [(k.column, k.bucket) for k in query.keys] == [("@timestamp", "day")]


def test_aliases_name_one_field_each_and_no_store_field():
    from dplogs.schema.ecs import _CATALOGUE

    aliases = [a.lower() for f in _CATALOGUE for a in f.aliases]
    assert len(aliases) == len(set(aliases)) == len(ALIASES)
    assert not set(aliases) & {name.lower() for name in FIELDS}


# -- L0 is what a unit can reach: min(max_groups, groups per budget window) ----------------------


@pytest.mark.parametrize("keys, policy, reach", [
    ((), "month", 1),                                                   # a scalar: one group
    (("event.outcome",), "month", 3),                                   # ECS enumeration
    ((KeySpec("@timestamp", bucket="day"),), "month", 7),               # 7 days of the window
    ((KeySpec("@timestamp", bucket="day"),), "week", 7),
    ((KeySpec("@timestamp", bucket="day"),), "day", 1),                # one day per day window
    ((KeySpec("@timestamp", bucket="hour"), "event.outcome"), "day", 72),
    ((KeySpec("@timestamp", bucket="week"),), "month", 2),              # Nov 1-8 meets two ISO weeks
    (("source.ip",), "month", None),                                    # private: unknown
])
def test_reachable_groups_per_window(keys, policy, reach):
    kw = {"delta": 1e-6} if reach is None else {}
    p = plan(Aggregation.count(), keys=keys, policy=policy, epsilon=1.0, max_groups=10, max_rows_per_group=5, **kw)
    assert p.reach[""] == reach
    l0 = 10 if reach is None else min(10, reach)
    assert p.bounds_for("").max_groups == l0
    assert p.columns[0].noise.sensitivity == l0 * 5


def test_scalar_statistics_have_the_sensitivity_of_one_group():
    p = plan(Aggregation.count(), Aggregation.units(), Aggregation.sum("source.bytes"), epsilon=3.0, max_groups=10,
             max_rows_per_group=5, clamps={"source.bytes": Clamp(lo=0, hi=100)})
    sens = {c.source: c.noise.sensitivity for c in p.columns}
    assert sens == {"rows": 5, "units": 1, "sum_v0": 500}  # L∞, 1, L∞·max|clamp|
    g = plan(Aggregation.count(), mechanism="gaussian", rho=0.5, max_groups=9, max_rows_per_group=3)
    assert g.columns[0].noise.sensitivity == 3  # L2 = √1·L∞


def test_histogram_reach_multiplies_by_bins():
    p = plan(Aggregation.histogram("source.bytes"), keys=["event.outcome"], epsilon=1.0, max_groups=100,
             max_rows_per_group=2, bins={"source.bytes": Bins.spaced(0, 1000, 8)})
    assert p.reach == {"": 3, "source.bytes": 24}
    assert p.column("source.bytes", "rows").noise.sensitivity == 24 * 2
