"""Scoring is no release: rows are scored unclipped (clipping bounds a TRAINING row's influence;
at scoring time it would shrink exactly the rows that stand out most)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from dplogs.detect.features import FEATURE_NAMES, FeatureSpec, extract_features
from dplogs.detect.kmeans import KMeansModel
from dplogs.detect.model import ModelCard, model_to_json, save_model, scoring_clip_norm
from dplogs.detect.train import score_store


def test_rows_outside_the_clip_ball_are_scored_unclipped(store, tmp_path):
    card = ModelCard(detector="kmeans", epsilon=1.0, delta=1e-6, rho=0.02, accountant="zCDP", privacy_unit="user.name",
                     budget_windows=("2026-11",), max_windows_per_unit=3, clip_norm=0.5, feature_window="day",
                     features=FEATURE_NAMES, hyperparameters={"k": 1})
    path = save_model(model_to_json(KMeansModel(centroids=np.zeros((1, len(FEATURE_NAMES)))), card), tmp_path / "m.json")
    out, n = score_store(store.path, path)
    scores = pl.read_parquet(out).sort("user.name", "window_start")["score"].to_numpy()
    # a zero centroid scores the squared norm of the row as extracted without clipping
    raw = extract_features(store.scan(), unit="user.name",
                           spec=FeatureSpec(max_windows_per_unit=2**31, clip_norm=math.sqrt(len(FEATURE_NAMES)),
                                            budget_window="month"))
    expect = (raw.frame.sort("unit", "window_start").select(FEATURE_NAMES).to_numpy() ** 2).sum(axis=1)
    assert n == len(expect) and np.allclose(scores, expect)
    assert scores.max() > 0.5 ** 2  # clipped to C = 0.5, no row could score above C²
    assert scoring_clip_norm(card) == math.sqrt(len(FEATURE_NAMES))
