"""Differential tests in exact mode (noise off, charge still consumed): the engine's pre-noise
semantics equal DuckDB's GROUP BY on the same bounded data."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import polars as pl
import pytest

from dplogs.engine import Aggregation, time_bucket
from dplogs.engine.plan import Cmp
from dplogs.privacy.testing import exact_mode
from dplogs.schema.units import PER_ROW, UnitRule

START, END = "2026-11-01", "2026-11-08"


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.timezone.utc)


def wide(release, keys):
    """Released cells pivoted to one row per group, one column per aggregate."""
    return release.data.pivot(on="aggregate", index=keys, values="value")


def duck(frame: pl.DataFrame, sql: str) -> pl.DataFrame:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", frame.with_columns(pl.col("@timestamp").dt.replace_time_zone(None)).to_arrow())
    out = con.sql(sql).pl()
    return out.with_columns(pl.col(pl.Decimal).cast(pl.Float64))


def unbounded_frame() -> pl.DataFrame:
    """40 users; each in at most 2 (day, outcome) groups with at most 3 rows per group."""
    rows = []
    for i in range(40):
        for j in range(1 + i % 3):
            rows.append((utc(2026, 11, 1 + i % 5, j), f"u{i}", ["success", "failure"][i % 2], 7 * i + 13 * j))
        if i % 4 == 0:
            rows.append((utc(2026, 11, 1 + (i + 1) % 5, 5), f"u{i}", ["success", "failure"][i % 2], 1000 + i))
    return pl.DataFrame(rows, schema=["@timestamp", "user.name", "event.outcome", "source.bytes"], orient="row")


def test_exact_mode_equals_duckdb_group_by_with_complete_grid(make_engine):
    frame = unbounded_frame()
    eng = make_engine(frame)
    q = eng.build(
        Aggregation.count(), Aggregation.units(), Aggregation.sum("source.bytes"), Aggregation.mean("source.bytes"),
        Aggregation.ratio(Cmp("source.bytes", ">", 100), name="big_share"),
        keys=[time_bucket("day"), "event.outcome"], epsilon=1.0, max_groups=2, max_rows_per_group=3,
        clamp={"source.bytes": (0, 500)}, start=START, end=END,
    )
    with exact_mode():
        rel = q.release(caller="cli")
    got = wide(rel, ["bucket", "event.outcome"])
    assert got.height == 7 * 3  # every day of the window x every ECS outcome, empty ones included
    ref = duck(frame, """
        SELECT date_trunc('day', "@timestamp") AS bucket, "event.outcome",
               COUNT(*) AS count, COUNT(DISTINCT "user.name") AS distinct_units,
               SUM(LEAST(GREATEST("source.bytes", 0), 500)) AS "sum(source.bytes)",
               AVG(LEAST(GREATEST("source.bytes", 0), 500)) AS "mean(source.bytes)",
               AVG(CASE WHEN "source.bytes" > 100 THEN 1.0 ELSE 0.0 END) AS big_share
        FROM t GROUP BY ALL""").with_columns(pl.col("bucket").dt.replace_time_zone("UTC"))
    joined = got.join(ref, on=["bucket", "event.outcome"], how="left", suffix="_ref")
    for col in ("count", "distinct_units", "sum(source.bytes)"):
        np.testing.assert_allclose(joined[col].to_numpy(), joined[f"{col}_ref"].fill_null(0).to_numpy())
    for col in ("mean(source.bytes)", "big_share"):  # undefined (null) exactly where the group is empty
        np.testing.assert_allclose(joined[col].to_numpy(), joined[f"{col}_ref"].to_numpy())


def test_rows_per_group_bound_matches_the_documented_rule(make_engine):
    # users with up to 8 rows in one group; L∞ = 3 binds. The backend keeps min(n, L∞) rows and
    # the clamped sum rescaled to s·rows/n (dplogs.backends.polars_backend, rule 3).
    frame = pl.DataFrame(
        [(utc(2026, 11, 2, j), f"u{i}", "failure" if i % 2 else "success", 10 * i + j) for i in range(30) for j in range(1 + i % 8)],
        schema=["@timestamp", "user.name", "event.outcome", "source.bytes"], orient="row",
    )
    eng = make_engine(frame)
    q = eng.build(Aggregation.count(), Aggregation.sum("source.bytes"), keys=["event.outcome"], epsilon=1.0,
                  max_groups=1, max_rows_per_group=3, clamp={"source.bytes": (0, 200)}, start=START, end=END)
    with exact_mode():
        got = wide(q.release(caller="cli"), ["event.outcome"])
    ref = duck(frame, """
        WITH cells AS (
            SELECT "event.outcome", COUNT(*) AS n, SUM(LEAST(GREATEST("source.bytes", 0), 200)) AS s
            FROM t GROUP BY "user.name", "event.outcome")
        SELECT "event.outcome", SUM(LEAST(n, 3)) AS rows, SUM(s * LEAST(n, 3) / n) AS total
        FROM cells GROUP BY ALL""")
    joined = got.join(ref, on="event.outcome", how="left")
    np.testing.assert_allclose(joined["count"].to_numpy(), joined["rows"].fill_null(0).to_numpy())
    np.testing.assert_allclose(joined["sum(source.bytes)"].to_numpy(), joined["total"].fill_null(0).to_numpy())


def test_groups_per_unit_bound_binds(make_engine):
    # every user has one row on each of 4 days; L0 = 2 keeps exactly 2 of them per user
    frame = pl.DataFrame({"@timestamp": [utc(2026, 11, 1 + d) for i in range(50) for d in range(4)],
                          "user.name": [f"u{i}" for i in range(50) for _ in range(4)]})
    eng = make_engine(frame)
    q = eng.build(Aggregation.count(), Aggregation.units(), keys=[time_bucket("day")], epsilon=1.0,
                  max_groups=2, max_rows_per_group=5, start=START, end=END)
    with exact_mode():
        got = wide(q.release(caller="cli"), ["bucket"])
    assert got["count"].sum() == 50 * 2 and got["distinct_units"].sum() == 50 * 2
    assert (got["count"] <= 50).all()
    assert got.filter(pl.col("bucket") >= utc(2026, 11, 5))["count"].sum() == 0


def test_null_units_are_each_their_own_unit_only_when_opted_in(make_engine):
    frame = pl.DataFrame({"@timestamp": [utc(2026, 11, 3)] * 6, "user.name": [None] * 5 + ["a"],
                          "event.outcome": ["failure"] * 6})
    eng = make_engine(frame, unit=UnitRule(("user.name",), PER_ROW))
    q = eng.build(Aggregation.count(), keys=["event.outcome"], epsilon=1.0, max_groups=1, max_rows_per_group=1,
                  start=START, end=END)
    with exact_mode():
        got = wide(q.release(caller="cli"), ["event.outcome"])
    assert got.filter(pl.col("event.outcome") == "failure")["count"].item() == 6


def test_rows_without_identity_form_one_shared_unit_by_default(make_engine):
    # the five unattributed rows are ONE unit, bounded to L∞ = 1 like user "a"
    frame = pl.DataFrame({"@timestamp": [utc(2026, 11, 3)] * 6, "user.name": [None] * 5 + ["a"],
                          "event.outcome": ["failure"] * 6})
    eng = make_engine(frame)
    q = eng.build(Aggregation.count(), Aggregation.units(), keys=["event.outcome"], epsilon=1.0, max_groups=1,
                  max_rows_per_group=1, start=START, end=END)
    with exact_mode():
        rel = q.release(caller="cli")
    got = wide(rel, ["event.outcome"]).filter(pl.col("event.outcome") == "failure")
    assert got["count"].item() == 2 and got["distinct_units"].item() == 2
    assert rel.privacy["unit_rule"] == {"fields": ["user.name"], "unattributed": "shared",
                                        "rule": "user.name; rows without user.name form one shared unit"}


def test_rows_outside_window_or_public_domain_are_not_counted(make_engine):
    frame = pl.DataFrame({
        "@timestamp": [utc(2026, 10, 31, 23), utc(2026, 11, 1), utc(2026, 11, 7, 23, 59), utc(2026, 11, 8), utc(2026, 11, 2), utc(2026, 11, 2)],
        "user.name": ["a", "b", "c", "d", "e", "f"],
        "event.outcome": ["success", "success", "success", "success", None, "bogus"],
    })
    eng = make_engine(frame)
    q = eng.build(Aggregation.count(), keys=["event.outcome"], epsilon=1.0, max_groups=1, max_rows_per_group=1,
                  start=START, end=END)
    with exact_mode():
        got = wide(q.release(caller="cli"), ["event.outcome"])
    assert dict(got.iter_rows()) == {"failure": 0.0, "success": 2.0, "unknown": 0.0}


def test_private_keys_exact_selection_and_counts(make_engine):
    # source.ip k is used by 5*k distinct users (one failure each); only ips with >= threshold survive
    rows = [(utc(2026, 11, 4), f"u{k}-{i}", f"10.0.0.{k}") for k in range(1, 12) for i in range(5 * k)]
    frame = pl.DataFrame(rows, schema=["@timestamp", "user.name", "source.ip"], orient="row")
    eng = make_engine(frame)
    q = eng.sql("SELECT source.ip, COUNT(*) AS n, COUNT(DISTINCT user.name) AS users FROM logs GROUP BY source.ip",
                epsilon=2.0, delta=1e-6, max_groups=1, max_rows_per_group=1, start=START, end=END)
    t = q.plan.selection.threshold
    assert 5 < t < 55
    with exact_mode():
        got = wide(q.release(caller="cli"), ["source.ip"])
    expected = {f"10.0.0.{k}": 5.0 * k for k in range(1, 12) if 5 * k >= t}
    assert dict(got.select("source.ip", "n").iter_rows()) == expected
    assert dict(got.select("source.ip", "users").iter_rows()) == expected


def test_top_k_keeps_the_largest(make_engine):
    rows = [(utc(2026, 11, 4), f"u{k}-{i}", f"10.0.0.{k}") for k in range(1, 12) for i in range(10 * k)]
    frame = pl.DataFrame(rows, schema=["@timestamp", "user.name", "source.ip"], orient="row")
    eng = make_engine(frame)
    q = eng.sql("SELECT source.ip, COUNT(*) AS n FROM logs GROUP BY source.ip ORDER BY n DESC LIMIT 3",
                epsilon=2.0, delta=1e-6, max_groups=1, max_rows_per_group=1, start=START, end=END)
    with exact_mode():
        rel = q.release(caller="cli")
    assert rel.data["source.ip"].to_list() == ["10.0.0.11", "10.0.0.10", "10.0.0.9"]  # ranked, best first


def test_histogram_and_quantiles_exact(make_engine):
    values = [(i * 37) % 1000 + 0.5 for i in range(1000)] + [5000.0]  # one value above the range (clamped)
    frame = pl.DataFrame({"@timestamp": [utc(2026, 11, 3)] * len(values), "user.name": [f"u{i}" for i in range(len(values))],
                          "source.bytes": [int(v) for v in values]})
    eng = make_engine(frame)
    bins = {"source.bytes": {"lo": 0, "hi": 1000, "n": 50, "scale": "linear"}}
    q = eng.build(Aggregation.histogram("source.bytes"), Aggregation.quantile_set("source.bytes", [0.1, 0.5, 0.95]),
                  epsilon=1.0, max_groups=1, max_rows_per_group=1, bins=bins, start=START, end=END)
    with exact_mode():
        rel = q.release(caller="cli")
    hist = rel.data.filter(pl.col("aggregate") == "histogram(source.bytes)").sort("bin_lo")
    clamped = np.clip(np.array([int(v) for v in values], dtype=float), 0, 1000)
    expected, _ = np.histogram(clamped, bins=np.linspace(0, 1000, 51))
    np.testing.assert_array_equal(hist["value"].to_numpy(), expected)
    for level in (0.1, 0.5, 0.95):
        cell = rel.data.filter(pl.col("aggregate") == f"p{int(level * 100)}(source.bytes)")
        true = float(np.quantile(clamped, level))
        assert abs(cell["value"].item() - true) <= 20  # one bin width
        assert cell["ci_low"].item() <= true <= cell["ci_high"].item()


def test_released_cells_carry_mechanism_scale_and_ci(make_engine):
    eng = make_engine(unbounded_frame())
    q = eng.build(Aggregation.count(), keys=["event.outcome"], epsilon=0.5, max_groups=2, max_rows_per_group=3,
                  start=START, end=END)
    rel = q.release(caller="cli")
    plan = q.plan.columns[0].noise
    assert set(rel.data["mechanism"]) == {"discrete laplace"}
    assert set(rel.data["scale"]) == {plan.scale} == {12.0}
    h = plan.ci_halfwidth(0.95)
    np.testing.assert_allclose((rel.data["ci_high"] - rel.data["value"]).to_numpy(), h)
    np.testing.assert_allclose((rel.data["value"] - rel.data["ci_low"]).to_numpy(), h)
    p = rel.privacy
    assert p["epsilon"] == pytest.approx(0.5) and p["privacy_unit"] == "user.name"
    assert p["bounds"]["max_groups"] == 2 and p["bounds"]["max_rows_per_group"] == 3 and p["ledger_entry"]
    assert p["bounds"]["effective_max_groups"] == {"": 2} and p["bounds"]["reachable_groups_per_window"] == {"": 3}
    assert "biased downward" in p["bias_note"] and p["keys"][0]["handling"].startswith("public")
    assert p["window"] == {"start": "2026-11-01T00:00:00Z", "end": "2026-11-08T00:00:00Z"}


@pytest.mark.parametrize("where", [
    "NOT user.name = 'u1'",
    "user.name != 'u1' OR source.bytes > 50",
    "NOT (user.name IN ('u1', 'u2') AND source.bytes < 30)",
    "user.name LIKE 'u1%' OR source.bytes IS NULL",
    "NOT user.name LIKE 'u_'",
    "NOT user.name IN ('u1', 'x')",
    "user.name NOT IN ('u1') AND source.bytes NOT IN (10, 70)",
    "source.bytes BETWEEN 10 AND 60 AND NOT source.bytes = 20",
])
def test_where_semantics_match_duckdb_including_nulls(make_engine, where):
    names = ["u1", "u2", "u10", None, "u3", "x"]
    byts = [10, None, 20, 60, 70, None]
    frame = pl.DataFrame({
        "@timestamp": [utc(2026, 11, 2)] * 36, "user.name": names * 6, "source.bytes": [b for b in byts for _ in range(6)],
        "event.outcome": ["success"] * 36,
    })
    eng = make_engine(frame)
    q = eng.sql(f"SELECT event.outcome, COUNT(*) AS n FROM logs WHERE {where} GROUP BY event.outcome",
                epsilon=1.0, max_groups=1, max_rows_per_group=100, start=START, end=END)
    with exact_mode():
        got = wide(q.release(caller="cli"), ["event.outcome"])
    sql_where = where.replace("user.name", '"user.name"').replace("source.bytes", '"source.bytes"')
    expected = duck(frame, f"SELECT COUNT(*) AS n FROM t WHERE {sql_where}")["n"].item()
    assert got.filter(pl.col("event.outcome") == "success")["n"].item() == expected


def test_rows_without_a_value_are_in_no_histogram_bin(make_engine):
    """A null value has no bin (as on Spark, and as the exact part under a policy counts it). The
    polars path put every null in the lowest bin: on redteam2's store 1,436 rows without a port in
    [0, 1), and a median of source.bytes at the clamp's bottom (-9.8e14 on polars, 1.6e13 on Spark)."""
    values = [100, 300, None, None, None, 700, None]
    frame = pl.DataFrame({"@timestamp": [utc(2026, 11, 3)] * len(values), "user.name": [f"u{i}" for i in range(len(values))],
                          "source.bytes": values}, schema_overrides={"source.bytes": pl.Int64})
    eng = make_engine(frame)
    q = eng.build(Aggregation.histogram("source.bytes"), Aggregation.quantile_set("source.bytes", [0.5]),
                  epsilon=1.0, max_groups=1, max_rows_per_group=1,
                  bins={"source.bytes": {"lo": 0, "hi": 1000, "n": 10, "scale": "linear"}}, start=START, end=END)
    with exact_mode():
        rel = q.release(caller="cli")
    hist = rel.data.filter(pl.col("aggregate") == "histogram(source.bytes)").sort("bin_lo")
    np.testing.assert_array_equal(hist["value"].to_numpy(), [0, 1, 0, 1, 0, 0, 0, 1, 0, 0])
    median = rel.data.filter(pl.col("aggregate") == "p50(source.bytes)")["value"].item()
    assert 300 <= median <= 400
