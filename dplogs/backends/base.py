"""The backend contract: execution of a plan's bounded aggregation.

A backend turns an already-filtered LazyFrame into pre-noise per-group aggregates in which every
privacy unit's contribution is bounded (≤ ``max_groups`` groups, ≤ ``max_rows_per_group`` rows per
group, values clamped). Noise, accounting and key handling are not its business (``engine`` and
``privacy`` do those); bounding is, and the shared suite in ``tests/backends`` checks it for every
backend. The returned frames are raw: they never leave ``engine``/``backends``/``detect``.

>>> get_backend("polars").name
'polars'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from dplogs.errors import UsageError

if TYPE_CHECKING:  # only for annotations: backends must not pull in opendp at import time
    import polars as pl

    from dplogs.privacy.bounds import Clamp, ContributionBounds

ROWS = "rows"
"""Output column: the bounded row count of a group (Int64)."""
UNITS = "units"
"""Output column: distinct privacy units left in a group after bounding (Int64)."""
SUM_PREFIX = "sum_"
"""Output column prefix: ``sum_<name>`` is the bounded, clamped sum of value column ``<name>``."""


@runtime_checkable
class Backend(Protocol):
    """Public: what the engine needs from an execution backend."""

    name: str

    def bounded_aggregate(
        self,
        lf: pl.LazyFrame,
        *,
        unit: str,
        keys: Sequence[str],
        bounds: ContributionBounds,
        sums: Mapping[str, Clamp],
        seed: int,
    ) -> pl.DataFrame:
        """One row per group present after bounding: the key columns, :data:`ROWS`, :data:`UNITS`
        and ``sum_<name>`` (Float64) for each entry of ``sums``. ``keys`` may be empty (one global
        group). ``seed`` is the fresh per-query secret of the keyed rank."""
        ...

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
        """The per-(unit, group) cells that survive bounding, before the final ``group_by(keys)``:
        unit, keys, :data:`ROWS` and ``sum_<name>`` per cell. Raw per-unit data, for the shared
        test suite and the auditor only."""
        ...


_BACKENDS = ("polars", "spark")


def get_backend(name: str = "polars", *, master: str | None = None) -> Backend:
    """The backend called ``name``; ``"polars"`` is the embedded default. ``master`` is the Spark
    master URL of the ``"spark"`` backend (default: the active session, else ``local[*]``).

    >>> get_backend("duckdb")
    Traceback (most recent call last):
    ...
    dplogs.errors.UsageError: unknown backend 'duckdb': choose one of polars, spark
    """
    if name == "polars":
        if master is not None:
            raise UsageError("a Spark master applies to the spark backend only: add --engine spark")
        from dplogs.backends.polars_backend import PolarsBackend

        return PolarsBackend()
    if name == "spark":
        from dplogs.backends.spark import SparkBackend, require_pyspark

        require_pyspark()  # a missing extra is told now, not at the first query
        return SparkBackend(master=master)
    raise UsageError(f"unknown backend {name!r}: choose one of {', '.join(_BACKENDS)}")
