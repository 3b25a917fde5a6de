"""Polars-specific internals the shared contract suite cannot reach."""

from __future__ import annotations

import polars as pl

from dplogs.backends.polars_backend import _HASH, _keyed_rank


def test_hash_ties_are_broken_by_key_values_whatever_the_row_order():
    """Two cells of a unit with the same 64-bit hash never appear in real data tests, so the
    fallback rank is checked on crafted cells: still ≤ L0 per unit, chosen by key, not position."""
    cells = pl.DataFrame(
        {"u": ["a", "a", "a", "a", "b"], "k": ["z", "y", "x", "w", "v"], _HASH: [5, 5, 5, 9, 5]},
        schema_overrides={_HASH: pl.UInt64},
    )
    for order in ([0, 1, 2, 3, 4], [4, 3, 0, 2, 1], [2, 0, 4, 1, 3]):
        shuffled = cells[order]
        kept = shuffled.filter(_keyed_rank(shuffled, unit="u", others=["k"]) <= 2)
        assert sorted(kept.select("u", "k").rows()) == [("a", "x"), ("a", "y"), ("b", "v")]


def test_without_ties_the_rank_follows_the_hash():
    cells = pl.DataFrame(
        {"u": ["a", "a", "a", "b"], "k": ["x", "y", "z", "x"], _HASH: [30, 10, 20, 99]},
        schema_overrides={_HASH: pl.UInt64},
    )
    kept = cells.filter(_keyed_rank(cells, unit="u", others=["k"]) <= 2)
    assert sorted(kept.select("u", "k").rows()) == [("a", "y"), ("a", "z"), ("b", "x")]
