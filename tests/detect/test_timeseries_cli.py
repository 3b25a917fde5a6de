"""``dplogs timeseries`` (issue 17): DP time-series anomaly scores from the CLI, one charged release
plus free post-processing; queries it cannot score are refused before anything is charged."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.detect.timeseries import score_release
from dplogs.ingest.store import Store
from dplogs.privacy.ledger import Ledger
from dplogs.schema import conform

SQL = "SELECT date_trunc('day', \"@timestamp\") AS day, COUNT(*) FROM logs GROUP BY 1"


@pytest.fixture
def spiky_store(tmp_path):
    # 400 users log in once a day for 20 days; on day 18 each logs 5 more events
    rows = []
    for day in range(1, 21):
        for u in range(400):
            rows.append((dt.datetime(2026, 11, day, 9, tzinfo=dt.UTC), f"u{u}"))
            if day == 18:
                rows += [(dt.datetime(2026, 11, day, 10, m, tzinfo=dt.UTC), f"u{u}") for m in range(5)]
    s = Store.init(tmp_path / "s", dataset="t")
    s.write_events(conform(pl.DataFrame({"@timestamp": [t for t, _ in rows], "user.name": [u for _, u in rows]})),
                   stem="p")
    with Ledger.open(s.ledger_path, create=True) as ledger:
        ledger.set_caps(window_policy="month", epsilon=5.0, delta=1e-5)
    return s


def test_timeseries_flags_the_spike_and_charges_once(spiky_store):
    res = CliRunner().invoke(cli, [
        "timeseries", "--store", str(spiky_store.path), "--sql", SQL, "--epsilon", "3", "--max-groups", "20",
        "--max-rows-per-group", "6", "--start", "2026-11-01", "--end", "2026-11-21", "--history", "7",
        "--z", "8", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    buckets = doc["buckets"]
    assert len(buckets) == 20 and all(b["z"] is None for b in buckets[:7])
    flagged = [b["day"][:10] for b in buckets if b["anomalous"]]
    # 2,400 vs 400 events; Laplace b = L0·L∞/ε = 20·6/3, std ≈ 57: z ≈ 30 on day 18 (below 8 with
    # probability < 1e-9), and one of the 12 flat scored days passes z = 8 with probability
    # ≈ 12·exp(-8√2) ≈ 2e-4 (at ε = 1 and z = 4 a false flag came about once in 50-100 runs)
    assert flagged == ["2026-11-18"]
    with Ledger.open(spiky_store.ledger_path) as ledger:
        (entry,) = ledger.history()
        assert entry.caller == "timeseries" and ledger.spent("2026-11").epsilon == pytest.approx(3.0)
    assert buckets[17]["z"] > 8 and buckets[17]["noise_std"] == pytest.approx(40 * 2**0.5)


def test_the_text_table_prints_counts_as_the_query_table_does(spiky_store):
    """Counts printed as 85.0 and -127.0, and thousands without separators (2400.0), unlike `dplogs
    query`'s table (2,400)."""
    res = CliRunner().invoke(cli, [
        "timeseries", "--store", str(spiky_store.path), "--sql", SQL, "--epsilon", "3", "--max-groups", "20",
        "--max-rows-per-group", "6", "--start", "2026-11-01", "--end", "2026-11-21", "--history", "7"])
    assert res.exit_code == 0, res.output
    rows = res.stdout.splitlines()[1:]
    values = [row.split()[2] for row in rows]  # day, time, value, ...
    assert len(values) == 20 and not any(v.endswith(".0") for v in values)
    assert all(v.lstrip("-").replace(",", "").isdigit() for v in values) and "," in values[17]  # the 2,400-event day


def test_timeseries_refuses_a_query_it_cannot_score_before_charging(spiky_store):
    res = CliRunner().invoke(cli, [
        "timeseries", "--store", str(spiky_store.path), "--epsilon", "1", "--max-groups", "20",
        "--max-rows-per-group", "6", "--start", "2026-11-01", "--end", "2026-11-21",
        "--sql", "SELECT COUNT(*) FROM logs"])
    assert res.exit_code == 64 and "time-bucket key" in res.output
    with Ledger.open(spiky_store.ledger_path) as ledger:
        assert ledger.history() == []


def test_score_release_uses_the_release_noise_in_z():
    days = [dt.datetime(2026, 11, d) for d in range(1, 9)]
    rel = pl.DataFrame({"day": days, "aggregate": "count", "value": [10.0] * 7 + [20.0], "mechanism": "gaussian",
                        "scale": 2.0, "ci_low": 0.0, "ci_high": 0.0})
    out = score_release(rel, history=7)
    # flat history: spread floors at the noise std 2, z = 10 / √(4·(1 + 1/7))
    assert out["z"][7] == pytest.approx(10 / (2 * (8 / 7) ** 0.5))
    assert out["baseline"][7] == 10.0 and out["noise_std"][0] == 2.0


@pytest.fixture
def store_with_a_gap(tmp_path):
    # 300 users, one event a day on 11-01..11-10 and again on 11-21..11-25, ingested from two
    # files: nothing was ingested for 11-11..11-20, so the store's coverage has a hole
    for stem, days in (("a", range(1, 11)), ("b", range(21, 26))):
        lines = [json.dumps({"@timestamp": f"2026-11-{d:02d}T09:00:00Z", "user": {"name": f"u{u}"},
                             "event": {"action": "logon"}}) for d in days for u in range(300)]
        (tmp_path / f"{stem}.json").write_text("\n".join(lines) + "\n")
    store = tmp_path / "g"
    res = CliRunner().invoke(cli, ["ingest", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--store", str(store)])
    assert res.exit_code == 0, res.output
    with Ledger.open(store / "ledger.sqlite", create=True) as ledger:
        ledger.set_caps(window_policy="month", epsilon=5.0, delta=1e-5)
    return Store.open(store)


def test_buckets_outside_the_coverage_are_neither_scored_nor_in_baselines(store_with_a_gap):
    spans = store_with_a_gap.coverage()
    assert [(a.day, b.day) for a, b in spans] == [(1, 10), (21, 25)]
    res = CliRunner().invoke(cli, [
        "timeseries", "--store", str(store_with_a_gap.path), "--sql", SQL, "--epsilon", "1", "--max-groups", "30",
        "--max-rows-per-group", "1", "--start", "2026-11-01", "--end", "2026-11-26", "--history", "5",
        "--format", "json"])
    assert res.exit_code == 0, res.output
    buckets = json.loads(res.stdout)["buckets"]
    covered = [b["covered"] for b in buckets]
    assert covered == [True] * 10 + [False] * 10 + [True] * 5
    gap = buckets[10:20]
    assert all(b["z"] is None and not b["anomalous"] and b["baseline"] is None for b in gap)
    # 11-21's baseline is the five covered days before the gap (~300 each), not the gap's noise
    # around 0 (Laplace b = 30: the mean of five draws stays within ±100 of 300 but for ~1e-6)
    assert abs(buckets[20]["baseline"] - 300) < 100 and abs(buckets[20]["z"]) < 6
    assert "10 buckets lie outside the store's coverage" in res.stderr


def test_score_release_skips_uncovered_buckets_in_the_baseline():
    days = [dt.datetime(2026, 11, d) for d in range(1, 10)]
    values = [10.0, 10, 10, 0, 0, 0, 10, 10, 10]
    rel = pl.DataFrame({"day": days, "aggregate": "count", "value": values, "mechanism": "gaussian",
                        "scale": 1.0, "ci_low": 0.0, "ci_high": 0.0})
    mask = [True, True, True, False, False, False, True, True, True]
    out = score_release(rel, history=3, covered=mask)
    assert out["z"].to_list()[:6] == [None] * 6 or all(z != z for z in out["z"].to_list()[:6])
    assert out["baseline"][6] == 10.0 and out["z"][6] == pytest.approx(0.0)
    assert not out["anomalous"].any()
    plain = score_release(rel, history=3)  # without the mask the return from the gap is a spike
    assert plain["z"][6] > 5
