"""Time-series anomaly scores as POST-PROCESSING of DP counts: a bucket's noisy count against a
noisy baseline of the previous buckets. Only released (noisy) counts and the public noise scale go
in, so the scores cost no extra privacy.

For bucket t with history h: m = mean and s² = variance (ddof 1) of the previous h noisy counts,
which already include noise; the score is (c_t − m) / √(max(s², σ²)·(1 + 1/h)), the z-score of
c_t against a predictive spread that never drops below the noise standard deviation σ (so a run
of flat buckets cannot make noise look anomalous). The first h buckets have no score (NaN).

>>> import numpy as np
>>> z = baseline_scores(np.array([10, 12, 9, 11, 10, 40.0]), history=5, noise_std=1.0)
>>> bool(np.isnan(z[:5]).all()), round(float(z[5]), 1)  # (40 - 10.4) / √(1.3 · 1.2)
(True, 23.7)
"""

from __future__ import annotations

import math

import numpy as np

from dplogs.errors import UsageError


def baseline_scores(noisy_counts: np.ndarray, *, history: int, noise_std: float) -> np.ndarray:
    """Per-bucket z-scores against the previous ``history`` buckets (NaN for the first ones)."""
    c = np.asarray(noisy_counts, dtype=np.float64)
    if isinstance(history, bool) or not isinstance(history, int) or history < 2:
        raise UsageError(f"history must be an integer >= 2 buckets, got {history!r}")
    if not (noise_std >= 0 and math.isfinite(noise_std)):
        raise UsageError(f"noise_std must be finite and >= 0 (the release's noise std), got {noise_std}")
    out = np.full(len(c), np.nan)
    if len(c) <= history:
        return out
    win = np.lib.stride_tricks.sliding_window_view(c[:-1], history)  # win[i] = c[i : i+h], precedes c[i+h]
    m, s2 = win.mean(axis=1), win.var(axis=1, ddof=1)
    spread = np.sqrt(np.maximum(s2, noise_std**2) * (1 + 1 / history))
    out[history:] = (c[history:] - m) / np.maximum(spread, 1e-12)
    return out


def flag_buckets(scores: np.ndarray, *, threshold: float = 3.0) -> np.ndarray:
    """Buckets whose score exceeds ``threshold`` (upward spikes only; NaN never flags).

    >>> flag_buckets(np.array([np.nan, 1.0, 4.0])).tolist()
    [False, False, True]
    """
    s = np.asarray(scores, dtype=np.float64)
    return np.nan_to_num(s, nan=-np.inf) > threshold
