"""The shared backend suite: every backend must bound exactly the documented rule.

Parametrised over backends: polars (both collect engines, partitioned passes, value grouping,
short codes) and Spark on one shared local session. The rule is the one in
:mod:`dplogs.backends.polars_backend`; :func:`reference_cells` re-implements it in plain Python
over dicts, sharing only the keyed-rank primitive with the backend under test (polars' seeded
hash, or Spark's seeded xxhash64: Spark SQL cannot compute polars' hash, so the two backends keep
the same number of cells per unit by the same rule but not the same cells when L0 binds; where no
L0 bound binds their aggregates are identical, which :func:`test_polars_and_spark_agree` checks).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import datetime, timezone

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from dplogs.backends import Backend, get_backend
from dplogs.backends.polars_backend import PolarsBackend, _CellCoder
from dplogs.errors import InternalError, QueryError, UsageError
from dplogs.privacy.bounds import Clamp, ContributionBounds
from dplogs.privacy.randomness import secret_seed
from dplogs.engine.plan import Aggregation
from dplogs.schema import conform
from dplogs.schema.units import PER_ROW, UnitRule

BACKENDS = [
    PolarsBackend(engine="streaming"),
    PolarsBackend(engine="in-memory"),
    # several unit-hash partition passes even on small inputs: the result must not change
    PolarsBackend(rows_per_partition=16),
    # step 1 on the values instead of the cell codes; and codes too short to stay injective
    PolarsBackend(cell_codes=False),
    PolarsBackend(key_bits=1),
]


SPARK = "spark"
EXAMPLES = {"polars": 1.0, "spark": 0.1}  # share of each property test's examples: Spark jobs take ~1 s


@pytest.fixture(
    params=[*BACKENDS, SPARK],
    ids=lambda b: SPARK if b == SPARK else f"{b.name}-{b.engine}-{b.rows_per_partition}-{b.cell_codes}-{b.key_bits}",
)
def backend(request) -> Backend:
    if request.param == SPARK:
        request.getfixturevalue("spark_session")
        from dplogs.backends.spark import SparkBackend

        return SparkBackend()
    return request.param


def examples(backend, n: int) -> int:
    return max(3, int(n * EXAMPLES[backend.name]))


def cell_ranks(backend, distinct: pl.DataFrame, *, unit, others, seed, key_bits) -> tuple[list, list]:
    """(keyed rank, cell code) of each row of ``distinct``: the backend's hash primitive."""
    if backend.name == SPARK:
        out = backend.cell_ranks(distinct, unit=unit, others=others, seed=seed)
        return out["__dplogs_rank"].to_list(), out["__dplogs_code"].to_list()
    coder = _CellCoder(unit=unit, others=others, seed=seed, key_bits=key_bits)
    codes = distinct.select(coder.code()).to_series()
    return codes.hash(coder.rank_seed).to_list(), codes.to_list()


def run(backend, df, *, unit="u", keys=("k",), l0=10, linf=5, sums=None, seed=7):
    kw = dict(
        unit=unit,
        keys=list(keys),
        bounds=ContributionBounds(max_groups=l0, max_rows_per_group=linf),
        sums=sums or {},
        seed=seed,
    )
    return backend.bounded_aggregate(df.lazy(), **kw), backend.bounded_units(df.lazy(), **kw)


def reference_cells(df: pl.DataFrame, *, unit, keys, l0, linf, sums, seed, backend) -> dict:
    """The documented rule in plain Python: {(unit or ("null", i), *key values): (rows, {name: sum})}."""
    others = [k for k in keys if k != unit]
    cells: dict[tuple, list] = {}
    rows = df.to_dicts()
    for i, r in enumerate(rows):
        u = r[unit]
        cell = ((u if u is not None else ("null", i)), *(r[k] for k in others))
        n, s = cells.setdefault(cell, [0, defaultdict(float)])
        cells[cell][0] = n + 1
        for name, c in sums.items():
            v = r[name]
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                s[name] += min(max(float(v), c.lo), c.hi)
    # the keyed rank of a non-null cell: the seeded hash of its cell code, then the code
    distinct = df.filter(pl.col(unit).is_not_null()).select(unit, *others).unique()
    hashes, codes = cell_ranks(backend, distinct, unit=unit, others=others, seed=seed, key_bits=backend.key_bits)
    rank = {tuple(row): (h, c) for row, h, c in zip(distinct.iter_rows(), hashes, codes)}
    by_unit: dict = defaultdict(list)
    for cell in cells:
        by_unit[cell[0]].append(cell)
    out = {}
    for u, unit_cells in by_unit.items():
        if not isinstance(u, tuple):  # null units keep their single cell
            unit_cells = sorted(unit_cells, key=lambda c: (*rank[c], *_sortable(c[1:])))[:l0]
        for cell in unit_cells:
            n, s = cells[cell]
            k = min(n, linf)
            out[cell] = (k, {name: s[name] * k / n for name in sums})
    return out


def _sortable(values):
    # polars ranks a struct with nulls first
    return tuple((v is not None, v) for v in values)


frames = st.integers(min_value=0, max_value=60).flatmap(
    lambda n: st.fixed_dictionaries(
        {
            "u": st.lists(st.sampled_from(["a", "b", "c", "d", None]), min_size=n, max_size=n),
            "k": st.lists(st.sampled_from(["x", "y", "z", "w", "v", None]), min_size=n, max_size=n),
            "j": st.lists(st.integers(0, 2), min_size=n, max_size=n),
            "v": st.lists(
                st.one_of(
                    st.none(),
                    st.floats(allow_nan=True, allow_infinity=True, width=32),
                ),
                min_size=n,
                max_size=n,
            ),
        }
    )
).map(lambda d: pl.DataFrame(d, schema={"u": pl.String, "k": pl.String, "j": pl.Int64, "v": pl.Float64}))


def test_bounds_hold_and_match_the_reference_rule(backend):
    @settings(max_examples=examples(backend, 60), deadline=None)
    @given(
        df=frames,
        l0=st.integers(1, 4),
        linf=st.integers(1, 4),
        keys=st.sampled_from([["k"], ["k", "j"], [], ["u", "k"]]),
        seed=st.integers(0, 2**64 - 1),
    )
    def check(df, l0, linf, keys, seed):
        check_rule(backend, df, l0, linf, keys, seed)

    check()


def check_rule(backend, df, l0, linf, keys, seed):
    clamp = Clamp(lo=-3.0, hi=10.0)
    agg, units = run(backend, df, keys=keys, l0=l0, linf=linf, sums={"v": clamp}, seed=seed)
    others = [k for k in keys if k != "u"]

    # the bounds, checked on the kept cells
    nonnull = units.filter(pl.col("u").is_not_null())
    assert (units["rows"] <= linf).all() and (units["rows"] >= 1).all()
    assert (units["sum_v"] >= units["rows"] * min(clamp.lo, 0)).all()
    assert (units["sum_v"] <= units["rows"] * max(clamp.hi, 0)).all()
    assert units["sum_v"].is_finite().all()
    if nonnull.height:
        assert nonnull.group_by("u").len()["len"].max() <= l0

    # the exact rule, against the plain-Python reference with the same seed
    ref = reference_cells(
        df, unit="u", keys=keys, l0=l0, linf=linf, sums={"v": clamp}, seed=seed, backend=backend
    )
    null_ref = [c for c in ref if isinstance(c[0], tuple)]
    assert units.filter(pl.col("u").is_null()).height == len(null_ref)
    got = {(r["u"], *(r[k] for k in others)): r for r in nonnull.iter_rows(named=True)}
    want = {c: v for c, v in ref.items() if not isinstance(c[0], tuple)}
    assert got.keys() == want.keys()
    for cell, (rows, s) in want.items():
        assert got[cell]["rows"] == rows
        # truncated toward zero onto the public grid: under one grid step per cell
        assert got[cell]["sum_v"] == pytest.approx(s["v"], rel=1e-9, abs=clamp.grid)

    # the aggregate is group_by(keys) over the kept cells
    by_group: dict = defaultdict(lambda: [0, 0, 0.0])
    for cell, (rows, s) in ref.items():
        u = None if isinstance(cell[0], tuple) else cell[0]
        g = tuple(u if k == "u" else cell[1 + others.index(k)] for k in keys)
        acc = by_group[g]
        acc[0] += rows
        acc[1] += 1
        acc[2] += s["v"]
    assert agg.height == len(by_group)
    for r in agg.iter_rows(named=True):
        rows, n_units, s = by_group[tuple(r[k] for k in keys)]
        assert (r["rows"], r["units"]) == (rows, n_units)
        assert r["sum_v"] == pytest.approx(s, rel=1e-9, abs=n_units * clamp.grid)


def test_a_units_cells_depend_only_on_its_own_rows(backend):
    """Stability, the fact the sensitivity rests on: shuffling the rows or removing every row of
    one unit leaves every other unit's kept cells unchanged."""

    @settings(max_examples=examples(backend, 30), deadline=None)
    @given(df=frames, seed=st.integers(0, 2**64 - 1), order=st.randoms(use_true_random=False))
    def check(df, seed, order):
        check_stability(backend, df, seed, order)

    check()


def check_stability(backend, df, seed, order):
    kw = dict(keys=["k", "j"], l0=2, linf=2, sums={"v": Clamp(lo=0, hi=5)}, seed=seed)
    _, base = run(backend, df, **kw)
    perm = list(range(df.height))
    order.shuffle(perm)
    _, shuffled = run(backend, df[perm], **kw)
    nonnull = pl.col("u").is_not_null()
    assert_cells_equal(base.filter(nonnull), shuffled.filter(nonnull))
    _, without_a = run(backend, df.filter((pl.col("u") != "a") | pl.col("u").is_null()), **kw)
    assert_cells_equal(base.filter(nonnull & (pl.col("u") != "a")), without_a.filter(nonnull))


def assert_cells_equal(a: pl.DataFrame, b: pl.DataFrame) -> None:
    key = ["u", "k", "j"]
    a, b = a.sort(key, nulls_last=True), b.sort(key, nulls_last=True)
    assert a.select(*key, "rows").equals(b.select(*key, "rows"))
    for x, y in zip(a["sum_v"], b["sum_v"]):
        assert x == pytest.approx(y, rel=1e-12, abs=1e-12)


def test_equals_duckdb_group_by_when_no_bound_binds(backend):
    """Bounds loose enough never to bind: pre-noise aggregates equal SQL GROUP BY exactly."""
    us = [f"user{i % 37}" for i in range(3000)]
    df = conform(
        pl.DataFrame(
            {
                "user.name": [None if i % 101 == 0 else u for i, u in enumerate(us)],
                "event.action": [["login", "sudo", "logout"][i % 3] for i in range(3000)],
                "@timestamp": [datetime(2026, 11, 1 + i % 20, tzinfo=timezone.utc) for i in range(3000)],
                "http.response.body.bytes": [None if i % 13 == 0 else (i * 7919) % 5000 for i in range(3000)],
            }
        )
    ).with_columns(day=pl.col("@timestamp").dt.truncate("1d"))
    agg = backend.bounded_aggregate(
        df.lazy(),
        unit="user.name",
        keys=["event.action", "day"],
        bounds=ContributionBounds(max_groups=1000, max_rows_per_group=1000),
        sums={"http.response.body.bytes": Clamp(lo=0, hi=5000)},
        seed=secret_seed(),
    )
    con = duckdb.connect()
    con.register("logs", df.select("user.name", "event.action", "day", "http.response.body.bytes").to_arrow())
    want = con.sql(
        """SELECT "event.action", day, COUNT(*) AS rows,
                  COUNT(DISTINCT "user.name") + COUNT(*) FILTER (WHERE "user.name" IS NULL) AS units,
                  COALESCE(SUM("http.response.body.bytes"), 0)::DOUBLE AS s
           FROM logs GROUP BY ALL ORDER BY ALL"""
    ).to_arrow_table()
    want = pl.from_arrow(want)
    assert agg.height == want.height == 60
    assert agg["event.action"].to_list() == want["event.action"].to_list()
    assert agg["day"].to_list() == want["day"].to_list()
    assert agg["rows"].to_list() == want["rows"].to_list()
    assert agg["units"].to_list() == want["units"].to_list()
    assert agg["sum_http.response.body.bytes"].to_list() == want["s"].to_list()


def test_null_units_are_each_their_own_unit(backend):
    df = pl.DataFrame({"u": [None, None, None, "a", "a"], "k": ["x", "x", "x", "x", "x"], "v": [1.0, 2.0, 3.0, 4.0, 6.0]})
    agg, _ = run(backend, df, l0=1, linf=1, sums={"v": Clamp(lo=0, hi=10)})
    # three null-unit rows all kept; unit "a" truncated to 1 row with the rescaled sum 10 * 1/2
    assert agg.rows() == [("x", 4, 4, 11.0)]


def test_nulls_count_as_zero_even_when_zero_is_below_the_clamp(backend):
    df = pl.DataFrame({"u": ["a", "a", "b", "b", "b"], "k": ["x"] * 5, "v": [None, 15.0, None, 12.0, 30.0]})
    agg, _ = run(backend, df, linf=2, sums={"v": Clamp(lo=10, hi=20)})
    # a: 0 + 15 (2 rows, untouched); b: (0 + 12 + 20) * 2/3, not lifted to 2 x lo = 20
    assert agg.rows() == [("x", 4, 2, pytest.approx(15 + 32 * 2 / 3))]


def test_empty_input_gives_no_groups_with_the_contract_schema(backend):
    df = pl.DataFrame(schema={"u": pl.String, "k": pl.String, "v": pl.Int64})
    agg, units = run(backend, df, sums={"v": Clamp(lo=0, hi=1)})
    assert agg.height == 0 and units.height == 0
    assert agg.schema == pl.Schema({"k": pl.String, "rows": pl.Int64, "units": pl.Int64, "sum_v": pl.Float64})


def test_no_keys_is_one_global_group(backend):
    df = pl.DataFrame({"u": ["a", "a", "b", None], "k": ["x", "y", "x", "z"], "v": [1, 2, 3, 4]})
    agg, _ = run(backend, df, keys=(), l0=1, linf=1, sums={"v": Clamp(lo=0, hi=10)})
    # "k" is not a key: a is one cell of 2 rows, cut to 1 row with the rescaled sum (1 + 2) / 2
    assert agg.rows() == [(3, 3, 1.5 + 3 + 4)]
    assert agg.columns == ["rows", "units", "sum_v"]


def test_a_unit_with_1e5_rows_contributes_at_most_the_bounds(backend):
    n = 100_000
    df = pl.DataFrame(
        {
            "u": ["heavy"] * n + ["light"],
            "k": [f"g{i % 50}" for i in range(n)] + ["g0"],
            "v": [float(i % 1000) for i in range(n)] + [3.0],
        }
    )
    agg, units = run(backend, df, l0=10, linf=5, sums={"v": Clamp(lo=0, hi=100)})
    heavy = units.filter(pl.col("u") == "heavy")
    assert heavy.height == 10 and heavy["rows"].to_list() == [5] * 10
    # cell g<j> holds 2000 rows, the values j + 50m (m < 20) 100 times each: rescaled sum = 5 x mean
    for g, s in zip(heavy["k"], heavy["sum_v"]):
        j = int(g[1:])
        assert s == pytest.approx(5 * sum(min(j + 50 * m, 100) for m in range(20)) / 20, rel=1e-12)
    assert agg["rows"].sum() == 51 and agg["units"].sum() == 11


def test_nan_null_and_infinities_never_reach_the_output(backend):
    df = pl.DataFrame({"u": ["a", "b", "c", "d"], "k": ["x"] * 4, "v": [float("nan"), None, float("inf"), -float("inf")]})
    agg, _ = run(backend, df, sums={"v": Clamp(lo=-2, hi=5)})
    # NaN and null contribute 0, +inf clamps to hi, -inf to lo
    assert agg.rows() == [("x", 4, 4, 3.0)]


def test_the_keyed_rank_spreads_the_kept_group_uniformly(backend):
    """With L0 = 1 among 8 groups, each group should be kept by ~1/8 of the units (chi-square);
    a rank that followed row or key order would keep the same group every time."""
    n_units, n_groups = 4000, 8
    df = pl.DataFrame(
        {"u": [f"u{i}" for i in range(n_units) for _ in range(n_groups)], "k": [f"g{g}" for _ in range(n_units) for g in range(n_groups)]}
    )
    agg, _ = run(backend, df, l0=1, linf=1, seed=secret_seed())
    assert agg["units"].sum() == n_units
    assert stats.chisquare(agg["units"].to_list()).pvalue > 1e-4


def test_a_fresh_seed_changes_the_selection(backend):
    df = pl.DataFrame({"u": ["a"] * 64, "k": [f"g{i}" for i in range(64)]})
    def kept(seed):
        return backend.bounded_units(df.lazy(), unit="u", keys=["k"], bounds=ContributionBounds(max_groups=1, max_rows_per_group=5),
                                     sums={}, seed=seed)["k"].item()

    assert len({kept(secret_seed()) for _ in range(8)}) > 1  # all eight equal: probability 64^-7
    assert Counter(kept(5) for _ in range(3)).most_common(1)[0][1] == 3


def test_the_unit_may_be_a_key(backend):
    df = pl.DataFrame({"u": ["a", "a", "a", "b"], "k": ["x", "y", "z", "x"]})
    agg, _ = run(backend, df, keys=("u",), l0=1, linf=2)
    assert agg.rows() == [("a", 2, 1), ("b", 1, 1)]


@pytest.mark.parametrize(
    ("kw", "error", "fix"),
    [
        (dict(unit="nope"), QueryError, "unknown column"),
        (dict(keys=["k", "k"]), QueryError, "distinct"),
        (dict(keys=["rows"]), QueryError, "rename"),
        (dict(sums={"k": Clamp(lo=0, hi=1)}), QueryError, "numeric"),
        (dict(seed=-1), InternalError, "secret_seed"),
        (dict(seed=2**64), InternalError, "secret_seed"),
    ],
)
def test_invalid_requests_fail_with_a_fix(backend, kw, error, fix):
    df = pl.DataFrame({"u": ["a"], "k": ["x"], "rows": [1]})
    args = dict(unit="u", keys=["k"], bounds=ContributionBounds(max_groups=1, max_rows_per_group=1), sums={}, seed=1) | kw
    with pytest.raises(error, match=fix):
        backend.bounded_aggregate(df.lazy(), **args)


def test_get_backend():
    assert isinstance(get_backend(), Backend)
    with pytest.raises(UsageError, match="choose one of polars, spark"):
        get_backend("duckdb")
    with pytest.raises(UsageError, match="--engine spark"):
        get_backend("polars", master="local[2]")
    with pytest.raises(UsageError, match="polars engine"):
        PolarsBackend(engine="gpu")
    with pytest.raises(UsageError, match="rows_per_partition"):
        PolarsBackend(rows_per_partition=0)
    with pytest.raises(UsageError, match="max_passes"):
        PolarsBackend(max_passes=True)


def test_a_units_sum_does_not_depend_on_how_many_rows_others_add(backend):
    """The fixed-point grid of exact sums comes from the clamp alone: a grid fitted to the input
    size would truncate unit a's contribution differently once unit b adds rows, moving the sum
    by more than a's own sensitivity allows."""
    clamp = Clamp(lo=0, hi=2.0**52)
    alone = pl.DataFrame({"u": ["a"], "k": ["x"], "v": [2.0**40 + 12345.678]})
    crowded = pl.concat([alone, pl.DataFrame({"u": ["b"] * 1000, "k": ["y"] * 1000, "v": [1.0] * 1000})])
    sums = [run(backend, df, sums={"v": clamp})[1].filter(pl.col("u") == "a")["sum_v"].item() for df in (alone, crowded)]
    assert sums[0] == sums[1] == (2.0**40 + 12345.678) // clamp.grid * clamp.grid


def test_polars_and_spark_agree(spark_session):
    """With the same seed and no L0 bound binding, the two backends give identical aggregates
    (L∞ truncation, rescaled grid sums, null units, struct (unit, window) units, time keys)."""
    import numpy as np

    from dplogs.backends.spark import SparkBackend

    rng = np.random.default_rng(3)  # test data only
    n = 5000
    day = pl.Series([datetime(2026, 1 + i % 2, 1 + i % 28, tzinfo=timezone.utc) for i in rng.integers(0, 56, n)])
    df = pl.DataFrame(
        {
            "u": pl.Series([None if i == 0 else f"user{i}" for i in rng.integers(0, 300, n)]),
            "k": pl.Series([f"g{i}" for i in rng.integers(0, 4, n)]),
            "day": day.dt.truncate("1d"),
            "v": pl.Series(rng.normal(50, 40, n)).fill_nan(None),
        }
    ).with_columns(w=pl.when(pl.col("u").is_not_null()).then(pl.struct("u", window=pl.col("day").dt.truncate("1mo"))))
    bounds = ContributionBounds(max_groups=200, max_rows_per_group=2)
    for unit, keys in (("u", ["k", "day"]), ("w", ["k"]), ("u", [])):
        kw = dict(unit=unit, keys=keys, bounds=bounds, sums={"v": Clamp(lo=-10, hi=100)}, seed=secret_seed())
        want = PolarsBackend().bounded_aggregate(df.lazy(), **kw)
        got = SparkBackend().bounded_aggregate(df.lazy(), **kw)
        assert got.equals(want), (unit, keys)
        assert want["rows"].sum() < n  # L∞ did bind


def test_spark_rank_is_a_keyed_64_bit_hash_of_the_cell(spark_session):
    """The Spark cell code keeps the layout of the polars one (unit bits, then key bits), and
    a fresh seed gives unrelated ranks."""
    from dplogs.backends.spark import SparkBackend

    b = SparkBackend(key_bits=8)
    cells = pl.DataFrame({"u": ["a", "a", "b"], "k": ["x", "y", "x"]})
    one = b.cell_ranks(cells, unit="u", others=["k"], seed=1)
    codes = [c % 2**64 for c in one["__dplogs_code"]]
    assert codes[0] >> 8 == codes[1] >> 8 != codes[2] >> 8  # same unit, same unit bits
    assert codes[0] % 256 == codes[2] % 256 != codes[1] % 256 or codes[0] % 256 == codes[2] % 256
    two = b.cell_ranks(cells, unit="u", others=["k"], seed=2)
    assert set(one["__dplogs_rank"]).isdisjoint(two["__dplogs_rank"])


@pytest.mark.parametrize("rule, want", [
    # user x (3 rows), host x (2 rows), the shared unit (10,000 rows), user y: four units, L∞ = 2 each
    (UnitRule(("user.name", "host.name")), {"failure": (6, 3), "success": (1, 1)}),
    # the per-row opt-in: each unattributed row its own unit, so the flood counts in full
    (UnitRule(("user.name", "host.name"), PER_ROW), {"failure": (10_004, 10_002), "success": (1, 1)}),
    # one field, shared: host x's rows join the unattributed unit, which is bounded like any unit
    (UnitRule(("user.name",)), {"failure": (4, 2), "success": (1, 1)}),
])
def test_unit_rules_bound_the_same_on_every_backend(backend, rule, want):
    """The engine's rows (prepare / spark_rows.prepare) with a unit rule, through the backend's
    bounding: chains namespace by field, rows without identity are one shared unit (or each its
    own under per-row)."""
    from dplogs.engine.api import Engine
    from dplogs.engine.execute import aggregate

    t = datetime(2026, 11, 3, tzinfo=timezone.utc)
    rows = ([(t, "x", "h1", "failure")] * 3 + [(t, None, "x", "failure")] * 2 + [(t, None, None, "failure")] * 10_000
            + [(t, "y", None, "success")])
    df = conform(pl.DataFrame(rows, schema=["@timestamp", "user.name", "host.name", "event.outcome"], orient="row").lazy())
    plan = Engine(scan=lambda: df, privacy_unit=rule, budget_window="month", ledger=None).build(
        Aggregation.count(), Aggregation.units(), keys=["event.outcome"], epsilon=1.0, max_groups=1,
        max_rows_per_group=2, start="2026-11-01", end="2026-12-01").plan
    main, _ = aggregate(plan, df, backend)
    got = {r["event.outcome"]: (r["rows"], r["units"]) for r in main.iter_rows(named=True) if r["rows"]}
    assert got == want
