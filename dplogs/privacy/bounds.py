"""Contribution bounds and clamping ranges: the inputs from which sensitivities are derived.

>>> ContributionBounds(max_groups=10, max_rows_per_group=5)
ContributionBounds(max_groups=10, max_rows_per_group=5)
>>> Clamp(lo=0, hi=1e6).magnitude
1000000.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dplogs.errors import PrivacyParameterError
from dplogs.privacy.limits import MAX_CLAMP, MAX_CONTRIBUTION_BOUND
from dplogs.privacy.params import check_integer, check_number


@dataclass(frozen=True)
class ContributionBounds:
    """Public: each privacy unit contributes to at most ``max_groups`` groups (L0) and at most
    ``max_rows_per_group`` rows in each (L∞). The engine enforces both on the data."""

    max_groups: int
    max_rows_per_group: int

    def __post_init__(self) -> None:
        for name in ("max_groups", "max_rows_per_group"):
            object.__setattr__(self, name, check_integer(name, getattr(self, name), lo=1, hi=MAX_CONTRIBUTION_BOUND))


SUM_GRID_BITS = 24


@dataclass(frozen=True)
class Clamp:
    """Public: numeric values are clamped into ``[lo, hi]`` before aggregation."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        lo, hi = check_number("clamp bound", self.lo), check_number("clamp bound", self.hi)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise PrivacyParameterError(f"clamp bounds must be finite, got [{self.lo}, {self.hi}]")
        if max(abs(lo), abs(hi)) > MAX_CLAMP:
            raise PrivacyParameterError(
                f"clamp bounds must lie within ±{MAX_CLAMP:g} (so sums and their noise stay finite), "
                f"got [{self.lo}, {self.hi}]"
            )
        if lo >= hi:
            raise PrivacyParameterError(f"clamp lower bound must be < upper bound, got [{self.lo}, {self.hi}]")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def magnitude(self) -> float:
        """max(|lo|, |hi|): how much one clamped value can move a sum."""
        return max(abs(self.lo), abs(self.hi))

    @property
    def is_integral(self) -> bool:
        return self.lo.is_integer() and self.hi.is_integer()

    @property
    def grid(self) -> float:
        """The power of two on which sums of these values are computed exactly, as int64
        multiples (contributions truncated toward zero onto it): ``magnitude / grid`` lies in
        ``(2^23, 2^24]``, so one value is at most 2^24 grid units. It
        depends on the bounds alone: a grid fitted to the data would truncate every contribution
        differently on neighbouring datasets, a change the sensitivity does not cover.

        >>> Clamp(lo=0, hi=1_000_000).grid, Clamp(lo=-0.5, hi=0.25).grid
        (0.0625, 5.960464477539063e-08)
        """
        return math.ldexp(1.0, math.frexp(self.magnitude)[1] - SUM_GRID_BITS)
