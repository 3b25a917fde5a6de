"""Detector model files: one JSON document holding the weights and the model card.

The model card states the guarantee (ε, δ per privacy unit per budget window), the accountant,
the contribution bounds (K windows per unit per budget window, L2 clip C), the feature names and
windows, and the training window. The training data size is deliberately omitted (it is not
released).

>>> import numpy as np
>>> from dplogs.detect.kmeans import KMeansModel
>>> card = ModelCard(detector="kmeans", epsilon=1.0, delta=1e-6, rho=0.02, accountant="zCDP",
...     privacy_unit="user.name", budget_windows=("2026-11",), max_windows_per_unit=3, clip_norm=1.0,
...     feature_window="day", features=("a", "b"), hyperparameters={"k": 1})
>>> doc = model_to_json(KMeansModel(centroids=np.zeros((1, 2))), card)
>>> model_from_json(doc)[1] == card
True
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dplogs.detect.autoencoder import AutoencoderModel
from dplogs.detect.calibration import Calibration
from dplogs.detect.kmeans import KMeansModel
from dplogs.errors import InputNotFound, InternalError, UsageError

FORMAT = "dplogs-detector/1"
DETECTORS = ("kmeans", "autoencoder")
Model = KMeansModel | AutoencoderModel


@dataclass(frozen=True)
class ModelCard:
    """Public: what a trained detector discloses about its training."""

    detector: str
    epsilon: float
    delta: float
    rho: float | None
    accountant: str
    privacy_unit: str
    budget_windows: tuple[str, ...]
    max_windows_per_unit: int
    clip_norm: float
    feature_window: str
    features: tuple[str, ...]
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    guarantee: str = ""
    data_size: str = "omitted (not released)"
    ledger_entry: str | None = None
    score_calibration: dict[str, Any] | None = None
    """The DP histogram of training scores (:class:`~dplogs.detect.calibration.Calibration` as a
    dict), released in the same ledger entry; None in models trained before it existed."""

    @property
    def calibration(self) -> Calibration | None:
        return None if self.score_calibration is None else Calibration(**self.score_calibration)

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise UsageError(f"unknown detector {self.detector!r}; use one of: {', '.join(DETECTORS)}")
        if not (self.epsilon > 0 and math.isfinite(self.epsilon) and 0 <= self.delta < 1):
            raise InternalError(f"model card with invalid epsilon/delta {self.epsilon}, {self.delta}")
        object.__setattr__(self, "budget_windows", tuple(self.budget_windows))
        object.__setattr__(self, "features", tuple(self.features))
        if not self.guarantee:
            object.__setattr__(self, "guarantee", (
                f"({self.epsilon:.4g}, {self.delta:.3g})-DP per {self.privacy_unit} per budget window "
                f"({', '.join(self.budget_windows)}); each unit contributes <= {self.max_windows_per_unit} "
                f"{self.feature_window} feature rows per budget window, each clipped to L2 norm {self.clip_norm:g}"
            ))


def check_features(card: ModelCard, names: tuple[str, ...]) -> None:
    """A model only scores the feature vocabulary it was trained on."""
    if tuple(card.features) != tuple(names):
        raise UsageError(f"the model was trained on {len(card.features)} features that differ from this dplogs "
                         f"version's {len(names)}; retrain it with `dplogs train`")


def model_to_json(model: Model, card: ModelCard) -> dict[str, Any]:
    if isinstance(model, KMeansModel):
        weights = {"centroids": model.centroids.tolist()}
    elif isinstance(model, AutoencoderModel):
        weights = {n: p.tolist() for n, p in zip(("w1", "b1", "w2", "b2"), model.params)}
    else:
        raise InternalError(f"unknown model type {type(model).__name__}")
    return {"format": FORMAT, "model_card": asdict(card), "weights": weights}


def model_from_json(doc: dict[str, Any]) -> tuple[Model, ModelCard]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UsageError(f"not a dplogs detector model (expected format {FORMAT}); train one with `dplogs train`")
    card = ModelCard(**doc["model_card"])
    w = doc["weights"]
    if card.detector == "kmeans":
        return KMeansModel(centroids=np.asarray(w["centroids"], dtype=np.float64)), card
    params = tuple(np.asarray(w[n], dtype=np.float64) for n in ("w1", "b1", "w2", "b2"))
    return AutoencoderModel(params=params), card  # type: ignore[arg-type]


def save_model(doc: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_model(path: str | os.PathLike[str]) -> tuple[Model, ModelCard]:
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"model file {path} does not exist; train one with `dplogs train --output {path}`")
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise UsageError(f"model file {path} is not JSON ({exc}); retrain it with `dplogs train`") from None
    return model_from_json(doc)
