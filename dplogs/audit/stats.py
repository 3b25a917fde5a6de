"""Clopper–Pearson intervals and the ε lower bound of a distinguishing test.

A test that says "D" on outputs of the path run on D with true-positive rate TPR and on outputs of
the path run on the neighbour D′ with false-positive rate FPR proves, for an (ε, δ)-DP path,
``TPR ≤ e^ε·FPR + δ``. With Clopper–Pearson bounds at confidence 1 − α/2 each (so both hold
together with probability ≥ 1 − α), ``ε_lb = ln((TPR_lo − δ) / FPR_hi)`` is a lower bound on the
path's true ε with confidence ≥ 1 − α (Jagielski et al. 2020; Nasr et al. 2023).

scipy is a development dependency only: when it is importable its ``beta.ppf`` gives the bounds;
otherwise they are found by bisection on the exact binomial tail, computed in log space with
``math.lgamma`` (exact up to float rounding, O(n) per evaluation: fine for audits of ≤ 10⁶ trials).

>>> lo, hi = clopper_pearson(50, 100)
>>> round(lo, 4), round(hi, 4)
(0.3983, 0.6017)
>>> round(epsilon_lower_bound(tp=9000, n_pos=10000, fp=1000, n_neg=10000), 3)
2.132
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

try:  # dev dependency: faster and vectorised; the fallback below gives the same numbers
    from scipy.stats import beta as _beta
except ImportError:  # pragma: no cover - exercised by forcing the fallback in tests
    _beta = None


def _check(k: int, n: int, alpha: float) -> None:
    if not (0 <= k <= n and n >= 1):
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(Bin(n, p) <= k), summed in log space (log pmf by its ratio recurrence, vectorised)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    i = np.arange(k, dtype=np.float64)
    steps = np.log(n - i) - np.log(i + 1) + math.log(p) - math.log1p(-p)
    logs = n * math.log1p(-p) + np.concatenate([[0.0], np.cumsum(steps)])
    m = float(logs.max())
    return min(1.0, math.exp(m) * float(np.exp(logs - m).sum()))


def _bisect(f, target: float, *, increasing: bool) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, *, alpha: float = 0.05, use_scipy: bool = True) -> tuple[float, float]:
    """Two-sided exact (Clopper–Pearson) 1 − α interval for a binomial proportion k/n: each end
    holds with probability ≥ 1 − α/2 on its own."""
    _check(k, n, alpha)
    if use_scipy and _beta is not None:
        lo = 0.0 if k == 0 else float(_beta.ppf(alpha / 2, k, n - k + 1))
        hi = 1.0 if k == n else float(_beta.ppf(1 - alpha / 2, k + 1, n - k))
        return lo, hi
    # lo solves P(Bin(n, p) >= k) = α/2; hi solves P(Bin(n, p) <= k) = α/2
    lo = 0.0 if k == 0 else _bisect(lambda p: 1.0 - _binom_cdf(k - 1, n, p), alpha / 2, increasing=True)
    hi = 1.0 if k == n else _bisect(lambda p: _binom_cdf(k, n, p), alpha / 2, increasing=False)
    return lo, hi


def epsilon_lower_bound(
    *, tp: int, n_pos: int, fp: int, n_neg: int, delta: float = 0.0, alpha: float = 0.05
) -> float:
    """ε_lb = ln((TPR_lo − δ) / FPR_hi), or 0 when the test proves nothing.

    ``tp`` of ``n_pos`` outputs of the path on D were flagged, ``fp`` of ``n_neg`` on D′."""
    tpr_lo, _ = clopper_pearson(tp, n_pos, alpha=alpha)
    _, fpr_hi = clopper_pearson(fp, n_neg, alpha=alpha)
    if tpr_lo - delta <= 0:
        return 0.0
    return max(0.0, math.log((tpr_lo - delta) / fpr_hi))


def _wilson_bounds(k: np.ndarray, n: int, alpha: float, *, lower: bool) -> np.ndarray:
    """Vectorised Wilson score bound, only for *choosing* a threshold (fast for hundreds of
    candidates, with or without scipy); reported bounds are always exact Clopper–Pearson."""
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half if lower else centre + half, 0.0, 1.0)
