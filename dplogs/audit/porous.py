"""Porous-set test for floating-point noise samplers (Mironov 2012).

A textbook float sampler returns ``x + b·ln(V)`` with ``V`` on a 2⁻⁵³ grid. Its outputs from input
``x`` form a sparse, input-dependent set of doubles: rounding ``x + noise`` drops different low
bits for different ``x``, so an attacker who knows the sampler can tell, from one output, which
input produced it — whatever ε the scale claims. The test: flag an output when it is *reachable*
from input ``x0`` under a sampler model but not from ``x1``; a sound sampler (OpenDP's, which
samples exactly and rounds to a fixed lattice) gives no such separation, a textbook one gives a
near-perfect one. The flags are turned into ε_lb like any other audit.

:func:`inverse_cdf_laplace_reachable` models numpy's ``Generator.laplace`` (and
``RandomState.laplace``): ``U = k·2⁻⁵³``; ``x − b·ln(2 − U − U)`` if ``U ≥ ½`` else
``x + b·ln(U + U)``. ``math.log`` is the same libm ``log`` numpy's C code calls.

>>> inverse_cdf_laplace_reachable(1.0 + 2.0 * math.log(0.5), 1.0, 2.0)
True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from dplogs.audit.auditor import AuditResult, audit_outputs

_GRID = 2.0**53
_WINDOW = 3


def inverse_cdf_laplace_reachable(y: float, x: float, scale: float) -> bool:
    """Can the textbook inverse-CDF Laplace sampler output ``y`` from input ``x``?"""
    n = (y - x) / scale
    if not math.isfinite(n):
        return False
    if y >= x:
        centre = int((1.0 - math.exp(-n) / 2.0) * _GRID)
        for k in range(centre - _WINDOW, centre + _WINDOW + 1):
            u = k / _GRID
            if 0.5 <= u < 1.0 and x - scale * math.log(2.0 - u - u) == y:
                return True
    if y <= x:
        centre = int(math.exp(n) / 2.0 * _GRID)
        for k in range(centre - _WINDOW, centre + _WINDOW + 1):
            u = k / _GRID
            if 0.0 < u < 0.5 and x + scale * math.log(u + u) == y:
                return True
    return False


def porous_set_audit(
    sample: Callable[[float, int], np.ndarray],
    *,
    scale: float,
    claimed_epsilon: float,
    trials: int = 4000,
    inputs: tuple[float, float] = (0.0, 1.0),
    reachable: Callable[[float, float, float], bool] = inverse_cdf_laplace_reachable,
    name: str = "float sampler",
) -> AuditResult:
    """Audit a float sampler ``sample(x, n) -> n noisy releases of x`` on the neighbouring
    inputs ``inputs`` (at sensitivity |x1 − x0|) with the porous-set statistic."""
    x0, x1 = inputs

    def flags(out: np.ndarray) -> np.ndarray:
        return np.array(
            [float(reachable(float(y), x0, scale) and not reachable(float(y), x1, scale)) for y in out]
        )

    return audit_outputs(
        flags(sample(x0, trials)), flags(sample(x1, trials)), claimed_epsilon=claimed_epsilon,
        statistic=lambda m: m[:, 0], name=name,
    )
