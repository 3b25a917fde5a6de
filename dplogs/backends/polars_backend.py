"""The default backend: contribution bounding and per-group aggregation in polars.

The bounding rule, exactly (the shared tests check this rule, not just its bounds):

1. **Cells.** One ``group_by`` pass over (unit, group) cells gives, per cell, its row count
   ``n`` and, per value column, ``s`` = the sum of the values clamped into ``[lo, hi]``. Nulls
   and NaNs contribute 0 to ``s`` (they are dropped from sums but still counted in ``n``); ±inf
   clamp to ``hi``/``lo``, so nothing non-finite reaches the output.
2. **L0, groups per unit.** Each unit keeps the ``max_groups`` cells with the smallest keyed rank
   ``hash(code; seed')``, ties broken by the code and then the key values, so a unit's kept
   groups depend only on its own data and the secret seed. The cell **code** is a u64: the top
   ``64 - key_bits`` bits of the unit's seeded hash, then the top ``key_bits`` bits of the keys'
   seeded hash (polars' seeded 64-bit hashes; ``key_bits`` is fixed, never fitted to the data,
   so the rank of one unit's cells cannot depend on anyone else's).
3. **L∞, rows per group.** A kept cell contributes ``rows = min(n, max_rows_per_group)`` and, per
   value column, the *rescaled* clamped sum ``s · rows / n``: the expected clamped sum of
   ``rows`` of its rows drawn uniformly without replacement. It lies in
   ``rows·[min(lo, 0), max(hi, 0)]`` (0 stands for the nulls; re-clamped there against float
   rounding), so one unit moves a group's sum by at most ``max_rows_per_group · max(|lo|, |hi|)``,
   the bound :func:`dplogs.privacy.sum_sensitivity` assumes, without a per-row rank over all rows.
4. **Null units.** A row whose unit is null is its own unit: one row in one group, always kept.
   (The engine's units are null only under a store's ``per-row`` opt-in: ``dplogs/schema/units.py``.)
5. **Groups.** ``group_by(keys)`` sums ``rows`` and sums and counts the kept units. Sums are
   exact: each kept cell's contribution is truncated toward zero onto the public grid
   :attr:`~dplogs.privacy.bounds.Clamp.grid` (``max(|lo|, |hi|) / 2^24`` rounded up to a power
   of two, from the bounds alone) and added in Int128, so a group's sum is an exact function of
   its kept cells, whatever the order of additions; it is then saturated at ±2^62 grid units
   (1-Lipschitz, so the sensitivity holds, and sum plus noise fits int64) and converted to float
   (post-processing). Float sums in varying order carry rounding error that the sensitivity does not
   cover, which attacks on DP libraries exploit (Casacuberta et al., CCS 2022); truncation
   toward zero keeps every contribution inside its bound, so the sensitivity stands as derived.

Performance shape (see ``benchmarks/query.py``): the only passes over all rows are step 1 and,
before it, ``unique()`` of the unit column and of the key columns. When those show that no two
units and no two key tuples share a code (and the columns hash by value: no float keys), step 1
groups on the u64 code alone, which is about twice as fast as grouping on strings, and the unit
and key values are joined back from the two small tables after the L0 cut. Otherwise step 1
groups on the values and computes the codes per cell, so the rule, and the result, are the same
either way; a collision (crafted user names included) costs speed, never privacy. The unit pass
also counts the rows and sees whether any unit is null, so neither costs a pass of its own (no
null unit: the null-unit rows are never looked for). The L0 selection is one rank of the hash
``over(unit)`` on the much smaller cell frame (ranked again with ties broken only if a tie
crosses the cut: :func:`_kept`). Large inputs run in several passes, one per
partition of the unit codes, which bounds the memory of the cell hash table; with injective codes
the input is read (from a store: decoded) once, as u64 codes and clamped values, and the passes
partition that in memory.

From a store with unit codes (``unit_values``: the unit column holds a store's dense codes, see
``dplogs/ingest/store.py``) there is no unit pass at all: the units table is the store's unit
dictionary, each unit hashed once (not once per row), and the codes of distinct units are
distinct by construction, so only the units' hash ids are checked (a collision falls back to the
values, as above). A query whose keys are all public also hands in their grid (``key_values``),
which replaces the key pass (a tuple outside it is detected and the pass runs after all). With
dense unit codes and known key tuples (K of them), step 1 then **counts instead of hashing**: a
row's cell is ``unit code · (K + 1) + key index`` (the key index from one table lookup of the
keys' hash id; index K, a counter of its own, catches a tuple outside the grid) and
``np.add.at`` adds it into arrays of counters and sums, so no hash table of cells is built. One
read hands each pass the rows of a range of unit codes (``_CELLS_PER_ROW · rows_per_partition``
counters a pass, 4M by default, reused across passes), and the L0 cut runs over slices of 2M
counters, so memory stays bounded. The cells, their codes and sums are the hash path's, so the
rest of the rule, and the release, are unchanged; counters that would need more than
``8 · max_passes`` passes (a huge dictionary times a large grid) go to the hash path.

Measured from a store of 1e7 rows (``benchmarks/query.py``; single-thread CPU, alternating with
the hash path): counting cut the user CPU of a release from 1.56–1.92 s to 1.25–1.40 s; the read
(Parquet decoding, filters, the per-row key hash) is now about half of it, counting ~20%, the L0
cut and per-group sums ~20% (docs/architecture.md, "Bounding").

>>> import polars as pl
>>> from dplogs.privacy.bounds import Clamp, ContributionBounds
>>> lf = pl.LazyFrame({"user": ["a", "a", "a", "b"], "action": ["x", "x", "y", "x"], "b": [5, 7, 1, 100]})
>>> PolarsBackend().bounded_aggregate(
...     lf, unit="user", keys=["action"], bounds=ContributionBounds(max_groups=2, max_rows_per_group=1),
...     sums={"b": Clamp(lo=0, hi=10)}, seed=1)
shape: (2, 4)
┌────────┬──────┬───────┬───────┐
│ action ┆ rows ┆ units ┆ sum_b │
│ ---    ┆ ---  ┆ ---   ┆ ---   │
│ str    ┆ i64  ┆ i64   ┆ f64   │
╞════════╪══════╪═══════╪═══════╡
│ x      ┆ 2    ┆ 2     ┆ 16.0  │
│ y      ┆ 1    ┆ 1     ┆ 1.0   │
└────────┴──────┴───────┴───────┘
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl

from dplogs.backends.base import ROWS, SUM_PREFIX, UNITS
from dplogs.errors import InternalError, QueryError, UsageError
from dplogs.privacy.limits import MAX_EXACT_SUM_UNITS

if TYPE_CHECKING:
    from dplogs.privacy.bounds import Clamp, ContributionBounds

_N = "__dplogs_n"
_CODE = "__dplogs_code"
_CELL = "__dplogs_cell"
_RANK = "__dplogs_rank"
_UNIT_ID = "__dplogs_unit_id"
_KEY_ID = "__dplogs_key_id"
_PART = "__dplogs_part"
_GLOBAL = "__dplogs_global"
_U64_MAX = 2**64 - 1
_CELLS_PER_ROW = 8
"""Counters a dense pass may hold per ``rows_per_partition`` row (the default: 4M counters, 48 MiB
with one sum): the dense path's memory bound, in place of the hash table's."""
_CELLS_PER_SLICE = 2**21
"""Counters whose cells go through the L0 cut at a time (its frames grow with the cells)."""
_DENSE_PASSES = 8
"""Dense passes per ``max_passes`` hash pass: one read feeds them all, so they cost little more
than their counters (beyond that the counters would outnumber any input's rows by far)."""
_LOOKUP_BITS = 24
"""Key ids up to this many bits map to dense key indexes through one table (2^24 entries)."""


@dataclass(frozen=True)
class PolarsBackend:
    """Public: the embedded polars backend. ``engine`` is the polars collect engine (streaming was
    faster and leaner on the query benchmark). ``cell_codes`` lets step 1 group on the 64-bit cell
    codes (see the module docstring) whenever they are injective on the data; ``False`` always
    groups on the values (same result, slower; the contract suite runs both). ``key_bits`` is the
    share of a code given to the keys. Inputs of more than ``rows_per_partition`` rows are bounded
    in ``min(ceil(rows / rows_per_partition), max_passes)`` sequential passes, each over the units
    whose code falls in one partition: a unit's rows all land in one pass, so the result is the
    same, and peak memory (the per-cell hash table) shrinks by the number of passes. With
    injective codes the input is read once (16 bytes a row with one sum) and each pass filters
    that; otherwise each pass re-reads the input (1e7 rows from a store: peak RSS 416 MiB in 8
    passes, 478 in 4, 668 in 1, at the same CPU). From a store's dense unit codes with known key
    tuples, cells are counted, not hashed (module docstring): ``rows_per_partition`` then sizes
    a pass's counters (8 a row), and up to ``8 · max_passes`` passes share one read."""

    engine: Literal["streaming", "in-memory"] = "streaming"
    rows_per_partition: int = 500_000
    max_passes: int = 8
    cell_codes: bool = True
    key_bits: int = 24
    name: str = "polars"

    def __post_init__(self) -> None:
        if self.engine not in ("streaming", "in-memory"):
            raise UsageError(f"polars engine must be 'streaming' or 'in-memory', got {self.engine!r}")
        for name in ("rows_per_partition", "max_passes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UsageError(f"{name} must be an integer >= 1, got {v!r}")
        if isinstance(self.key_bits, bool) or not isinstance(self.key_bits, int) or not 1 <= self.key_bits <= 63:
            raise UsageError(f"key_bits must be an integer in [1, 63], got {self.key_bits!r}")

    def bounded_aggregate(
        self,
        lf: pl.LazyFrame,
        *,
        unit: str,
        keys: Sequence[str],
        bounds: ContributionBounds,
        sums: Mapping[str, Clamp],
        seed: int,
        unit_values: pl.DataFrame | None = None,
        key_values: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        """Bounded per-group ``rows``, ``units`` and ``sum_<name>``; see the module docstring.
        ``unit_values``: the ``unit`` column holds dense UInt32 codes, code ``i`` standing for the
        distinct unit value in row ``i`` of this one-column frame (a store's unit dictionary).
        ``key_values``: key tuples that include every tuple of ``lf`` (a public key grid), which
        spares the pass that finds them; should a tuple be missing, that pass runs after all.
        Either way the result is the one the values alone give."""
        try:
            return self._bounded_aggregate(lf, unit=unit, keys=keys, bounds=bounds, sums=sums, seed=seed,
                                           unit_values=unit_values, key_values=key_values)
        except _OutsideKeyValues:
            return self._bounded_aggregate(lf, unit=unit, keys=keys, bounds=bounds, sums=sums, seed=seed,
                                           unit_values=unit_values, key_values=None)

    def _bounded_aggregate(
        self,
        lf: pl.LazyFrame,
        *,
        unit: str,
        keys: Sequence[str],
        bounds: ContributionBounds,
        sums: Mapping[str, Clamp],
        seed: int,
        unit_values: pl.DataFrame | None,
        key_values: pl.DataFrame | None,
    ) -> pl.DataFrame:
        lf, keys = _checked(lf, unit=unit, keys=keys, sums=sums, seed=seed)
        by = keys or [_GLOBAL]
        grids = _grids(sums)
        coder = None if unit_values is None else self._dictionary_coder(lf, unit=unit, keys=keys, seed=seed,
                                                                         unit_values=unit_values, key_values=key_values)
        if coder is None:
            if unit_values is not None:  # the codes cannot serve: bound on the values they stand for
                lf = lf.with_columns(pl.lit(unit_values.get_column(unit)).gather(pl.col(unit)).alias(unit))
            coder = self._coder(lf, unit=unit, keys=keys, seed=seed, key_values=key_values)
        dense = self._dense_rows(lf, coder=coder, sums=sums)
        if dense is not None:
            return self._finish(
                (self._cells(lf, unit=unit, bounds=bounds, sums=sums, part=(index, dense.slices), grids=grids,
                             coder=dense.coder, counted=counted, with_unit=unit in keys)
                 for index, counted in enumerate(dense.cells())),
                by=by, keys=keys, sums=sums, grids=grids)
        coded = None
        if coder.units is not None and coder.rows is None:
            # unit codes: one read gives the coded rows, their count and whether any unit is null
            # (its code is null), so no pass over the units is needed
            coded = _coded_rows(lf, coder=coder, sums=sums, nulls=True).collect(engine=self.engine)
            null_units = coded[_CODE].has_nulls()
            coded = coded.drop_nulls(_CODE) if null_units else coded
            coder = replace(coder, rows=coded.height, null_units=null_units)
            coded = coded.lazy()
        n_rows = coder.rows if coder.rows is not None else lf.select(pl.len()).collect(engine=self.engine).item()
        passes = min(max(1, -(-n_rows // self.rows_per_partition)), self.max_passes)
        if coded is None and coder.units is not None and passes > 1:
            # read the input once: the passes then partition its codes in memory instead of
            # re-reading (and re-decoding, from a store) every row once per pass
            coded = _coded_rows(lf, coder=coder, sums=sums).collect(engine=self.engine).lazy()
        if coded is not None and passes > 1:  # each row's partition, once (not one % per row per pass)
            part = (coder.unit_of_code() % pl.lit(passes, pl.UInt64)).cast(pl.UInt8 if passes <= 256 else pl.UInt32)
            coded = coded.with_columns(part.alias(_PART))
            coded = coded.collect().lazy()
        return self._finish(
            (self._cells(lf, unit=unit, bounds=bounds, sums=sums, part=(part, passes), grids=grids, coder=coder,
                         coded=coded, with_unit=unit in keys)  # the unit's values only as a key
             for part in range(passes)),
            by=by, keys=keys, sums=sums, grids=grids)

    def _finish(self, passes: Iterable[pl.LazyFrame], *, by: list[str], keys: list[str], sums: Mapping[str, Clamp],
                grids: Mapping[str, float]) -> pl.DataFrame:
        """Step 5 over the kept cells of every pass (each pass collected before the next runs)."""
        sum_cols = [f"{SUM_PREFIX}{name}" for name in sums]
        partials = [
            (cells if keys else cells.with_columns(pl.lit(0).alias(_GLOBAL))).group_by(by).agg(
                pl.col(ROWS).sum().cast(pl.Int64),
                pl.len().cast(pl.Int64).alias(UNITS),
                *(pl.col(c).cast(pl.Int128).sum() for c in sum_cols),  # grid units: exact, cannot overflow
            ).collect(engine=self.engine)
            for cells in passes
        ]
        frame = (
            pl.concat(partials).group_by(by).agg(pl.col(ROWS, UNITS, *sum_cols).sum())
            if len(partials) > 1
            else partials[0]
        )
        frame = frame.select(
            *by, ROWS, UNITS, *(_from_grid(f"{SUM_PREFIX}{name}", grids[name], saturate=True) for name in sums)
        ).sort(by, nulls_last=True)
        return frame.drop(_GLOBAL) if not keys else frame

    def _dense_rows(self, lf: pl.LazyFrame, *, coder: _CellCoder, sums: Mapping[str, Clamp]) -> _DenseRows | None:
        """Step 1 by counting instead of hashing, when the unit column holds a store's dense unit
        codes and the key tuples are known (``coder`` with a dictionary and key values). A row's
        cell is ``unit code · (K + 1) + key index`` (K key tuples; index K for a tuple outside
        them) in dense arrays of counters, filled by ``np.add.at`` in passes over ranges of unit
        codes of at most ``_CELLS_PER_ROW · rows_per_partition`` counters each; one read gives every
        pass its rows. The cells are the hash path's (same codes, counts and sums), so the rest of
        the rule runs unchanged. None when this does not apply or would take more than
        ``_DENSE_PASSES · max_passes`` passes: the hash path runs then."""
        if coder.unit_ids is None or coder.units is None or self.key_bits > _LOOKUP_BITS:
            return None
        n_keys = coder.values.height if coder.others else 1
        width = n_keys + 1  # counters per unit
        per_pass = self.rows_per_partition * _CELLS_PER_ROW // width  # units per pass
        n_units = coder.unit_ids.len()
        passes = max(1, -(-n_units // per_pass)) if per_pass else None
        if passes is None or passes > self.max_passes * _DENSE_PASSES:
            return None
        if coder.others:
            # a row's key index: one table lookup of its key id (a tuple outside the key values,
            # whose id is not among theirs, finds n_keys)
            dtype = np.uint16 if n_keys < 2**16 else np.uint32
            index = np.full(2**self.key_bits, n_keys, dtype=dtype)
            index[coder.values[_KEY_ID].to_numpy()] = np.arange(n_keys, dtype=dtype)
            key = pl.lit(pl.Series(index)).gather(coder.key_id())
        else:
            key = pl.lit(0, pl.UInt16)
        # u64 cells cannot wrap (codes < 2^32), so the largest shows a code outside the dictionary;
        # a pass keeps its rows' cells as u32 offsets from its first counter
        rows = lf.select((pl.col(coder.unit).cast(pl.UInt64) * width + key).alias(_CELL),
                         *(c.fill_null(0.0) for c in _clamped(sums)))
        cell, span = pl.col(_CELL), per_pass * width
        *parts, facts = pl.collect_all(
            [*(rows.filter((cell >= i * span) & (cell < (i + 1) * span)).with_columns((cell - i * span).cast(pl.UInt32))
               for i in range(passes)),
             rows.select(pl.len().alias("rows"), cell.null_count().alias("nulls"), cell.max().alias("last"),
                         (cell % width == n_keys).any().alias("outside"))],
            engine=self.engine,
        )
        if facts["outside"].item():
            raise _OutsideKeyValues
        if (facts["last"].item() or 0) >= n_units * width:  # as the hash path's gather of its id fails
            raise pl.exceptions.OutOfBoundsError("a unit code outside the unit dictionary")
        nulls = facts["nulls"].item()
        coder = replace(coder, rows=facts["rows"].item() - nulls, null_units=nulls > 0)
        return _DenseRows(coder=coder, parts=parts, width=width, per_pass=per_pass)

    def bounded_units(
        self,
        lf: pl.LazyFrame,
        *,
        unit: str,
        keys: Sequence[str],
        bounds: ContributionBounds,
        sums: Mapping[str, Clamp],
        seed: int,
    ) -> pl.DataFrame:
        """The kept (unit, group) cells: ``unit``, keys, ``rows`` and ``sum_<name>``. Raw
        per-unit data for the shared tests and the auditor; never released."""
        lf, keys = _checked(lf, unit=unit, keys=keys, sums=sums, seed=seed)
        grids = _grids(sums)
        coder = self._coder(lf, unit=unit, keys=keys, seed=seed)
        cells = self._cells(lf, unit=unit, bounds=bounds, sums=sums, part=(0, 1), grids=grids, coder=coder)
        cells = cells.with_columns(_from_grid(f"{SUM_PREFIX}{name}", grids[name]) for name in sums)
        return cells.collect(engine=self.engine).sort([unit, *(k for k in keys if k != unit)], nulls_last=True)

    def _dictionary_coder(
        self, lf: pl.LazyFrame, *, unit: str, keys: list[str], seed: int, unit_values: pl.DataFrame,
        key_values: pl.DataFrame | None = None,
    ) -> _CellCoder | None:
        """:meth:`_coder` for a ``unit`` column of dense codes into ``unit_values`` (a store's
        unit dictionary): the units table is the dictionary, each unit hashed once instead of once
        per row, and no pass over the units is needed (codes of distinct values are distinct by
        construction). None when the codes cannot stand in for the values (a shared id, a type
        that does not hash by value, ``cell_codes`` off): the caller then bounds on the values."""
        coder = _CellCoder(unit=unit, others=[k for k in keys if k != unit], seed=seed, key_bits=self.key_bits)
        schema = lf.collect_schema()
        if not self.cell_codes or not all(_codable(t) for t in (unit_values.schema[unit], *(schema[c] for c in coder.others))):
            return None
        units = unit_values.select(unit, coder.unit_id().alias(_UNIT_ID))
        if units[_UNIT_ID].n_unique() != units.height:
            return None
        coder = self._key_values(lf, replace(coder, units=units, unit_ids=units[_UNIT_ID]), key_values)
        return coder if coder.units is not None else None

    def _coder(self, lf: pl.LazyFrame, *, unit: str, keys: list[str], seed: int,
               key_values: pl.DataFrame | None = None) -> _CellCoder:
        """The cell code of this query, with its value tables when the codes may stand in for the
        values in step 1 (``cell_codes`` on, hashable column types, no code shared by two units or
        two key tuples); otherwise a coder without tables, and step 1 groups on the values."""
        coder = _CellCoder(unit=unit, others=[k for k in keys if k != unit], seed=seed, key_bits=self.key_bits)
        schema = lf.collect_schema()
        if not self.cell_codes or not all(_codable(schema[c]) for c in (unit, *coder.others)):
            return coder
        # the units with their row counts: the same pass gives the input's size and whether any
        # unit is null, so neither needs a pass of its own
        units = lf.group_by(unit).agg(pl.len().alias(_N)).collect(engine=self.engine)
        null_units = units[unit].has_nulls()
        coder = replace(coder, rows=int(units[_N].sum()), null_units=null_units)
        units = units.drop(_N).filter(pl.col(unit).is_not_null()) if null_units else units.drop(_N)
        units = units.with_columns(coder.unit_id().alias(_UNIT_ID))
        if units[_UNIT_ID].n_unique() != units.height:
            return coder
        return self._key_values(lf, replace(coder, units=units), key_values)

    def _key_values(self, lf: pl.LazyFrame, coder: _CellCoder, given: pl.DataFrame | None = None) -> _CellCoder:
        """``coder`` with its key-values table (the ``given`` tuples, else a pass over ``lf``), or
        without any tables when two key tuples share an id."""
        if not coder.others:
            return coder
        if given is not None:
            values = given.select(coder.others).unique().with_columns(coder.key_id().alias(_KEY_ID))
            coder = replace(coder, values_given=True)
        else:
            values = lf.select(coder.others).unique().with_columns(coder.key_id().alias(_KEY_ID)).collect(engine=self.engine)
        if values[_KEY_ID].n_unique() != values.height:
            return replace(coder, units=None, unit_ids=None)
        return replace(coder, values=values)

    def _cells(
        self,
        lf: pl.LazyFrame,
        *,
        unit: str,
        bounds: ContributionBounds,
        sums: Mapping[str, Clamp],
        part: tuple[int, int],
        grids: Mapping[str, float],
        coder: _CellCoder,
        coded: pl.LazyFrame | None = None,
        counted: pl.DataFrame | None = None,
        with_unit: bool = True,
    ) -> pl.LazyFrame:
        """The kept cells (``unit`` unless not ``with_unit``, keys, ``rows``, sums) of the units in
        partition ``part = (index, count)``; null-unit rows belong to partition 0. Sums are int64
        multiples of their grid (truncated toward zero). ``coded``: the input's
        :func:`_coded_rows`, already read, when the codes are injective. ``counted``: step 1's cells
        of this pass (``_CODE``, ``_N``, sums), counted densely (:meth:`_dense_rows`)."""
        l0, linf = bounds.max_groups, bounds.max_rows_per_group
        names = {name: f"{SUM_PREFIX}{name}" for name in sums}
        # the unit may itself be a key (top-k user names); it is grouped on once
        others = coder.others
        source = lf
        # only the columns the aggregation needs, so scans project them down
        lf = lf.select(unit, *others, *_clamped(sums))

        index, count = part
        per_cell = (pl.len().alias(_N), *(pl.col(c).sum().fill_null(0.0) for c in names.values()))
        if counted is not None:
            cells = counted.lazy()
        elif coder.units is not None:
            # step 1 on one u64 column; the values come back from the small tables after the L0 cut
            coded = _coded_rows(source, coder=coder, sums=sums) if coded is None else coded
            if count > 1:  # the unit's bits of the code pick the partition (_PART)
                coded = coded.filter(pl.col(_PART) == index).drop(_PART)
            cells = coded.group_by(_CODE).agg(*per_cell)
        else:
            in_part = pl.col(unit).is_not_null()
            if count > 1:
                # the unit hash alone picks the partition: the full code is computed on this pass's rows only
                in_part &= coder.unit_id() % pl.lit(count, pl.UInt64) == index
            cells = lf.filter(in_part).group_by([unit, *others]).agg(*per_cell).with_columns(coder.code().alias(_CODE))
        cells = cells.with_columns(pl.col(_CODE).hash(coder.rank_seed).alias(_RANK)).collect(engine=self.engine)
        if coder.values_given and coder.units is not None and counted is None:  # counting checked them
            key_ids = pl.col(_CODE) % pl.lit(2**coder.key_bits, pl.UInt64)
            if not cells.select(key_ids.is_in(coder.values[_KEY_ID].implode()).all()).item():
                raise _OutsideKeyValues  # decoding would drop the cell: find the key tuples in the data
        if coder.units is not None:
            kept = _kept(cells, over=coder.unit_of_code(), ties=[_CODE], l0=l0).lazy()
        else:
            kept = _kept(cells, over=unit, ties=[_CODE, *others], l0=l0).lazy()
        rows = pl.min_horizontal(pl.col(_N), pl.lit(linf, pl.UInt32))
        bounded = kept.select(
            *((unit, *others) if coder.units is None else (_CODE,)),
            rows.cast(pl.Int64).alias(ROWS),
            *(
                ((pl.col(c) * rows / pl.col(_N))
                 .clip(rows * min(sums[name].lo, 0.0), rows * max(sums[name].hi, 0.0)) / grids[name])
                .cast(pl.Int64)
                .alias(c)
                for name, c in names.items()
            ),
        )
        kept_unit = [unit] if with_unit else []
        if coder.units is not None:
            bounded = coder.decode(bounded, units=with_unit).select(*kept_unit, *others, ROWS, *names.values())
        elif not with_unit:
            bounded = bounded.drop(unit)
        if index != 0 or not coder.null_units:  # the units pass found no null unit: nothing to read
            return bounded
        # a null unit code stands for a null unit value
        null_unit = pl.col(unit) if coder.unit_ids is None else pl.lit(None, coder.units.schema[unit]).alias(unit)
        nulls = lf.filter(pl.col(unit).is_null()).select(
            *([null_unit] if with_unit else []), *others, pl.lit(1, pl.Int64).alias(ROWS),
            *((pl.col(c).fill_null(0.0) / grids[name]).cast(pl.Int64).alias(c) for name, c in names.items()),
        )
        return pl.concat([bounded, nulls], how="vertical_relaxed")


class _OutsideKeyValues(Exception):
    """A cell's key tuple is not among the key values the caller gave."""


@dataclass
class _DenseRows:
    """The rows of :meth:`PolarsBackend._dense_rows`, one frame per pass (``_CELL``, the dense
    cell, then the sums, nulls as 0), with the coder whose codes the cells get."""

    coder: _CellCoder
    parts: list[pl.DataFrame]
    width: int
    per_pass: int

    @property
    def passes(self) -> int:
        return len(self.parts)

    @property
    def slices(self) -> int:
        """How many frames :meth:`cells` gives."""
        n = self.coder.unit_ids.len()
        return sum(-(-min(self.per_pass, n - p * self.per_pass) // self.per_slice) for p in range(self.passes))

    @property
    def per_slice(self) -> int:
        """Units per slice."""
        return min(self.per_pass, max(1, _CELLS_PER_SLICE // self.width))

    def cells(self) -> Iterator[pl.DataFrame]:
        """Per slice of the unit codes, its non-empty cells (possibly none): ``_CODE``, ``_N`` and
        the per-cell sums (added in row order). A pass's rows are dropped once counted; the
        counters are allocated once and cleared where used (fresh arrays per pass cost more in
        page faults than the counting)."""
        unit_ids = self.coder.unit_ids.to_numpy()
        key_ids = self.coder.values[_KEY_ID].to_numpy() if self.coder.others else np.zeros(1, dtype=np.uint64)
        # u32 counts, unless a cell could hold 2^32 rows
        counts = np.zeros(self.per_pass * self.width, dtype=np.uint32 if self.coder.rows < 2**32 else np.uint64)
        one = counts.dtype.type(1)  # of the counters' type: a Python int takes ufunc.at's slow path (20x)
        totals = {c: np.zeros(counts.size) for c in self.parts[0].columns[1:]}
        for index in range(len(self.parts)):
            rows, self.parts[index] = self.parts[index], None
            # chunk by chunk: one array of each would be a copy
            cell = [chunk.to_numpy() for chunk in rows[_CELL].get_chunks()]
            for chunk in cell:
                np.add.at(counts, chunk, one)
            for c, total in totals.items():
                # sliced at the cells' chunk bounds: a sum column's own chunks may differ (a column
                # of nulls, filled with 0, is one constant chunk)
                values, offset = rows[c], 0
                for chunk in cell:
                    np.add.at(total, chunk, values.slice(offset, chunk.size).to_numpy())
                    offset += chunk.size
            del rows, cell
            first = index * self.per_pass
            for start in range(0, min(self.per_pass, unit_ids.size - first), self.per_slice):
                span = slice(start * self.width, (start + min(self.per_slice, self.per_pass - start)) * self.width)
                filled = np.flatnonzero(counts[span]) + span.start
                code = unit_ids[first + filled // self.width] * np.uint64(2**self.coder.key_bits) \
                    + key_ids[filled % self.width]
                yield pl.DataFrame({
                    _CODE: code, _N: counts[filled], **{c: total[filled] for c, total in totals.items()},
                })
                counts[filled] = 0
                for total in totals.values():
                    total[filled] = 0


@dataclass(frozen=True)
class _CellCoder:
    """The 64-bit code of a (unit, keys) cell: the top ``64 - key_bits`` bits of the unit's
    seeded hash, then the top ``key_bits`` bits of the keys' seeded hash. The keyed rank of step 2
    is the seeded hash of this code, so it is a function of the cell and the secret alone, whether
    or not step 1 grouped on codes. ``units``/``values`` map ids back to values when the codes are
    injective on this data."""

    unit: str
    others: list[str]
    seed: int
    key_bits: int
    units: pl.DataFrame | None = None
    values: pl.DataFrame | None = None
    unit_ids: pl.Series | None = None
    """The unit id of each unit code, when the unit column holds a store's dense unit codes."""
    rows: int | None = None
    """The input's row count, when the units pass counted it."""
    null_units: bool = True
    """False when the units pass found no null unit (then no pass looks for them)."""
    values_given: bool = False
    """Whether ``values`` came from the caller (a key grid), not from the data."""

    @property
    def rank_seed(self) -> int:
        return self.seed ^ 0xD1B54A32D192ED03

    def unit_id(self) -> pl.Expr:
        if self.unit_ids is not None:  # the unit column holds codes: look their ids up
            return pl.lit(self.unit_ids).gather(pl.col(self.unit))
        return pl.col(self.unit).hash(self.seed) // pl.lit(2**self.key_bits, pl.UInt64)

    def key_id(self) -> pl.Expr:
        if not self.others:
            return pl.lit(0, pl.UInt64)
        return pl.struct(self.others).hash(self.seed ^ 0x9E3779B97F4A7C15) // pl.lit(2 ** (64 - self.key_bits), pl.UInt64)

    def code(self) -> pl.Expr:
        return self.unit_id() * pl.lit(2**self.key_bits, pl.UInt64) + self.key_id()

    def unit_of_code(self) -> pl.Expr:
        return pl.col(_CODE) // pl.lit(2**self.key_bits, pl.UInt64)

    def decode(self, cells: pl.LazyFrame, *, units: bool = True) -> pl.LazyFrame:
        """Replace ``_CODE`` by the unit (unless not ``units``) and key values it stands for
        (codes are injective here)."""
        cells = cells.with_columns((pl.col(_CODE) % pl.lit(2**self.key_bits, pl.UInt64)).alias(_KEY_ID))
        if units:
            cells = cells.with_columns(self.unit_of_code().alias(_UNIT_ID)).join(self.units.lazy(), on=_UNIT_ID, how="inner")
        if self.values is not None:
            cells = cells.join(self.values.lazy(), on=_KEY_ID, how="inner")
        return cells

def _clamped(sums: Mapping[str, Clamp]) -> list[pl.Expr]:
    """Step 1's values: each sum column clamped into its bounds, NaN as null (named ``sum_<name>``)."""
    return [
        pl.col(name).cast(pl.Float64).fill_nan(None).clip(c.lo, c.hi).alias(f"{SUM_PREFIX}{name}")
        for name, c in sums.items()
    ]


def _coded_rows(lf: pl.LazyFrame, *, coder: _CellCoder, sums: Mapping[str, Clamp], nulls: bool = False) -> pl.LazyFrame:
    """The rows with a unit as their cell code and clamped values: all step 1 reads when the
    codes are injective (16 bytes a row with one sum, against the unit and key values).
    ``nulls``: keep the rows of null units too, with a null code."""
    if not nulls:
        lf = lf.filter(pl.col(coder.unit).is_not_null())
    return lf.select(coder.code().alias(_CODE), *_clamped(sums))


def _grids(sums: Mapping[str, Clamp]) -> dict[str, float]:
    """Per sum column, its public grid (:attr:`Clamp.grid`)."""
    return {name: c.grid for name, c in sums.items()}


def _from_grid(column: str, grid: float, *, saturate: bool = False) -> pl.Expr:
    """Grid units back to values. ``saturate``: a group's exact (Int128) sum is first clipped to
    ±MAX_EXACT_SUM_UNITS, a 1-Lipschitz map, so the sensitivity holds and sum plus noise fits
    int64 (dplogs/privacy/limits.py); whether it saturates depends on no one's row count."""
    units = pl.col(column)
    if saturate:
        units = units.clip(-MAX_EXACT_SUM_UNITS, MAX_EXACT_SUM_UNITS)
    return (units.cast(pl.Int64).cast(pl.Float64) * grid).alias(column)


def _kept(cells: pl.DataFrame, *, over: str | pl.Expr, ties: list[str], l0: int) -> pl.DataFrame:
    """The cells whose :func:`_keyed_rank` is at most ``l0``. Ranked first by the hash alone,
    ties sharing the lowest rank: that keeps exactly those cells unless two cells of a unit tie
    across the cut, when their unit keeps more than ``l0`` (all but impossible with 64-bit
    hashes; then ranked again with the ties broken). Cheaper than asking first whether any two
    cells share a hash."""
    kept = cells.filter(pl.col(_RANK).rank("min").over(over) <= l0)
    if kept.is_empty() or kept.group_by(over).len().get_column("len").max() <= l0:
        return kept
    return cells.filter(_keyed_rank(cells, over=over, ties=ties) <= l0)


def _keyed_rank(cells: pl.DataFrame, *, over: str | pl.Expr, ties: list[str]) -> pl.Expr:
    """1-based rank of each cell among its unit's cells by the keyed hash ``_RANK``. When no two
    cells share a hash (all but certain with 64-bit values) the cheap ordinal rank is exact;
    otherwise ties are broken by ``ties`` (the code, then the key values), so a unit's kept groups
    stay a function of its own data."""
    if cells[_RANK].n_unique() == cells.height:
        return pl.col(_RANK).rank("ordinal").over(over)
    return pl.struct(_RANK, *ties).rank("ordinal").over(over)


def _codable(dtype: pl.DataType) -> bool:
    """Types whose equal values hash equally and whose distinct values ``unique()`` keeps apart;
    floats are left out (0.0 and -0.0, NaN payloads). Structs (the engine's (unit, budget window)
    units) qualify when every field does; Binary is the engine's single-field unit with its shared
    unattributed unit (dplogs/schema/units.py)."""
    if isinstance(dtype, pl.Struct):
        return all(_codable(f.dtype) for f in dtype.fields)
    return dtype.is_integer() or isinstance(
        dtype, pl.String | pl.Binary | pl.Categorical | pl.Enum | pl.Boolean | pl.Date | pl.Datetime | pl.Duration | pl.Time
    )


def _checked(
    lf: pl.LazyFrame, *, unit: str, keys: Sequence[str], sums: Mapping[str, Clamp], seed: int
) -> tuple[pl.LazyFrame, list[str]]:
    """``lf`` as a LazyFrame and ``keys`` as a list, after checking the request against its schema."""
    lf, keys = (lf.lazy() if isinstance(lf, pl.DataFrame) else lf), list(keys)
    schema = lf.collect_schema()
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _U64_MAX:
        raise InternalError(f"the bounding seed must be a 64-bit secret from secret_seed(), got {seed!r}")
    missing = [c for c in (unit, *keys, *sums) if c not in schema]
    if missing:
        raise QueryError(
            f"unknown column(s) {', '.join(missing)}: use columns of the store "
            f"(available: {', '.join(schema.names())})"
        )
    if len(set(keys)) != len(keys):
        raise QueryError(f"group keys must be distinct, got {', '.join(keys)}")
    reserved = {ROWS, UNITS, _GLOBAL, _CODE, _CELL, _RANK, _UNIT_ID, _KEY_ID, _N, _PART, *(f"{SUM_PREFIX}{n}" for n in sums)}
    clash = sorted(reserved.intersection(keys))
    if clash:
        raise QueryError(f"group key(s) {', '.join(clash)} clash with output columns: rename them")
    for name in sums:
        if not schema[name].is_numeric():
            raise QueryError(f"cannot sum {name!r} of type {schema[name]}: sum a numeric column")
    return lf, keys
