"""Exact, vectorised discrete Laplace and discrete Gaussian samplers driven only by OS CSPRNG bits.

OpenDP's exact sampler draws one value per Rust call through arbitrary-precision rationals
(~1.4e5 draws/s here), so a release with a million groups spends seconds in noise. This module
runs the same algorithm — Canonne, Kamath & Steinke 2020, "The Discrete Gaussian for
Differential Privacy", Algorithms 1 and 2 — over numpy arrays of lanes, with every decision an
integer comparison of uniformly random integers (no floating point anywhere in the decision
path), so the output distribution is exactly

    P(X = x) = (1 - e^{-1/b}) / (1 + e^{-1/b}) · e^{-|x|/b}

for the scale ``b`` taken as the exact rational value of the float (as OpenDP does). Each step is a
rejection loop over the shrinking set of undecided lanes. The rare lane whose integers would
overflow 63 bits finishes the same algorithm in Python's unbounded integers; scales whose rational
form does not fit 62-bit integers are refused (callers fall back to OpenDP).

>>> x = discrete_laplace(2.0, 100_000)
>>> x.dtype, bool(abs(x.mean()) < 0.1), bool(7.0 < x.var() < 9.0)   # var = 2q/(1-q)², q = e^{-1/2}
(dtype('int64'), True, True)
>>> supports(3.3333333333333335), supports(1e30)
(True, False)
>>> g = discrete_gaussian(3.0, 50_000)
>>> bool(abs(g.mean()) < 0.1), bool(8.5 < g.var() < 9.5)
(True, True)
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction

import numpy as np

from dplogs.errors import InternalError, PrivacyParameterError

_LIMIT = 1 << 63  # every product must stay below this to live in uint64 lanes
_MAX_PART = 1 << 62
_ONE = np.uint64(1)


def _scale_parts(scale: float | Fraction) -> tuple[int, int]:
    """(t, s) with scale = t/s exactly."""
    frac = Fraction(scale)
    if frac <= 0:
        raise PrivacyParameterError(f"noise scale must be > 0, got {scale}")
    return frac.numerator, frac.denominator


def supports(scale: float | Fraction, *, gaussian: bool = False) -> bool:
    """Whether :func:`discrete_laplace` (or, with ``gaussian``, :func:`discrete_gaussian`)
    handles ``scale``: its integers must fit the 64-bit lanes."""
    if gaussian:
        return math.floor(Fraction(scale)) + 1 < _MAX_PART
    t, s = _scale_parts(scale)
    return t < _MAX_PART and s < _MAX_PART


def _random_words(n: int, width: int) -> np.ndarray:
    dtype = {16: np.uint16, 32: np.uint32, 64: np.uint64}[width]
    return np.frombuffer(secrets.token_bytes(n * width // 8), dtype=dtype).astype(np.uint64)


def _uniform_below(m: int, n: int) -> np.ndarray:
    """``n`` exact uniform integers in [0, m) (1 <= m < 2⁶³): masked rejection sampling,
    acceptance >= 1/2 per round; 16-bit words when m allows, to save CSPRNG bytes."""
    if m == 1:
        return np.zeros(n, dtype=np.uint64)
    mask = np.uint64((1 << (m - 1).bit_length()) - 1)
    width = 16 if m <= 1 << 16 else 64
    bound = np.uint64(m)
    out = np.empty(n, dtype=np.uint64)
    todo = np.arange(n)
    while todo.size:
        r = _random_words(todo.size, width) & mask
        ok = r < bound
        out[todo[ok]] = r[ok]
        todo = todo[~ok]
    return out


def _bernoulli_exp(num: np.ndarray, den: int) -> np.ndarray:
    """Per lane, Bernoulli(exp(-num/den)) for 0 <= num <= den (CKS20 Algorithm 1): draw
    A_k ~ Bernoulli(γ/k) for k = 1, 2, ... until one is 0; the result is whether that k is odd.
    All lanes still running in round k share k, so each round has one scalar bound den·k."""
    result = np.empty(num.size, dtype=bool)
    todo = np.arange(num.size)
    nt = num
    k = 1
    while todo.size:
        if den * k >= _LIMIT:  # astronomically rare: finish these lanes in Python integers
            for lane, a in zip(todo, nt):
                result[lane] = _bernoulli_exp_scalar(int(a), den, k)
            break
        a = _uniform_below(den * k, todo.size) < nt  # Bernoulli(num / (den·k))
        result[todo[~a]] = k % 2 == 1
        todo, nt = todo[a], nt[a]
        k += 1
    return result


def _bernoulli_exp_scalar(num: int, den: int, k: int) -> bool:
    while secrets.randbelow(den * k) < num:
        k += 1
    return k % 2 == 1


def _geometric_exp1(n: int) -> np.ndarray:
    """Per lane, the number of Bernoulli(exp(-1)) successes before the first failure."""
    v = np.zeros(n, dtype=np.uint64)
    todo = np.arange(n)
    while todo.size:
        a = _bernoulli_exp(np.ones(todo.size, dtype=np.uint64), 1)
        todo = todo[a]
        v[todo] += _ONE
    return v


def discrete_laplace(scale: float | Fraction, n: int) -> np.ndarray:
    """``n`` independent exact draws from the discrete Laplace with scale ``scale`` (CKS20
    Algorithm 2 with the scale as the rational t/s), as int64."""
    t, s = _scale_parts(scale)
    if not (t < _MAX_PART and s < _MAX_PART):
        raise PrivacyParameterError(f"scale {scale} is outside the fast sampler's range; use OpenDP's sampler")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = np.empty(n, dtype=np.int64)
    filled = 0
    t64, s64 = np.uint64(t), np.uint64(s)
    while filled < n:
        # each candidate is accepted with probability ≈ 1 - 1/e; drawing twice the missing count
        # finishes most calls in one round (a round's fixed cost dominates small draws)
        m = _candidates(n - filled)
        u = _uniform_below(t, m)
        u = u[_bernoulli_exp(u, t)]  # accept U with probability exp(-U/t)
        v = _geometric_exp1(u.size)
        big = v > (np.uint64(_LIMIT - 1) - u) // t64  # U + t·V would overflow uint64
        y = (u + t64 * np.where(big, np.uint64(0), v)) // s64
        sign = _random_words((u.size + 63) // 64, 64)
        negative = np.unpackbits(sign.view(np.uint8))[: u.size].astype(bool)
        accept = ~(negative & (y == 0)) & ~big  # -0 is rejected so that 0 is not counted twice
        signed = np.where(negative, -y.astype(np.int64), y.astype(np.int64))
        for i in np.flatnonzero(big):  # the same steps in Python integers
            yy = (int(u[i]) + t * int(v[i])) // s
            if negative[i] and yy == 0:
                continue
            if yy >= _LIMIT:
                raise InternalError(f"discrete Laplace draw {yy} does not fit int64 at scale {scale}")
            signed[i] = -yy if negative[i] else yy
            accept[i] = True
        # accepted candidates are i.i.d. draws whatever the acceptance pattern: keep the first ones
        got = signed[accept][: n - filled]
        out[filled:filled + got.size] = got
        filled += got.size
    return out


def _candidates(missing: int) -> int:
    """Candidates to draw for ``missing`` outputs of a rejection sampler accepting ≥ ~1/2."""
    return 2 * missing + 8


def discrete_gaussian(scale: float | Fraction, n: int) -> np.ndarray:
    """``n`` independent exact draws from the discrete Gaussian P(x) ∝ exp(-x²/2σ²) with
    σ = ``scale`` taken as an exact rational (CKS20 Algorithm 3), as int64."""
    sigma = Fraction(scale)
    if sigma <= 0:
        raise PrivacyParameterError(f"noise scale must be > 0, got {scale}")
    t = math.floor(sigma) + 1
    if not supports(sigma, gaussian=True):
        raise PrivacyParameterError(f"scale {scale} is outside the fast sampler's range; use OpenDP's sampler")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    var = sigma * sigma
    a, b = var.numerator, var.denominator
    # acceptance exp(-γ), γ = (|y| - σ²/t)² / 2σ² = (|y|·b·t - a)² / (2·a·b·t²): one denominator
    den = 2 * a * b * t * t
    out = np.empty(n, dtype=np.int64)
    filled = 0
    while filled < n:
        y = discrete_laplace(t, _candidates(n - filled))
        num = (np.abs(y).astype(object) * (b * t) - a) ** 2
        got = y[_bernoulli_exp_big(num, den)][: n - filled]  # i.i.d. accepted draws, first ones kept
        out[filled:filled + got.size] = got
        filled += got.size
    return out


def _bernoulli_exp_big(num: np.ndarray, den: int) -> np.ndarray:
    """Per lane, Bernoulli(exp(-num/den)) for Python-int ``num`` >= 0: floor(num/den) draws of
    Bernoulli(exp(-1)) must all succeed, then Algorithm 1 on the fractional part."""
    whole = num // den
    frac = num - whole * den
    alive = np.ones(num.size, dtype=bool)
    left = whole.copy()
    idx = np.flatnonzero(left > 0)
    while idx.size:  # each round a lane survives with probability 1/e, so this ends fast
        ok = _bernoulli_exp(np.ones(idx.size, dtype=np.uint64), 1)
        alive[idx[~ok]] = False
        idx = idx[ok]
        left[idx] -= 1
        idx = idx[left[idx] > 0]
    result = np.zeros(num.size, dtype=bool)
    todo = np.flatnonzero(alive)
    k = 1
    while todo.size:  # Algorithm 1: A_k ~ Bernoulli(frac / (den·k)) until one is 0
        a = _bernoulli_ratio_big(frac[todo], den * k)
        result[todo[~a]] = k % 2 == 1
        todo = todo[a]
        k += 1
    return result


def _bernoulli_ratio_big(num: np.ndarray, den: int) -> np.ndarray:
    """Per lane, exact Bernoulli(num/den) for Python ints 0 <= num < den: a uniform U < num/den
    iff its first 64 bits are below floor(2⁶⁴·num/den), or equal to it and the rest of U is below
    the remainder (decided exactly with ``randbelow``)."""
    shifted = num * (1 << 64)
    top = np.array((shifted // den).tolist(), dtype=np.uint64)
    u = _random_words(num.size, 64)
    res = u < top
    for i in np.flatnonzero(u == top):
        res[i] = secrets.randbelow(den) < int(shifted[i]) % den
    return res
