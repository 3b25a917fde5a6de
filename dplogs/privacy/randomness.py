"""Randomness that is not noise but still matters for privacy: secrets for keyed ranks and
Poisson subsampling. All of it comes from the OS CSPRNG, never from numpy's seeded generators.

Poisson subsampling needs Bernoulli(q) draws; :func:`bernoulli` draws them exactly for the dyadic
rational ``dyadic_rate(q)`` (q rounded *up* to a multiple of 2⁻⁵³), and accountants must be given
that rounded rate.

>>> dyadic_rate(0.01) >= 0.01
True
>>> mask = bernoulli(0.5, 100_000)
>>> bool(0.48 < mask.mean() < 0.52)
True
>>> len({secret_seed() for _ in range(5)})
5
"""

from __future__ import annotations

import math
import secrets

import numpy as np

_BITS = 53


def secret_seed() -> int:
    """A fresh 64-bit secret, e.g. the per-query key of the bounding rank (polars ``hash(seed=...)``)."""
    return secrets.randbits(64)


def random_uint64(n: int) -> np.ndarray:
    """``n`` independent uniform 64-bit integers from the OS CSPRNG."""
    return np.frombuffer(secrets.token_bytes(8 * n), dtype=np.uint64).copy()


def dyadic_rate(q: float) -> float:
    """``q`` rounded up to a multiple of 2⁻⁵³: the rate :func:`bernoulli` samples exactly."""
    if not 0 <= q <= 1:
        raise ValueError(f"a probability must lie in [0, 1], got {q}")
    return math.ceil(q * 2**_BITS) / 2**_BITS


def bernoulli(q: float, n: int) -> np.ndarray:
    """``n`` exact Bernoulli(dyadic_rate(q)) draws as a boolean array."""
    threshold = np.uint64(math.ceil(q * 2**_BITS))
    return (random_uint64(n) >> np.uint64(64 - _BITS)) < threshold
