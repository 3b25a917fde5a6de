"""Features for session-shaped logs (HDFS blocks, process syscall traces), where the session is the
privacy unit and contributes exactly one row (K = 1), over a PUBLIC vocabulary of event ids
``0..vocab_size-1`` (template ids, syscall numbers); ids outside it are dropped.

- :func:`count_vectors`: counts scaled with PUBLIC constants, ``log1p(min(count, cap)) / log1p(cap)``.
- :func:`presence_vectors`: which ids occur at all, L2-normalised (norm 1, so clipping at C = 1
  leaves them unchanged). On ADFA-LD the attacks differ from normal traces mostly by the common
  syscalls they LACK (a normal validation trace uses 21.7 distinct syscalls, an attack 10.7), which
  the set shows and a log-count hides behind trace length.

>>> x = count_vectors([[1, 1, 2], [0]], vocab_size=3, cap=3)
>>> x.round(3).tolist()
[[0.0, 0.792, 0.5], [0.5, 0.0, 0.0]]
>>> presence_vectors([[1, 1, 2, 7], [0], []], vocab_size=4).round(4).tolist()
[[0.0, 0.7071, 0.7071, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dplogs.errors import UsageError


def count_vectors(sequences: Sequence[Sequence[int]], *, vocab_size: int, cap: float) -> np.ndarray:
    """One scaled count vector per sequence, in [0, 1]^vocab_size."""
    if not cap > 0:
        raise UsageError(f"cap must be > 0, got {cap}")
    return np.log1p(np.minimum(_counts(sequences, vocab_size), cap)) / math.log1p(cap)


def presence_vectors(sequences: Sequence[Sequence[int]], *, vocab_size: int) -> np.ndarray:
    """One L2-normalised indicator vector per sequence of the ids it contains (0 if none)."""
    present = (_counts(sequences, vocab_size) > 0).astype(np.float64)
    norms = np.sqrt(present.sum(axis=1, keepdims=True))
    return np.divide(present, norms, out=np.zeros_like(present), where=norms > 0)


def _counts(sequences: Sequence[Sequence[int]], vocab_size: int) -> np.ndarray:
    if vocab_size < 1:
        raise UsageError(f"vocab_size must be >= 1, got {vocab_size}")
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    flat = np.fromiter((e for s in sequences for e in s), dtype=np.int64, count=int(lengths.sum()))
    rows = np.repeat(np.arange(len(sequences)), lengths)
    ok = (flat >= 0) & (flat < vocab_size)
    counts = np.zeros((len(sequences), vocab_size))
    np.add.at(counts, (rows[ok], flat[ok]), 1.0)
    return counts
