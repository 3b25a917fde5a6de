"""Detector paths the first sweep did not try: ``--threshold`` values a typo or another script
makes, and percentiles outside (0, 100) on a model that has a score calibration. Each is refused
with 64 before anything is charged."""

from __future__ import annotations

import json

import pytest

from dplogs.detect.calibration import score_edges
from tests.adversarial.conftest import invoke, ledger_state
from tests.adversarial.test_bad_input import WINDOW, _model_doc


@pytest.fixture
def calibrated_model(tmp_path):
    doc = _model_doc()
    edges = score_edges(doc["model_card"]["clip_norm"])
    doc["model_card"]["score_calibration"] = {"edges": list(edges), "counts": [10.0] * (len(edges) + 1), "noise_std": 1.0}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(doc))
    return path


def _query(store, model, threshold):
    return invoke("query", "--store", store, "--anomalies", model, "--threshold", threshold, "--epsilon", "1",
                  "--max-groups", "1", "--max-rows-per-group", "1", *WINDOW, "--sql", "SELECT COUNT(*) FROM logs")


@pytest.mark.parametrize("threshold", [
    "1_0",  # float() read it as 10
    "p٩٩",  # Arabic-Indic digits: read as p99
    "٣",
    "p101", "p100", "p0", "p-1", "pnan", "pinf", "nan", "-inf", "1e400", "p 99", "",
])
def test_a_threshold_that_is_not_a_plain_score_or_percentile_is_refused_before_the_charge(store, calibrated_model, threshold):
    before = ledger_state(store)
    res = _query(store, calibrated_model, threshold)
    assert res.exit_code == 64, res.output
    assert "threshold" in res.stderr or "percentile" in res.stderr, res.stderr
    assert ledger_state(store) == before


@pytest.mark.parametrize("threshold", ["p99", "P99.5", "0.25", "1e-3"])
def test_plain_thresholds_are_read(store, calibrated_model, threshold):
    res = invoke("explain", "--store", store, "--anomalies", calibrated_model, "--threshold", threshold, "--epsilon", "1",
                 "--max-groups", "1", "--max-rows-per-group", "1", *WINDOW, "--sql", "SELECT COUNT(*) FROM logs")
    assert res.exit_code == 0, res.output[-500:]


def test_an_anomaly_release_says_its_rows_are_a_models_flags(store, calibrated_model):
    # before, its privacy block and ledger entry read like "SELECT COUNT(*) FROM logs" over the
    # events: nothing said a detector's flags were counted, nor which model (one trained on another
    # store or window is not refused; this is how a reader tells)
    res = invoke("query", "--store", store, "--anomalies", calibrated_model, "--threshold", "p99", "--epsilon", "1",
                 "--max-groups", "1", "--max-rows-per-group", "1", *WINDOW, "--sql", "SELECT COUNT(*) FROM logs",
                 "--format", "json")
    assert res.exit_code == 0, res.output[-500:]
    shown = json.loads(res.stdout)["privacy"]["anomalies"]
    assert shown["detector"] == "kmeans" and shown["model"] == "model.json" and shown["threshold"] == "p99"
    assert shown["trained_on"] == ["2024-03"] and shown["score_threshold"] > 0
    explained = invoke("explain", "--store", store, "--anomalies", calibrated_model, "--threshold", "p99", "--epsilon", "1",
                       "--max-groups", "1", "--max-rows-per-group", "1", *WINDOW, "--sql", "SELECT COUNT(*) FROM logs")
    assert "rows: the unit-windows the kmeans model model.json scores above" in explained.stdout
    plain = invoke("query", "--store", store, "--epsilon", "1", "--max-groups", "1", "--max-rows-per-group", "1", *WINDOW,
                   "--sql", "SELECT COUNT(*) FROM logs", "--format", "json")
    assert "anomalies" not in json.loads(plain.stdout)["privacy"]


def test_a_training_key_reused_for_another_training_is_refused_not_answered_with_the_old_model(store, tmp_path):
    # before, an hourly autoencoder request with the key of a daily k-means model wrote that model (exit 0)
    train = ["train", "--store", store, "--epsilon", "1", "--delta", "1e-6", *WINDOW, "--idempotency-key", "weekly"]
    first = invoke(*train, "--detector", "kmeans", "--output", tmp_path / "a.json")
    assert first.exit_code == 0, first.output[-500:]
    before = ledger_state(store)
    for other in (["--detector", "autoencoder"], ["--detector", "kmeans", "--window", "hour"],
                  ["--detector", "kmeans", "--max-windows", "2"]):
        res = invoke(*train, *other, "--output", tmp_path / "b.json")
        assert res.exit_code == 64, res.output[-500:]
        assert "trained differently" in res.stderr and not (tmp_path / "b.json").exists()
    assert ledger_state(store) == before
    again = invoke(*train, "--detector", "kmeans", "--output", tmp_path / "c.json")
    assert again.exit_code == 0 and (tmp_path / "c.json").read_text() == (tmp_path / "a.json").read_text()
