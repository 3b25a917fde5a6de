"""Training and scoring from a store. Training is a release: its loss is reserved on the store's
budget ledger before any noise is drawn, and the model file carries the model card.

Scores are per (unit, window) and stay INSIDE the trust boundary: :func:`score_store` writes them
to a Parquet file in the store (``STORE/scores/``), never to stdout, and they are not DP.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from dplogs.detect.autoencoder import AutoencoderConfig, train_autoencoder
from dplogs.detect.features import FEATURE_NAMES, FeatureSpec, extract_features
from dplogs.detect.kmeans import plan_kmeans, train_kmeans
from dplogs.detect.model import DETECTORS, ModelCard, load_model, model_from_json, model_to_json, save_model
from dplogs.errors import PrivacyParameterError, UsageError
from dplogs.privacy.accounting import zcdp_to_epsilon
from dplogs.privacy.dpsgd import ZCDP_ACCOUNTANT, plan_dpsgd, rho_for_epsilon
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.limits import (
    EARLIEST_TIME, LATEST_TIME, MAX_BUDGET_WINDOWS, MAX_CLAMP, MAX_MODEL_WIDTH, MAX_TRAIN_ROUNDS, MIN_TRAIN_EPSILON,
)
from dplogs.privacy.params import check_delta, check_epsilon, check_integer, check_number
from dplogs.privacy.windows import window_count, windows_for
from dplogs.schema import TIMESTAMP


def _utc(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text)
        t = t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"cannot read {text!r} as a time; use ISO 8601, e.g. 2026-11-01") from None
    if not EARLIEST_TIME <= t <= LATEST_TIME:
        raise UsageError(f"{text} is outside the supported range {EARLIEST_TIME.date()} .. {LATEST_TIME.date()}")
    return t


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
        if check_epsilon(self.epsilon) < MIN_TRAIN_EPSILON:
            raise PrivacyParameterError(f"a training epsilon must be >= {MIN_TRAIN_EPSILON:g}, got {self.epsilon!r}")
        check_delta(self.delta)
        if _utc(self.end) <= _utc(self.start):
            raise UsageError(f"--end {self.end} must be after --start {self.start}")
        for name, hi in (("k", MAX_MODEL_WIDTH), ("hidden", MAX_MODEL_WIDTH), ("iterations", MAX_TRAIN_ROUNDS),
                         ("steps", MAX_TRAIN_ROUNDS)):
            check_integer(name, getattr(self, name), lo=1, hi=hi)
        for name in ("clip_norm", "gradient_clip", "expected_batch_size", "learning_rate", "sampling_rate"):
            x = check_number(name, getattr(self, name))
            if not 0 < x <= MAX_CLAMP:
                raise PrivacyParameterError(f"{name} must be a number > 0 and <= {MAX_CLAMP:g}, got {x!r}")


def train_from_store(store_path: str | os.PathLike[str], request: TrainRequest, *, output: str | os.PathLike[str],
                     idempotency_key: str | None = None) -> tuple[Path, ModelCard]:
    """Extract bounded features from the store, reserve the loss, train, write the model file."""
    from dplogs.ingest.store import Store

    store = Store.open(store_path)
    unit, policy = store.manifest.privacy_unit, store.manifest.budget_window
    spec = FeatureSpec(max_windows_per_unit=request.max_windows_per_unit, clip_norm=request.clip_norm,
                       window=request.window, budget_window=policy)
    lo, hi = _utc(request.start), _utc(request.end)
    if window_count(lo, hi, policy) > MAX_BUDGET_WINDOWS:
        raise UsageError(f"{request.start} .. {request.end} touches {window_count(lo, hi, policy):,} {policy} budget windows, "
                         f"more than the limit of {MAX_BUDGET_WINDOWS}; train on a shorter range")
    windows = windows_for(lo, hi, policy)  # datetimes: the half-open range [start, end)
    lf = store.scan().filter((pl.col(TIMESTAMP) >= lo) & (pl.col(TIMESTAMP) < hi))
    dim = len(FEATURE_NAMES)

    # every plan (and so every validation error) exists before the ledger is touched
    if request.detector == "kmeans":
        plan = plan_kmeans(k=request.k, dim=dim, iterations=request.iterations,
                           rho=rho_for_epsilon(request.epsilon, request.delta),
                           max_rows_per_unit=request.max_windows_per_unit, clip_norm=request.clip_norm)
        loss, rho = plan.loss, plan.loss.rho
        eps, accountant = zcdp_to_epsilon(rho, request.delta), ZCDP_ACCOUNTANT
        hyper: dict[str, Any] = {"k": request.k, "iterations": request.iterations,
                                 "sum_noise_std": plan.sum_plan.std, "count_noise_std": plan.count_plan.std}
    else:
        config = AutoencoderConfig(hidden=request.hidden, steps=request.steps, sampling_rate=request.sampling_rate,
                                   expected_batch_size=request.expected_batch_size,
                                   learning_rate=request.learning_rate)
        sgd = plan_dpsgd(epsilon=request.epsilon, delta=request.delta, sampling_rate=request.sampling_rate,
                         steps=request.steps, clip_norm=request.gradient_clip)
        loss, rho, eps, accountant = sgd.loss, None, sgd.epsilon, sgd.accountant
        hyper = {"hidden": request.hidden, "steps": request.steps, "sampling_rate": sgd.sampling_rate,
                 "expected_batch_size": request.expected_batch_size, "learning_rate": request.learning_rate,
                 "gradient_clip_per_unit": request.gradient_clip, "noise_multiplier": sgd.noise_multiplier,
                 "epsilon_rdp_crosscheck": sgd.epsilon_rdp}

    ledger = Ledger.open(store.ledger_path, create=True, store_id=store.identity)
    query = json.dumps({"train": asdict(request)})
    with ledger.charge(loss, windows=windows, caller="train", query=query, idempotency_key=idempotency_key,
                       mechanisms=["gaussian"]) as charge:
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
            card = ModelCard(
                detector=request.detector, epsilon=eps, delta=request.delta, rho=rho, accountant=accountant,
                privacy_unit=unit, budget_windows=tuple(windows), max_windows_per_unit=request.max_windows_per_unit,
                clip_norm=request.clip_norm, feature_window=request.window, features=table.names,
                hyperparameters=hyper, ledger_entry=charge.entry_id,
            )
            doc = model_to_json(model, card)
            charge.record(doc)
    path = save_model(doc, output)  # only after the ledger committed the charge
    return path, model_from_json(doc)[1]


def score_store(store_path: str | os.PathLike[str], model_path: str | os.PathLike[str], *,
                output: str | os.PathLike[str] | None = None) -> tuple[Path, int]:
    """Score every (unit, window) of the store with a trained model. NOT a release: the scores are
    written inside the store (``STORE/scores/<model>.parquet`` by default) and must stay inside the
    trust boundary. Returns the output path and the number of rows scored."""
    from dplogs.ingest.store import Store

    store = Store.open(store_path)
    model, card = load_model(model_path)
    if card.privacy_unit != store.manifest.privacy_unit:
        raise UsageError(f"model was trained per {card.privacy_unit}, the store's unit is {store.manifest.privacy_unit}")
    spec = FeatureSpec(max_windows_per_unit=2**31, clip_norm=card.clip_norm, window=card.feature_window,
                       budget_window=store.manifest.budget_window)
    table = extract_features(store.scan(), unit=card.privacy_unit, spec=spec)
    scores = model.scores(table.matrix())
    out = Path(output) if output is not None else store.path / "scores" / f"{Path(model_path).stem}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.frame.select("unit", "window_start").with_columns(pl.Series("score", scores)).rename(
        {"unit": card.privacy_unit}).write_parquet(out)
    return out, len(scores)
