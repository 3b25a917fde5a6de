"""Privacy-unit rules (dplogs/schema/units.py): fallback chains namespaced by field, rows without
identity as one shared unit by default (per-row only as an opt-in), the manifest and CLI that set
them, their disclosure, and the protection policy's roster applying only to units from user.name."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.engine import Aggregation, Engine
from dplogs.engine.policy import PROTECTED, Policy
from dplogs.errors import UsageError
from dplogs.ingest.store import Manifest, Store
from dplogs.privacy.testing import exact_mode
from dplogs.schema import conform
from dplogs.schema.units import PER_ROW, SHARED, UNIT_DTYPE, UnitRule

REPO = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 11, 3, 10, tzinfo=dt.UTC)
WINDOW = dict(start="2026-11-01", end="2026-12-01")
CHAIN = UnitRule(("user.name", "host.name"))


def units_of(rule: UnitRule, df: pl.DataFrame) -> list:
    return conform(df.lazy()).select(rule.expr().alias("u")).collect()["u"].to_list()


def test_first_non_null_field_namespaced_by_field():
    df = pl.DataFrame({"user.name": ["x", None, None, "x", None],
                       "host.name": ["h", "x", None, None, "h"]})
    got = units_of(CHAIN, df)
    assert got == [{"field": 0, "value": "x"}, {"field": 1, "value": "x"}, {"field": 2, "value": ""},
                   {"field": 0, "value": "x"}, {"field": 1, "value": "h"}]
    # "x" as a user and "x" as a host are two units; the user's host does not matter
    assert len({json.dumps(u, sort_keys=True) for u in got}) == 4
    # an empty host name is a value, not the shared unit (the shared unit's index is past the chain)
    assert units_of(CHAIN, pl.DataFrame({"user.name": [None], "host.name": [""]})) == [{"field": 1, "value": ""}]


def test_per_row_opt_in_and_plain_single_field():
    df = pl.DataFrame({"user.name": ["a", None], "host.name": ["h", None]})
    assert units_of(UnitRule(("user.name",), PER_ROW), df) == ["a", None]  # today's plain column
    assert units_of(UnitRule(("user.name", "host.name"), PER_ROW), df) == [{"field": 0, "value": "a"}, None]
    # one field, shared: Binary, the shared unit b"\xff" (never valid UTF-8, so never a user name)
    assert units_of(UnitRule(("user.name",)), df) == [b"a", b"\xff"]
    assert units_of(UnitRule(("user.name",)), pl.DataFrame({"user.name": ["\u00ff", "\x7f", ""]})) == [
        "\u00ff".encode(), b"\x7f", b""]
    assert conform(df.lazy()).select(CHAIN.expr()).collect_schema().dtypes() == [UNIT_DTYPE]


def test_source_of_a_row():
    df = conform(pl.DataFrame({"user.name": ["a", None, None], "host.name": ["h", "h", None]}).lazy())
    got = df.select(CHAIN.source("user.name").alias("u"), CHAIN.source("host.name").alias("h"),
                    CHAIN.source("source.ip").alias("s")).collect()
    assert got.rows() == [(True, False, False), (False, True, False), (False, False, False)]


@pytest.mark.parametrize("text, message", [
    ("user.name,user.name", "names user.name twice"),
    ("user.name,process.name", "'process.name' is not a person-like store column"),
    ("user.name,", "has an empty field"),
    ("", "has an empty field"),
])
def test_bad_rules_are_usage_errors(text, message):
    with pytest.raises(UsageError, match=message):
        UnitRule.parse(text)
    with pytest.raises(UsageError):
        UnitRule(("user.name",), "each-row")


def test_manifest_round_trip_and_old_manifests_read_as_shared(tmp_path):
    store = Store.init(tmp_path / "s", privacy_unit="user.name, host.name", unattributed=PER_ROW)
    data = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert data["privacy_unit"] == "user.name,host.name" and data["unattributed"] == "per-row"
    assert Store.open(store.path).manifest.unit_rule == UnitRule(("user.name", "host.name"), PER_ROW)
    # a manifest written before the field existed: the conservative shared rule
    old = {k: v for k, v in data.items() if k != "unattributed"}
    assert Manifest.from_json(old).unit_rule == UnitRule(("user.name", "host.name"), SHARED)
    # the rule cannot change under stored data
    with pytest.raises(UsageError, match="already has unattributed"):
        Store.init(store.path, unattributed=SHARED)
    with pytest.raises(UsageError, match="already has privacy-unit"):
        Store.init(store.path, privacy_unit="user.name")
    assert Store.init(store.path, privacy_unit="user.name,host.name", unattributed=PER_ROW).path == store.path


@pytest.mark.parametrize("value", ["user.name,user.name", "user.name,message", "user.name,,host.name"])
def test_ingest_refuses_a_bad_privacy_unit_and_writes_nothing(tmp_path, value):
    target = tmp_path / "st"
    r = CliRunner().invoke(cli, ["ingest", str(REPO / "sample_logs" / "auth.log"), "--store", str(target),
                                 "--privacy-unit", value])
    assert r.exit_code == 64, r.output
    assert "--privacy-unit" in r.output or "privacy unit" in r.output
    assert not target.exists()


def test_ingest_chain_explain_and_release_disclose_the_rule(tmp_path):
    target = tmp_path / "st"
    r = CliRunner().invoke(cli, ["ingest", str(REPO / "sample_logs" / "auth.log"), "--store", str(target),
                                 "--year", "2024", "--privacy-unit", "user.name,host.name", "--unattributed", "per-row"])
    assert r.exit_code == 0, r.output
    assert "--unattributed" in CliRunner().invoke(cli, ["ingest", "--help"]).output
    eng = Engine.open(target)
    assert eng.unit == UnitRule(("user.name", "host.name"), PER_ROW)
    q = eng.sql("SELECT COUNT(*) FROM logs", epsilon=1.0, max_groups=1, max_rows_per_group=1,
                start="2024-03-01", end="2024-04-01")
    text = q.explain().text
    assert "unit rule: the first non-null of user.name, host.name (namespaced by field); each row with none of them " \
           "is its own unit (per-row, opted in at ingest)" in text
    r = CliRunner().invoke(cli, ["budget", "set", "--store", str(target), "--epsilon", "10", "--delta", "1e-6"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["query", "--store", str(target), "--sql", "SELECT COUNT(*) FROM logs", "--epsilon", "1",
                                 "--max-groups", "1", "--max-rows-per-group", "1", "--start", "2024-03-01",
                                 "--end", "2024-04-01", "--format", "json"])
    assert r.exit_code == 0, r.output
    privacy = json.loads(r.stdout)["privacy"]
    assert privacy["privacy_unit"] == "user.name,host.name"
    assert privacy["unit_rule"]["fields"] == ["user.name", "host.name"] and privacy["unit_rule"]["unattributed"] == "per-row"


def _rows() -> pl.DataFrame:
    rows = [(T0, "x", "h1", "failure")] * 3 + [(T0, None, "x", "failure")] * 2 + [(T0, "y", None, "success")]
    return pl.DataFrame(rows, schema=["@timestamp", "user.name", "host.name", "event.outcome"], orient="row")


def _counts(make_engine, df, rule, **bounds) -> dict:
    eng = make_engine(df, unit=rule)
    q = eng.build(Aggregation.count(), Aggregation.units(), keys=["event.outcome"], epsilon=1.0, **bounds, **WINDOW)
    with exact_mode():
        data = q.release(caller="t").data
    return {(r["event.outcome"], r["aggregate"]): r["value"] for r in data.iter_rows(named=True)}


def test_chain_counts_users_and_hosts_as_separate_units(make_engine):
    got = _counts(make_engine, _rows(), CHAIN, max_groups=1, max_rows_per_group=10)
    # user x (3 rows) and host x (2 rows) are two units, not one of 5 rows
    assert got[("failure", "distinct_units")] == 2 and got[("failure", "count")] == 5
    got = _counts(make_engine, _rows(), CHAIN, max_groups=1, max_rows_per_group=2)
    assert got[("failure", "count")] == 4  # 2 + 2: each bounded on its own


def test_a_flood_without_identity_moves_a_count_by_at_most_l0_linf(make_engine):
    """10,000 unattributed rows over 5 days are ONE unit: the released counts move by at most
    L0·L∞ = 2·3 between D and D + flood, where the per-row opt-in moves them by 10,000."""
    flood = pl.DataFrame({"@timestamp": [T0 + dt.timedelta(days=i % 5, seconds=i) for i in range(10_000)],
                          "user.name": [None] * 10_000, "host.name": [None] * 10_000,
                          "event.outcome": ["failure", "success"] * 5_000})
    d = _rows()
    d_flood = pl.concat([d, flood], how="vertical_relaxed")
    bounds = dict(max_groups=2, max_rows_per_group=3)
    for rule, limit in ((CHAIN, 6), (UnitRule(("user.name",)), 6)):
        a, b = _counts(make_engine, d, rule, **bounds), _counts(make_engine, d_flood, rule, **bounds)
        moved = sum(abs(b[k] - a[k]) for k in a if k[1] == "count")
        assert 0 < moved <= limit, (rule, moved)
    per_row = UnitRule(("user.name", "host.name"), PER_ROW)
    a, b = _counts(make_engine, d, per_row, **bounds), _counts(make_engine, d_flood, per_row, **bounds)
    assert sum(abs(b[k] - a[k]) for k in a if k[1] == "count") == 10_000


def test_roster_decides_only_for_units_from_user_name():
    """Chain user.name,host.name with a roster {anna}: root (not on it) is unprotected; a host
    unit and the shared unit are not accounts, so they stay protected; an outside address
    unprotects its row whatever the unit, unless its account is on the roster."""
    policy = Policy(version=1, users=frozenset({"anna"}), networks=("10.0.0.0/8",))
    df = pl.DataFrame({
        "user.name": ["anna", "root", None, None, "anna", None],
        "host.name": ["h", "h", "root", None, "h", "web1"],
        "source.ip": ["10.0.0.1", "10.0.0.1", "10.0.0.1", None, "24.151.103.17", "24.151.103.17"],
    })
    got = policy.mark(conform(df.lazy()), CHAIN).collect()[PROTECTED].to_list()
    assert got == [True, False, True, True, True, False]
    # a single-field user.name store keeps today's semantics: null user stays protected
    single = policy.mark(conform(df.lazy()), UnitRule(("user.name",))).collect()[PROTECTED].to_list()
    assert single == [True, False, True, True, True, False]
    host_first = policy.mark(conform(df.lazy()), UnitRule(("host.name", "user.name"))).collect()[PROTECTED].to_list()
    assert host_first == [True, True, True, True, True, False]  # every account row's unit is its host
    assert "units from other fields and the shared unit stay protected" in policy.describe(CHAIN)["rule"]


def test_policy_exact_part_under_a_chain(make_engine):
    """Unprotected rows (root's, counted exactly) leave the bounded part; the host unit and the
    shared unit's rows stay bounded."""
    rows = [(T0, "root", "h1", "failure")] * 7 + [(T0, None, "web1", "failure")] * 4 + [(T0, None, None, "failure")] * 5
    df = pl.DataFrame(rows, schema=["@timestamp", "user.name", "host.name", "event.outcome"], orient="row")
    eng = make_engine(df, unit=CHAIN)
    eng.policy = Policy(version=1, users=frozenset({"anna"}), networks=None)
    q = eng.build(Aggregation.count(), keys=["event.outcome"], epsilon=1.0, max_groups=1, max_rows_per_group=2, **WINDOW)
    with exact_mode():
        rel = q.release(caller="t")
    row = rel.data.filter(pl.col("event.outcome") == "failure")
    assert row["exact"].item() == 7 and row["value"].item() == 7 + 2 + 2


def test_chain_attributes_unattributed_windows_events_to_their_host(datasets_dir, make_engine):
    """On the OTRF PurpleSharp recording 89% of events carry no user name: with user.name,host.name
    they are attributed to their host (4 units) instead of each being its own unit, and nothing is
    left for the shared unit; a count over them is bounded per host."""
    from tests.ingest.structured_helpers import parse

    path = datasets_dir / "otrf_security_datasets/windows_host/purplesharp_ad_playbook_I_2020-10-22042947.json.gz"
    events, _, _ = parse("windows", path)
    lf = conform(events.lazy())
    share = lf.select(CHAIN.source("user.name").mean().alias("user"), CHAIN.source("host.name").mean().alias("host")).collect()
    assert share["user"].item() == pytest.approx(0.1106, abs=1e-3) and share["host"].item() == pytest.approx(0.8894, abs=1e-3)
    units = lf.select(CHAIN.expr().alias("u")).collect()["u"]
    assert {u["field"] for u in units.to_list()} == {0, 1}  # no row without identity
    eng = make_engine(events, unit=CHAIN)
    q = eng.build(Aggregation.count(), Aggregation.units(), epsilon=1.0, max_groups=1, max_rows_per_group=10,
                  start="2020-10-01", end="2020-11-01")
    with exact_mode():
        got = {r["aggregate"]: r["value"] for r in q.release(caller="t").data.iter_rows(named=True)}
    per_unit = units.value_counts()["count"]
    assert got == {"count": per_unit.clip(upper_bound=10).sum(), "distinct_units": per_unit.len()}
    assert per_unit.len() == 19 and per_unit.max() > 10_000  # 15 users and 4 hosts; the busiest host is cut to 10
