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
"""Share of a query's ε (or ρ) spent on choosing its missing bounds, unless the query says."""

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

    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def describe(self) -> dict:
        return {
            "bounds": self.names(),
            "share": self.share,
            "method": "DP histogram of one value per (unit, budget window) over power-of-two candidates, "
            "then the candidate minimising truncation bias + expected noise (Amin et al. 2019)",
            "mechanism": self.steps[0].noise.mechanism.value,
            "scale": self.steps[0].noise.scale,
            "epsilon": self.loss.epsilon,
            "rho": self.loss.rho,
        }


def check_share(share: float) -> float:
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1 or math.isnan(share):
        raise PrivacyParameterError(f"the bound-choice share of the budget must lie strictly between 0 and 1, got {share!r}")
    return float(share)


def plan_choice(
    names: Sequence[str], *, mechanism: Mechanism | str, epsilon: float | None = None, rho: float | None = None,
    candidates: dict[str, tuple[float, ...]] | None = None, share: float = DEFAULT_SHARE,
) -> ChoicePlan:
    """Plan the choice of ``names`` with ``epsilon`` (Laplace) or ``rho`` (Gaussian): the budget
    given here is the part spent on choosing, split equally over the bounds."""
    if not names:
        raise ValueError("nothing to choose")
    candidates = candidates or {}
    per = {"epsilon": epsilon / len(names)} if epsilon is not None else {"rho": rho / len(names)}
    steps, loss = [], PrivacyLoss()
    for name in names:
        noise = calibrate(mechanism=mechanism, sensitivity=Sensitivity(l1=1.0, l2=1.0), integer=True, **per)
        default = VALUE_CANDIDATES if name.startswith(CLAMP_PREFIX) else COUNT_CANDIDATES
        steps.append(ChoiceStep(name, tuple(candidates.get(name, default)), noise))
        loss = loss + noise.loss
    return ChoicePlan(tuple(steps), check_share(share), loss)


TAIL = 0.01
"""Without a noise cost (histogram bins), the bound leaves at most this share of units above it."""

FALSE_TAIL = 1e-3
"""Chance (union bound over the candidates) that pure noise passes for a non-empty tail."""


def noisy_tails(noisy: np.ndarray, noise: NoisePlan) -> np.ndarray:
    """From a noisy histogram, the number of units above each candidate, denoised by
    post-processing: tails summed from the top, made non-increasing, and zero where pure noise
    could reach them (a union bound over the candidates at :data:`FALSE_TAIL`: ``b·√n·ln(k/β)``
    for a Laplace sum of n bins, ``σ·√n·√(2 ln(k/β))`` for a Gaussian one). Without that, noise in
    the far bins (weighted by bounds up to 2^52) would decide every choice."""
    counts = np.asarray(noisy, dtype=np.float64)
    tails = counts[::-1].cumsum()[::-1][1:]  # tails[j]: units above candidate j
    tails = np.minimum.accumulate(tails)  # a tail cannot grow with the bound
    summed = np.arange(len(tails), 0, -1)  # bins in each tail
    log_k = math.log(len(tails) / FALSE_TAIL)
    per_bin = noise.scale * (log_k if noise.mechanism is Mechanism.LAPLACE else math.sqrt(2 * log_k))
    tails[tails < per_bin * np.sqrt(summed)] = 0.0
    return np.maximum(tails, 0.0)


def choose(
    step: ChoiceStep, counts: np.ndarray, *, charge: Charge, noise_cost: Callable[[float], float] | None,
    weight: float = 1.0,
) -> tuple[float, dict]:
    """Draw ``step``'s histogram noise against ``charge`` and pick the bound.

    ``noise_cost(τ)``: the release's expected absolute noise summed over its cells at bound τ
    (public: from the plan alone). The truncation bias at candidate ``c[j]`` is estimated from
    the denoised tails T (:func:`noisy_tails`) as ``weight · Σ_{m ≥ j} (c[m+1] − c[m]) · T[m]``
    (units above the last candidate count as twice it); the bound minimises bias + noise. Where
    the noise does not grow with the bound (the range of histogram bins), ``noise_cost`` is None
    and the bound is the smallest candidate that leaves at most :data:`TAIL` of the (noisy)
    units above it: a DP 99th percentile, rounded up to a candidate. Returns the chosen bound
    and the noisy histogram (post-processing of a DP release)."""
    noisy = add_noise(np.asarray(counts, dtype=np.int64), step.noise, charge=charge)
    c = np.asarray(step.candidates, dtype=np.float64)
    tails = noisy_tails(noisy, step.noise)
    detail = {"histogram": [int(x) for x in noisy], "candidates": [float(x) for x in c]}
    if noise_cost is None:
        total = max(float(np.sum(noisy)), 1.0)
        ok = np.flatnonzero(tails <= TAIL * total)
        best = int(ok[0]) if ok.size else len(c) - 1
        return float(c[best]), {**detail, "rule": f"at most {TAIL:.0%} of units above"}
    steps = np.diff(np.append(c, 2 * c[-1]))
    bias = weight * (steps * tails)[::-1].cumsum()[::-1]  # bias[j] = Σ_{m ≥ j} step_m · T_m
    errors = [float(bias[j]) + noise_cost(float(c[j])) for j in range(len(c))]
    best = int(np.argmin(errors))  # ties: the smaller bound
    return float(c[best]), {**detail, "rule": "least truncation bias + expected noise", "estimated_error": errors[best]}


def expected_abs_noise(noise: NoisePlan) -> float:
    """E|X| of one draw: the scale for Laplace, σ·√(2/π) for Gaussian (continuous approximations
    of the discrete mechanisms; used only to rank candidate bounds)."""
    if noise.mechanism is Mechanism.LAPLACE:
        return noise.scale
    return noise.scale * math.sqrt(2 / math.pi)
