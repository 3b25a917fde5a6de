"""Calibrated detector scores: a DP histogram of the TRAINING scores, released with the model (in
the same ledger entry as training), maps any score to the percentile of the training unit-windows
it exceeds, so an analyst can ask for "the top 1 %" (``--threshold p99``) without looking at raw
scores.

The histogram bins are public (log-spaced edges from ``1e-8·C²`` to ``4·C²``, plus an underflow and
an overflow bin). Each unit contributes at most K training rows (the feature bound), all possibly
in one bin, so the counts have L1 = L2 sensitivity K (:func:`assignment_count_sensitivity`). The
CDF is the running maximum of the cumulative noisy counts clipped at 0 (post-processing: clamping
each bin instead would add the positive part of every empty bin's noise); percentiles interpolate
it log-linearly inside a bin.

>>> cal = Calibration(edges=(0.1, 1.0, 10.0), counts=(0.0, 50.0, 50.0, 0.0))
>>> cal.percentile(np.array([0.1, 1.0, 10.0, 100.0])).round(1).tolist()
[0.0, 50.0, 100.0, 100.0]
>>> round(cal.threshold(75.0), 3)  # halfway (log scale) through the bin [1, 10)
3.162
>>> parse_threshold("p99"), parse_threshold("0.8")
(('percentile', 99.0), ('score', 0.8))
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dplogs.detect.features import batch_arrays
from dplogs.errors import InternalError, UsageError
from dplogs.privacy.charge import Charge
from dplogs.privacy.dpsgd import assignment_count_sensitivity
from dplogs.privacy.mechanisms import NoisePlan, add_noise, calibrate

CALIBRATION_SHARE = 0.1
"""Share of a training release's budget spent on the score histogram (ρ for k-means, ε for the
autoencoder; the rest trains the model)."""
N_EDGES = 32


def score_edges(clip_norm: float) -> tuple[float, ...]:
    """Public bin edges: log-spaced from 1e-8·C² to 4·C² (the largest squared distance between two
    points of the clip ball; reconstruction errors beyond it land in the overflow bin)."""
    c2 = float(clip_norm) ** 2
    return tuple(float(e) for e in np.geomspace(1e-8 * c2, 4 * c2, N_EDGES))


def plan_calibration(*, max_rows_per_unit: int, rho: float | None = None, epsilon: float | None = None) -> NoisePlan:
    """Integer noise for the histogram counts: Gaussian with ``rho`` (zCDP, k-means) or Laplace with
    ``epsilon`` (pure ε, composed with the DP-SGD (ε, δ))."""
    sens = assignment_count_sensitivity(max_rows_per_unit=max_rows_per_unit)
    if (rho is None) == (epsilon is None):
        raise InternalError("calibration needs exactly one of rho and epsilon")
    if rho is not None:
        return calibrate(mechanism="gaussian", integer=True, rho=rho, sensitivity=sens)
    return calibrate(mechanism="laplace", integer=True, epsilon=epsilon, sensitivity=sens)


@dataclass(frozen=True)
class Calibration:
    """Public (a DP release): ``counts[i]`` is the noisy number of training rows with score in bin
    i (it may be negative); bin 0 is [0, edges[0]), bin i is [edges[i-1], edges[i]), the last is
    [edges[-1], ∞)."""

    edges: tuple[float, ...]
    counts: tuple[float, ...]
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges", tuple(float(e) for e in self.edges))
        object.__setattr__(self, "counts", tuple(float(c) for c in self.counts))
        if len(self.counts) != len(self.edges) + 1 or any(b <= a for a, b in zip(self.edges, self.edges[1:])):
            raise InternalError("calibration histogram with inconsistent edges and counts")
        if self.edges[0] <= 0:
            raise InternalError("calibration edges must be > 0")

    def to_dict(self) -> dict:
        """JSON-shaped (lists), as stored in the model card."""
        return {"edges": list(self.edges), "counts": list(self.counts), "noise_std": self.noise_std}

    @property
    def total(self) -> float:
        """The noisy number of training rows (the sum of the noisy counts, unbiased)."""
        return float(sum(self.counts))

    @property
    def usable(self) -> bool:
        """False when the noisy histogram holds no mass (percentiles are then undefined)."""
        return float(np.cumsum(self.counts).max(initial=0.0)) > 0

    def _cdf_points(self) -> tuple[np.ndarray, np.ndarray]:
        # CDF at each edge (the underflow bin's mass sits below edges[0]): a monotone cumulative
        # count, so the noise of neighbouring bins cancels instead of piling up
        cum = np.maximum.accumulate(np.maximum(np.cumsum(self.counts), 0.0))
        if cum[-1] <= 0:
            raise UsageError("the model's noisy score histogram is empty (too little training data for its "
                             "budget), so percentile thresholds are unavailable; pass a raw score or retrain "
                             "with more data or a larger --epsilon")
        return np.log(np.asarray(self.edges)), cum[:-1] / cum[-1]

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """Percent (0-100) of the training rows with a lower score, interpolated."""
        s = np.asarray(scores, dtype=np.float64)
        logx, cum = self._cdf_points()
        inside = np.interp(np.log(np.maximum(s, self.edges[0])), logx, cum)
        below = cum[0] * np.clip(s / self.edges[0], 0.0, 1.0)  # the underflow bin, linearly
        return 100.0 * np.where(s < self.edges[0], below, np.where(s >= self.edges[-1], 1.0, inside))

    def threshold(self, percent: float) -> float:
        """The score at ``percent`` of the training rows (the inverse of :meth:`percentile`)."""
        if not 0 < percent < 100:
            raise UsageError(f"a percentile threshold must be in (0, 100), got {percent:g}")
        logx, cum = self._cdf_points()
        target = percent / 100.0
        i = int(np.searchsorted(cum, target, side="left"))
        if i >= len(cum):
            return self.edges[-1]  # in the overflow bin: the last public edge
        if i == 0:
            return self.edges[0] * target / cum[0]
        lo, hi = cum[i - 1], cum[i]
        frac = (target - lo) / (hi - lo) if hi > lo else 1.0
        return float(math.exp(logx[i - 1] + frac * (logx[i] - logx[i - 1])))


def score_counts(train_scores: np.ndarray, clip_norm: float) -> np.ndarray:
    """The exact per-bin counts of ``train_scores`` over the public edges (int64)."""
    edges = score_edges(clip_norm)
    bins = np.searchsorted(np.asarray(edges), np.asarray(train_scores, dtype=np.float64), side="right")
    return np.bincount(bins, minlength=len(edges) + 1).astype(np.int64)


def batch_score_counts(batch: pa.RecordBatch, model: Any, clip_norm: float) -> tuple[np.ndarray]:
    """The per-batch function: the score counts of one feature batch's rows."""
    _, x = batch_arrays(batch)
    return (score_counts(model.scores(x), clip_norm),)


def release_calibration(train_scores: np.ndarray, *, plan: NoisePlan, clip_norm: float, charge: Charge) -> Calibration:
    """The DP histogram of ``train_scores`` (scores of the bounded training rows). Consumes
    ``plan.loss`` from ``charge`` before the noise is drawn."""
    return release_counts(score_counts(train_scores, clip_norm), plan=plan, clip_norm=clip_norm, charge=charge)


def release_counts(counts: np.ndarray, *, plan: NoisePlan, clip_norm: float, charge: Charge) -> Calibration:
    """The DP histogram from exact per-bin ``counts`` (:func:`score_counts`, or their sum over
    batches); the noise is drawn here, once."""
    noisy = add_noise(np.asarray(counts, dtype=np.int64), plan, charge=charge)
    return Calibration(edges=score_edges(clip_norm), counts=tuple(noisy.tolist()), noise_std=plan.std)


_PERCENTILE = re.compile(r"p(\d+(?:\.\d+)?)", re.IGNORECASE | re.ASCII)
_SCORE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf|infinity)", re.IGNORECASE | re.ASCII)
"""A raw score as a person types it: float() alone also reads ``1_0`` as 10 and other scripts'
digits (``٩٩``) as ASCII ones, so a typo ran at a threshold nobody meant."""


def parse_threshold(text: str | float) -> tuple[str, float]:
    """``"p99"`` → ("percentile", 99.0); a number → ("score", value)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = _PERCENTILE.fullmatch(str(text).strip())
        if m:
            return "percentile", float(m.group(1))
        if not _SCORE.fullmatch(str(text).strip()):
            raise UsageError(f"--threshold {text!r} is neither a percentile like p99 nor a score")
        value = float(str(text))
    if not math.isfinite(value):
        raise UsageError(f"--threshold must be finite, got {text!r}")
    return "score", value


def resolve_threshold(threshold: str | float, calibration: Calibration | None) -> float:
    """The public score threshold: a raw score as given, or a percentile of the model's released
    training-score histogram."""
    kind, value = parse_threshold(threshold)
    if kind == "score":
        return value
    if calibration is None:
        raise UsageError("this model has no score calibration (trained before calibration existed); retrain it "
                         "with `dplogs train` or pass a raw score")
    return calibration.threshold(value)
