"""The anomaly query type: DP queries over the unit-windows a trained detector flags."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.detect.anomaly_counts import anomaly_events
from dplogs.detect.model import load_model, scoring_clip_norm
from dplogs.detect.train import TrainRequest, train_from_store
from dplogs.engine.api import Engine
from dplogs.errors import UsageError
from dplogs.ingest.base import IngestOptions
from dplogs.ingest.ingest import ingest
from dplogs.ingest.store import Store
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.testing import exact_mode

REPO = Path(__file__).resolve().parents[2]
SQL = "SELECT date_trunc('day', \"@timestamp\") AS day, COUNT(*) AS anomalous FROM logs GROUP BY 1"
WINDOW = {"start": "2024-03-04", "end": "2024-03-18"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    store = tmp_path_factory.mktemp("anom") / "store"
    ingest([REPO / "sample_logs"], store, options=IngestOptions(year=2024))
    Ledger.open(store / "ledger.sqlite", create=True).set_caps(window_policy="month", epsilon=50, delta=1e-5)
    model = store.parent / "model.json"
    train_from_store(store, TrainRequest(detector="kmeans", epsilon=2.0, delta=1e-6, max_windows_per_unit=5,
                                         clip_norm=3.0, k=3, iterations=3, **WINDOW), output=model)
    return store, model


def test_exact_counts_equal_a_group_by_of_the_flagged_windows(trained):
    store, model = trained
    eng = Engine.open(store).over_anomalies(model, threshold=0.5, seed=11)
    with exact_mode():
        rel = eng.sql(SQL, epsilon=1.0, **WINDOW).release()
    got = rel.to_polars()
    assert got.height == 14  # every public day bucket, empty ones too
    m, card = load_model(model)
    flagged = anomaly_events(Engine.open(store).scan(), model=m, unit="user.name", threshold=0.5,
                             max_windows_per_unit=card.max_windows_per_unit, clip_norm=scoring_clip_norm(card),
                             window=card.feature_window, seed=11, peers=card.peers).collect()
    want = flagged.group_by(pl.col("@timestamp").dt.truncate("1d").alias("day")).agg(pl.len().alias("n"))
    joined = got.join(want, on="day", how="left").with_columns(pl.col("n").fill_null(0))
    assert flagged.height > 0
    assert (joined["value"].cast(pl.Int64) == joined["n"]).all()
    # the model card's K is the default L0 bound, one row per unit-window
    bounds = rel.privacy["bounds"]
    assert (bounds["max_groups"], bounds["max_rows_per_group"]) == (card.max_windows_per_unit, 1)


def test_cli_releases_and_charges(trained):
    store, model = trained
    before = Ledger.open(store / "ledger.sqlite").spent("2024-03").epsilon
    res = CliRunner().invoke(cli, ["query", "--store", str(store), "--anomalies", str(model), "--threshold", "0.5",
                                   "--sql", SQL, "--epsilon", "0.5", "--start", WINDOW["start"], "--end", WINDOW["end"],
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    assert Ledger.open(store / "ledger.sqlite").spent("2024-03").epsilon == pytest.approx(before + 0.5)


def test_without_a_window_the_latest_covered_budget_window_is_used(trained):
    """As for any one-line query (the README tour's anomaly line gives no window): the anomaly
    engine knows its store's coverage, so the window defaults and is disclosed."""
    store, model = trained
    res = CliRunner().invoke(cli, ["query", "--store", str(store), "--anomalies", str(model), "--threshold", "0.5",
                                   "--sql", SQL, "--epsilon", "0.25", "--format", "json"])
    assert res.exit_code == 0, res.output
    # a raw threshold: the fixture's model is trained with real noise, so its noisy score
    # histogram (which percentile thresholds need) may come out empty on a small sample
    eng = Engine.open(store).over_anomalies(model, threshold=0.5)
    plan = eng.sql(SQL, epsilon=0.25).plan
    assert (plan.start.date().isoformat(), plan.end.date().isoformat()) == ("2024-03-01", "2024-04-01")
    assert "latest month budget window" in plan.defaults_used["window"]


def test_threshold_is_required_and_only_with_a_model(trained):
    store, model = trained
    runner = CliRunner()
    res = runner.invoke(cli, ["query", "--store", str(store), "--anomalies", str(model), "--sql", SQL, "--epsilon", "1"])
    assert res.exit_code == 64 and "--threshold" in res.output
    res = runner.invoke(cli, ["query", "--store", str(store), "--threshold", "1", "--sql", SQL, "--epsilon", "1"])
    assert res.exit_code == 64 and "--anomalies" in res.output


def test_model_of_another_unit_is_refused(trained, tmp_path):
    store, model = trained
    other = tmp_path / "s2"
    Store.init(other, privacy_unit="source.ip")
    with pytest.raises(UsageError, match="trained per user.name"):
        Engine.open(other).over_anomalies(model, threshold=0.5)


def test_an_anomaly_engine_outlives_the_close_of_the_engine_it_came_from(trained):
    """A service closes an engine to keep no file handle (Engine.close) and uses it again later.
    The anomaly engine made from it shared the ledger connection the first one had opened: after
    the close, its every release was refused as a corrupt ledger (74, "Cannot operate on a closed
    database"). It now opens its own; nothing was charged by the refused ones either way."""
    store, model = trained
    parent = Engine.open(store)
    before = len(parent.ledger.history())
    child = parent.over_anomalies(model, threshold=0.5, seed=11)
    parent.close()
    child.sql(SQL, epsilon=1.0, **WINDOW).release()
    assert len(parent.ledger.history()) == before + 1  # the parent reopens its ledger on use
    child.close()
    parent.close()
