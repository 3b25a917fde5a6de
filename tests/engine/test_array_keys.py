"""A public key on an ECS array column (event.category, event.type) groups each row by its primary
(first) value, on the polars path as on Spark (spark_rows). Regression: the public-domain filter
tested the whole list against the domain, matched no row, and every released cell was noise."""

from __future__ import annotations

import datetime as dt

import polars as pl

from dplogs.privacy.testing import exact_mode

T0 = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)


def test_group_by_an_array_column_counts_rows_by_their_first_value(make_engine) -> None:
    frame = pl.DataFrame({
        "@timestamp": [T0 + dt.timedelta(minutes=i) for i in range(6)],
        "user.name": ["a", "b", "c", "d", "e", "f"],
        "event.category": [["authentication"], ["authentication", "session"], ["session"], ["iam"], None, ["web"]],
    })
    eng = make_engine(frame)
    with exact_mode():
        data = eng.sql("SELECT event.category, COUNT(*) AS n FROM logs GROUP BY event.category",
                       start="2026-11-01", end="2026-11-03", max_groups=1, max_rows_per_group=1
                       ).release(caller="test").data
    got = {r["event.category"]: r["value"] for r in data.iter_rows(named=True) if r["value"]}
    assert got == {"authentication": 2.0, "session": 1.0, "iam": 1.0, "web": 1.0}


def test_the_shipped_events_per_category_query_counts_the_sample(sample_store) -> None:
    from dplogs.engine import Engine
    from tests.engine.conftest import REPO

    with exact_mode():
        data = Engine.open(sample_store).query_file(REPO / "queries" / "events_per_category_per_day.toml"
                                                    ).release(caller="test").data
    per_category = data.group_by("event.category").agg(pl.col("value").sum())
    counted = dict(per_category.iter_rows())
    true = dict(Engine.open(sample_store).scan().group_by(pl.col("event.category").list.first()).len()
                .drop_nulls().collect().iter_rows())
    # every category the sample holds keeps bounded rows (a unit: 10 groups of 5 rows at most)
    assert set(true) <= set(counted)
    assert all(0 < counted[c] <= n for c, n in true.items() if n >= 50), (counted, true)
    assert counted["authentication"] > 300 and counted["web"] > 300
