"""Polars-specific internals the shared contract suite cannot reach."""

from __future__ import annotations

import polars as pl

from dplogs.backends.polars_backend import _RANK, _keyed_rank


def test_hash_ties_are_broken_by_key_values_whatever_the_row_order():
    """Two cells of a unit with the same 64-bit hash never appear in real data tests, so the
    fallback rank is checked on crafted cells: still ≤ L0 per unit, chosen by key, not position."""
    cells = pl.DataFrame(
        {"u": ["a", "a", "a", "a", "b"], "k": ["z", "y", "x", "w", "v"], _RANK: [5, 5, 5, 9, 5]},
        schema_overrides={_RANK: pl.UInt64},
    )
    for order in ([0, 1, 2, 3, 4], [4, 3, 0, 2, 1], [2, 0, 4, 1, 3]):
        shuffled = cells[order]
        kept = shuffled.filter(_keyed_rank(shuffled, over="u", ties=["k"]) <= 2)
        assert sorted(kept.select("u", "k").rows()) == [("a", "x"), ("a", "y"), ("b", "v")]


def test_without_ties_the_rank_follows_the_hash():
    cells = pl.DataFrame(
        {"u": ["a", "a", "a", "b"], "k": ["x", "y", "z", "x"], _RANK: [30, 10, 20, 99]},
        schema_overrides={_RANK: pl.UInt64},
    )
    kept = cells.filter(_keyed_rank(cells, over="u", ties=["k"]) <= 2)
    assert sorted(kept.select("u", "k").rows()) == [("a", "y"), ("a", "z"), ("b", "x")]


def test_sums_are_exact_and_order_independent():
    """Float sums in varying order round differently (the sensitivity does not cover that); the
    backend adds fixed-point contributions in int64, so any row order gives the same bits."""
    import random as _random  # shuffling test data only

    from dplogs.backends.polars_backend import PolarsBackend
    from dplogs.privacy.bounds import Clamp, ContributionBounds

    values = [1e15, 0.1, -1e15, 0.3, 7.25, 1e-3, 2.0**-20, 123456.789] * 50
    units = [f"u{i}" for i in range(len(values))]
    rng = _random.Random(5)
    bounds = ContributionBounds(max_groups=1, max_rows_per_group=1)
    results = set()
    for _ in range(6):
        order = list(range(len(values)))
        rng.shuffle(order)
        lf = pl.LazyFrame({"u": [units[i] for i in order], "v": [values[i] for i in order]})
        out = PolarsBackend(engine="in-memory").bounded_aggregate(
            lf, unit="u", keys=[], bounds=bounds, sums={"v": Clamp(lo=-1e15, hi=1e15)}, seed=3)
        results.add(out["sum_v"].item())
    assert len(results) == 1, f"row order changed the sum: {sorted(results)}"
    exact = sum(__import__("fractions").Fraction(v) for v in values)
    grid = Clamp(lo=-1e15, hi=1e15).grid  # 2^26: 1e15 < 2^50
    assert grid == 2.0**26
    assert abs(results.pop() - float(exact)) <= len(values) * grid  # truncation: under one grid step per row


def _frame(n_units=3000, n_keys=40):
    import numpy as np

    rng = np.random.default_rng(11)  # test data only
    n = 60_000
    return pl.DataFrame(
        {
            "u": pl.Series([f"user{i}" for i in rng.integers(0, n_units, n)]),
            "k": pl.Series([f"g{i}" for i in rng.integers(0, n_keys, n)]),
            "d": pl.Series(rng.integers(0, 3, n)).cast(pl.Date),
            "v": rng.random(n) * 100,
            "f": rng.integers(0, 4, n).astype(float),
        }
    )


def test_step_one_groups_on_cell_codes_when_they_are_injective():
    """The fast path must actually be taken on ordinary data, and be left whenever a code could
    merge two units or two key tuples (too few bits) or equality of values is not hashing's
    (float keys)."""
    from dplogs.backends.polars_backend import PolarsBackend

    df = _frame().lazy()
    fast = PolarsBackend()._coder(df, unit="u", keys=["k", "d"], seed=3)
    assert fast.units is not None and fast.units.height == 3000 and fast.values.height == 120
    assert PolarsBackend(cell_codes=False)._coder(df, unit="u", keys=["k", "d"], seed=3).units is None
    assert PolarsBackend(key_bits=2)._coder(df, unit="u", keys=["k", "d"], seed=3).units is None  # 120 keys, 4 ids
    assert PolarsBackend(key_bits=60)._coder(df, unit="u", keys=["k"], seed=3).units is None  # 3000 units, 16 ids
    assert PolarsBackend()._coder(df, unit="u", keys=["f"], seed=3).units is None


def test_cell_codes_and_values_keep_the_same_cells():
    """Both ways of grouping step 1 apply one rule, so they keep identical cells and sums."""
    from dplogs.backends.polars_backend import PolarsBackend
    from dplogs.privacy.bounds import Clamp, ContributionBounds

    df = _frame().with_columns(pl.when(pl.int_range(pl.len()) % 97 == 0).then(None).otherwise(pl.col("u")).alias("u"))
    kw = dict(unit="u", keys=["k", "d"], bounds=ContributionBounds(max_groups=3, max_rows_per_group=2),
              sums={"v": Clamp(lo=0, hi=50)}, seed=123456789)
    for key_bits in (24, 2):  # injective codes, then colliding key ids (both fall back to values)
        fast = PolarsBackend(key_bits=key_bits).bounded_units(df.lazy(), **kw)
        slow = PolarsBackend(key_bits=key_bits, cell_codes=False).bounded_units(df.lazy(), **kw)
        assert fast.height > 3000 and fast.equals(slow)
        agg = PolarsBackend(key_bits=key_bits, rows_per_partition=10_000).bounded_aggregate(df.lazy(), **kw)
        assert agg.equals(PolarsBackend(key_bits=key_bits, cell_codes=False).bounded_aggregate(df.lazy(), **kw))


def test_the_unit_pass_counts_rows_and_null_units():
    """The pass that checks the unit codes also gives the row count and whether any unit is null,
    which the backend used to read the whole input once more for each."""
    from dplogs.backends.polars_backend import PolarsBackend

    df = _frame()
    coder = PolarsBackend()._coder(df.lazy(), unit="u", keys=["k", "d"], seed=3)
    assert (coder.rows, coder.null_units) == (df.height, False)
    with_nulls = df.with_columns(pl.when(pl.int_range(pl.len()) < 5).then(None).otherwise(pl.col("u")).alias("u"))
    coder = PolarsBackend()._coder(with_nulls.lazy(), unit="u", keys=["k", "d"], seed=3)
    assert (coder.rows, coder.null_units, coder.units.height) == (df.height, True, 3000)


def test_passes_over_a_parquet_scan_read_it_once_and_keep_the_same_cells(tmp_path):
    """Multi-pass bounding of a scan (a store) partitions the codes read once: same aggregates as
    one pass and as grouping on the values, with and without null units."""
    from dplogs.backends.polars_backend import PolarsBackend
    from dplogs.privacy.bounds import Clamp, ContributionBounds

    kw = dict(unit="u", keys=["k", "d"], bounds=ContributionBounds(max_groups=3, max_rows_per_group=2),
              sums={"v": Clamp(lo=0, hi=50)}, seed=987654321)
    for nulls in (False, True):
        df = _frame()
        if nulls:
            df = df.with_columns(pl.when(pl.int_range(pl.len()) % 89 == 0).then(None).otherwise(pl.col("u")).alias("u"))
        df.write_parquet(tmp_path / f"{nulls}.parquet", row_group_size=7_000)
        scan = pl.scan_parquet(tmp_path / f"{nulls}.parquet")
        one = PolarsBackend().bounded_aggregate(scan, **kw)
        many = PolarsBackend(rows_per_partition=5_000, max_passes=7).bounded_aggregate(scan, **kw)
        slow = PolarsBackend(cell_codes=False, rows_per_partition=5_000).bounded_aggregate(scan, **kw)
        assert one.equals(many) and one.equals(slow)
        assert one["units"].sum() > 3000 + (df["u"].null_count() if nulls else 0) - 1
