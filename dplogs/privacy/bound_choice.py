"""Contribution bounds chosen from the data, with differential privacy.

When a query gives no ``max_groups``, ``max_rows_per_group`` or clamp and the store has no
default, a disclosed share of the query's budget (:data:`DEFAULT_SHARE`, 10%) buys one noisy
histogram per missing bound, each over one value per (unit, budget window) on public
power-of-two candidates:

- ``max_groups``: the number of groups the unit touches;
- ``max_rows_per_group``: its rows in its busiest group;
- ``clamp:<column>``: the largest value of the column among its rows (taken as non-negative: every
  numeric field the store holds is a size, count, port, code or duration).

Each (unit, window) adds 1 to exactly one bin, so under the neighbouring relation (one unit's
events in one window) a histogram moves by 1 in one bin: L1 = L2 = 1. The noise is drawn by
:func:`~dplogs.privacy.mechanisms.add_noise` against the query's charge, and the bound is then
picked by post-processing alone: the candidate τ minimising the estimated error of the release,
truncation bias (read off the noisy histogram) plus the expected absolute noise at τ. That is
the bias–variance choice of Amin, Kulesza, Muñoz Medina & Vassilvitskii, "Bounding user
contributions: a bias–variance trade-off in differential privacy" (ICML 2019), on a DP histogram.

>>> choice = plan_choice(["max_rows_per_group"], mechanism="laplace", epsilon=0.1)
>>> choice.steps[0].noise.scale, choice.loss.epsilon
(10.0, 0.1)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dplogs.errors import PrivacyParameterError
from dplogs.privacy.charge import Charge
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.mechanisms import Mechanism, NoisePlan, add_noise, calibrate
from dplogs.privacy.sensitivity import Sensitivity

DEFAULT_SHARE = 0.1
"""Least share of a query's ε (or ρ) spent on choosing its missing bounds when the query or the
store does not give ``bound_share`` (:func:`adaptive_share` may raise it to :data:`MAX_SHARE`)."""

MAX_SHARE = 0.3
"""Most that :func:`adaptive_share` spends on the choice: the answer then keeps 70% of the
budget, so even a release whose bound was right at 10% loses at most 0.9/0.7 = 1.29x in noise."""

SHARE_STEPS: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3)

COUNT_CANDIDATES: tuple[float, ...] = tuple(float(2**i) for i in range(17))
"""Candidate ``max_groups`` / ``max_rows_per_group``: 1, 2, 4, ... 2^16."""

VALUE_CANDIDATES: tuple[float, ...] = tuple(float(4**i) for i in range(27))
"""Candidate upper clamps ``hi`` of ``[0, hi]``: 1, 4, 16, ... 2^52 (powers of 4: half the bins of
powers of 2, so half the noise variance in each tail count)."""

BOUND_NAMES = ("max_groups", "max_rows_per_group")
CLAMP_PREFIX = "clamp:"


@dataclass(frozen=True)
class ChoiceStep:
    """One bound to choose: its public candidates and the noise of its histogram."""

    name: str
    candidates: tuple[float, ...]
    noise: NoisePlan

    def bins(self, values: np.ndarray) -> np.ndarray:
        """Exact histogram of one value per (unit, window): bin ``i`` holds values in
        ``(c[i-1], c[i]]`` (bin 0 everything up to ``c[0]``), the last bin values above every
        candidate. Pre-noise: stays inside the engine."""
        idx = np.searchsorted(np.asarray(self.candidates), np.asarray(values, dtype=np.float64), side="left")
        return np.bincount(idx, minlength=len(self.candidates) + 1).astype(np.int64)


@dataclass(frozen=True)
class ChoicePlan:
    """Public: the bounds a release chooses from the data, and what that costs."""

    steps: tuple[ChoiceStep, ...]
    share: float
    loss: PrivacyLoss
    adaptive: bool = False
    """The share was set by :func:`adaptive_share` (the query and the store gave none)."""

    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def visible_tail(self) -> int:
        """About how many units must share one bin above a bound before the choice sees them
        (the lowest single-bin level of :func:`noisy_tails`, over the steps): fewer heavy units
        are truncated unseen. Public: from the plan alone."""
        return math.ceil(min(tail_levels(s.noise, s.candidates)[0].min() for s in self.steps))

    def describe(self) -> dict:
        return {
            "bounds": self.names(),
            "share": self.share,
            "share_rule": "adaptive: the least of 10-30% at which the choice sees the tail the best bound leaves"
            if self.adaptive else "given (bound_share)",
            "method": "DP histogram of one value per (unit, budget window) over power-of-two candidates, "
            "then the candidate minimising truncation bias + expected noise (Amin et al. 2019)",
            "mechanism": self.steps[0].noise.mechanism.value,
            "scale": {s.name: s.noise.scale for s in self.steps},
            "epsilon": self.loss.epsilon,
            "rho": self.loss.rho,
            "sees_tails_of": self.visible_tail(),
        }


def adaptive_share(visible_tail: Callable[[float], int], tail_at_best: Callable[[float], float]) -> float:
    """The share of the budget to spend on the choice when the query does not say: the least of
    :data:`SHARE_STEPS` at which the choice sees (``visible_tail(share)``, the plan's
    :meth:`ChoicePlan.visible_tail`) a tail as small as the one the best bound leaves above it
    (``tail_at_best(share)``), else :data:`MAX_SHARE`. The best bound τ* of Amin et al. leaves
    about as many units above it as the release's expected noise grows per unit of bound (bias
    falls by the units above τ, noise rises by that slope): cells·L0/ε for a Laplace count. With
    few cells that tail is a handful of units, far below what a 10% choice sees (~80–150 in one
    bin), and the bias of a missed tail dominates the error; with many cells the noise dominates
    and 10% suffices. Public: both functions read the plan alone."""
    for share in SHARE_STEPS:
        if visible_tail(share) <= tail_at_best(share):
            return share
    return MAX_SHARE


def check_share(share: float) -> float:
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1 or math.isnan(share):
        raise PrivacyParameterError(f"the bound-choice share of the budget must lie strictly between 0 and 1, got {share!r}")
    return float(share)


def plan_choice(
    names: Sequence[str], *, mechanism: Mechanism | str, epsilon: float | None = None, rho: float | None = None,
    candidates: dict[str, tuple[float, ...]] | None = None, share: float = DEFAULT_SHARE,
) -> ChoicePlan:
    """Plan the choice of ``names`` with ``epsilon`` (Laplace) or ``rho`` (Gaussian): the budget
    given here is the part spent on choosing, split over the bounds in proportion to ln(2k) for k
    candidates (equally when they search as many)."""
    if not names:
        raise ValueError("nothing to choose")
    candidates = candidates or {}
    grids = {
        name: tuple(candidates.get(name, VALUE_CANDIDATES if name.startswith(CLAMP_PREFIX) else COUNT_CANDIDATES))
        for name in names
    }
    # the levels a tail must pass grow with the log of the candidates searched (b·(1.6 + ln c)):
    # a bound over 3 candidates needs less budget to see the same tail than one over 17
    weights = {name: math.log(2 * len(grid)) for name, grid in grids.items()}
    total = sum(weights.values())
    steps, loss = [], PrivacyLoss()
    for name in names:
        part = weights[name] / total
        per = {"epsilon": epsilon * part} if epsilon is not None else {"rho": rho * part}
        noise = calibrate(mechanism=mechanism, sensitivity=Sensitivity(l1=1.0, l2=1.0), integer=True, **per)
        steps.append(ChoiceStep(name, grids[name], noise))
        loss = loss + noise.loss
    return ChoicePlan(tuple(steps), check_share(share), loss)


TAIL = 0.01
"""Without a noise cost (histogram bins), the bound leaves at most this share of units above it."""

FALSE_TAIL = 0.2
"""Chance (union bound over every test of :func:`noisy_tails`) that pure noise passes for a
non-empty tail, per bound chosen. Shared out in proportion to 1/(the bound a false tail pushes
to), it makes far false tails the rarest: pure noise pushes a bound to c or beyond with
probability at most :func:`false_push_rate` (≈ 2·FALSE_TAIL/c on powers of two from 1). Each
power-of-two range of bounds then adds about the same expected extra noise, so the expected
noise of a pure-noise release grows with the number of candidates, not with the largest: in the
worst case by FALSE_TAIL per candidate, measured ~1 noise of the first candidate over the 17 of
L∞ (benchmarks/utility.py, false-tail table). Lower rates hide real tails: at 10⁻³ the
single-bin levels were b·(6.9 + ln c) instead of b·(1.6 + ln c), 1.8x higher at c = 128, and 53
heavy users in one bin went unseen at a 30% share (benchmarks/utility.py, sample logs)."""


def laplace_sum_tail(n: int, x: float) -> float:
    """P(S > x·b) for S the sum of n independent continuous Laplace(b): S/b is the difference of
    two Gamma(n, 1) variables, so ``e^{-x} Σ_{j<n} Σ_{i≤j} x^{j-i}/(j-i)! · C(n-1+i, i) / 2^{n+i}``.

    >>> round(laplace_sum_tail(1, math.log(50)), 6)  # one draw: e^{-x} / 2
    0.01
    """
    total = 0.0
    for j in range(n):
        for i in range(j + 1):
            total += x ** (j - i) / math.factorial(j - i) * math.comb(n - 1 + i, i) / 2 ** (n + i)
    return math.exp(-x) * total


def noise_level(noise: NoisePlan, n: int, beta: float) -> float:
    """A level that the sum of ``n`` independent draws of ``noise`` exceeds with probability at
    most ``beta``. Laplace: the exact tail of the continuous sum (:func:`laplace_sum_tail`),
    plus n for integer noise (a discrete Laplace draw is stochastically below a continuous one
    of the same scale plus 1, and sums keep that order). Gaussian: ``σ·√(2n·ln(1/β))``, the
    Chernoff bound of a σ²-subgaussian sum (the discrete Gaussian is one: Canonne, Kamath &
    Steinke 2020)."""
    if noise.mechanism is Mechanism.GAUSSIAN:
        return noise.scale * math.sqrt(2 * n * math.log(1 / beta))
    lo, hi = 0.0, 1.0
    while laplace_sum_tail(n, hi) > beta:
        hi *= 2
    for _ in range(60):  # bisection on the decreasing tail; ends on the safe side (hi)
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if laplace_sum_tail(n, mid) > beta else (lo, mid)
    return noise.scale * hi + (n if noise.integer else 0)


def false_tail_shares(candidates: Sequence[float]) -> np.ndarray:
    """The share of :data:`FALSE_TAIL` that each of the two tests on bin ``m`` (alone, and the sum
    from it up) may spend: ``share[m-1]`` in proportion to 1/(the bound the test pushes to),
    ``c[m]`` (the last bin: 2·c[-1]); both kinds over every bin sum to 1. Public."""
    c = np.asarray(candidates, dtype=np.float64)
    reach = np.append(c[1:], 2 * c[-1])  # reach[m-1]: the bound that bin m, or any tail from it, pushes to
    return (c[0] / reach) / (2 * np.sum(c[0] / reach))


def false_push_rate(candidates: Sequence[float], bound: float) -> float:
    """The most often that pure noise (nothing above ``candidates[0]``) makes the choice pick
    ``bound`` or more: the false-tail chances of every test that could push it that far (a false
    tail in bin m supports bounds up to ``c[m]``, no further). For powers of two from 1 this is
    about ``2·FALSE_TAIL / bound``: 0.2 for 2, 0.05 for 8, 0.003 for 128. Public."""
    c = np.asarray(candidates, dtype=np.float64)
    reach = np.append(c[1:], 2 * c[-1])
    return float(FALSE_TAIL * 2 * false_tail_shares(c)[reach >= bound].sum())


def tail_levels(noise: NoisePlan, candidates: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The levels of :func:`noisy_tails`: ``single[m-1]`` for bin m alone, ``sums[j]`` for the sum
    of the bins above candidate j. Public: from the plan alone (cached: each costs ~35 ms of
    bisection over the exact Laplace-sum tail, and every choice reads them)."""
    return _tail_levels(noise, tuple(float(x) for x in candidates))


@functools.lru_cache(maxsize=256)
def _tail_levels(noise: NoisePlan, candidates: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    k = len(candidates)
    share = false_tail_shares(candidates)
    single = np.array([noise_level(noise, 1, FALSE_TAIL * w) for w in share])
    sums = np.array([noise_level(noise, k - j, FALSE_TAIL * share[j]) for j in range(k)])
    single.setflags(write=False)  # shared by every caller of the cache
    sums.setflags(write=False)
    return single, sums


def noisy_tails(noisy: np.ndarray, noise: NoisePlan, candidates: Sequence[float]) -> np.ndarray:
    """From a noisy histogram over ``candidates``, the number of units above each candidate,
    denoised by post-processing. A tail counts only where the evidence passes a level that pure
    noise reaches with small probability (:func:`noise_level`):

    - single bins: a noisy bin above the level of one draw is kept, and the kept bins above a
      candidate bound its tail from below, so units bunched in one or two bins are seen through
      the noise of those bins alone, not of every far, empty bin summed with them;
    - tail sums: the noisy sum of the n bins above a candidate, if it passes the level of n
      draws, so units spread thinly over many bins are seen too.

    Pure noise passes any of these 2k tests with probability at most :data:`FALSE_TAIL`, shared
    out in proportion to 1/(the smallest bound the test could push the choice to): a false tail
    at bound c raises the release's noise about c-fold, so the farther the push the rarer it is
    (:func:`false_push_rate`; with one level for all, noise in bins up to 2^52 decided choices
    once in a thousand).
    A tail is then at least every tail above it (it cannot grow with the bound)."""
    counts = np.asarray(noisy, dtype=np.float64)
    single, levels = tail_levels(noise, candidates)
    kept = np.where(counts[1:] > single, counts[1:], 0.0)
    tails = kept[::-1].cumsum()[::-1]  # tails[j]: kept units above candidate j
    sums = counts[::-1].cumsum()[::-1][1:]
    tails = np.maximum(tails, np.where(sums > levels, sums, 0.0))
    return np.maximum.accumulate(tails[::-1])[::-1]  # a tail is at least the tails above it


def choose(
    step: ChoiceStep, counts: np.ndarray, *, charge: Charge, noise_cost: Callable[[float], float] | None,
    weight: float = 1.0,
) -> tuple[float, dict]:
    """Draw ``step``'s histogram noise against ``charge`` and pick the bound from the noisy
    histogram (:func:`pick`: post-processing of a DP release). Returns the bound and the detail
    disclosed with the release."""
    noisy = add_noise(np.asarray(counts, dtype=np.int64), step.noise, charge=charge)
    return pick(step, noisy, noise_cost=noise_cost, weight=weight)


def pick(
    step: ChoiceStep, noisy: np.ndarray, *, noise_cost: Callable[[float], float] | None, weight: float = 1.0,
) -> tuple[float, dict]:
    """The bound for ``step`` from its noisy histogram.

    ``noise_cost(τ)``: the release's expected absolute noise summed over its cells at bound τ
    (public: from the plan alone). The truncation bias at candidate ``c[j]`` is
    ``weight · ∫_{c[j]}^∞ T(x) dx`` for T(x) the units above x, read off the denoised tails T
    (:func:`noisy_tails`) by the trapezoid rule between candidates (units spread evenly in their
    bin; the upper sum, every unit at the top of its bin, overstated the bias about twofold and
    chose bounds one step too high), units above the last candidate counting as twice it; the
    bound minimises bias + noise. Where the noise does not grow with the bound (the range of
    histogram bins), ``noise_cost`` is None and the bound is the smallest candidate that leaves
    at most :data:`TAIL` of the (noisy) units above it: a DP 99th percentile, rounded up to a
    candidate."""
    c = np.asarray(step.candidates, dtype=np.float64)
    tails = noisy_tails(noisy, step.noise, c)
    detail = {"histogram": [int(x) for x in noisy], "candidates": [float(x) for x in c]}
    if noise_cost is None:
        total = max(float(np.sum(noisy)), 1.0)
        ok = np.flatnonzero(tails <= TAIL * total)
        best = int(ok[0]) if ok.size else len(c) - 1
        return float(c[best]), {**detail, "rule": f"at most {TAIL:.0%} of units above"}
    steps = np.diff(np.append(c, 2 * c[-1]))
    # area under T(x) from c[m] to the next candidate; above the last, T[-1] units at twice it
    area = steps * (tails + np.append(tails[1:], tails[-1])) / 2
    bias = weight * area[::-1].cumsum()[::-1]  # bias[j] = weight · ∫_{c[j]}^∞ T
    errors = [float(bias[j]) + noise_cost(float(c[j])) for j in range(len(c))]
    best = int(np.argmin(errors))  # ties: the smaller bound
    return float(c[best]), {**detail, "rule": "least truncation bias + expected noise", "estimated_error": errors[best]}


def expected_abs_noise(noise: NoisePlan) -> float:
    """E|X| of one draw: the scale for Laplace, σ·√(2/π) for Gaussian (continuous approximations
    of the discrete mechanisms; used only to rank candidate bounds)."""
    if noise.mechanism is Mechanism.LAPLACE:
        return noise.scale
    return noise.scale * math.sqrt(2 / math.pi)
