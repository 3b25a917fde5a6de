"""Laplace and Gaussian mechanisms: calibration, disclosure (scale, 95% CI) and noise.

:func:`calibrate` turns a sensitivity and a budget into a :class:`NoisePlan` — everything about a
released column except the noise itself, so plans can be explained and tested exactly. The loss of
a plan is read from OpenDP's own privacy map of the same measurement, never re-derived by hand.
:func:`add_noise` draws the noise, vectorised over the column, only against a
:class:`~dplogs.privacy.charge.Charge` that covers the plan's loss.

Counts use the discrete (integer) mechanisms, drawn by the exact vectorised discrete Laplace
and Gaussian samplers in :mod:`dplogs.privacy.sampler` (the same distributions as OpenDP's,
about 10x and 5x faster). Sums computed exactly on a power-of-two grid (the polars backend's
fixed-point sums) use the same discrete mechanisms in grid units (``calibrate(grid=...)``); any
other float column uses OpenDP's floating-point Laplace/Gaussian, which sample exactly on a grid
and account for the rounding (~6e4 draws/s).

>>> from dplogs.privacy.sensitivity import Sensitivity
>>> plan = calibrate(mechanism="laplace", sensitivity=Sensitivity(l1=5, l2=2.2), epsilon=1.0, integer=True)
>>> plan.scale, plan.loss.epsilon
(5.0, 1.0)
>>> g = calibrate(mechanism="gaussian", sensitivity=Sensitivity(l1=5, l2=2.0), rho=0.5, integer=True)
>>> g.scale, g.loss.rho
(2.0, 0.5)
>>> from dplogs.privacy.bounds import ContributionBounds
>>> from dplogs.privacy.sensitivity import count_sensitivity
>>> s = count_sensitivity(ContributionBounds(max_groups=2, max_rows_per_group=3))  # L2 = 3√2
>>> round(calibrate(mechanism="gaussian", sensitivity=s, rho=0.5, integer=True).scale, 4)
4.2426
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import numpy as np

from dplogs.errors import InternalError, PrivacyParameterError
from dplogs.privacy import _opendp as dp, sampler
from dplogs.privacy.charge import Charge
from dplogs.privacy.limits import MAX_EXACT_SUM_UNITS, MAX_NOISE_SCALE_UNITS
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.params import check_epsilon, check_rho
from dplogs.privacy.sensitivity import Sensitivity

dp.enable_features("contrib")

_Z95 = 1.959963984540054


class Mechanism(str, Enum):
    LAPLACE = "laplace"
    GAUSSIAN = "gaussian"


@dataclass(frozen=True)
class NoisePlan:
    """Public: how one released column is noised. ``scale`` is the Laplace b or the Gaussian σ;
    ``sensitivity`` is L1 (Laplace) or L2 (Gaussian)."""

    mechanism: Mechanism
    sensitivity: float
    scale: float
    integer: bool
    loss: PrivacyLoss
    grid: float | None = None
    """Float columns whose values lie on a power-of-two lattice (exact sums, :attr:`Clamp.grid`):
    the noise is the discrete mechanism on that lattice, ``grid ·`` the integer noise of scale
    ``scale / grid``, charged through OpenDP's integer map in grid units (ε = Δ/b as for the
    continuous Laplace). OpenDP's float mechanisms also sample on a lattice; this one is drawn
    by the fast exact sampler."""

    def __post_init__(self) -> None:
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise InternalError(f"noise scale must be finite and > 0, got {self.scale}")
        if self.grid is not None and (self.integer or not _is_power_of_two(self.grid)):
            raise InternalError(f"a noise grid must be a power of two on a float column, got {self.grid}")

    @property
    def discrete(self) -> bool:
        """The noise takes values on a lattice (the integers, or the grid)."""
        return self.integer or self.grid is not None

    @property
    def std(self) -> float:
        return self.scale * math.sqrt(2) if self.mechanism is Mechanism.LAPLACE else self.scale

    def ci_halfwidth(self, level: float = 0.95) -> float:
        """Half-width h such that the noise lies in [-h, h] with probability ≥ ``level``.

        Exact for the discrete Laplace (a geometric tail), the continuous quantile otherwise
        (the discrete Gaussian's tails are no heavier than the continuous one's).

        >>> p = calibrate(mechanism="laplace", sensitivity=Sensitivity(l1=1, l2=1), epsilon=1.0, integer=False)
        >>> round(p.ci_halfwidth(), 3)
        2.996
        """
        if not 0 < level < 1:
            raise ValueError("level must be in (0, 1)")
        if self.mechanism is Mechanism.GAUSSIAN:
            from statistics import NormalDist

            return NormalDist().inv_cdf(0.5 + level / 2) * self.scale
        if not self.discrete:
            return self.scale * math.log(1 / (1 - level))
        # discrete Laplace with P(X=k) ∝ exp(-|k|/b): P(|X| > k) = 2 e^{-(k+1)/b} / (1 + e^{-1/b})
        unit = self.grid or 1.0
        b = self.scale / unit
        q = math.exp(-1 / b)
        k = math.ceil(-b * math.log((1 - level) * (1 + q) / 2) - 1)
        return float(max(k, 0)) * unit


def calibrate(
    *,
    mechanism: Mechanism | str,
    sensitivity: Sensitivity,
    integer: bool,
    epsilon: float | None = None,
    rho: float | None = None,
    grid: float | None = None,
) -> NoisePlan:
    """The plan for releasing a column with this sensitivity at this budget.

    Laplace takes ``epsilon`` (scale = L1/ε); Gaussian takes ``rho`` (σ = L2/√(2ρ)). ``grid``:
    the float values lie on this power-of-two lattice (see :attr:`NoisePlan.grid`). Discrete
    noise whose scale in its own units (1, or the grid) exceeds
    :data:`~dplogs.privacy.limits.MAX_NOISE_SCALE_UNITS` is refused here, at planning, from the
    parameters alone: its draws could leave int64.

    >>> p = calibrate(mechanism="laplace", sensitivity=Sensitivity(l1=5e6, l2=5e6), epsilon=0.5, integer=False, grid=0.0625)
    >>> p.scale, p.loss.epsilon, p.discrete
    (10000000.0, 0.5, True)
    """
    mech = Mechanism(mechanism)
    if mech is Mechanism.LAPLACE:
        if rho is not None:
            raise PrivacyParameterError("the Laplace mechanism takes epsilon, not rho")
        eps = check_epsilon(epsilon)
        sens = sensitivity.l1
        scale = sens / eps
    else:
        if epsilon is not None:
            raise PrivacyParameterError("the Gaussian mechanism takes rho (zCDP), not epsilon")
        r = check_rho(rho)
        sens = sensitivity.l2
        scale = sens / math.sqrt(2 * r)
    if grid is not None and (integer or not _is_power_of_two(grid)):
        raise InternalError(f"a noise grid must be a power of two on a float column, got {grid}")
    if (integer or grid is not None) and not scale / (grid or 1.0) <= MAX_NOISE_SCALE_UNITS:
        unit = f" grid units of {grid:g}" if grid is not None else ""
        raise PrivacyParameterError(
            f"the noise scale would be {scale / (grid or 1.0):.3g}{unit} (sensitivity {sens:.3g} at this budget share), "
            f"above the limit of 2^{math.log2(MAX_NOISE_SCALE_UNITS):g}: raise the budget, lower "
            "--max-groups/--max-rows-per-group or narrow the clamp"
        )
    if grid is not None:
        # in grid units: sensitivity Δ/g, scale b/g (exact: g is a power of two)
        loss = _opendp_loss(mech, True, scale / grid, sens / grid)
    else:
        loss = _opendp_loss(mech, integer, scale, sens)
    return NoisePlan(mechanism=mech, sensitivity=sens, scale=scale, integer=integer, loss=loss, grid=grid)


def _is_power_of_two(x: float) -> bool:
    return isinstance(x, float | int) and x > 0 and math.isfinite(x) and math.frexp(x)[0] == 0.5


def _opendp_loss(mech: Mechanism, integer: bool, scale: float, sensitivity: float) -> PrivacyLoss:
    # Distances are float-typed even over integer data: an L2 sensitivity √L0·L∞ is fractional.
    d_out = float(_measurement(mech, integer, scale).map(float(sensitivity)))
    return PrivacyLoss(epsilon=d_out) if mech is Mechanism.LAPLACE else PrivacyLoss(rho=d_out)


@lru_cache(maxsize=256)
def _measurement(mech: Mechanism, integer: bool, scale: float) -> dp.Measurement:
    domain = dp.vector_domain(dp.atom_domain(T=int) if integer else dp.atom_domain(T=float, nan=False))
    metric = dp.l1_distance(T=float) if mech is Mechanism.LAPLACE else dp.l2_distance(T=float)
    make = dp.m.make_laplace if mech is Mechanism.LAPLACE else dp.m.make_gaussian
    return make(domain, metric, scale=scale)


_EXACT_MODE: ContextVar[bool] = ContextVar("dplogs_exact_mode", default=False)


def add_noise(values: np.ndarray, plan: NoisePlan, *, charge: Charge) -> np.ndarray:
    """Return ``values`` plus noise drawn per ``plan``; consumes ``plan.loss`` from ``charge``
    first, so no noise exists that was not charged."""
    charge.consume(plan.loss)
    values = np.asarray(values)
    if _EXACT_MODE.get():
        return values.copy()
    if values.size == 0:
        return values.copy()
    if plan.integer:
        if not np.issubdtype(values.dtype, np.integer):
            raise InternalError("integer mechanism applied to non-integer values")
        return _discrete(values.astype(np.int64), plan.mechanism, plan.scale)
    if not np.all(np.isfinite(values)):
        raise InternalError("non-finite value reached the noise step (clamping failed)")
    if plan.grid is not None:
        units = values.astype(np.float64) / plan.grid  # exact: the grid is a power of two
        if np.any(units != np.trunc(units)) or np.any(np.abs(units) > MAX_EXACT_SUM_UNITS):
            raise InternalError("a value off its noise grid reached the noise step")
        return _discrete(units.astype(np.int64), plan.mechanism, plan.scale / plan.grid).astype(np.float64) * plan.grid
    out = _measurement(plan.mechanism, False, plan.scale)(values.astype(np.float64).tolist())
    return np.asarray(out, dtype=np.float64)


def _discrete(values: np.ndarray, mech: Mechanism, scale: float) -> np.ndarray:
    """``values`` (int64) plus discrete Laplace / Gaussian noise of ``scale``; the sum cannot
    wrap: calibrate() bounds the scale and the backend saturates the values (limits.py)."""
    if not scale <= MAX_NOISE_SCALE_UNITS or np.any(np.abs(values) > MAX_EXACT_SUM_UNITS):
        raise InternalError(f"a discrete draw at scale {scale} onto values up to 2^62 could overflow int64")
    gaussian = mech is Mechanism.GAUSSIAN
    if sampler.supports(scale, gaussian=gaussian):
        # the same exact distributions as OpenDP's, vectorised (tests/privacy/test_sampler.py)
        draw = sampler.discrete_gaussian if gaussian else sampler.discrete_laplace
        noise = draw(scale, values.size).reshape(values.shape)
        if np.any(np.abs(noise) >= 2**62):  # probability < 2·e^(-2^14) at the largest scale allowed
            raise InternalError(f"a discrete noise draw at scale {scale} reached 2^62")
        return values + noise
    out = _measurement(mech, True, scale)(values.tolist())
    return np.asarray(out, dtype=np.int64).reshape(values.shape)
