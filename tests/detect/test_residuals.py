"""Directional features are scored one-sided: only a value above the model counts (a window that
names no process, fails less or sees nothing new is not an anomaly)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dplogs.detect.autoencoder import AutoencoderModel
from dplogs.detect.features import FEATURE_NAMES
from dplogs.detect.kmeans import KMeansModel
from dplogs.detect.model import ModelCard, load_model, model_from_json, model_to_json
from dplogs.detect.peers import PEER_FEATURE_NAMES
from dplogs.detect.residuals import RISING_FEATURES, rising_mask
from dplogs.detect.train import TrainRequest, train_from_store
from dplogs.errors import DataError

NAMES = (*FEATURE_NAMES, *PEER_FEATURE_NAMES)
RARITY = NAMES.index("process_rarity_vs_peers")
WEB = NAMES.index("category.web")


def _card(detector: str, **hyper) -> ModelCard:
    return ModelCard(detector=detector, epsilon=1.0, delta=1e-6, rho=None, accountant="test", privacy_unit="user.name",
                     budget_windows=("2026-11",), max_windows_per_unit=1, clip_norm=1.0, feature_window="5min",
                     features=NAMES, hyperparameters=hyper)


def test_kmeans_exact_one_sided_scores_and_parts():
    rising = np.array([False, True, True])
    model = KMeansModel(centroids=np.array([[0.5, 0.5, 0.5], [0.0, 1.0, 0.0]]), rising=rising)
    x = np.array([[0.5, 0.0, 0.0],   # below centroid 0 on both directional features: 0
                  [1.0, 1.0, 0.5],   # centroid 0: 0.25 + 0.25 + 0 = 0.5; centroid 1: 1 + 0 + 0.25 = 1.25
                  [0.0, 0.9, 0.0]])  # centroid 1: 0 + 0 + 0 (centroid 0: 0.25 + 0.16 + 0)
    assert model.scores(x).tolist() == pytest.approx([0.0, 0.5, 0.0])
    parts = model.contributions(x)
    assert np.allclose(parts, [[0, 0, 0], [0.25, 0.25, 0], [0, 0, 0]])
    assert parts.sum(axis=1) == pytest.approx(model.scores(x))
    # without the mask: the squared distance to the nearest centroid, as before
    assert KMeansModel(centroids=model.centroids).scores(x).tolist() == pytest.approx([0.5, 0.5, 0.01])


def test_autoencoder_exact_one_sided_scores():
    # zero weights: the reconstruction is the output bias b2 = (0.5, 0.5)
    params = (np.zeros((2, 1)), np.zeros(1), np.zeros((1, 2)), np.array([0.5, 0.5]))
    model = AutoencoderModel(params=params, rising=np.array([False, True]))
    x = np.array([[0.0, 0.0], [1.0, 1.0]])
    assert model.scores(x).tolist() == pytest.approx([0.25 / 2, 0.5 / 2])
    assert model.contributions(x).sum(axis=1) == pytest.approx(model.scores(x))
    assert AutoencoderModel(params=params).scores(x).tolist() == pytest.approx([0.25, 0.25])


@pytest.mark.parametrize("detector", ["kmeans", "autoencoder"])
def test_a_window_naming_no_process_is_not_scored_like_a_rare_tool(detector):
    """Regression (issue 17, OTRF): with two-sided residuals a window that names no process
    (rarity 0, the peers' mean 0.34) scored above the attack tool's window (rarity 0.63)."""
    mean = np.zeros(len(NAMES))
    mean[RARITY] = 0.34
    if detector == "kmeans":
        weights = {"centroids": [mean.tolist()]}
    else:  # zero weights: reconstructs every row as the mean
        weights = {"w1": [[0.0]] * len(NAMES), "b1": [0.0], "w2": [[0.0] * len(NAMES)], "b2": mean.tolist()}
    card = _card(detector, one_sided_features=sorted(RISING_FEATURES & set(NAMES)))
    model, _ = model_from_json({"format": "dplogs-detector/1", "model_card": json.loads(json.dumps(_asdict(card))),
                                "weights": weights})
    no_process, tool, web_drop = mean.copy(), mean.copy(), mean.copy()
    no_process[RARITY], tool[RARITY] = 0.0, 0.63
    web_drop[WEB] = -0.3  # a non-directional feature still counts on both sides
    s = model.scores(np.array([no_process, tool, web_drop]))
    assert s[0] == 0.0 and s[1] > 0 and s[2] > 0


def _asdict(card):
    from dataclasses import asdict

    return asdict(card)


def test_a_card_whose_one_sided_features_are_not_names_is_refused():
    card = _card("kmeans", one_sided_features="failure_ratio")
    doc = {"format": "dplogs-detector/1", "model_card": _asdict(card), "weights": {"centroids": [[0.0] * len(NAMES)]}}
    with pytest.raises(DataError, match="one_sided_features"):
        model_from_json(doc)


def test_a_model_without_the_entry_scores_two_sided():
    """Models trained before the rule drew their score histogram from two-sided scores."""
    doc = model_to_json(KMeansModel(centroids=np.zeros((1, len(NAMES)))), _card("kmeans"))
    model, _ = model_from_json(doc)
    assert model.rising is None


@pytest.mark.parametrize("detector", ["kmeans", "autoencoder"])
def test_training_records_the_directional_features_and_scores_with_them(store, tmp_path, detector):
    kw = dict(detector=detector, epsilon=1.0, delta=1e-6, start="2026-11-01", end="2026-12-01",
              max_windows_per_unit=3, clip_norm=1.0, k=4, iterations=3, steps=20, sampling_rate=0.2,
              expected_batch_size=10.0)
    path, card = train_from_store(store.path, TrainRequest(**kw), output=tmp_path / "m.json")
    listed = card.hyperparameters["one_sided_features"]
    assert listed == [n for n in card.features if n in RISING_FEATURES]
    assert {"failure_ratio", "process_rarity_vs_peers", "new_processes_share"} <= set(listed)
    model, _ = load_model(path)
    assert model.rising.tolist() == rising_mask(card.features).tolist()
    if detector == "kmeans":  # the live clusters' shares of the last noisy counts travel with them
        assert len(model.shares) == len(model.centroids) and model.shares.sum() == pytest.approx(1.0)


def test_kmeans_caps_directional_coordinates_at_the_population_level():
    # level of column 1 = 0.75·0.2 + 0.25·0.9 = 0.375: centroid 1 excuses column 1 only up to it
    model = KMeansModel(centroids=np.array([[0.5, 0.2], [0.1, 0.9]]), rising=np.array([False, True]),
                        shares=np.array([0.75, 0.25]))
    x = np.array([[0.1, 0.9], [0.5, 0.1]])
    # row 0: centroid 1 gives 0 + (0.9 − 0.375)² = 0.275625 (centroid 0: 0.16 + 0.49)
    assert model.scores(x).tolist() == pytest.approx([0.275625, 0.0])
    assert np.allclose(model.contributions(x), [[0.0, 0.275625], [0.0, 0.0]])
    # a model file without shares (trained before the cap) scores as its histogram was drawn
    assert KMeansModel(centroids=model.centroids, rising=model.rising).scores(x).tolist() == pytest.approx([0.0, 0.0])


def test_cluster_shares_round_trip_and_bad_shares_are_refused():
    card = _card("kmeans", one_sided_features=["failure_ratio"])
    model = KMeansModel(centroids=np.zeros((2, len(NAMES))), shares=np.array([0.25, 0.75]))
    loaded, _ = model_from_json(json.loads(json.dumps(model_to_json(model, card))))
    assert loaded.shares.tolist() == [0.25, 0.75]
    old = model_to_json(KMeansModel(centroids=np.zeros((2, len(NAMES)))), card)
    assert "cluster_shares" not in old["weights"] and model_from_json(old)[0].shares is None
    for bad in ([0.5], [1.5, -0.5], [0.5, 0.6], ["a", "b"]):
        doc = model_to_json(model, card)
        doc["weights"]["cluster_shares"] = bad
        with pytest.raises(DataError, match="cluster_shares"):
            model_from_json(doc)
