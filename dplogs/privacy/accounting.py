"""Composition of the releases charged to one budget window, and what is left of its cap.

Three kinds of loss compose differently (a :class:`~dplogs.privacy.loss.PrivacyLoss` may carry
several parts at once):

- pure ε (``delta == 0``): ε adds; each ε-DP release is also (ε²/2)-zCDP;
- ρ-zCDP (Gaussian releases): ρ adds, then converts to (ε, δ) with OpenDP's conversion;
- approximate (ε, δ) with ``delta > 0`` (partition selection, DP-SGD): basic composition only,
  it has no zCDP form.

:func:`compose` reports the tighter of two valid bounds, spending the δ the approximate parts
leave under the window's δ cap on the zCDP conversion:

- ``"pure+zcdp"``: Σε_pure + Σε_approx + ε_zCDP(Σρ, δ_rest)
- ``"all-zcdp"``: Σε_approx + ε_zCDP(Σρ + Σε_pure²/2, δ_rest)

Without zCDP releases the first is plain addition (``"pure"``, or ``"basic"`` with approximate
parts); the second still applies whenever the δ cap leaves room, and wins for many small pure-ε
releases. A window whose δ cap is 0 therefore keeps a pure ε-DP guarantee.

>>> compose([PrivacyLoss(epsilon=0.1)] * 10, delta_cap=0).epsilon
1.0
>>> t = compose([PrivacyLoss(rho=0.5)], delta_cap=1e-6)
>>> round(t.epsilon, 4), t.delta, t.method
(5.2215, 1e-06, 'pure+zcdp')
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from dplogs.privacy import _opendp as dp
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.params import check_delta, check_epsilon, check_rho

dp.enable_features("contrib")

_FIELDS = ("eps_pure", "eps_pure_sq", "eps_approx", "delta", "rho")


@dataclass(frozen=True)
class LossSums:
    """Public: the sufficient statistics of a window's releases for :func:`compose`.

    Adding two sums composes the releases behind them.
    """

    eps_pure: float = 0.0
    eps_pure_sq: float = 0.0
    eps_approx: float = 0.0
    delta: float = 0.0
    rho: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        for name in _FIELDS:
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"LossSums.{name} must be finite and >= 0, got {v!r}")

    @classmethod
    def of(cls, losses: Iterable[PrivacyLoss]) -> LossSums:
        ones = [cls.one(loss) for loss in losses]
        # fsum: ten releases at ε=0.1 compose to exactly 1.0, so a cap of 1.0 admits them
        return cls(*(math.fsum(getattr(o, f) for o in ones) for f in _FIELDS), count=len(ones))

    @classmethod
    def one(cls, loss: PrivacyLoss) -> LossSums:
        if loss.delta > 0:
            return cls(eps_approx=loss.epsilon, delta=loss.delta, rho=loss.rho, count=1)
        return cls(eps_pure=loss.epsilon, eps_pure_sq=loss.epsilon**2, rho=loss.rho, count=1)

    def __add__(self, other: LossSums) -> LossSums:
        return LossSums(
            self.eps_pure + other.eps_pure,
            self.eps_pure_sq + other.eps_pure_sq,
            self.eps_approx + other.eps_approx,
            self.delta + other.delta,
            self.rho + other.rho,
            self.count + other.count,
        )


@dataclass(frozen=True)
class TotalLoss:
    """Public: the composed guarantee of a window, as one (ε, δ) statement.

    ``epsilon`` is ``inf`` when zCDP releases exist but the δ cap leaves no δ to convert them
    with; ``rho`` is the zCDP part Σρ (before any conversion); ``method`` names the bound used.
    """

    epsilon: float
    delta: float
    rho: float
    method: str

    def __post_init__(self) -> None:
        if self.method not in ("none", "pure", "basic", "pure+zcdp", "all-zcdp"):
            raise ValueError(f"unknown composition method {self.method!r}")


def zcdp_to_epsilon(rho: float, delta: float) -> float:
    """The ε of ρ-zCDP at ``delta``, by OpenDP's (tight) zCDP→approx-DP conversion.

    >>> round(zcdp_to_epsilon(0.5, 1e-6), 6)
    5.221534
    >>> zcdp_to_epsilon(0.0, 1e-6)
    0.0
    >>> zcdp_to_epsilon(5e5, 1e-6) > 5e5   # past OpenDP's range: the classic bound
    True
    """
    if rho < 0 or not math.isfinite(rho):
        raise ValueError(f"rho must be finite and >= 0, got {rho}")
    if rho == 0:
        return 0.0
    if not 0 < delta < 1:
        return math.inf
    # a unit-scale Gaussian's privacy map at sensitivity √(2ρ) is ρ (rounded up), so its
    # converted profile is OpenDP's ε(ρ, δ)
    try:
        return float(_unit_gaussian_profile().map(math.sqrt(2 * rho)).epsilon(delta))
    except dp.OpenDPException:
        # OpenDP overflows for huge ρ (e.g. ρ = ε²/2 of a pure ε = 1000 release); the classic
        # bound ρ + 2√(ρ ln 1/δ) is valid and just as vacuous there
        return rho + 2 * math.sqrt(rho * math.log(1 / delta))


@lru_cache(maxsize=1)
def _unit_gaussian_profile() -> dp.Measurement:
    gauss = dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale=1.0)
    return dp.c.make_zCDP_to_approxDP(gauss)


def compose(losses: Iterable[PrivacyLoss] | LossSums, *, delta_cap: float) -> TotalLoss:
    """The tightest valid (ε, δ) of all ``losses`` together, with δ at most ``delta_cap``
    whenever zCDP parts need converting.

    >>> t = compose([PrivacyLoss(epsilon=0.1)] * 100 + [PrivacyLoss(rho=0.01)], delta_cap=1e-6)
    >>> t.method, t.epsilon < 100 * 0.1
    ('all-zcdp', True)
    """
    s = losses if isinstance(losses, LossSums) else LossSums.of(losses)
    if not 0 <= delta_cap < 1:
        raise ValueError(f"delta_cap must lie in [0, 1), got {delta_cap}")
    if s.count == 0:
        return TotalLoss(epsilon=0.0, delta=0.0, rho=0.0, method="none")
    basic = s.eps_pure + s.eps_approx
    delta_rest = delta_cap - s.delta
    if s.rho == 0:
        plain = TotalLoss(epsilon=basic, delta=s.delta, rho=0.0, method="pure" if s.delta == 0 else "basic")
        if delta_rest <= 0 or s.eps_pure_sq == 0:
            return plain
        # many small pure-ε releases can cost less as zCDP, spending the unused δ
        b = s.eps_approx + zcdp_to_epsilon(s.eps_pure_sq / 2, delta_rest)
        return TotalLoss(epsilon=b, delta=delta_cap, rho=0.0, method="all-zcdp") if b < basic else plain
    if delta_rest <= 0:
        return TotalLoss(epsilon=math.inf, delta=s.delta, rho=s.rho, method="pure+zcdp")
    a = basic + zcdp_to_epsilon(s.rho, delta_rest)
    b = s.eps_approx + zcdp_to_epsilon(s.rho + s.eps_pure_sq / 2, delta_rest)
    if b < a:
        return TotalLoss(epsilon=b, delta=delta_cap, rho=s.rho, method="all-zcdp")
    return TotalLoss(epsilon=a, delta=delta_cap, rho=s.rho, method="pure+zcdp")


def rho_for_epsilon(epsilon: float, delta: float) -> float:
    """The largest ρ whose zCDP→(ε, δ) conversion stays within ``epsilon`` (inverse of
    :func:`zcdp_to_epsilon`, erring low).

    >>> r = rho_for_epsilon(1.0, 1e-6)
    >>> zcdp_to_epsilon(r, 1e-6) <= 1.0 < zcdp_to_epsilon(r * 1.0001, 1e-6)
    True
    """
    if epsilon <= 0 or not 0 < delta < 1:
        return 0.0
    # bracket: the closed form ρ + 2√(ρ ln 1/δ) bounds the tight ε from above, so its inverse fits
    log_inv = math.log(1 / delta)
    lo = (math.sqrt(log_inv + epsilon) - math.sqrt(log_inv)) ** 2
    while (f_lo := zcdp_to_epsilon(lo, delta) - epsilon) > 0:  # guard the bracket against rounding
        lo /= 2
    hi = 2 * lo
    while (f_hi := zcdp_to_epsilon(hi, delta) - epsilon) <= 0:
        lo, f_lo, hi = hi, f_hi, 2 * hi
    # Illinois (regula falsi) keeps [lo fits, hi does not] and converges in a few conversions
    side = 0
    while hi - lo > 1e-9 * hi:
        mid = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        if not lo < mid < hi:
            mid = (lo + hi) / 2
        f_mid = zcdp_to_epsilon(mid, delta) - epsilon
        if f_mid <= 0:
            lo, f_lo = mid, f_mid
            if side == -1:
                f_hi /= 2
            side = -1
        else:
            hi, f_hi = mid, f_mid
            if side == 1:
                f_lo /= 2
            side = 1
    return lo


@dataclass(frozen=True)
class Caps:
    """Public: the budget of every window: ``epsilon`` and ``delta`` bound the composed (ε, δ);
    ``rho`` (optional) additionally bounds the zCDP part Σρ."""

    epsilon: float
    delta: float = 0.0
    rho: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
        object.__setattr__(self, "delta", 0.0 if self.delta == 0 else check_delta(self.delta))
        if self.rho is not None:
            object.__setattr__(self, "rho", check_rho(self.rho))


_TOL = 1e-9  # float rounding of sums read back from SQLite


def fits(sums: LossSums, caps: Caps, *, tol: float = _TOL) -> bool:
    """True when releases with these ``sums`` stay inside ``caps`` (up to relative ``tol``).

    >>> fits(LossSums.of([PrivacyLoss(epsilon=0.5)] * 2), Caps(epsilon=1.0))
    True
    >>> fits(LossSums.of([PrivacyLoss(rho=0.01)]), Caps(epsilon=1.0))  # no δ to convert ρ with
    False
    """
    if caps.rho is not None and sums.rho > caps.rho * (1 + tol):
        return False
    if sums.delta > caps.delta * (1 + tol):
        return False
    total = compose(sums, delta_cap=caps.delta)
    return total.epsilon <= caps.epsilon * (1 + tol)


def exceeded_advice(spent: LossSums, loss: PrivacyLoss, caps: Caps, *, tol: float = _TOL) -> str:
    """What to change when a release of ``loss`` on top of ``spent`` breaks ``caps``: the cap
    broken first (ρ, then δ, then ε) decides, since lowering ε helps nothing when δ ran out.

    >>> exceeded_advice(LossSums.of([PrivacyLoss(epsilon=0.1, delta=9e-7)]), PrivacyLoss(epsilon=1, delta=1e-6),
    ...                 Caps(epsilon=10.0, delta=1e-6))
    'its delta exceeds what is left: pass a smaller --delta (e.g. 1e-07) or --keys COL=a,b,c to make its keys public (no delta), or raise the delta cap with `dplogs budget set`'
    >>> exceeded_advice(LossSums.of([PrivacyLoss(epsilon=0.1, delta=1e-6)]), PrivacyLoss(epsilon=1, delta=1e-8),
    ...                 Caps(epsilon=10.0, delta=1e-6))
    'no delta is left in this window: pass --keys COL=a,b,c to make its keys public (no delta), or raise the delta cap with `dplogs budget set`'
    """
    total = spent + LossSums.one(loss)
    if caps.rho is not None and total.rho > caps.rho * (1 + tol):
        return "its rho exceeds what is left: lower the query's rho or wait for the next window"
    if total.delta > caps.delta * (1 + tol):
        left = caps.delta - spent.delta
        passes = ["--keys COL=a,b,c to make its keys public (no delta)"]
        if left > caps.delta * 1e-6:  # a power of ten that fits what is left
            passes.insert(0, f"a smaller --delta (e.g. {10 ** math.floor(math.log10(left)):g})")
        head = "its delta exceeds what is left" if len(passes) > 1 else "no delta is left in this window"
        return f"{head}: pass {' or '.join(passes)}, or raise the delta cap with `dplogs budget set`"
    return "lower the query's epsilon/rho or wait for the next window"


@dataclass(frozen=True)
class Remaining:
    """Public: what a window can still spend, each figure alone: ``epsilon`` for one more pure-ε
    release, ``rho`` for one more zCDP release, ``delta`` for the δ of approximate-DP releases."""

    epsilon: float
    delta: float
    rho: float

    def __str__(self) -> str:
        return f"epsilon={self.epsilon:.6g} (pure), rho={self.rho:.6g} (zCDP), delta={self.delta:.3g}"


def remaining(sums: LossSums, caps: Caps) -> Remaining:
    """The largest single further release of each kind that still fits ``caps``.

    >>> r = remaining(LossSums.of([PrivacyLoss(epsilon=0.25)]), Caps(epsilon=1.0))
    >>> round(r.epsilon, 9), r.rho
    (0.75, 0.0)
    """
    delta_rest = caps.delta - sums.delta
    if not fits(sums, caps, tol=0.0):
        return Remaining(epsilon=0.0, delta=max(delta_rest, 0.0), rho=0.0)
    ep, q, ea, r = sums.eps_pure, sums.eps_pure_sq, sums.eps_approx, sums.rho
    # a further pure-ε release e fits under bound A (ε adds) or bound B (e²/2 joins the zCDP part)
    if r == 0:
        eps_a = caps.epsilon - ep - ea
    else:
        eps_a = caps.epsilon - ep - ea - zcdp_to_epsilon(r, delta_rest)
    eps_b = rho_b = -math.inf
    rho_a = -math.inf
    if delta_rest > 0:
        rho_star_b = rho_for_epsilon(caps.epsilon - ea, delta_rest)
        if 2 * (rho_star_b - r) - q >= 0:
            eps_b = math.sqrt(2 * (rho_star_b - r) - q)
        rho_b = rho_star_b - r - q / 2
        rho_a = rho_for_epsilon(caps.epsilon - ep - ea, delta_rest) - r
    rho_left = max(rho_a, rho_b, 0.0)
    if caps.rho is not None:
        rho_left = min(rho_left, max(caps.rho - r, 0.0))
    return Remaining(epsilon=max(eps_a, eps_b, 0.0), delta=max(delta_rest, 0.0), rho=rho_left)
