"""Training and scoring from a store. Training is a release: its loss is reserved on the store's
budget ledger before any noise is drawn, and the model file carries the model card.

Scores are per (unit, window) and stay INSIDE the trust boundary: they are not DP.
:func:`score_store` writes them to a Parquet file in the store (``STORE/scores/``);
:func:`top_windows` hands the N most anomalous, with what drove them, to an analyst (``dplogs score
--top N``, which labels them as raw per-unit data).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import io
import json
import math
import os
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dplogs.detect.autoencoder import AutoencoderConfig, train_autoencoder
from dplogs.detect.calibration import CALIBRATION_SHARE, batch_score_counts, plan_calibration, release_counts
from dplogs.detect.features import FEATURE_NAMES, FeatureBatches, FeatureSpec, extract_features
from dplogs.detect.kmeans import plan_kmeans, train_kmeans
from dplogs.detect.model import (
    DETECTORS, ModelCard, check_features, expected_features, load_model, model_from_json, model_to_json, save_model,
    scoring_clip_norm,
)
from dplogs.detect.peers import (
    PEER_FEATURE_NAMES, PEER_SHARE, peer_totals, plan_peers, release_peer_totals, with_peer_features,
)
from dplogs.detect.residuals import rising_mask
from dplogs.errors import OutputWriteError, PrivacyParameterError, UsageError
from dplogs.files import write_atomic
from dplogs.privacy.accounting import zcdp_to_epsilon
from dplogs.privacy.dpsgd import PLD_ACCOUNTANT, ZCDP_ACCOUNTANT, DpSgdPlan, plan_dpsgd, rho_for_epsilon
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.mechanisms import add_noise, calibrate
from dplogs.privacy.sensitivity import Sensitivity
from dplogs.privacy.ledger import open_store_ledger
from dplogs.privacy.limits import (
    EARLIEST_TIME, LATEST_TIME, MAX_BUDGET_WINDOWS, MAX_CLAMP, MAX_MODEL_WIDTH, MAX_TRAIN_ROUNDS, MIN_TRAIN_EPSILON,
)
from dplogs.privacy.params import check_delta, check_epsilon, check_integer, check_number
from dplogs.privacy.windows import window_count, windows_for
from dplogs.schema import TIMESTAMP
from dplogs.schema.units import UnitRule


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
    sampling_rate: float | None = None
    expected_batch_size: float | None = None
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
            if getattr(self, name) is None:  # the autoencoder's batch settings: derived from a DP unit count
                continue
            x = check_number(name, getattr(self, name))
            if not 0 < x <= MAX_CLAMP:
                raise PrivacyParameterError(f"{name} must be a number > 0 and <= {MAX_CLAMP:g}, got {x!r}")
        if self.sampling_rate is not None and not 0 < self.sampling_rate <= 1:
            raise PrivacyParameterError(f"sampling rate must be in (0, 1], got {self.sampling_rate}; pass --sampling-rate")

    @property
    def estimates_units(self) -> bool:
        """The autoencoder's batch settings come from a DP estimate of the number of units."""
        return self.detector == "autoencoder" and (self.sampling_rate is None or self.expected_batch_size is None)


ESTIMATE_SHARE = 0.05
"""Share of an autoencoder's ε spent on the DP count of training units its batch settings are
derived from (only when --sampling-rate or --expected-batch-size is not given)."""
TARGET_BATCH = 256.0  # units per DP-SGD step the automatic sampling rate aims at
SMALL_TRAINING = 20  # fewer (noisy) units' worth of training rows than this: a warning


def default_max_windows(window: str, budget_window: str = "month") -> int:
    """The public default of K (--max-windows) per feature window: about a week of days, a day of
    hours, a working day of 15/5-minute windows, but never more than one budget window holds (a
    daily store's unit has one day window per budget window: K = 7 noised every release of its
    training for 7 rows it cannot have). A public rule, not read off the data.

    >>> default_max_windows("day"), default_max_windows("day", "day"), default_max_windows("hour", "day")
    (7, 1, 24)
    """
    per_day = {"day": 1, "hour": 24, "15min": 96, "5min": 288}[window]
    days = {"day": 1, "week": 7, "month": 31}[budget_window]
    return min({"day": 7, "hour": 24, "15min": 32, "5min": 48}[window], per_day * days)


def batch_settings(units: float, *, sampling_rate: float | None, expected_batch_size: float | None,
                   ) -> tuple[float, float, list[str]]:
    """(sampling rate, expected batch size, warnings) from a noisy number of units: the rate aims
    at TARGET_BATCH units per step; the batch is rate × units. Post-processing of the estimate.

    >>> batch_settings(10_000.0, sampling_rate=None, expected_batch_size=None)[:2]
    (0.0256, 256.0)
    >>> batch_settings(30.0, sampling_rate=0.01, expected_batch_size=None)[2]
    ['a DP-SGD step samples about 0.3 units (sampling rate 0.01 × about 30 units): the noise will dominate every step; raise --sampling-rate or train on more units']
    """
    n = max(float(units), 1.0)
    q = sampling_rate if sampling_rate is not None else min(1.0, TARGET_BATCH / n)
    batch = expected_batch_size if expected_batch_size is not None else q * n
    warnings = []
    if q * n < 10:
        warnings.append(f"a DP-SGD step samples about {q * n:.2g} units (sampling rate {q:g} × about {n:.0f} "
                        "units): the noise will dominate every step; raise --sampling-rate or train on more units")
    return q, batch, warnings


def train_from_store(store_path: str | os.PathLike[str], request: TrainRequest, *, output: str | os.PathLike[str],
                     idempotency_key: str | None = None, backend: str = "polars",
                     spark_master: str | None = None) -> tuple[Path, ModelCard]:
    """Extract bounded features from the store, reserve the loss, train, write the model file.

    ``backend="spark"`` computes the feature rows and every iteration's clipped sums on Spark
    (``spark_master``, default the active session or ``local[*]``; see
    :mod:`dplogs.detect.spark_loop`); the ledger, the noise and the model file stay here."""
    from dplogs.backends.base import get_backend
    from dplogs.ingest.store import Store

    engine = get_backend(backend, master=spark_master)  # an unknown name or a missing extra fails first
    store = Store.open(store_path)
    unit, policy = store.manifest.unit_rule, store.manifest.budget_window
    spec = FeatureSpec(max_windows_per_unit=request.max_windows_per_unit, clip_norm=request.clip_norm,
                       window=request.window, budget_window=policy)
    lo, hi = _utc(request.start), _utc(request.end)
    if window_count(lo, hi, policy) > MAX_BUDGET_WINDOWS:
        raise UsageError(f"{request.start} .. {request.end} touches {window_count(lo, hi, policy):,} {policy} budget windows, "
                         f"more than the limit of {MAX_BUDGET_WINDOWS}; train on a shorter range")
    windows = windows_for(lo, hi, policy)  # datetimes: the half-open range [start, end)
    names = (*FEATURE_NAMES, *PEER_FEATURE_NAMES)
    dim = len(names)

    # every plan (and so every validation error) exists before the ledger is touched; the peer
    # baseline's and the score histogram's losses are composed with training's into ONE reservation
    K = request.max_windows_per_unit
    if request.detector == "kmeans":
        rho_total = rho_for_epsilon(request.epsilon, request.delta)
        plan = plan_kmeans(k=request.k, dim=dim, iterations=request.iterations,
                           rho=rho_total * (1 - CALIBRATION_SHARE - PEER_SHARE), max_rows_per_unit=K,
                           clip_norm=request.clip_norm)
        cal_plan = plan_calibration(max_rows_per_unit=K, rho=rho_total * CALIBRATION_SHARE)
        peer_plan = plan_peers(max_rows_per_unit=K, rho=rho_total * PEER_SHARE)
        estimate_plan = None
        loss = plan.loss + cal_plan.loss + peer_plan.loss
        rho = loss.rho
        eps, accountant = zcdp_to_epsilon(rho, request.delta), ZCDP_ACCOUNTANT
        hyper: dict[str, Any] = {"k": request.k, "iterations": request.iterations,
                                 "sum_noise_std": plan.sum_plan.std, "count_noise_std": plan.count_plan.std}
    else:
        # options are validated now even when σ is planned after the unit count is drawn
        AutoencoderConfig(hidden=request.hidden, steps=request.steps, sampling_rate=request.sampling_rate or 1.0,
                          expected_batch_size=request.expected_batch_size or 1.0, learning_rate=request.learning_rate)
        if not (math.isfinite(request.gradient_clip) and request.gradient_clip > 0):
            raise PrivacyParameterError(f"--gradient-clip must be finite and > 0, got {request.gradient_clip}")
        eps_estimate = request.epsilon * ESTIMATE_SHARE if request.estimates_units else 0.0
        eps_sgd = request.epsilon * (1 - CALIBRATION_SHARE - PEER_SHARE) - eps_estimate
        estimate_plan = (calibrate(mechanism="laplace", integer=True, epsilon=eps_estimate,
                                   sensitivity=Sensitivity(l1=1.0, l2=1.0)) if eps_estimate else None)
        # without the estimate everything is planned now; with it, σ is calibrated to eps_sgd once the
        # sampling rate is known (the reserved loss is the same either way)
        sgd = None if estimate_plan else _plan_sgd(request, eps_sgd, request.sampling_rate)
        cal_plan = plan_calibration(max_rows_per_unit=K, epsilon=request.epsilon * CALIBRATION_SHARE)
        peer_plan = plan_peers(max_rows_per_unit=K, epsilon=request.epsilon * PEER_SHARE)
        # basic composition: DP-SGD's PLD (ε, δ) + the pure-ε histogram and peer baseline (+ the
        # pure-ε unit count)
        loss = PrivacyLoss(epsilon=sgd.epsilon if sgd else eps_sgd, delta=request.delta) + cal_plan.loss + peer_plan.loss
        if estimate_plan:
            loss = loss + estimate_plan.loss
        rho, eps = None, loss.epsilon
        accountant = f"{PLD_ACCOUNTANT} + basic composition with Laplace releases (peer baseline, score histogram" + (
            ", unit count)" if estimate_plan else ")")
        hyper = {"hidden": request.hidden, "steps": request.steps, "learning_rate": request.learning_rate,
                 "gradient_clip_per_unit": request.gradient_clip}
    hyper["score_histogram"] = {"share": CALIBRATION_SHARE, "mechanism": cal_plan.mechanism.value,
                                "noise_std": cal_plan.std}
    hyper["peer_baseline"] = {"share": PEER_SHARE, "mechanism": peer_plan.sum_plan.mechanism.value,
                              "sum_noise_std": peer_plan.sum_plan.std, "count_noise_std": peer_plan.count_plan.std,
                              "process_noise_std": peer_plan.process_plan.std, "min_count": peer_plan.min_count}

    ledger = open_store_ledger(store, create=True, store_id=store.identity)
    query = json.dumps({"train": asdict(request)})
    with ledger.charge(loss, windows=windows, caller="train", query=query, idempotency_key=idempotency_key,
                       mechanisms=["gaussian"] if request.detector == "kmeans" else ["gaussian", "laplace"]) as charge:
        if charge.replayed_payload is not None:
            doc = charge.replayed_payload
            _check_same_training(doc, request, windows, idempotency_key)
        else:
            with _feature_source(store, engine, lo, hi, unit=unit, spec=spec) as source:
                warnings: list[str] = []
                # released from exact per-group sums (on Spark: per-partition sums from the executors)
                peers = release_peer_totals(source.peer_totals(), plan=peer_plan, charge=charge)
                source = source.with_peers(peers)
                if not peers.usable:
                    warnings.append(f"the DP peer baseline is too noisy to use (a role group needs about "
                                    f"{peers.min_count:.0f} noisy training rows at this budget and K): the peer "
                                    "features are 0 in this model")
                if request.detector == "kmeans":
                    model = train_kmeans(source, plan=plan, charge=charge)
                else:
                    q, batch = request.sampling_rate, request.expected_batch_size
                    if estimate_plan is not None:
                        n_units = source.unit_count(K)
                        noisy_units = float(add_noise(np.array([n_units]), estimate_plan, charge=charge)[0])
                        q, batch, sampling_warnings = batch_settings(noisy_units, sampling_rate=q,
                                                                     expected_batch_size=batch)
                        warnings += sampling_warnings
                        hyper["units_estimate"] = {"noisy_units": noisy_units, "epsilon": estimate_plan.loss.epsilon,
                                                   "mechanism": "discrete laplace", "scale": estimate_plan.scale}
                        sgd = _plan_sgd(request, eps_sgd, q)
                    config = AutoencoderConfig(hidden=request.hidden, steps=request.steps, sampling_rate=sgd.sampling_rate,
                                               expected_batch_size=batch, learning_rate=request.learning_rate)
                    hyper.update({"sampling_rate": sgd.sampling_rate, "expected_batch_size": batch,
                                  "noise_multiplier": sgd.noise_multiplier, "epsilon_dpsgd": sgd.epsilon,
                                  "epsilon_rdp_crosscheck": sgd.epsilon_rdp})
                    model = train_autoencoder(source, dim=dim, config=config, plan=sgd,
                                              max_rows_per_unit=request.max_windows_per_unit, charge=charge)
                # directional features count only above the model, in the histogram as in scoring
                model = dataclasses.replace(model, rising=rising_mask(names))
                hyper["one_sided_features"] = [n for n, r in zip(names, model.rising) if r]
                (counts,) = source.total(batch_score_counts, model, request.clip_norm)
            calibration = release_counts(counts, plan=cal_plan, clip_norm=request.clip_norm, charge=charge)
            total_std = calibration.noise_std * len(calibration.counts) ** 0.5
            if calibration.total < max(SMALL_TRAINING * K, total_std):
                warnings.append(f"training saw about {calibration.total:.0f} ± {total_std:.0f} unit-windows (DP "
                                f"histogram total): fewer than {SMALL_TRAINING} units' worth at K = {K}, or less than "
                                "the noise; the model is mostly noise (more units, a larger --epsilon or a smaller "
                                "--max-windows help)")
            hyper["warnings"] = warnings
            card = ModelCard(
                detector=request.detector, epsilon=eps, delta=request.delta, rho=rho, accountant=accountant,
                privacy_unit=unit.label, budget_windows=tuple(windows), max_windows_per_unit=request.max_windows_per_unit,
                guarantee=training_guarantee(eps, request.delta, unit, tuple(windows), request),
                clip_norm=request.clip_norm, feature_window=request.window,
                features=names,
                hyperparameters=hyper, ledger_entry=charge.entry_id, score_calibration=calibration.to_dict(),
                peer_baseline=peers.to_dict(),
            )
            doc = model_to_json(model, card)
            charge.record(doc)
    try:
        path = save_model(doc, output)  # only after the ledger committed the charge
    except OSError as exc:  # a full disk, a read-only directory: the model is stored with its ledger entry
        again = (f"rerun with --idempotency-key {idempotency_key} to write it again without spending" if idempotency_key
                 else "it cannot be written again without spending (pass --idempotency-key next time)")
        raise OutputWriteError(f"the model was charged (ledger entry {doc['model_card'].get('ledger_entry')}) and is "
                               f"stored with it, but writing {output} failed: {exc.strerror or exc}; {again}") from None
    return path, model_from_json(doc)[1]


def _check_same_training(doc: dict[str, Any], request: TrainRequest, windows: list[str], key: str | None) -> None:
    """Refuse to re-emit a stored model for another training request: before, a key reused for an
    hourly autoencoder wrote the daily k-means model it held (exit 0). Nothing is charged here."""
    card = doc.get("model_card") or {}
    asked = {"detector": request.detector, "feature_window": request.window, "budget_windows": list(windows),
             "max_windows_per_unit": request.max_windows_per_unit, "clip_norm": request.clip_norm}
    differ = [name for name, value in asked.items() if card.get(name) != value]
    if differ:
        raise UsageError(f"idempotency key {key!r} already holds a model trained differently (its {', '.join(differ)} "
                         "differ); use a new key for this training (nothing was charged)")


def training_guarantee(epsilon: float, delta: float, unit: UnitRule, windows: tuple[str, ...], request: TrainRequest) -> str:
    """The model card's guarantee: per unit of the store's rule, with every row counted as
    protected (a protection policy's exact part has no analogue in a trained model; bounding all
    rows is the conservative reading and still (ε, δ)-DP for the protected rows)."""
    return (f"({epsilon:.4g}, {delta:.3g})-DP per privacy unit ({unit.describe()}) per budget window "
            f"({', '.join(windows)}); every row is treated as protected in training (a store's protection "
            f"policy is not applied); each unit contributes <= {request.max_windows_per_unit} {request.window} "
            f"feature rows per budget window, each clipped to L2 norm {request.clip_norm:g}")


@contextmanager
def _feature_source(store: Any, engine: Any, lo: dt.datetime, hi: dt.datetime, *, unit: UnitRule,
                    spec: FeatureSpec) -> Iterator[Any]:
    """The bounded feature rows of the store's events in [lo, hi), as the loops' source: Arrow
    batches here (polars), or rows persisted on the Spark executors (spark), released (on Spark:
    unpersisted) however training ends. The events files are held still (:meth:`Store.events_held`:
    a torn line's repair must not rewrite or remove a file listed here before it is read) while
    they are read: polars reads them once, up front; Spark reads them lazily, job after job (and
    again for a lost cached block), so there they are held until training is done."""
    if engine.name == "spark":
        from dplogs.backends.spark import col, read_events
        from dplogs.detect.spark_loop import spark_feature_batches

        with store.events_held():
            events = read_events(engine.session, store.readable_event_files())
            ts = col(TIMESTAMP)
            with closing(spark_feature_batches(events.where((ts >= lo) & (ts < hi)), unit=unit, spec=spec)) as source:
                yield source
        return
    with store.events_held():
        lf = store.scan().filter((pl.col(TIMESTAMP) >= lo) & (pl.col(TIMESTAMP) < hi))
        source = LocalFeatures(extract_features(lf, unit=unit, spec=spec))
    with closing(source):
        yield source


def _plan_sgd(request: TrainRequest, epsilon: float, sampling_rate: float | None) -> DpSgdPlan:
    if sampling_rate is None:
        raise UsageError("the autoencoder needs --sampling-rate (or leave both batch settings to the DP estimate)")
    return plan_dpsgd(epsilon=epsilon, delta=request.delta, sampling_rate=sampling_rate, steps=request.steps,
                      clip_norm=request.gradient_clip)


def _percentiles(card: ModelCard, scores: np.ndarray) -> np.ndarray | None:
    """Percentiles of ``scores`` among the training scores, or None when the model has no usable
    score histogram (trained before calibration existed, or all noise)."""
    cal = card.calibration
    return cal.percentile(scores) if cal is not None and cal.usable else None


def _scored_table(store_path, model_path):
    from dplogs.ingest.store import Store

    store = Store.open(store_path)
    model, card = load_model(model_path)
    if card.privacy_unit != store.manifest.privacy_unit:
        raise UsageError(f"model was trained per {card.privacy_unit}, the store's unit is {store.manifest.privacy_unit}")
    spec = FeatureSpec(max_windows_per_unit=2**31, clip_norm=scoring_clip_norm(card), window=card.feature_window,
                       budget_window=store.manifest.budget_window)
    check_features(card, expected_features(card))
    with store.events_held():
        table = extract_features(store.scan(), unit=store.manifest.unit_rule, spec=spec)
    if card.peers is not None:  # the peer features against the model's released baseline
        table = with_peer_features(table, card.peers)
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
    pct = _percentiles(card, scores)
    rule = store.manifest.unit_rule
    units = pl.Series("unit", [rule.text(u) for u in table.frame["unit"].to_list()], dtype=pl.String)
    frame = table.frame.select("window_start").with_columns(units,
        pl.Series("score", scores),
        pl.lit(None, pl.Float64).alias("percentile") if pct is None else pl.Series("percentile", pct)
    ).select("unit", "window_start", "score", "percentile")
    buf = io.BytesIO()
    frame.rename({"unit": card.privacy_unit}).write_parquet(buf)
    try:
        write_atomic(out, buf.getvalue())  # never half a table under its name (a killed run, a full disk)
    except OSError as exc:
        raise OutputWriteError(f"cannot write the scores to {out}: {exc.strerror or exc} (nothing was charged)") from None
    return out, len(scores)


def top_windows(store_path: str | os.PathLike[str], model_path: str | os.PathLike[str], *, n: int,
                features_per_window: int = 3) -> list[dict[str, Any]]:
    """The ``n`` most anomalous unit-windows of the store, each with its score, its percentile
    among the training scores (from the model's DP histogram) and the features that drove the score
    (largest parts of it first, with the feature's scaled value). NOT a release: raw per-unit data,
    for an analyst inside the trust boundary."""
    if n < 1:
        raise UsageError(f"--top must be >= 1, got {n}")
    store, model, card, table = _scored_table(store_path, model_path)
    rule = store.manifest.unit_rule
    x = table.matrix()
    scores = model.scores(x)
    order = np.argsort(-scores, kind="stable")[:n]
    parts = model.contributions(x[order])
    pct = _percentiles(card, scores[order])
    out = []
    for rank, (i, part) in enumerate(zip(order, parts)):
        row = table.row(int(i))
        drivers = np.argsort(-part, kind="stable")[:features_per_window]
        total = float(part.sum()) or 1.0
        out.append({
            "rank": rank + 1, card.privacy_unit: rule.text(row["unit"]), "window_start": row["window_start"].isoformat(),
            "host": row["host"], "score": float(scores[i]),
            "percentile": None if pct is None else round(float(pct[rank]), 3),
            "drivers": [{"feature": table.names[j], "value": round(float(x[i, j]), 4),
                         "share_of_score": round(float(part[j]) / total, 3)} for j in drivers],
        })
    return out


class LocalFeatures(FeatureBatches):
    """The polars feature table as the loops' source, kept whole so the peer baseline can be
    released from its rows (``frame``) and appended (:meth:`with_peers`) before training. Its
    Arrow batches are built once, on first use (after the peer features are appended)."""

    def __init__(self, table: Any) -> None:  # noqa: D107 (no batches yet: see ``batches``)
        self.table = table
        self.dim = table.dim

    @functools.cached_property
    def batches(self) -> list:  # type: ignore[override]
        return list(self.table.batches())

    @property
    def frame(self) -> pl.DataFrame:
        return self.table.frame

    def peer_totals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return peer_totals(self.table.frame)

    def with_peers(self, peers: Any) -> LocalFeatures:
        return LocalFeatures(with_peer_features(self.table, peers))
