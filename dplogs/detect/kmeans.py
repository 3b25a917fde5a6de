"""DP k-means (noisy Lloyd iterations) and its non-private twin: the same loop without noise.

Each iteration reads the feature record batches once; :func:`kmeans_batch_stats` (the per-batch
function, the one Spark's ``mapInArrow`` runs on the executors) assigns rows to the nearest centroid and returns
per-cluster sums and counts. The sums are added over batches, then noised ONCE per iteration:
Gaussian on the sums (L2 sensitivity K·C) and integer Gaussian on the counts (L2 sensitivity K),
both in zCDP, so the run costs ``iterations × (ρ_sums + ρ_counts)``.

Initial centroids are data-independent (CSPRNG points in the clip ball), so they cost nothing.
The model is the last iteration's live clusters with their shares of its noisy counts
(post-processing); scores cap a centroid's directional features at the share-weighted mean
(:class:`KMeansModel`).

>>> from dplogs.privacy import Charge
>>> plan = plan_kmeans(k=2, dim=3, iterations=4, rho=0.5, max_rows_per_unit=1, clip_norm=1.0)
>>> round(plan.loss.rho, 9), plan.sum_plan.sensitivity, plan.count_plan.sensitivity
(0.5, 1.0, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dplogs.detect.features import FeatureBatches, as_source, batch_arrays, clip_rows
from dplogs.detect.residuals import squared_parts
from dplogs.errors import InternalError, PrivacyParameterError
from dplogs.privacy.charge import Charge
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.mechanisms import NoisePlan, add_noise, calibrate
from dplogs.privacy.dpsgd import assignment_count_sensitivity, clipped_sum_sensitivity
from dplogs.privacy.params import check_rho
from dplogs.privacy.randomness import random_uint64


@dataclass(frozen=True)
class KMeansPlan:
    """Public: the noise of every iteration of a DP k-means run, and its total zCDP loss."""

    k: int
    dim: int
    iterations: int
    max_rows_per_unit: int
    clip_norm: float
    sum_plan: NoisePlan
    count_plan: NoisePlan

    def __post_init__(self) -> None:
        if self.k < 1 or self.dim < 1 or self.iterations < 1:
            raise PrivacyParameterError(f"k, dim and iterations must be >= 1, got {self.k}, {self.dim}, {self.iterations}")

    @property
    def loss(self) -> PrivacyLoss:
        per = self.sum_plan.loss + self.count_plan.loss
        return PrivacyLoss(rho=per.rho * self.iterations)


def plan_kmeans(
    *, k: int, dim: int, iterations: int, rho: float, max_rows_per_unit: int, clip_norm: float,
    count_share: float = 0.2,
) -> KMeansPlan:
    """Split ``rho`` evenly over iterations, and inside one iteration ``count_share`` to the counts."""
    r = check_rho(rho)
    if not 0 < count_share < 1:
        raise PrivacyParameterError(f"count_share must be in (0, 1), got {count_share}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise PrivacyParameterError(f"iterations must be an integer >= 1, got {iterations!r}")
    per = r / iterations
    sums = calibrate(mechanism="gaussian", integer=False, rho=per * (1 - count_share),
                     sensitivity=clipped_sum_sensitivity(max_rows_per_unit=max_rows_per_unit, clip_norm=clip_norm, dim=dim))
    counts = calibrate(mechanism="gaussian", integer=True, rho=per * count_share,
                       sensitivity=assignment_count_sensitivity(max_rows_per_unit=max_rows_per_unit))
    return KMeansPlan(k=k, dim=dim, iterations=iterations, max_rows_per_unit=max_rows_per_unit,
                      clip_norm=float(clip_norm), sum_plan=sums, count_plan=counts)


def init_centroids(k: int, dim: int, clip_norm: float) -> np.ndarray:
    """``k`` data-independent starting centroids, uniform in [0, C/√dim]^dim (inside the clip
    ball, in the non-negative orthant where the features live), from the OS CSPRNG."""
    u = (random_uint64(k * dim) >> np.uint64(11)).astype(np.float64) / 2.0**53
    return (u * clip_norm / math.sqrt(dim)).reshape(k, dim)


def kmeans_batch_stats(batch: pa.RecordBatch, centroids: np.ndarray, clip_norm: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums (k×d) and counts (k) of one batch's rows, clipped to ``clip_norm``."""
    _, x = batch_arrays(batch)
    x = clip_rows(x, clip_norm)
    k, d = centroids.shape
    if len(x) == 0:
        return np.zeros((k, d)), np.zeros(k, dtype=np.int64)
    assign = nearest(x, centroids)
    counts = np.bincount(assign, minlength=k).astype(np.int64)
    # one bincount per dimension: no BLAS call (whose threads spin on a shared machine) and far
    # faster than np.add.at
    sums = np.stack([np.bincount(assign, weights=x[:, j], minlength=k) for j in range(d)], axis=1)
    return sums, counts


def nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return _sq_dists(x, centroids).argmin(axis=1)


def _sq_dists(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    d2 = (np.einsum("ij,ij->i", x, x)[:, None] - 2 * x @ centroids.T
          + np.einsum("ij,ij->i", centroids, centroids)[None, :])
    return np.maximum(d2, 0.0)


SPLIT_RADIUS = 0.05  # a re-seeded centroid starts this far (× C) from the cluster it splits


def split_offsets(init: np.ndarray, clip_norm: float) -> np.ndarray:
    """Public, data-independent offsets (one per cluster, norm ``SPLIT_RADIUS·C``) by which a dead
    cluster is re-seeded next to a live one: the directions of the random start around its mean,
    so the DP loop and its twin share them.

    >>> split_offsets(np.array([[0.0, 0.0], [1.0, 0.0]]), 1.0).tolist()
    [[-0.05, 0.0], [0.05, 0.0]]
    """
    d = init - init.mean(axis=0)
    norms = np.sqrt(np.einsum("ij,ij->i", d, d))
    return d / np.maximum(norms, 1e-300)[:, None] * (SPLIT_RADIUS * clip_norm)


def _update(prev: np.ndarray, sums: np.ndarray, counts: np.ndarray, min_count: float, clip_norm: float,
            offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noisy means of the clusters with (noisy) count ≥ ``min_count`` (the live ones, returned as
    a mask too). Every other cluster is re-seeded next to a live one, largest first
    (post-processing of the noisy counts): left at its random start it would attract no rows ever
    again, and DP k-means collapsed to one centroid."""
    ok = counts >= min_count
    new = prev.copy()
    new[ok] = sums[ok] / counts[ok, None].astype(np.float64)
    live = np.flatnonzero(ok)[np.argsort(-counts[ok], kind="stable")]
    if len(live):
        dead = np.flatnonzero(~ok)
        new[dead] = new[live[np.arange(len(dead)) % len(live)]] + offsets[dead]
    return clip_rows(new, clip_norm), ok  # a noisy mean may leave the ball the data lives in


@dataclass(frozen=True)
class KMeansModel:
    """Public once trained under a charge: the centroids (k×d) and each cluster's share of the
    last iteration's noisy counts (``shares``). Scores are squared distances to the nearest
    centroid; with ``rising`` (a mask of directional features, :mod:`~dplogs.detect.residuals`) a
    directional feature counts only above the centroid, and the score is the smallest such
    distance over the centroids.

    On a directional feature a centroid counts only up to the **population level**, the
    share-weighted mean of the centroids (the noisy mean of the training rows): k-means can fit a
    centroid to a group of alike suspicious windows (OTRF's 159 attack-tool windows, process
    rarity 0.63 against a mean of 0.34), and one-sided, that centroid excused every row up to its
    own level, the attack included (AUROC 0.73–0.79 in one seed of five, at ε ≥ 2 and in the
    twin). A window high on a directional feature stays suspicious whichever cluster it is near.
    Models without ``shares`` (trained before this rule) are scored as their score histogram was:
    without the cap."""

    centroids: np.ndarray
    rising: np.ndarray | None = None
    shares: np.ndarray | None = None

    def scoring_centroids(self) -> np.ndarray:
        """The centroids as scores see them: directional coordinates capped at the population level.

        >>> m = KMeansModel(np.array([[0.5, 0.2], [0.1, 0.9]]), rising=np.array([False, True]),
        ...                 shares=np.array([0.75, 0.25]))
        >>> m.scoring_centroids().tolist()
        [[0.5, 0.2], [0.1, 0.375]]
        """
        c = self.centroids
        if self.rising is None or self.shares is None or not self.rising.any():
            return c
        level = self.shares @ c
        capped = c.copy()
        capped[:, self.rising] = np.minimum(c[:, self.rising], level[self.rising])
        return capped

    def scores(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.rising is None:
            return _sq_dists(x, self.centroids).min(axis=1)
        # one centroid at a time: a rows × k × d residual would not fit for a million rows
        return np.min([squared_parts(x - c, self.rising).sum(axis=1) for c in self.scoring_centroids()], axis=0)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-feature parts of the score (rows sum to :meth:`scores`): squared differences to the
        nearest centroid (under the score's own distance)."""
        x = np.asarray(x, dtype=np.float64)
        if self.rising is None:
            return (x - self.centroids[nearest(x, self.centroids)]) ** 2
        parts = np.stack([squared_parts(x - c, self.rising) for c in self.scoring_centroids()])  # k × rows × d
        best = parts.sum(axis=2).argmin(axis=0)
        return parts[best, np.arange(len(x))]


def _lloyd(source, init, iterations, clip_norm, min_count, noise) -> KMeansModel:
    c = np.array(init, dtype=np.float64)
    offsets = split_offsets(c, clip_norm)
    for _ in range(iterations):
        # exact clipped sums over all batches (on Spark: per partition on the executors, added
        # here); noise is drawn once per iteration, here on the driver
        sums, counts = source.total(kmeans_batch_stats, c, clip_norm)
        if noise is not None:
            sums, counts = noise(sums, counts)
        c, live = _update(c, sums, counts, min_count, clip_norm, offsets)
    return _released(c, counts, live)


def _released(centroids: np.ndarray, counts: np.ndarray, live: np.ndarray) -> KMeansModel:
    """The model of the last iteration: its live clusters, weighted by their noisy counts. A
    cluster re-seeded in the last iteration is a copy of a live one that no iteration moved, so it
    is left out; if no cluster was live, every centroid is kept, equally weighted."""
    kept = centroids[live] if live.any() else centroids
    n = np.maximum(counts[live], 0).astype(np.float64) if live.any() else np.zeros(len(kept))
    # live counts are >= min_count (>= 1 by default); equal weights only if a caller set it to <= 0
    return KMeansModel(centroids=kept, shares=n / n.sum() if n.sum() > 0 else np.full(len(kept), 1 / len(kept)))


def train_kmeans(
    batches: list[pa.RecordBatch] | FeatureBatches | Any, *, plan: KMeansPlan, charge: Charge, init: np.ndarray | None = None,
    min_count: float | None = None,
) -> KMeansModel:
    """DP k-means: ``plan.iterations`` noisy Lloyd steps, consuming ``plan.loss`` from ``charge``.

    A cluster whose noisy count is below ``min_count`` (default: 3 count-noise std) is not moved
    to its noisy mean (mostly noise) but re-seeded next to the largest live cluster, which the
    next iteration splits. The model holds the clusters live in the last iteration and their
    shares of its noisy counts (post-processing)."""
    if not charge.left.covers(plan.loss):
        raise InternalError(f"charge {charge.left} does not cover the k-means plan {plan.loss}")
    source = as_source(batches, plan.dim)
    source.unit_count(plan.max_rows_per_unit)
    init = init_centroids(plan.k, plan.dim, plan.clip_norm) if init is None else init
    if init.shape != (plan.k, plan.dim):
        raise InternalError(f"init centroids of shape {init.shape}, plan needs {(plan.k, plan.dim)}")
    floor = max(1.0, 3 * plan.count_plan.std) if min_count is None else min_count

    def noise(sums: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        noisy_sums = add_noise(sums.ravel(), plan.sum_plan, charge=charge).reshape(sums.shape)
        return noisy_sums, add_noise(counts, plan.count_plan, charge=charge)

    return _lloyd(source, init, plan.iterations, plan.clip_norm, floor, noise)


def train_kmeans_nonprivate(
    batches: list[pa.RecordBatch], *, init: np.ndarray, iterations: int, clip_norm: float, min_count: float = 1.0,
) -> KMeansModel:
    """The non-private twin: the same loop, same clipping and update rule, no noise."""
    return _lloyd(as_source(batches, init.shape[1]), init, iterations, clip_norm, min_count, None)
