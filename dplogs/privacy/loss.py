"""Privacy loss of one release, and its composition.

A loss has three additive parts: ``epsilon`` (pure ε-DP, from Laplace releases), ``rho`` (ρ-zCDP,
from Gaussian releases) and ``delta`` (the additive δ of approximate-DP steps such as partition
selection). Adding two losses composes them (basic composition per part, which is exact for ρ);
turning the total into one (ε, δ) statement is the accountant's job (``privacy.accounting``).

>>> PrivacyLoss(epsilon=0.5) + PrivacyLoss(rho=0.125, delta=1e-6)
PrivacyLoss(epsilon=0.5, delta=1e-06, rho=0.125)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PrivacyLoss:
    """Public: the (ε, δ, ρ) a release costs per privacy unit per budget window."""

    epsilon: float = 0.0
    delta: float = 0.0
    rho: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epsilon", "delta", "rho"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"PrivacyLoss.{name} must be finite and >= 0, got {v!r}")
        if self.delta >= 1:
            raise ValueError(f"PrivacyLoss.delta must be < 1, got {self.delta!r}")

    def __add__(self, other: PrivacyLoss) -> PrivacyLoss:
        return PrivacyLoss(self.epsilon + other.epsilon, self.delta + other.delta, self.rho + other.rho)

    def covers(self, other: PrivacyLoss, *, tol: float = 1e-12) -> bool:
        """True when every part of ``other`` fits inside this loss (up to float rounding)."""
        return all(
            getattr(other, n) <= getattr(self, n) * (1 + tol) + tol for n in ("epsilon", "delta", "rho")
        )

    @property
    def is_zero(self) -> bool:
        return self.epsilon == 0 and self.delta == 0 and self.rho == 0


ZERO = PrivacyLoss()
