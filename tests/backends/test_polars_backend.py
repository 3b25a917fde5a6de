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


def _coded(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``df`` as a coded store hands it over: ``u`` as dense UInt32 codes (null stays null) into a
    one-column dictionary of Binary unit values, in order of first appearance."""
    units = df.select(pl.col("u").drop_nulls().unique(maintain_order=True).cast(pl.Binary))
    codes = units.with_row_index("code").with_columns(pl.col("code").cast(pl.UInt32))
    rows = df.with_columns(pl.col("u").cast(pl.Binary)).join(codes, on="u", how="left", maintain_order="left")
    return rows.with_columns(pl.col("code").alias("u")).drop("code"), units


def test_dense_counting_keeps_the_cells_of_the_values_in_any_number_of_passes(monkeypatch):
    """From dictionary codes with known key tuples, step 1 counts cells in dense arrays instead
    of hashing them. It must be taken, and in one pass or many (units split by code range), with
    null units, NaN and null values, no keys or the unit as a key, give exactly the result of
    bounding on the values."""
    import numpy as np

    import dplogs.backends.polars_backend as pb
    from dplogs.backends.polars_backend import PolarsBackend
    from dplogs.privacy.bounds import Clamp, ContributionBounds

    taken = []
    real = PolarsBackend._dense_rows

    def spy(self, *args, **kwargs):
        taken.append(real(self, *args, **kwargs))
        return taken[-1]

    monkeypatch.setattr(PolarsBackend, "_dense_rows", spy)
    df = _frame().with_columns(
        pl.when(pl.int_range(pl.len()) % 89 == 0).then(None).otherwise(pl.col("u")).alias("u"),
        pl.when(pl.int_range(pl.len()) % 31 == 0).then(np.nan).otherwise(pl.col("v")).alias("v"),
        pl.when(pl.int_range(pl.len()) % 37 == 0).then(None).otherwise(pl.col("f")).alias("f"),
    )
    rows, units = _coded(df)
    by_value = df.with_columns(pl.col("u").cast(pl.Binary))
    grid = df.select("k").unique().join(df.select("d").unique(), how="cross")
    for keys, given in ((["k", "d"], grid), (["k", "d"], None), ([], None), (["u", "k"], None)):
        kw = dict(unit="u", keys=keys, bounds=ContributionBounds(max_groups=3, max_rows_per_group=2),
                  sums={"v": Clamp(lo=0, hi=50), "f": Clamp(lo=-1, hi=2)}, seed=424242)
        want = PolarsBackend(cell_codes=False).bounded_aggregate(by_value.lazy(), **kw)
        for rows_per_partition, per_slice in ((1_000_000, 2**21), (5_000, 2**21), (5_000, 2_000), (300, 2**21)):
            taken.clear()
            monkeypatch.setattr(pb, "_CELLS_PER_SLICE", per_slice)  # the L0 cut over slices of the counters
            backend = PolarsBackend(rows_per_partition=rows_per_partition, max_passes=40)
            got = backend.bounded_aggregate(rows.lazy(), unit_values=units, key_values=given, **kw)
            dense = taken[-1]
            assert dense is not None and dense.passes == {1_000_000: 1}.get(rows_per_partition, dense.passes)
            assert dense.passes > 1 or rows_per_partition != 300
            assert dense.slices > dense.passes or per_slice != 2_000
            assert dense.coder.null_units
            assert got.equals(want), (keys, rows_per_partition)


def test_dense_counting_is_left_for_the_hash_path_when_its_counters_would_be_too_many(monkeypatch):
    """Units x key tuples beyond ``max_passes · _DENSE_PASSES`` passes of counters: grouping by
    hash instead (fewer cells than counters), with the same result."""
    from dplogs.backends.polars_backend import PolarsBackend
    from dplogs.privacy.bounds import Clamp, ContributionBounds

    df = _frame()
    rows, units = _coded(df)
    kw = dict(unit="u", keys=["k", "d"], bounds=ContributionBounds(max_groups=3, max_rows_per_group=2),
              sums={"v": Clamp(lo=0, hi=50)}, seed=7)
    coder = PolarsBackend()._dictionary_coder(rows.lazy(), unit="u", keys=["k", "d"], seed=7, unit_values=units)
    assert PolarsBackend()._dense_rows(rows.lazy(), coder=coder, sums={}) is not None
    # 3000 units x 121 counters: passes of 4 counters a row (one unit per 121 counters)
    assert PolarsBackend(rows_per_partition=30, max_passes=2)._dense_rows(rows.lazy(), coder=coder, sums={}) is None
    assert PolarsBackend(key_bits=25)._dense_rows(rows.lazy(), coder=coder, sums={}) is None  # no lookup table
    want = PolarsBackend(cell_codes=False).bounded_aggregate(df.with_columns(pl.col("u").cast(pl.Binary)).lazy(), **kw)
    assert PolarsBackend(rows_per_partition=30, max_passes=2).bounded_aggregate(
        rows.lazy(), unit_values=units, **kw).equals(want)


def test_dense_counting_refuses_codes_outside_the_dictionary():
    """A code the dictionary lacks (a store whose units/ was not copied with its events) must not
    be counted as another unit: it fails as the hash path's lookup does, and the engine then
    bounds on the values."""
    import pytest

    from dplogs.backends.polars_backend import PolarsBackend
    from dplogs.privacy.bounds import ContributionBounds

    rows, units = _coded(_frame())
    with pytest.raises(pl.exceptions.OutOfBoundsError):
        PolarsBackend().bounded_aggregate(rows.lazy(), unit="u", keys=["k"], bounds=ContributionBounds(max_groups=3, max_rows_per_group=2),
                                          sums={}, seed=1, unit_values=units.head(2999))


def test_the_l0_cut_by_the_hash_alone_is_redone_with_ties_broken_when_a_tie_crosses_it():
    """The cut ranks by the hash alone first; cells of one unit tied across the cut would all be
    kept, so the unit would keep more than L0: then the cut is redone with the ties broken.
    Ties below the cut change nothing."""
    from dplogs.backends.polars_backend import _kept

    cells = pl.DataFrame(
        {"u": ["a", "a", "a", "a", "b", "b"], "k": ["z", "y", "x", "w", "v", "t"], _RANK: [5, 5, 5, 9, 1, 1]},
        schema_overrides={_RANK: pl.UInt64},
    )
    for order in ([0, 1, 2, 3, 4, 5], [5, 3, 0, 2, 1, 4]):
        kept = _kept(cells[order], over="u", ties=["k"], l0=2)  # a: three cells tie at 5 across the cut
        assert sorted(kept.select("u", "k").rows()) == [("a", "x"), ("a", "y"), ("b", "t"), ("b", "v")]
    kept = _kept(cells, over="u", ties=["k"], l0=3)  # a's tie fits under the cut: no second ranking needed
    assert sorted(kept.select("u", "k").rows()) == [("a", "x"), ("a", "y"), ("a", "z"), ("b", "t"), ("b", "v")]
