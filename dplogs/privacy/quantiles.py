"""Quantiles as post-processing of a DP histogram over public bins.

Why a histogram and not OpenDP's ``make_private_quantile``: one noisy histogram per group answers
every quantile level at once (p50, p95 and p99 cost one histogram's budget, not three) and it is
vectorised over groups. The bins are public (by default log-spaced within the declared clamp range,
so heavy-tailed byte counts keep relative resolution); each bin count is noised by the usual count
mechanism, and everything here only transforms those noisy counts.

Estimate: negative noisy counts are set to 0, the CDF is accumulated and the quantile is linearly
interpolated inside the bin where the CDF crosses ``q·total``. Bias and resolution: values are
clamped to the bin range first (p99 of a clamped column is at most ``hi``), and inside a bin the
estimate assumes values are spread evenly, so the error is up to one bin width even without noise.

Confidence interval: with probability >= ``level`` every bin's noise lies within ``h`` (the
per-bin half-width at level ``1 - (1 - level)/B``, a union bound over B bins). On that event the
error of ``F(j) - q·N`` is at most ``h·(q·(B - j) + (1 - q)·j)``, which brackets the bin holding the
true (binned) quantile; the interval runs from that bracket's lower bin edge to its upper one.

>>> import numpy as np
>>> edges = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
>>> est = histogram_quantiles(np.array([[10, 10, 10, 10]]), edges, [0.5], halfwidth=0.0)
>>> float(est.value[0, 0]), float(est.ci_low[0, 0]), float(est.ci_high[0, 0])
(20.0, 10.0, 20.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QuantileEstimate:
    """Arrays of shape (groups, levels): the estimate and its 95% interval (NaN for an empty group)."""

    value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


def bin_level(level: float, n_bins: int) -> float:
    """Per-bin coverage whose union over ``n_bins`` bins has coverage >= ``level``."""
    return 1 - (1 - level) / n_bins


def histogram_quantiles(counts: np.ndarray, edges: np.ndarray, levels: list[float], *, halfwidth: float) -> QuantileEstimate:
    """Quantiles per row of ``counts`` (noisy bin counts, shape (groups, bins)) over ``edges``.

    ``halfwidth`` is the per-bin noise half-width at level :func:`bin_level` (0 for exact counts).
    """
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    g, b = counts.shape
    if edges.size != b + 1:
        raise ValueError("edges must have one more entry than there are bins")
    clipped = np.clip(counts, 0, None)
    cdf = np.cumsum(clipped, axis=1)
    total = cdf[:, -1]
    raw_cdf = np.cumsum(counts, axis=1)
    raw_total = raw_cdf[:, -1]
    j = np.arange(1, b + 1, dtype=np.float64)
    value = np.full((g, len(levels)), np.nan)
    lo = np.full_like(value, np.nan)
    hi = np.full_like(value, np.nan)
    rows = np.arange(g)
    nonempty = total > 0
    for i, q in enumerate(levels):
        target = q * total
        # first bin whose CDF reaches the target
        k = np.minimum((cdf < target[:, None]).sum(axis=1), b - 1)
        before = np.where(k > 0, cdf[rows, np.maximum(k - 1, 0)], 0.0)
        inside = clipped[rows, k]
        frac = np.where(inside > 0, (target - before) / np.where(inside > 0, inside, 1), 0.0)
        value[:, i] = edges[k] + np.clip(frac, 0, 1) * (edges[k + 1] - edges[k])
        g_hat = raw_cdf - q * raw_total[:, None]
        err = halfwidth * (q * (b - j) + (1 - q) * j)
        lo_bin = np.argmax(g_hat + err >= 0, axis=1)  # always true at j = B (err >= 0 there)
        reached = g_hat - err >= 0
        hi_bin = np.where(reached.any(axis=1), np.argmax(reached, axis=1), b - 1)
        lo[:, i] = edges[lo_bin]
        hi[:, i] = edges[hi_bin + 1]
    value[~nonempty] = np.nan
    # an empty-looking group still gets the honest interval: anywhere in the bin range
    lo[~nonempty] = edges[0]
    hi[~nonempty] = edges[-1]
    return QuantileEstimate(value=value, ci_low=lo, ci_high=hi)
