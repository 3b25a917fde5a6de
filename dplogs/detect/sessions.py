"""Event-count-vector features for session-shaped logs (HDFS blocks, process syscall traces), where
the session is the privacy unit and contributes exactly one row (K = 1).

Counts are scaled with PUBLIC constants, ``log1p(min(count, cap)) / log1p(cap)``, over a PUBLIC
vocabulary of event ids ``0..vocab_size-1`` (template ids, syscall numbers); ids outside it are
dropped.

>>> x = count_vectors([[1, 1, 2], [0]], vocab_size=3, cap=3)
>>> x.round(3).tolist()
[[0.0, 0.792, 0.5], [0.5, 0.0, 0.0]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dplogs.errors import UsageError


def count_vectors(sequences: Sequence[Sequence[int]], *, vocab_size: int, cap: float) -> np.ndarray:
    """One scaled count vector per sequence, in [0, 1]^vocab_size."""
    if vocab_size < 1 or not cap > 0:
        raise UsageError(f"vocab_size must be >= 1 and cap > 0, got {vocab_size}, {cap}")
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    flat = np.fromiter((e for s in sequences for e in s), dtype=np.int64, count=int(lengths.sum()))
    rows = np.repeat(np.arange(len(sequences)), lengths)
    ok = (flat >= 0) & (flat < vocab_size)
    counts = np.zeros((len(sequences), vocab_size))
    np.add.at(counts, (rows[ok], flat[ok]), 1.0)
    return np.log1p(np.minimum(counts, cap)) / math.log1p(cap)
