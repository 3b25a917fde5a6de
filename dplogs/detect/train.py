"""Training and scoring from a store. Training is a release: its loss is reserved on the store's
budget ledger before any noise is drawn, and the model file carries the model card.

Scores are per (unit, window) and stay INSIDE the trust boundary: they are not DP.
:func:`score_store` writes them to a Parquet file in the store (``STORE/scores/``);
:func:`top_windows` hands the N most anomalous, with what drove them, to an analyst (``dplogs score
--top N``, which labels them as raw per-unit data).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dplogs.detect.autoencoder import AutoencoderConfig, train_autoencoder
from dplogs.detect.calibration import CALIBRATION_SHARE, plan_calibration, release_calibration
from dplogs.detect.features import FEATURE_NAMES, FeatureSpec, extract_features
from dplogs.detect.kmeans import plan_kmeans, train_kmeans
from dplogs.detect.model import (
    DETECTORS, ModelCard, check_features, load_model, model_from_json, model_to_json, save_model,
)
from dplogs.errors import PrivacyParameterError, UsageError
from dplogs.privacy.accounting import zcdp_to_epsilon
from dplogs.privacy.dpsgd import ZCDP_ACCOUNTANT, plan_dpsgd, rho_for_epsilon
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.params import check_delta, check_epsilon
from dplogs.privacy.windows import windows_for
from dplogs.schema import TIMESTAMP


def _utc(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise UsageError(f"cannot read {text!r} as a time; use ISO 8601, e.g. 2026-11-01") from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


@dataclass(frozen=True)
class TrainRequest:
    """Public: one training release. Privacy-critical fields are keyword-only and required;
    ``start``/``end`` are the public time range (half-open) the budget windows are charged for."""

    detector: str
    epsilon: float
    delta: float
    start: str
    end: str
    max_windows_per_unit: int
    clip_norm: float
    window: str = "day"
    k: int = 8
    iterations: int = 5
    hidden: int = 8
    steps: int = 300
    sampling_rate: float = 0.01
    expected_batch_size: float = 100.0
    gradient_clip: float = 0.05
    learning_rate: float = 0.01

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise UsageError(f"unknown detector {self.detector!r}; pass --detector {' or '.join(DETECTORS)}")
        check_epsilon(self.epsilon)
        check_delta(self.delta)
        if _utc(self.end) <= _utc(self.start):
            raise UsageError(f"--end {self.end} must be after --start {self.start}")
        if self.k < 1 or self.iterations < 1:
            raise PrivacyParameterError("k and iterations must be >= 1")


def train_from_store(store_path: str | os.PathLike[str], request: TrainRequest, *, output: str | os.PathLike[str],
                     idempotency_key: str | None = None) -> tuple[Path, ModelCard]:
    """Extract bounded features from the store, reserve the loss, train, write the model file."""
    from dplogs.ingest.store import Store

    store = Store.open(store_path)
    unit, policy = store.manifest.privacy_unit, store.manifest.budget_window
    spec = FeatureSpec(max_windows_per_unit=request.max_windows_per_unit, clip_norm=request.clip_norm,
                       window=request.window, budget_window=policy)
    lo, hi = _utc(request.start), _utc(request.end)
    windows = windows_for(lo, hi, policy)  # datetimes: the half-open range [start, end)
    lf = store.scan().filter((pl.col(TIMESTAMP) >= lo) & (pl.col(TIMESTAMP) < hi))
    dim = len(FEATURE_NAMES)

    # every plan (and so every validation error) exists before the ledger is touched; the score
    # histogram's loss is composed with training's into ONE reservation
    K = request.max_windows_per_unit
    if request.detector == "kmeans":
        rho_total = rho_for_epsilon(request.epsilon, request.delta)
        plan = plan_kmeans(k=request.k, dim=dim, iterations=request.iterations,
                           rho=rho_total * (1 - CALIBRATION_SHARE), max_rows_per_unit=K, clip_norm=request.clip_norm)
        cal_plan = plan_calibration(max_rows_per_unit=K, rho=rho_total * CALIBRATION_SHARE)
        loss = plan.loss + cal_plan.loss
        rho = loss.rho
        eps, accountant = zcdp_to_epsilon(rho, request.delta), ZCDP_ACCOUNTANT
        hyper: dict[str, Any] = {"k": request.k, "iterations": request.iterations,
                                 "sum_noise_std": plan.sum_plan.std, "count_noise_std": plan.count_plan.std}
    else:
        config = AutoencoderConfig(hidden=request.hidden, steps=request.steps, sampling_rate=request.sampling_rate,
                                   expected_batch_size=request.expected_batch_size,
                                   learning_rate=request.learning_rate)
        sgd = plan_dpsgd(epsilon=request.epsilon * (1 - CALIBRATION_SHARE), delta=request.delta,
                         sampling_rate=request.sampling_rate, steps=request.steps, clip_norm=request.gradient_clip)
        cal_plan = plan_calibration(max_rows_per_unit=K, epsilon=request.epsilon * CALIBRATION_SHARE)
        loss = sgd.loss + cal_plan.loss  # basic composition: DP-SGD's PLD (ε, δ) + the pure-ε histogram
        rho, eps, accountant = None, loss.epsilon, f"{sgd.accountant} + basic composition with a Laplace histogram"
        hyper = {"hidden": request.hidden, "steps": request.steps, "sampling_rate": sgd.sampling_rate,
                 "expected_batch_size": request.expected_batch_size, "learning_rate": request.learning_rate,
                 "gradient_clip_per_unit": request.gradient_clip, "noise_multiplier": sgd.noise_multiplier,
                 "epsilon_dpsgd": sgd.epsilon, "epsilon_rdp_crosscheck": sgd.epsilon_rdp}
    hyper["score_histogram"] = {"share": CALIBRATION_SHARE, "mechanism": cal_plan.mechanism.value,
                                "noise_std": cal_plan.std}

    ledger = Ledger.open(store.ledger_path, create=True)
    query = json.dumps({"train": asdict(request)})
    with ledger.charge(loss, windows=windows, caller="train", query=query, idempotency_key=idempotency_key,
                       mechanisms=["gaussian"] if request.detector == "kmeans" else ["gaussian", "laplace"]) as charge:
        if charge.replayed_payload is not None:
            doc = charge.replayed_payload
        else:
            table = extract_features(lf, unit=unit, spec=spec)
            batches = table.batches()
            if request.detector == "kmeans":
                model = train_kmeans(batches, plan=plan, charge=charge)
            else:
                model = train_autoencoder(batches, dim=dim, config=config, plan=sgd,
                                          max_rows_per_unit=request.max_windows_per_unit, charge=charge)
            calibration = release_calibration(model.scores(table.matrix()), plan=cal_plan,
                                              clip_norm=request.clip_norm, charge=charge)
            card = ModelCard(
                detector=request.detector, epsilon=eps, delta=request.delta, rho=rho, accountant=accountant,
                privacy_unit=unit, budget_windows=tuple(windows), max_windows_per_unit=request.max_windows_per_unit,
                clip_norm=request.clip_norm, feature_window=request.window, features=table.names,
                hyperparameters=hyper, ledger_entry=charge.entry_id, score_calibration=calibration.to_dict(),
            )
            doc = model_to_json(model, card)
            charge.record(doc)
    path = save_model(doc, output)  # only after the ledger committed the charge
    return path, model_from_json(doc)[1]


def _scored_table(store_path, model_path):
    from dplogs.ingest.store import Store

    store = Store.open(store_path)
    model, card = load_model(model_path)
    if card.privacy_unit != store.manifest.privacy_unit:
        raise UsageError(f"model was trained per {card.privacy_unit}, the store's unit is {store.manifest.privacy_unit}")
    spec = FeatureSpec(max_windows_per_unit=2**31, clip_norm=card.clip_norm, window=card.feature_window,
                       budget_window=store.manifest.budget_window)
    check_features(card, FEATURE_NAMES)
    table = extract_features(store.scan(), unit=card.privacy_unit, spec=spec)
    return store, model, card, table


def score_store(store_path: str | os.PathLike[str], model_path: str | os.PathLike[str], *,
                output: str | os.PathLike[str] | None = None) -> tuple[Path, int]:
    """Score every (unit, window) of the store with a trained model. NOT a release: the scores are
    written inside the store (``STORE/scores/<model>.parquet`` by default) and must stay inside the
    trust boundary. Returns the output path and the number of rows scored."""
    store, model, card, table = _scored_table(store_path, model_path)
    scores = model.scores(table.matrix())
    out = Path(output) if output is not None else store.path / "scores" / f"{Path(model_path).stem}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame = table.frame.select("unit", "window_start").with_columns(pl.Series("score", scores))
    if card.calibration is not None:
        frame = frame.with_columns(pl.Series("percentile", card.calibration.percentile(scores)))
    frame.rename({"unit": card.privacy_unit}).write_parquet(out)
    return out, len(scores)


def top_windows(store_path: str | os.PathLike[str], model_path: str | os.PathLike[str], *, n: int,
                features_per_window: int = 3) -> list[dict[str, Any]]:
    """The ``n`` most anomalous unit-windows of the store, each with its score, its percentile
    among the training scores (from the model's DP histogram) and the features that drove the score
    (largest parts of it first, with the feature's scaled value). NOT a release: raw per-unit data,
    for an analyst inside the trust boundary."""
    if n < 1:
        raise UsageError(f"--top must be >= 1, got {n}")
    _, model, card, table = _scored_table(store_path, model_path)
    x = table.matrix()
    scores = model.scores(x)
    order = np.argsort(-scores, kind="stable")[:n]
    parts = model.contributions(x[order])
    pct = card.calibration.percentile(scores[order]) if card.calibration is not None else None
    out = []
    for rank, (i, part) in enumerate(zip(order, parts)):
        row = table.row(int(i))
        drivers = np.argsort(-part, kind="stable")[:features_per_window]
        total = float(part.sum()) or 1.0
        out.append({
            "rank": rank + 1, card.privacy_unit: row["unit"], "window_start": row["window_start"].isoformat(),
            "host": row["host"], "score": float(scores[i]),
            "percentile": None if pct is None else round(float(pct[rank]), 3),
            "drivers": [{"feature": table.names[j], "value": round(float(x[i, j]), 4),
                         "share_of_score": round(float(part[j]) / total, 3)} for j in drivers],
        })
    return out
