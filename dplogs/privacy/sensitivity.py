"""Sensitivities, derived from the contribution bounds in exactly this one place.

Neighbouring datasets differ by all events of one privacy unit. After bounding, that unit touches
at most L0 groups with at most L∞ rows each, so a vector of per-group aggregates moves by:

- count of events: L1 = L0·L∞, L2 = √L0·L∞
- count of distinct units: L1 = L0, L2 = √L0 (a unit counts once per group)
- sum of values clamped to [lo, hi]: the count's sensitivity times max(|lo|, |hi|)

L0 is the smaller of the asked ``max_groups`` and the number of groups a unit can reach in one
budget window, when that is known without the data (every key public): :func:`reachable_bounds`.
A scalar count then has sensitivity L∞, not L0·L∞.

>>> b = ContributionBounds(max_groups=4, max_rows_per_group=3)
>>> count_sensitivity(b)
Sensitivity(l1=12.0, l2=6.0)
>>> sum_sensitivity(b, Clamp(lo=-1, hi=10))
Sensitivity(l1=120.0, l2=60.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dplogs.privacy.bounds import Clamp, ContributionBounds


@dataclass(frozen=True)
class Sensitivity:
    """Public: L1 and L2 sensitivity of a vector of per-group aggregates."""

    l1: float
    l2: float

    def __post_init__(self) -> None:
        if not (self.l1 > 0 and self.l2 > 0 and math.isfinite(self.l1) and math.isfinite(self.l2)):
            raise ValueError(f"sensitivities must be finite and > 0, got {self}")


def reachable_bounds(bounds: ContributionBounds, groups: int | None) -> ContributionBounds:
    """The bounds a unit can actually use: bounding is per (unit, budget window), and when every
    group key is public a unit can touch at most ``groups`` groups in one window (``None``: not
    known in advance, e.g. private keys), so L0 = min(max_groups, groups).

    >>> reachable_bounds(ContributionBounds(max_groups=10, max_rows_per_group=5), 1)
    ContributionBounds(max_groups=1, max_rows_per_group=5)
    """
    if groups is None or groups >= bounds.max_groups:
        return bounds
    if groups < 1:
        raise ValueError(f"a grouping reaches at least one group, got {groups}")
    return ContributionBounds(max_groups=int(groups), max_rows_per_group=bounds.max_rows_per_group)


def count_sensitivity(bounds: ContributionBounds) -> Sensitivity:
    l0, linf = bounds.max_groups, bounds.max_rows_per_group
    return Sensitivity(l1=float(l0 * linf), l2=math.sqrt(l0) * linf)


def distinct_units_sensitivity(bounds: ContributionBounds) -> Sensitivity:
    return Sensitivity(l1=float(bounds.max_groups), l2=math.sqrt(bounds.max_groups))


def sum_sensitivity(bounds: ContributionBounds, clamp: Clamp) -> Sensitivity:
    c = count_sensitivity(bounds)
    return Sensitivity(l1=c.l1 * clamp.magnitude, l2=c.l2 * clamp.magnitude)
