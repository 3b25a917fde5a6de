"""The engine on Spark: rows compiled from the plan's filter objects, the store read by Spark,
CLI/API selection and the messages when the extra or Java is missing.

Pre-noise aggregates are compared with the polars engine's under bounds loose enough never to
bind, where both backends must agree exactly (the bounding rule itself is the contract suite's)."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from dplogs.backends.polars_backend import PolarsBackend
from dplogs.cli import cli
from dplogs.engine import Aggregation, Engine, time_bucket
from dplogs.engine.execute import aggregate, profile
from dplogs.engine.policy import Policy, read_roster
from dplogs.errors import UsageError
from dplogs.privacy.ledger import Ledger
from dplogs.schema.units import PER_ROW, UnitRule

REPO = Path(__file__).resolve().parents[2]
LOOSE = dict(max_groups=100_000, max_rows_per_group=10**6)
WINDOW = dict(start="2024-02-20", end="2024-04-10")  # spans budget windows: struct (unit, window) units


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spark") / "st"
    r = CliRunner().invoke(cli, ["ingest", str(REPO / "sample_logs"), "--store", str(path), "--year", "2024"])
    assert r.exit_code == 0, r.output
    Ledger.open(path / "ledger.sqlite", create=True).set_caps(window_policy="month", epsilon=1000.0, delta=1e-3)
    return path


@pytest.fixture(scope="module")
def engines(store, spark_session):
    return Engine.open(store), Engine.open(store, backend="spark")


QUERIES = [
    # Cmp, enum key, time bucket
    ("SELECT event.outcome, date_trunc('day', \"@timestamp\") AS day, COUNT(*) FROM logs "
     "WHERE event.category = 'authentication' GROUP BY 1, 2", {}),
    # IN, LIKE (with a regex meta character), NOT, IS NULL, OR, a private key
    ("SELECT user.name, COUNT(*) FROM logs WHERE (event.action IN ('ssh_login', 'sudo') OR user.name LIKE 'a%.%') "
     "AND NOT (event.outcome = 'success') AND source.ip IS NOT NULL GROUP BY user.name", {"delta": 1e-6}),
    # sums, means, numeric comparison, no keys
    ("SELECT SUM(http.response.body.bytes), AVG(http.response.body.bytes), COUNT(*) FROM logs "
     "WHERE http.response.status_code >= 400", {"clamp": {"http.response.body.bytes": (0, 5000)}}),
    # histogram bins, ratio
    ("SELECT http.request.method, HISTOGRAM(http.response.body.bytes), COUNT(*) FROM logs GROUP BY 1",
     {"bins": {"http.response.body.bytes": {"lo": 1, "hi": 1e5, "n": 8}}}),
    # local time buckets (a report's --tz): Spark cut UTC days, which missed the local grid, so
    # every bucket was released as 0 plus noise
    ("SELECT date_trunc('day', \"@timestamp\") AS day, COUNT(*) FROM logs GROUP BY 1", {"time_zone": "America/New_York"}),
    ("SELECT date_trunc('hour', \"@timestamp\") AS hour, COUNT(*) FROM logs GROUP BY 1", {"time_zone": "Asia/Kolkata"}),
]


@pytest.mark.parametrize(("sql", "extra"), QUERIES)
def test_spark_rows_match_polars_rows(engines, sql, extra):
    local, spark = engines
    plans = [e.sql(sql, epsilon=1.0, **LOOSE, **WINDOW, **extra).plan for e in engines]
    want_main, want_hists = aggregate(plans[0], local.scan(), PolarsBackend())
    got_main, got_hists = aggregate(plans[1], spark.scan(), spark.backend)
    assert want_main["rows"].sum() > 0
    key = [c for c in want_main.columns if c not in ("rows", "units") and not c.startswith("sum_")]
    assert got_main.sort(key, nulls_last=True).equals(want_main.sort(key, nulls_last=True))
    for col, frame in want_hists.items():
        assert got_hists[col].sort(frame.columns[:-1]).equals(frame.sort(frame.columns[:-1]))


def test_bound_choice_profile_matches(engines):
    """A query that leaves its bounds to DP choice profiles the units on Spark as in polars."""
    plans = [e.build(Aggregation.count(), keys=[time_bucket("day")], epsilon=1.0, **WINDOW).plan for e in engines]
    assert plans[0].choice is not None
    want = profile(plans[0], engines[0].scan())
    got = profile(plans[1], engines[1].scan(), engines[1].backend)
    assert want.keys() == got.keys()
    for name in want:
        assert list(got[name]) == list(want[name])


def test_cli_query_and_explain_on_spark(store, spark_session):
    entries = len(Ledger.open(store / "ledger.sqlite").history())
    args = ["--store", str(store), "--epsilon", "0.5", "--max-groups", "2", "--max-rows-per-group", "5",
            "--start", "2024-03-04", "--end", "2024-03-18", "--engine", "spark"]
    sql = "SELECT event.outcome, COUNT(*) FROM logs WHERE event.category = 'authentication' GROUP BY event.outcome"
    r = CliRunner().invoke(cli, ["explain", "--sql", sql, *args])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["query", "--sql", sql, *args, "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {c["event.outcome"] for c in out["data"]} == {"success", "failure", "unknown"}
    assert len(Ledger.open(store / "ledger.sqlite").history()) == entries + 1
    r = CliRunner().invoke(cli, ["report", str(REPO / "queries" / "reports" / "nightly.toml"), "--store", str(store),
                                 "--date", "2024-03-10", "--format", "json", "--engine", "spark"])
    assert r.exit_code in (0, 77), r.output  # released (or the nightly budget is spent): no crash on Spark


def test_from_spark_charges_its_ledger(tmp_path, store, spark_session):
    from dplogs.backends.spark import read_events

    frame = read_events(spark_session, [str(p) for p in sorted((store / "events").rglob("*.parquet"))])
    eng = Engine.from_spark(frame, privacy_unit="user.name", ledger=tmp_path / "ledger.sqlite")
    eng.ledger.set_caps(window_policy="month", epsilon=10.0, delta=0.0)
    rel = eng.build(Aggregation.count(), keys=["event.outcome"], epsilon=1.0, max_groups=3, max_rows_per_group=5,
                    start="2024-03-01", end="2024-04-01").release()
    assert rel.to_polars()["event.outcome"].to_list() == ["success", "failure", "unknown"]
    assert len(eng.ledger.history()) == 1


def test_missing_pyspark_names_the_extra(monkeypatch, store):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark now raises ImportError
    r = CliRunner().invoke(cli, ["explain", "--sql", "SELECT COUNT(*) FROM logs", "--store", str(store),
                                 "--epsilon", "1", "--engine", "spark"])
    assert r.exit_code == 64 and "dplogs[spark]" in r.output


def test_missing_java_names_the_extra(monkeypatch):
    from pyspark.sql import SparkSession

    from dplogs.backends import spark

    monkeypatch.setattr(SparkSession, "getActiveSession", classmethod(lambda cls: None))
    monkeypatch.setattr(spark.shutil, "which", lambda name: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(UsageError, match=r"Java runtime.*dplogs\[spark\]"):
        spark.spark_session("local[1]")


def test_a_master_without_spark_is_refused(store):
    r = CliRunner().invoke(cli, ["explain", "--sql", "SELECT COUNT(*) FROM logs", "--store", str(store),
                                 "--epsilon", "1", "--spark-master", "local[2]"])
    assert r.exit_code == 64 and "--engine spark" in r.output


def test_anomaly_queries_are_refused_on_spark(store, spark_session, tmp_path):
    eng = Engine.open(store, backend="spark")
    with pytest.raises(UsageError, match="polars engine"):
        eng.over_anomalies(tmp_path / "model.json", threshold=0.5)


def test_profile_counts_each_null_unit_row_as_a_unit():
    """Regression: with no clamp to choose, the polars profile gave all null-unit rows together
    one entry (a literal-only select broadcasts to one row); each is its own unit under the per-row
    opt-in (by default they are one shared unit)."""
    import datetime as dt

    from dplogs.schema import conform

    ts = [dt.datetime(2024, 3, 1, h, tzinfo=dt.timezone.utc) for h in range(5)]
    lf = conform(pl.LazyFrame({"@timestamp": ts, "user.name": [None, None, None, "a", "a"]}))
    eng = Engine(scan=lambda: lf, privacy_unit=UnitRule(("user.name",), PER_ROW), budget_window="month", ledger=None)
    plan = eng.build(Aggregation.count(), keys=[time_bucket("day")], epsilon=1.0, start="2024-03-01", end="2024-03-02").plan
    counts = profile(plan, lf)
    assert counts and all(c.sum() == 4 for c in counts.values())  # per-row opt-in: three null-unit rows and unit a
    shared = Engine(scan=lambda: lf, privacy_unit="user.name", budget_window="month", ledger=None)
    plan = shared.build(Aggregation.count(), keys=[time_bucket("day")], epsilon=1.0, start="2024-03-01", end="2024-03-02").plan
    counts = profile(plan, lf)
    assert counts and all(c.sum() == 2 for c in counts.values())  # the default: one shared unit and unit a


# The protected-population policy on Spark: the same rows are unprotected, the exact part of the
# unprotected rows is identical, and the protected rows are bounded by the same rule (identical
# wherever no L0 bound binds; L∞ binds in the second setting).
POLICY = Policy(version=1, users=frozenset({"omar.haddad", "mia.khan", "eli.berg", "jade.costa", "nils.jensen"}),
                networks=("10.0.0.0/8", "2001:db8::/32"))


def test_spark_marks_the_same_rows_protected():
    """Roster and networks, hostile addresses included (spaces, IPv6, garbage: protected when in
    doubt), against the polars mark row by row."""
    from dplogs.backends.spark import SparkBackend
    from dplogs.engine.policy import PROTECTED
    from dplogs.schema import conform

    ips = ["10.1.2.3", " 10.1.2.3 ", "203.0.113.77", "2001:db8::1", "2001:db9::1", "not an ip", None, "10.0.0.256"]
    users = ["omar.haddad", "root", None, "mia.khan", "Omar.Haddad", "admin", "eli.berg", None]
    df = conform(pl.DataFrame({"user.name": users, "source.ip": ips, "event.action": [str(i) for i in range(8)]}))
    want = POLICY.mark(df.lazy(), "user.name").collect().sort("event.action")[PROTECTED]
    got = pl.from_arrow(POLICY.mark_spark(SparkBackend().frame(df), "user.name").select("`event.action`", PROTECTED)
                        .toArrow()).sort("event.action")[PROTECTED]
    # 'Omar.Haddad' from outside: the roster's omar.haddad in another case, a person wherever it is
    assert got.to_list() == want.to_list() == [True, False, False, True, True, False, True, True]


def test_spark_lower_cases_names_for_the_roster_as_polars_does():
    """On a caller's session with Spark's ICU case mappings off, lower() is Java's (its default
    locale: Turkish makes I a dotless ı; Java 17's Unicode 13 leaves U+A7C0, a Unicode 14 capital,
    as it is): that roster person was not matched on Spark, so their rows from outside the
    networks were released exactly."""
    from dplogs.backends.spark import SparkBackend
    from dplogs.engine.policy import PROTECTED
    from dplogs.schema import conform

    policy = Policy(version=1, users=frozenset({"\ua7c1mar"}), networks=("10.0.0.0/8",))
    df = conform(pl.DataFrame({"user.name": ["\ua7c0mar", "\ua7c1mar", "root"], "source.ip": ["203.0.113.7"] * 3,
                               "event.action": ["0", "1", "2"]}))
    want = policy.mark(df.lazy(), "user.name").collect().sort("event.action")[PROTECTED]
    sdf = SparkBackend().frame(df)
    sdf.sparkSession.conf.set("spark.sql.icu.caseMappings.enabled", "false")
    try:
        got = pl.from_arrow(policy.mark_spark(sdf, "user.name").select("`event.action`", PROTECTED)
                            .toArrow()).sort("event.action")[PROTECTED]
    finally:
        sdf.sparkSession.conf.unset("spark.sql.icu.caseMappings.enabled")
    assert got.to_list() == want.to_list() == [True, True, False]


@pytest.mark.parametrize("rule", ["user.name,host.name", "host.name,user.name"])
def test_spark_marks_follow_the_unit_chain(rule):
    """With a chain, the roster decides only rows whose unit came from user.name, on both backends."""
    from dplogs.backends.spark import SparkBackend
    from dplogs.engine.policy import PROTECTED
    from dplogs.schema import conform

    users = ["omar.haddad", "root", None, "root", None, "admin"]
    hosts = ["ws1", "ws2", "ws3", None, None, "ws4"]
    df = conform(pl.DataFrame({"user.name": users, "host.name": hosts, "event.action": [str(i) for i in range(6)]}))
    roster_only = Policy(version=1, users=POLICY.users)
    want = roster_only.mark(df.lazy(), UnitRule.parse(rule)).collect().sort("event.action")[PROTECTED]
    got = pl.from_arrow(roster_only.mark_spark(SparkBackend().frame(df), UnitRule.parse(rule))
                        .select("`event.action`", PROTECTED).toArrow()).sort("event.action")[PROTECTED]
    expected = [True, False, True, False, True, False] if rule.startswith("user") else [True] * 3 + [False, True, True]
    assert got.to_list() == want.to_list() == expected


@pytest.mark.parametrize("bounds", [LOOSE, dict(max_groups=100_000, max_rows_per_group=3)], ids=["loose", "linf-binds"])
@pytest.mark.parametrize(("sql", "extra"), [QUERIES[0], QUERIES[2]])
def test_policy_gives_identical_exact_and_protected_parts(engines, bounds, sql, extra):
    local, spark = engines
    plans = [replace(e.sql(sql, epsilon=1.0, **bounds, **WINDOW, **extra).plan, policy=POLICY) for e in engines]
    want_main, want_hists = aggregate(plans[0], local.scan(), PolarsBackend())
    got_main, got_hists = aggregate(plans[1], spark.scan(), spark.backend)
    assert want_main["exact_rows"].sum() > 0 and want_main["rows"].sum() > 0  # both parts hold rows
    key = [c for c in want_main.columns if c not in ("rows", "units") and not c.startswith(("sum_", "exact_"))]
    assert got_main.columns == want_main.columns
    assert got_main.sort(key, nulls_last=True).equals(want_main.sort(key, nulls_last=True))
    for col, frame in want_hists.items():
        assert got_hists[col].sort(frame.columns[:2]).equals(frame.sort(frame.columns[:2]))


def test_a_release_under_a_policy_runs_on_spark(store, tmp_path, spark_session):
    """Formerly refused (exit 64): `dplogs query --engine spark` on a store with a policy releases,
    with the same exact part as on polars."""
    from dplogs.engine.policy import save

    protected = tmp_path / "st"
    shutil.copytree(store, protected)
    roster = tmp_path / "people.txt"
    roster.write_text("\n".join(sorted(POLICY.users)))
    save(protected, users=read_roster(roster), networks=POLICY.networks)
    args = ["query", "--store", str(protected), "--epsilon", "1", "--max-groups", "3", "--max-rows-per-group", "5",
            "--start", "2024-03-01", "--end", "2024-04-01", "--format", "json",
            "--sql", "SELECT event.outcome, COUNT(*) FROM logs WHERE event.category = 'authentication' GROUP BY 1"]
    out = {}
    for engine in ("polars", "spark"):
        r = CliRunner().invoke(cli, [*args, "--engine", engine])
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        out[engine] = {c["event.outcome"]: c["exact"] for c in doc["data"]}
        assert doc["privacy"]["protection"]["version"] == 1
    assert out["spark"] == out["polars"] and sum(out["polars"].values()) > 0


def test_a_session_in_another_time_zone_bounds_per_utc_budget_window(tmp_path, spark_session):
    """`Engine.from_spark` over a session whose `spark.sql.session.timeZone` is not UTC (the
    caller's own Databricks or spark-submit session) truncated the budget windows of the bounding
    unit in that zone: a unit's events of one UTC day fell into two local days, so the unit was
    bounded twice within one charged window (twice the sensitivity charged). Now the Spark rows
    truncate in UTC whatever the session's zone, as the ledger's windows do."""
    import datetime as dt

    from dplogs.backends.spark import SparkBackend
    from dplogs.privacy.testing import exact_mode
    from dplogs.schema import conform

    at = [dt.datetime(2024, 3, 2, 2, tzinfo=dt.UTC), dt.datetime(2024, 3, 2, 12, tzinfo=dt.UTC)]  # 21:00 / 07:00 in New York
    events = conform(pl.DataFrame({"@timestamp": at, "user.name": ["ann", "ann"]}))
    frame = SparkBackend().frame(events)
    zone = spark_session.conf.get("spark.sql.session.timeZone")
    spark_session.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        eng = Engine.from_spark(frame, privacy_unit="user.name", ledger=tmp_path / "ledger.sqlite", budget_window="day")
        eng.ledger.set_caps(window_policy="day", epsilon=10.0, delta=0.0)
        window = dict(epsilon=1.0, max_groups=1, max_rows_per_group=1, start="2024-03-01", end="2024-03-04")
        with exact_mode():
            total = eng.build(Aggregation.count(), **window).release().to_polars()["value"].to_list()
            got = eng.build(Aggregation.count(), keys=[time_bucket("day")], **window).release().to_polars()
    finally:
        spark_session.conf.set("spark.sql.session.timeZone", zone)
    assert total == [1.0]  # was 2: (ann, 1 March) and (ann, 2 March) in New York, each bounded to 1 row
    counted = {str(d.date()): v for d, v in zip(got[got.columns[0]], got["value"]) if v}
    assert counted == {"2024-03-02": 1.0}  # was {}: New York's day buckets missed the UTC grid


@pytest.mark.parametrize(("zone", "instants"), [
    # New York's repeated hour (1:00-2:00 twice on 3 November): two hour buckets, as in polars
    ("America/New_York", [(2024, 11, 3, 5, 30), (2024, 11, 3, 6, 30), (2024, 11, 3, 7, 10)]),
    # Santiago's clocks skip midnight (8 September) and repeat 23:00-24:00 (7 April)
    ("America/Santiago", [(2024, 9, 8, 5, 0), (2024, 9, 8, 3, 30), (2024, 4, 7, 2, 30), (2024, 4, 7, 3, 30)]),
])
def test_local_buckets_across_dst_changes_match_polars(tmp_path, spark_session, zone, instants):
    """Hour and day buckets in a zone whose clocks change: the Spark rows land in the same cells as
    the polars rows (pre-noise, bounds that never bind)."""
    import datetime as dt

    from dplogs.backends.spark import SparkBackend
    from dplogs.schema import conform

    at = [dt.datetime(*i, tzinfo=dt.UTC) for i in instants]
    events = conform(pl.DataFrame({"@timestamp": at, "user.name": [f"u{i}" for i in range(len(at))]}))
    first, last = min(at), max(at)
    window = dict(epsilon=1.0, **LOOSE, time_zone=zone, start=(first - dt.timedelta(days=1)).isoformat(),
                  end=(last + dt.timedelta(days=1)).isoformat())
    local = Engine(scan=lambda: events.lazy(), privacy_unit="user.name", budget_window="month", ledger=None)
    spark = Engine.from_spark(SparkBackend().frame(events), privacy_unit="user.name", ledger=tmp_path / "l.sqlite")
    for bucket in ("hour", "day"):
        plans = [e.build(Aggregation.count(), keys=[time_bucket(bucket)], **window).plan for e in (local, spark)]
        want, _ = aggregate(plans[0], events.lazy(), PolarsBackend())
        got, _ = aggregate(plans[1], spark.scan(), spark.backend)
        assert want["rows"].sum() == len(at)
        assert got.sort("bucket").equals(want.sort("bucket")), bucket


def _query_a_damaged_copy(store: Path, tmp_path: Path, damage) -> tuple:
    """A copy of ``store`` whose largest events file ``damage(bytes) -> bytes`` rewrote, queried on
    Spark: (the CLI result, the file, whether the ledger's entries stayed as they were)."""
    copy = tmp_path / "st"
    shutil.copytree(store, copy)
    victim = max((copy / "events").rglob("*.parquet"), key=lambda f: f.stat().st_size)
    victim.write_bytes(damage(victim.read_bytes()))
    entries = len(Ledger.open(copy / "ledger.sqlite").history())
    r = CliRunner().invoke(cli, ["query", "--sql", "SELECT COUNT(*) FROM logs", "--store", str(copy), "--epsilon", "0.5",
                                 "--max-groups", "1", "--max-rows-per-group", "5", "--start", "2024-03-01",
                                 "--end", "2024-04-01", "--engine", "spark"])
    return r, victim, len(Ledger.open(copy / "ledger.sqlite").history()) == entries


def test_a_damaged_events_file_is_refused_on_spark_as_on_polars(tmp_path, store, spark_session):
    """Spark read the store's files as listed, without the footer check polars' scan makes: a
    truncated events file failed the query inside Spark (a Py4J trace, exit 70: "a bug") instead of
    naming the damaged file (74). Nothing is charged either way."""
    r, victim, uncharged = _query_a_damaged_copy(store, tmp_path, lambda data: data[:500])
    assert r.exit_code == 74 and "is damaged" in r.output and victim.name in r.output, r.output
    assert uncharged


def test_an_events_file_damaged_inside_is_refused_on_spark_as_damaged(tmp_path, store, spark_session):
    """A file overwritten inside with its footer intact passes the footer check; Spark then failed
    reading its pages and the release exited 69 ("the Spark job failed": check the cluster and
    rerun), which sends an operator after the cluster while a file of the store is damaged (74,
    as polars says). Nothing is charged."""
    def overwrite_the_middle(data: bytes) -> bytes:
        middle = len(data) // 2
        return data[:middle - 4096] + b"\xff" * 8192 + data[middle + 4096:]

    r, victim, uncharged = _query_a_damaged_copy(store, tmp_path, overwrite_the_middle)
    assert r.exit_code == 74 and "is damaged or unreadable" in r.output and victim.name in r.output, r.output
    assert uncharged


def test_a_row_with_an_empty_array_does_not_fail_a_release_keyed_by_the_array(tmp_path, spark_session):
    """A key on an ECS array column groups by its first value. Spark took it with `element_at`,
    which under ANSI mode (Spark 4's default) fails on an empty array: one row's empty
    event.category failed every release keyed by it (exit 69 before the charge, a refusal decided
    by one unit's data). Now that row has no first value, as in polars."""
    import datetime as dt

    from dplogs.backends.spark import SparkBackend
    from dplogs.schema import conform

    assert spark_session.conf.get("spark.sql.ansi.enabled") == "true"
    at = [dt.datetime(2024, 3, 2, h, tzinfo=dt.UTC) for h in (1, 2, 3)]
    events = conform(pl.DataFrame({"@timestamp": at, "user.name": ["a", "b", "c"],
                                   "event.category": [["authentication"], [], ["process"]]},
                                  schema_overrides={"event.category": pl.List(pl.String)}))
    local = Engine(scan=lambda: events.lazy(), privacy_unit="user.name", budget_window="month", ledger=None)
    spark = Engine.from_spark(SparkBackend().frame(events), privacy_unit="user.name", ledger=tmp_path / "l.sqlite")
    window = dict(epsilon=1.0, **LOOSE, start="2024-03-01", end="2024-03-05")
    plans = [e.build(Aggregation.count(), keys=["event.category"], **window).plan for e in (local, spark)]
    want, _ = aggregate(plans[0], events.lazy(), PolarsBackend())
    got, _ = aggregate(plans[1], spark.scan(), spark.backend)
    assert want["rows"].sum() == 2
    assert got.sort("event.category").equals(want.sort("event.category"))
