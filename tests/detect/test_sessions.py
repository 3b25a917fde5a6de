"""Session features (HDFS blocks, syscall traces): exact values on a small fixture."""

from __future__ import annotations

import numpy as np
import pytest

from dplogs.detect.sessions import count_vectors, presence_vectors
from dplogs.errors import UsageError


def test_presence_vectors_exact_values_and_unit_norm():
    traces = [[5, 3, 3, 3, 5, 9], [2], [], [400, -1, 1]]  # 9, 400 and -1 lie outside the vocabulary
    x = presence_vectors(traces, vocab_size=6)
    expected = np.zeros((4, 6))
    expected[0, [3, 5]] = 1 / np.sqrt(2)  # repeats count once: the set {3, 5}
    expected[1, 2] = 1.0
    expected[3, 1] = 1.0
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-15)
    assert np.linalg.norm(x, axis=1).tolist() == pytest.approx([1.0, 1.0, 0.0, 1.0])
    # order and repetition inside a trace do not matter; only the set does
    np.testing.assert_array_equal(presence_vectors([[3, 5]], vocab_size=6), presence_vectors([[5, 5, 3]], vocab_size=6))


def test_count_vectors_unchanged_and_vocab_checked():
    np.testing.assert_allclose(count_vectors([[1, 1, 2], [0]], vocab_size=3, cap=3),
                               [[0.0, np.log(3) / np.log(4), 0.5], [0.5, 0.0, 0.0]])
    with pytest.raises(UsageError):
        presence_vectors([[1]], vocab_size=0)
    with pytest.raises(UsageError):
        count_vectors([[1]], vocab_size=3, cap=0)
