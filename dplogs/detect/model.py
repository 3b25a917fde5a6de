"""Detector model files: one JSON document holding the weights and the model card.

The model card states the guarantee (ε, δ per privacy unit per budget window), the accountant,
the contribution bounds (K windows per unit per budget window, L2 clip C), the feature names and
windows, and the training window. The training data size is deliberately omitted (it is not
released).

>>> import numpy as np
>>> from dplogs.detect.kmeans import KMeansModel
>>> card = ModelCard(detector="kmeans", epsilon=1.0, delta=1e-6, rho=0.02, accountant="zCDP",
...     privacy_unit="user.name", budget_windows=("2026-11",), max_windows_per_unit=3, clip_norm=1.0,
...     feature_window="day", features=FEATURE_NAMES, hyperparameters={"k": 1})
>>> doc = model_to_json(KMeansModel(centroids=np.zeros((1, len(FEATURE_NAMES)))), card)
>>> model_from_json(doc)[1] == card
True
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from dplogs.detect.autoencoder import AutoencoderModel
from dplogs.detect.calibration import Calibration
from dplogs.detect.features import FEATURE_NAMES, WINDOWS
from dplogs.detect.peers import PEER_FEATURE_NAMES, PeerBaseline
from dplogs.detect.kmeans import KMeansModel
from dplogs.errors import DataError, DplogsError, InputNotFound, InternalError, UsageError
from dplogs.files import write_atomic
from dplogs.privacy.limits import MAX_CONTRIBUTION_BOUND, MAX_SPEC_BYTES

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

    peer_baseline: dict[str, Any] | None = None
    """The DP peer baseline (:class:`~dplogs.detect.peers.PeerBaseline` as a dict), released in the
    same ledger entry; None in models trained before peer features existed (they score without)."""

    @property
    def peers(self) -> PeerBaseline | None:
        return None if self.peer_baseline is None else PeerBaseline.from_dict(self.peer_baseline)

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


def expected_features(card: ModelCard) -> tuple[str, ...]:
    """The feature vocabulary this dplogs version computes for the model: the store features, and
    the peer features when the card carries a peer baseline."""
    return (*FEATURE_NAMES, *(PEER_FEATURE_NAMES if card.peer_baseline is not None else ()))


def scoring_clip_norm(card: ModelCard) -> float:
    """The clip norm rows are SCORED with: √(number of features), the largest norm a row of
    features in [0, 1] can have, so nothing is clipped. Clipping to C bounds a training row's
    influence on the release; scoring releases nothing, and clipping there would shrink exactly
    the rows that stand out most (the planted exfiltration of sample_logs fell from the top 5 to
    rank ~10–180 at ε = 1 with clipped scoring)."""
    return math.sqrt(len(card.features))


def check_features(card: ModelCard, names: tuple[str, ...]) -> None:
    """A model only scores the feature vocabulary it was trained on."""
    if tuple(card.features) != tuple(names):
        raise UsageError(f"the model was trained on {len(card.features)} features that differ from this dplogs "
                         f"version's {len(names)}; retrain it with `dplogs train`")


def model_to_json(model: Model, card: ModelCard) -> dict[str, Any]:
    if isinstance(model, KMeansModel):
        weights = {"centroids": model.centroids.tolist()}
        if model.shares is not None:
            weights["cluster_shares"] = model.shares.tolist()
    elif isinstance(model, AutoencoderModel):
        weights = {n: p.tolist() for n, p in zip(("w1", "b1", "w2", "b2"), model.params)}
    else:
        raise InternalError(f"unknown model type {type(model).__name__}")
    return {"format": FORMAT, "model_card": asdict(card), "weights": weights}


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, bool)) or _is_number(v)


_CARD_CHECKS: dict[str, tuple[str, Any]] = {
    "detector": ("one of " + ", ".join(DETECTORS), lambda v: v in DETECTORS),
    "epsilon": ("a finite number > 0", lambda v: _is_number(v) and v > 0),
    "delta": ("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1),
    "rho": ("null or a finite number > 0", lambda v: v is None or (_is_number(v) and v > 0)),
    "accountant": ("text", lambda v: isinstance(v, str)),
    "privacy_unit": ("text", lambda v: isinstance(v, str)),
    "budget_windows": ("a list of window keys", lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)),
    "max_windows_per_unit": (f"an integer in [1, {MAX_CONTRIBUTION_BOUND}]",
                             lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_CONTRIBUTION_BOUND),
    "clip_norm": ("a finite number > 0", lambda v: _is_number(v) and v > 0),
    "feature_window": (f"one of {', '.join(WINDOWS)}", lambda v: v in WINDOWS),
    "features": ("a list of feature names", lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)),
    "hyperparameters": ("a table of numbers, text, and small lists or tables of them", lambda v: _is_plain(v, depth=3)),
    "guarantee": ("text", lambda v: isinstance(v, str)),
    "data_size": ("text", lambda v: isinstance(v, str)),
    "ledger_entry": ("null or text", lambda v: v is None or isinstance(v, str)),
    "score_calibration": ("null or a table", lambda v: v is None or isinstance(v, dict)),
    "peer_baseline": ("null or a table", lambda v: v is None or isinstance(v, dict)),
}
def _is_plain(v: Any, *, depth: int) -> bool:
    """A table whose values are scalars, or lists/tables of them, nested at most ``depth`` deep."""
    if not isinstance(v, dict) or depth <= 0:
        return False
    def ok(x: Any, d: int) -> bool:
        if _is_scalar(x):
            return True
        if isinstance(x, list):
            return d > 0 and all(ok(y, d - 1) for y in x)
        return isinstance(x, dict) and d > 0 and all(isinstance(k, str) and ok(y, d - 1) for k, y in x.items())
    return all(isinstance(k, str) and ok(x, depth - 1) for k, x in v.items())


_WEIGHTS = {"kmeans": ("centroids",), "autoencoder": ("w1", "b1", "w2", "b2")}
_OPTIONAL_WEIGHTS = {"kmeans": ("cluster_shares",), "autoencoder": ()}  # absent in older model files


def _checked_card(raw: Any) -> ModelCard:
    """The model card of a model file, every entry checked (a file may have been edited)."""
    if not isinstance(raw, dict):
        raise DataError(f"the model card must be a JSON object, got {type(raw).__name__}")
    names = {f.name for f in fields(ModelCard)}
    required = {f.name for f in fields(ModelCard) if f.default is MISSING and f.default_factory is MISSING}
    if required - set(raw) or set(raw) - names:
        raise DataError(f"the model card lacks {sorted(required - set(raw))} and has unknown {sorted(set(raw) - names)} entries")
    for name, value in raw.items():
        what, ok = _CARD_CHECKS[name]
        if not ok(value):
            raise DataError(f"model card entry {name} must be {what}, got {value!r}")
    return ModelCard(**raw)


def _matrix(w: dict[str, Any], name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    try:
        a = np.asarray(w.get(name), dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"model weight {name} must be an array of numbers") from None
    if a.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, a.shape)) or not np.all(np.isfinite(a)) or a.size == 0:
        raise DataError(f"model weight {name} must be a finite array of shape {shape} (None: any size), got {a.shape}")
    return a


def model_from_json(doc: dict[str, Any]) -> tuple[Model, ModelCard]:
    """The model and card of a model file's document; DataError (exit 65) if anything is off."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"not a dplogs detector model (expected format {FORMAT}); train one with `dplogs train`")
    if set(doc) != {"format", "model_card", "weights"}:
        raise DataError("a model file has exactly the entries format, model_card and weights")
    card = _checked_card(doc["model_card"])
    w = doc["weights"]
    required, optional = set(_WEIGHTS[card.detector]), set(_OPTIONAL_WEIGHTS[card.detector])
    if not isinstance(w, dict) or not required <= set(w) <= required | optional:
        raise DataError(f"{card.detector} weights must be {', '.join(_WEIGHTS[card.detector])}"
                        + (f" (and optionally {', '.join(sorted(optional))})" if optional else ""))
    d = len(card.features)  # the model's own vocabulary; scoring refuses another one (exit 64)
    rising = _rising(card)
    if card.detector == "kmeans":
        centroids = _matrix(w, "centroids", (None, d))
        shares = None
        if "cluster_shares" in w:
            shares = _matrix(w, "cluster_shares", (len(centroids),))
            if (shares < 0).any() or not math.isclose(shares.sum(), 1.0, rel_tol=1e-9):
                raise DataError("model weight cluster_shares must be non-negative and sum to 1")
        return KMeansModel(centroids=centroids, rising=rising, shares=shares), card
    w1 = _matrix(w, "w1", (d, None))
    h = w1.shape[1]
    params = (w1, _matrix(w, "b1", (h,)), _matrix(w, "w2", (h, d)), _matrix(w, "b2", (d,)))
    return AutoencoderModel(params=params, rising=rising), card  # type: ignore[arg-type]


def _rising(card: ModelCard) -> np.ndarray | None:
    """The mask of the features the model scores one-sided (hyper-parameter
    ``one_sided_features``, :mod:`~dplogs.detect.residuals`); None for models trained before the
    rule, whose score histogram was drawn from two-sided scores."""
    names = card.hyperparameters.get("one_sided_features")
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError("model card entry hyperparameters.one_sided_features must be a list of feature names")
    return np.array([n in names for n in card.features], dtype=bool)


def save_model(doc: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    write_atomic(path, json.dumps(doc, indent=1) + "\n")
    return path


def load_model(path: str | os.PathLike[str]) -> tuple[Model, ModelCard]:
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"model file {path} does not exist; train one with `dplogs train --output {path}`")
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise DataError(f"model file {path} has {path.stat().st_size:,} bytes, more than the limit of {MAX_SPEC_BYTES:,}")
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:  # UnicodeDecodeError too
        raise DataError(f"model file {path} is not JSON ({exc}); retrain it with `dplogs train`") from None
    except RecursionError:
        raise DataError(f"model file {path} nests too deeply to read; retrain it with `dplogs train`") from None
    except OSError as exc:
        raise InputNotFound(f"model file {path} cannot be read: {exc.strerror}") from None
    try:
        return model_from_json(doc)
    except DplogsError as exc:
        raise type(exc)(f"model file {path}: {exc}") from None
