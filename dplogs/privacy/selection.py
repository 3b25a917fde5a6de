"""DP partition selection: which private keys (IPs, user names, hosts) may appear in a release.

A private key's domain is unknown without the data, so releasing "this key exists" is itself a
disclosure. After bounding, each unit adds 1 to the distinct-unit count of at most L0 keys
(``ContributionBounds.max_groups``). OpenDP's thresholded mechanisms (``make_laplace_threshold``,
``make_gaussian_threshold``; Rogers 2023; the Laplace one is run with the project's exact
vectorised sampler, :mod:`dplogs.privacy.sampler`) add discrete noise to those counts and keep a key only
when its noisy count reaches a threshold. The (ε or ρ, δ) charged is OpenDP's own privacy map for
the input distance (l0=L0, l1=L0, l∞=1), never derived by hand, with one correction: OpenDP 0.16
keeps counts *equal to* the threshold but its map leaves the probability mass at the threshold out
of δ (opendp/opendp#2922; a count-1 key survives threshold T with probability P(noise >= T-1), not
P(noise >= T)). So the δ we charge for threshold T is the map's δ at T - 1, and the threshold is
the smallest one for which that corrected δ is no larger than the δ asked for.

The kept keys' noisy counts are released too (they are the "distinct units" of those keys). They
are biased upward by the selection itself (only keys whose noise pushed them over the threshold
survive near the threshold). Top-k is post-processing: select, then rank the noisy counts.

>>> from dplogs.privacy.bounds import ContributionBounds
>>> p = plan_selection(mechanism="laplace", bounds=ContributionBounds(max_groups=1, max_rows_per_group=1),
...                    epsilon=1.0, delta=1e-6)
>>> p.scale, p.threshold, p.loss.epsilon, p.loss.delta <= 1e-6
(1.0, 15, 1.0, True)
>>> p.loss.delta == _map(p.mechanism, 1.0, 14, 1)[1]  # charged δ: OpenDP's map one below (#2922)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from dplogs.errors import InternalError, PrivacyParameterError
from dplogs.privacy import _opendp as dp, mechanisms, sampler
from dplogs.privacy.bounds import ContributionBounds
from dplogs.privacy.charge import Charge
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.mechanisms import Mechanism
from dplogs.privacy.params import check_delta, check_epsilon, check_rho
from dplogs.privacy.sensitivity import distinct_units_sensitivity

dp.enable_features("contrib")

# OpenDP's threshold is of the count type (i32): a larger one cannot be built
_MAX_THRESHOLD = 2**30
# OpenDP's threshold maps round δ up to at least 2^-53, whatever the threshold: a smaller target
# cannot be met by any threshold
SMALLEST_SELECTION_DELTA = 2.0**-53


@dataclass(frozen=True)
class SelectionPlan:
    """Public: how private keys are selected. ``scale`` is the discrete Laplace b or Gaussian σ
    on distinct-unit counts; a key is kept when its noisy count is >= ``threshold``."""

    mechanism: Mechanism
    scale: float
    threshold: int
    max_groups: int
    loss: PrivacyLoss

    def __post_init__(self) -> None:
        if not (self.scale > 0 and self.threshold >= 1 and self.max_groups >= 1):
            raise InternalError(f"invalid selection plan {self}")

    @property
    def name(self) -> str:
        return f"{self.mechanism.value}-threshold"

    def ci_halfwidth(self, level: float = 0.95) -> float:
        """Noise half-width of a kept key's count, as for an unthresholded count (the selection
        bias comes on top; see the module note)."""
        return mechanisms.NoisePlan(
            mechanism=self.mechanism, sensitivity=1.0, scale=self.scale, integer=True, loss=self.loss
        ).ci_halfwidth(level)


def plan_selection(
    *,
    mechanism: Mechanism | str,
    bounds: ContributionBounds,
    delta: float | None,
    epsilon: float | None = None,
    rho: float | None = None,
) -> SelectionPlan:
    """Calibrate selection for this budget share: scale from ε (Laplace, L1 = L0) or ρ (Gaussian,
    L2 = √L0), then the smallest threshold whose δ (per OpenDP's map) is <= ``delta``."""
    mech = Mechanism(mechanism)
    if delta is None:
        raise PrivacyParameterError(
            "grouping by a private key needs delta for partition selection; pass --delta (e.g. 1e-6) "
            "or declare the key's values with --keys COL=a,b,c"
        )
    target = check_delta(delta)
    if target < SMALLEST_SELECTION_DELTA:
        raise PrivacyParameterError(
            f"delta={delta:g} is below what partition selection can certify (OpenDP's threshold maps give no "
            f"delta under 2^-53 = {SMALLEST_SELECTION_DELTA:.3g}); raise --delta"
        )
    sens = distinct_units_sensitivity(bounds)
    if mech is Mechanism.LAPLACE:
        if rho is not None:
            raise PrivacyParameterError("Laplace selection takes epsilon, not rho")
        scale = sens.l1 / check_epsilon(epsilon)
    else:
        if epsilon is not None:
            raise PrivacyParameterError("Gaussian selection takes rho, not epsilon")
        scale = sens.l2 / math.sqrt(2 * check_rho(rho))
    l0 = bounds.max_groups

    lo, hi = 2, 4
    while _true_delta(mech, scale, hi, l0) > target:
        lo, hi = hi, hi * 2
        if hi > _MAX_THRESHOLD:
            raise PrivacyParameterError(f"delta={delta} is too small for this epsilon/rho; raise delta or the budget")
    while lo < hi:  # smallest threshold with delta(threshold) <= target; delta falls as threshold grows
        mid = (lo + hi) // 2
        if _true_delta(mech, scale, mid, l0) <= target:
            hi = mid
        else:
            lo = mid + 1
    d_out, d_delta = _map(mech, scale, hi, l0)[0], _true_delta(mech, scale, hi, l0)
    loss = PrivacyLoss(epsilon=d_out, delta=d_delta) if mech is Mechanism.LAPLACE else PrivacyLoss(rho=d_out, delta=d_delta)
    return SelectionPlan(mechanism=mech, scale=scale, threshold=hi, max_groups=l0, loss=loss)


def _domain_metric(mech: Mechanism) -> tuple[Any, Any]:
    domain = dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=int))
    inner = dp.absolute_distance(T=int)
    metric = dp.l01inf_distance(inner) if mech is Mechanism.LAPLACE else dp.l02inf_distance(inner)
    return domain, metric


@lru_cache(maxsize=512)
def _measurement(mech: Mechanism, scale: float, threshold: int) -> dp.Measurement:
    domain, metric = _domain_metric(mech)
    make = dp.m.make_laplace_threshold if mech is Mechanism.LAPLACE else dp.m.make_gaussian_threshold
    return make(domain, metric, scale=scale, threshold=threshold)


def _d_in(mech: Mechanism, l0: int) -> tuple[int, int, int]:
    # one unit: +1 on at most l0 keys. The l2 slot takes integers; OpenDP tightens it to √l0·l∞.
    return (l0, l0, 1) if mech is Mechanism.LAPLACE else (l0, math.ceil(math.sqrt(l0)), 1)


@lru_cache(maxsize=4096)
def _map(mech: Mechanism, scale: float, threshold: int, l0: int) -> tuple[float, float]:
    d_out, d_delta = _measurement(mech, scale, threshold).map(_d_in(mech, l0))
    return float(d_out), float(d_delta)


def _true_delta(mech: Mechanism, scale: float, threshold: int, l0: int) -> float:
    """δ of keeping counts >= ``threshold``: OpenDP's map at ``threshold - 1`` (see module note)."""
    return max(_map(mech, scale, threshold - 1, l0)[1], _map(mech, scale, threshold, l0)[1])


def select(
    keys: list[str], units: np.ndarray, plan: SelectionPlan, *, charge: Charge, always: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into ``keys``) of the kept keys, and their noisy distinct-unit counts.

    ``units`` are the bounded distinct-unit counts per key (each unit in <= ``plan.max_groups``
    keys). Consumes ``plan.loss`` from ``charge`` before drawing. ``always`` marks keys whose
    existence is already public (they occur in rows a protection policy leaves unprotected, which
    neighbours share): those are kept whatever their noisy count. Their counts get the same noise,
    so over all keys one unit still moves the noised vector by at most L0 (the ε part), and only
    the other keys can appear or vanish (the δ part).
    """
    units = np.asarray(units, dtype=np.int64)
    if len(keys) != units.size or len(set(keys)) != len(keys):
        raise InternalError("selection keys must be distinct and aligned with their counts")
    forced = np.zeros(units.size, dtype=bool) if always is None else np.asarray(always, dtype=bool)
    if forced.size != units.size:
        raise InternalError("selection: 'always' must align with the keys")
    charge.consume(plan.loss)
    if mechanisms._EXACT_MODE.get():  # test-only: deterministic threshold on the true counts
        kept = np.flatnonzero((units >= plan.threshold) | forced)
        return kept, units[kept].copy()
    gaussian = plan.mechanism is Mechanism.GAUSSIAN
    if forced.any() or (not gaussian and sampler.supports(plan.scale)):
        # the same rule as OpenDP's make_laplace_threshold / make_gaussian_threshold (integer
        # counts + discrete noise, kept when >= threshold) with the project's exact vectorised
        # sampler, ~10x faster; also the one path that can keep public keys below the threshold
        if not sampler.supports(plan.scale, gaussian=gaussian):
            raise PrivacyParameterError(f"selection noise scale {plan.scale:g} is too large for the exact sampler")
        draw = sampler.discrete_gaussian if gaussian else sampler.discrete_laplace
        noisy = units + draw(plan.scale, units.size)
        kept = np.flatnonzero((noisy >= plan.threshold) | forced)
        return kept, noisy[kept]
    if plan.mechanism is Mechanism.LAPLACE and sampler.supports(plan.scale):
        # the same rule as OpenDP's make_laplace_threshold (integer counts + discrete Laplace noise,
        # kept when >= threshold) with the project's exact vectorised sampler, ~10x faster
        noisy = units + sampler.discrete_laplace(plan.scale, units.size)
        kept = np.flatnonzero(noisy >= plan.threshold)
        return kept, noisy[kept]
    index = {k: i for i, k in enumerate(keys)}
    out = _measurement(plan.mechanism, plan.scale, plan.threshold)(dict(zip(keys, units.tolist())))
    kept = np.fromiter((index[k] for k in out), dtype=np.int64, count=len(out))
    counts = np.fromiter(out.values(), dtype=np.int64, count=len(out))
    order = np.argsort(kept)
    return kept[order], counts[order]
