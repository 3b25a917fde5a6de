"""DP-SGD autoencoder in numpy (one tanh hidden layer) and its non-private twin.

One step: Poisson-sample *units* (exact Bernoulli, :func:`~dplogs.privacy.randomness.bernoulli`),
then for each record batch compute per-example gradients of the reconstruction loss, vectorised,
clip each row's gradient to ``C/K`` (so a unit's ≤ K rows move the sum by ≤ C), sum over batches,
add Gaussian noise σ·C once (:class:`~dplogs.privacy.dpsgd.GradientNoise`), divide by the PUBLIC
expected batch size and take an Adam step (post-processing). Per-example norms use the outer
product identity ‖a⊗g‖ = ‖a‖·‖g‖, so no per-example gradient matrix is ever materialised.

The anomaly score of a row is its reconstruction error (mean squared error over features).

>>> p = init_params(dim=3, hidden=2)
>>> [v.shape for v in p]
[(3, 2), (2,), (2, 3), (3,)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dplogs.detect.features import FeatureBatches, as_source, batch_arrays
from dplogs.detect.residuals import squared_parts
from dplogs.errors import InternalError, PrivacyParameterError
from dplogs.privacy.charge import Charge
from dplogs.privacy.dpsgd import DpSgdPlan, GradientNoise
from dplogs.privacy.randomness import bernoulli, dyadic_rate, random_uint64

Params = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # W1 (d×h), b1, W2 (h×d), b2


@dataclass(frozen=True)
class AutoencoderConfig:
    """Public training hyper-parameters. ``expected_batch_size`` is the public constant the noisy
    gradient sum is divided by (≈ sampling_rate × number of units; it must not be read off the data
    in a release)."""

    hidden: int = 8
    steps: int = 300
    sampling_rate: float = 0.01
    expected_batch_size: float = 100.0
    learning_rate: float = 0.01

    def __post_init__(self) -> None:
        for name in ("hidden", "steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise PrivacyParameterError(f"{name} must be an integer >= 1, got {v!r}")
        if not 0 < self.sampling_rate <= 1:
            raise PrivacyParameterError(f"sampling_rate must be in (0, 1], got {self.sampling_rate}; pass --sampling-rate")
        if not (self.expected_batch_size > 0 and self.learning_rate > 0):
            raise PrivacyParameterError("expected_batch_size and learning_rate must be > 0")


def _uniform(n: int) -> np.ndarray:
    return (random_uint64(n) >> np.uint64(11)).astype(np.float64) / 2.0**53


def init_params(*, dim: int, hidden: int) -> Params:
    """Glorot-uniform weights from the OS CSPRNG (data-independent, so free of privacy cost)."""
    lim = math.sqrt(6.0 / (dim + hidden))
    w1 = (_uniform(dim * hidden) * 2 - 1).reshape(dim, hidden) * lim
    w2 = (_uniform(dim * hidden) * 2 - 1).reshape(hidden, dim) * lim
    return w1, np.zeros(hidden), w2, np.zeros(dim)


def reconstruction_errors(params: Params, x: np.ndarray) -> np.ndarray:
    w1, b1, w2, b2 = params
    r = np.tanh(x @ w1 + b1) @ w2 + b2 - x
    return np.einsum("ij,ij->i", r, r) / x.shape[1]


def example_gradient_sums(params: Params, x: np.ndarray, row_clip: float | None) -> Params:
    """Sum over rows of per-example gradients, each clipped to L2 norm ``row_clip`` (None: no
    clipping, the non-private twin)."""
    w1, b1, w2, b2 = params
    a = np.tanh(x @ w1 + b1)
    g = (a @ w2 + b2 - x) * (2.0 / x.shape[1])  # d loss / d output
    dz = (g @ w2.T) * (1 - a * a)
    if row_clip is not None:
        sq = lambda m: np.einsum("ij,ij->i", m, m)  # noqa: E731
        ga, gz = sq(g), sq(dz)
        norms = np.sqrt(sq(a) * ga + ga + sq(x) * gz + gz)
        c = np.minimum(1.0, row_clip / np.maximum(norms, 1e-300))
        g, dz = g * c[:, None], dz * c[:, None]
    return x.T @ dz, dz.sum(axis=0), a.T @ g, g.sum(axis=0)


def autoencoder_batch_grads(batch: pa.RecordBatch, params: Params, sampled_units: np.ndarray,
                            row_clip: float | None) -> Params:
    """The per-batch function: clipped gradient sums of the batch's rows whose unit was sampled."""
    unit_id, x = batch_arrays(batch)
    keep = sampled_units[unit_id]
    return example_gradient_sums(params, x[keep], row_clip)


@dataclass(frozen=True)
class AutoencoderModel:
    """Public once trained under a charge: the weights. Scores are reconstruction errors; with
    ``rising`` (a mask of directional features, :mod:`~dplogs.detect.residuals`) a directional
    feature counts only where the row lies above its reconstruction."""

    params: Params
    rising: np.ndarray | None = None

    def scores(self, x: np.ndarray) -> np.ndarray:
        if self.rising is None:
            return reconstruction_errors(self.params, np.asarray(x, dtype=np.float64))
        return self.contributions(x).sum(axis=1)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-feature parts of the score (rows sum to :meth:`scores`): squared reconstruction
        errors over the number of features."""
        x = np.asarray(x, dtype=np.float64)
        w1, b1, w2, b2 = self.params
        return squared_parts(x - (np.tanh(x @ w1 + b1) @ w2 + b2), self.rising) / x.shape[1]


def _sgd(source, config, init, n_units, row_clip, noise) -> AutoencoderModel:
    params = tuple(np.array(p, dtype=np.float64) for p in (init or init_params(dim=source.dim, hidden=config.hidden)))
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    b1, b2, lr = 0.9, 0.999, config.learning_rate
    for t in range(1, config.steps + 1):
        sampled = bernoulli(config.sampling_rate, n_units)
        # exact clipped gradient sums over all batches (on Spark: per partition on the executors,
        # added here); noise is drawn once per step, here on the driver
        total = [np.asarray(g, dtype=np.float64) for g in source.total(autoencoder_batch_grads, params, sampled, row_clip)]
        if noise is not None:
            flat = noise(np.concatenate([g.ravel() for g in total]))
            total = np.split(flat, np.cumsum([p.size for p in params])[:-1])
        new = []
        for i, (p, g) in enumerate(zip(params, total)):
            g = g.reshape(p.shape) / config.expected_batch_size
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            new.append(p - lr * (m[i] / (1 - b1**t)) / (np.sqrt(v[i] / (1 - b2**t)) + 1e-8))
        params = tuple(new)
    return AutoencoderModel(params=params)


def train_autoencoder(
    batches: list[pa.RecordBatch] | FeatureBatches | Any, *, dim: int, config: AutoencoderConfig, plan: DpSgdPlan,
    max_rows_per_unit: int, charge: Charge, init: Params | None = None,
) -> AutoencoderModel:
    """DP-SGD training; consumes ``plan.loss`` from ``charge`` before the first noise draw."""
    if plan.steps != config.steps or plan.sampling_rate != dyadic_rate(config.sampling_rate):
        raise InternalError("DP-SGD plan and training config disagree on steps or sampling rate")
    source = as_source(batches, dim)
    n_units = source.unit_count(max_rows_per_unit)
    noise = GradientNoise(plan, charge=charge)
    return _sgd(source, config, init, n_units, plan.clip_norm / max_rows_per_unit, noise)


def train_autoencoder_nonprivate(
    batches: list[pa.RecordBatch] | FeatureBatches | Any, *, dim: int, config: AutoencoderConfig, init: Params | None = None,
) -> AutoencoderModel:
    """The non-private twin: same sampling, loop and optimiser, no clipping and no noise."""
    source = as_source(batches, dim)
    return _sgd(source, config, init, source.unit_count(2**62), None, None)
