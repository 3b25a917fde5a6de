"""One-run canary audit (Steinke, Nasr & Jagielski 2023) for training loops.

Insert ``m`` canary units, each included independently with probability ½ (exact CSPRNG
Bernoulli, :func:`canary_inclusion`); train once; score every canary from the trained model
(higher = "was included"); guess "in" for the ``k_pos`` highest scores and "out" for the ``k_neg``
lowest, abstain on the rest. For an (ε, δ)-DP training path the number ``v`` of correct guesses
among the ``r = k_pos + k_neg`` guesses is dominated by Binomial(r, e^ε/(1+e^ε)) up to a δ term
(their Theorem 3.1/5.2), so the largest ε whose p-value for ``v`` falls below ``alpha`` is a lower
bound with confidence 1 − alpha. Fix ``k_pos``/``k_neg`` before looking at the scores.

>>> round(canary_epsilon_lower_bound(m=1000, r=200, v=170, delta=0.0), 3)
1.399
>>> canary_epsilon_lower_bound(m=1000, r=200, v=100, delta=0.0)
0.0
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dplogs.privacy.randomness import bernoulli


def _log_pmf(i: int, r: int, q: float) -> float:
    return math.lgamma(r + 1) - math.lgamma(i + 1) - math.lgamma(r - i + 1) + i * math.log(q) + (r - i) * math.log1p(-q)


def p_value(*, m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[≥ v correct of r guesses] under the null hypothesis "the path is (ε, δ)-DP"."""
    if not (0 <= v <= r <= m) or epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need 0 <= v <= r <= m, epsilon >= 0, delta in [0, 1]; got m={m} r={r} v={v}")
    q = 1.0 / (1.0 + math.exp(-epsilon))
    pmf = [math.exp(_log_pmf(i, r, q)) for i in range(r + 1)]
    tail = math.fsum(pmf[v:])
    worst, acc = 0.0, 0.0
    for i in range(1, v + 1):  # δ term: max_i P[v − i ≤ Bin < v] / i
        acc += pmf[v - i]
        worst = max(worst, acc / i)
    return min(1.0, tail + 2 * m * delta * worst)


def canary_epsilon_lower_bound(*, m: int, r: int, v: int, delta: float, alpha: float = 0.05) -> float:
    """The largest ε rejected at level ``alpha`` (0 when the guesses prove nothing)."""
    if p_value(m=m, r=r, v=v, epsilon=0.0, delta=delta) >= alpha:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m=m, r=r, v=v, epsilon=hi, delta=delta) < alpha:
        lo, hi = hi, 2 * hi
        if hi > 64:
            return lo
    for _ in range(50):
        mid = (lo + hi) / 2
        if p_value(m=m, r=r, v=v, epsilon=mid, delta=delta) < alpha:
            lo = mid
        else:
            hi = mid
    return lo


def canary_inclusion(m: int) -> np.ndarray:
    """Which of ``m`` canaries to include: independent exact Bernoulli(½) from the OS CSPRNG."""
    if m < 1:
        raise ValueError("need at least one canary")
    return bernoulli(0.5, m)


@dataclass(frozen=True)
class CanaryAuditResult:
    """Public: outcome of a one-run canary audit."""

    name: str
    claimed_epsilon: float
    delta: float
    epsilon_lb: float
    canaries: int
    guesses: int
    correct: int
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if not 0 <= self.correct <= self.guesses <= self.canaries:
            raise ValueError(f"inconsistent canary audit: {self}")

    @property
    def violated(self) -> bool:
        return self.epsilon_lb > self.claimed_epsilon

    @property
    def verdict(self) -> str:
        return "VIOLATION" if self.violated else "ok"

    def summary(self) -> str:
        return (
            f"{self.name}: claimed ε={self.claimed_epsilon:.4g} (δ={self.delta:.3g}), "
            f"ε_lb={self.epsilon_lb:.4g} at {100 * (1 - self.alpha):.0f}% confidence "
            f"[{self.correct}/{self.guesses} correct guesses over {self.canaries} canaries, one run] → {self.verdict}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "violated": self.violated, "verdict": self.verdict}


def one_run_audit(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    claimed_epsilon: float,
    delta: float,
    k_pos: int,
    k_neg: int,
    alpha: float = 0.05,
    name: str = "training",
) -> CanaryAuditResult:
    """Guess "in" for the ``k_pos`` highest ``scores`` and "out" for the ``k_neg`` lowest, and turn
    the number of correct guesses into ε_lb."""
    scores, included = np.asarray(scores, float), np.asarray(included, bool)
    m = len(scores)
    if len(included) != m or k_pos < 0 or k_neg < 0 or k_pos + k_neg > m or k_pos + k_neg == 0:
        raise ValueError("need one score per canary and 0 < k_pos + k_neg <= number of canaries")
    order = np.argsort(scores, kind="stable")
    v = int(included[order[m - k_pos:]].sum()) if k_pos else 0
    v += int((~included[order[:k_neg]]).sum())
    r = k_pos + k_neg
    return CanaryAuditResult(
        name=name, claimed_epsilon=float(claimed_epsilon), delta=float(delta),
        epsilon_lb=canary_epsilon_lower_bound(m=m, r=r, v=v, delta=delta, alpha=alpha),
        canaries=m, guesses=r, correct=v, alpha=alpha,
    )
