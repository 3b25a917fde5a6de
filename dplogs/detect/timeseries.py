"""Time-series anomaly scores as POST-PROCESSING of DP counts (``dplogs timeseries``): a bucket's noisy count against a
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
import polars as pl

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


_CELL = ("aggregate", "value", "mechanism", "scale", "ci_low", "ci_high", "exact")  # "exact": under a protection policy


def noise_std(mechanism: str, scale: float) -> float:
    """Standard deviation of a release cell's noise from its ``mechanism`` name (``discrete
    laplace``, ``gaussian``, ...): σ for Gaussian, b·√2 for Laplace (the continuous value, slightly
    above the discrete Laplace's, so z is never overstated).

    >>> noise_std("discrete laplace", 2.0) == 2 * math.sqrt(2), noise_std("discrete gaussian", 2.0)
    (True, 2.0)
    """
    if "laplace" not in mechanism and "gaussian" not in mechanism:
        raise UsageError(f"cannot score a release noised by {mechanism!r}")
    return float(scale) * (math.sqrt(2) if "laplace" in mechanism else 1.0)


def score_release(data: pl.DataFrame, *, history: int, threshold: float = 3.0,
                  covered: list[bool] | None = None) -> pl.DataFrame:
    """Time-series scores of a DP release with ONE time-bucket key and one noised aggregate: per
    bucket the noisy value, the mean of the previous ``history`` noisy buckets, z
    (:func:`baseline_scores`, the noise std from the release's own plan) and whether z exceeds
    ``threshold``. Post-processing of the release: it costs nothing more.

    ``covered`` (per bucket, in time order; from the store's public coverage) marks buckets with
    ingested logs; the others hold pure noise, so they get no score and stay out of the baselines
    of later buckets (a run of empty days would otherwise drag the baseline down and make the
    next real day look like a spike, or flag noise itself).

    >>> import datetime as dt
    >>> days = [dt.datetime(2026, 11, d) for d in range(1, 8)]
    >>> rel = pl.DataFrame({"day": days, "aggregate": "count", "value": [10.0, 12, 9, 11, 10, 11, 40],
    ...                     "mechanism": "laplace", "scale": 1.0, "ci_low": 0.0, "ci_high": 0.0})
    >>> score_release(rel, history=5)["anomalous"].to_list()
    [False, False, False, False, False, False, True]
    """
    keys = [c for c in data.columns if c not in _CELL]
    if len(keys) != 1 or not (data.schema[keys[0]] == pl.Date or isinstance(data.schema[keys[0]], pl.Datetime)):
        raise UsageError(f"time-series scores need a release keyed by ONE time bucket (e.g. GROUP BY "
                         f"date_trunc('day', \"@timestamp\") or --bucket day), got keys {keys}")
    if data["aggregate"].n_unique() != 1:
        raise UsageError("time-series scores need exactly one aggregate (e.g. COUNT(*)) per bucket")
    if data["scale"].null_count():
        raise UsageError("time-series scores need a directly noised aggregate (count or sum), not a "
                         "post-processed one (mean, ratio, quantile)")
    if data["mechanism"].n_unique() != 1 or data["scale"].n_unique() != 1:
        raise UsageError("time-series scores need one noise scale for every bucket")
    frame = data.sort(keys[0])
    std = noise_std(frame["mechanism"][0], frame["scale"][0])
    values = frame["value"].cast(pl.Float64).to_numpy()
    mask = np.ones(len(values), dtype=bool) if covered is None else np.asarray(covered, dtype=bool)
    if mask.shape != values.shape:
        raise UsageError(f"covered has {mask.size} entries for {values.size} buckets")
    kept = values[mask]  # scored as if the uncovered buckets were not there
    z, base = np.full(len(values), np.nan), np.full(len(values), np.nan)
    z[mask] = baseline_scores(kept, history=history, noise_std=std)
    if len(kept) > history:
        kept_base = np.full(len(kept), np.nan)
        kept_base[history:] = np.lib.stride_tricks.sliding_window_view(kept[:-1], history).mean(axis=1)
        base[mask] = kept_base
    return pl.DataFrame({
        keys[0]: frame[keys[0]], "value": values, "covered": mask, "baseline": base, "z": z,
        "anomalous": flag_buckets(z, threshold=threshold), "noise_std": np.full(len(values), std),
    })

