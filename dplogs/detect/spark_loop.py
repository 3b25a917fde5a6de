"""The detector's noisy aggregation loop on Spark: feature rows stay on the executors, per-batch
sums come back to the driver, noise is added there.

:class:`SparkFeatureBatches` is the Spark twin of :class:`dplogs.detect.features.FeatureBatches`,
the source the k-means and DP-SGD loops read. Each call of :meth:`~SparkFeatureBatches.total`
is one Spark job: ``mapInArrow`` hands every partition's Arrow batches of the persisted, bounded
and clipped feature rows (:mod:`dplogs.detect.spark_features`) to the same per-batch function the
embedded loop runs (:func:`~dplogs.detect.kmeans.kmeans_batch_stats`,
:func:`~dplogs.detect.autoencoder.autoencoder_batch_grads`,
:func:`~dplogs.detect.calibration.batch_score_counts`), adds the results inside the partition,
and returns one row of sums per partition; the driver adds those. Those sums are exact (clipped,
pre-noise) and never leave the driver: the loop adds noise ONCE per iteration, on the driver,
through :mod:`dplogs.privacy`, against the run's ledger charge, exactly as in polars. Executors
receive the per-batch function (by reference: they need dplogs installed, see docs/spark.md), the
public state of the iteration (centroids, weights, the step's sampled unit ids) and never a sampler
or a secret but the feature rank's per-run seed. The peer baseline is counted the same way
(:meth:`~SparkFeatureBatches.peer_totals`), and its features are appended on the executors against
the released, public baseline (:meth:`~SparkFeatureBatches.with_peers`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa

from dplogs.backends.spark import col
from dplogs.detect.features import FEATURE_NAMES, FeatureSpec, empty_batch
from dplogs.detect.spark_features import PEER_INPUTS
from dplogs.errors import InternalError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_PARTS = "i int, shape array<bigint>, f array<double>, n array<bigint>"


def _encode(arrays: tuple[np.ndarray, ...]) -> pa.RecordBatch:
    """One partition's summed arrays as rows (index, shape, float values or integer values)."""
    out: dict[str, list] = {"i": [], "shape": [], "f": [], "n": []}
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        integer = np.issubdtype(a.dtype, np.integer)
        out["i"].append(i)
        out["shape"].append(list(a.shape))
        out["f"].append(None if integer else a.astype(np.float64).ravel().tolist())
        out["n"].append(a.astype(np.int64).ravel().tolist() if integer else None)
    schema = pa.schema([("i", pa.int32()), ("shape", pa.list_(pa.int64())), ("f", pa.list_(pa.float64())),
                        ("n", pa.list_(pa.int64()))])
    return pa.RecordBatch.from_pydict(out, schema=schema)


def _partition_sums(fn: Any, args: tuple, dim: int) -> Any:
    """The function ``mapInArrow`` runs on each partition (on an executor): ``fn(batch, *args)``
    over the partition's batches, added up; one encoded row set per non-empty partition."""

    def run(batches: Any) -> Any:
        total = None
        for b in batches:
            if b.num_rows == 0:
                continue
            x = pa.FixedSizeListArray.from_arrays(b.column("x").flatten(), dim)
            part = fn(pa.RecordBatch.from_arrays([b.column("unit_id"), x], ["unit_id", "x"]), *args)
            total = part if total is None else tuple(a + p for a, p in zip(total, part))
        if total is not None:
            yield _encode(total)

    return run


def _collect_sums(parts: pa.Table) -> dict[int, np.ndarray]:
    """The driver's sum of the partitions' encoded arrays (:func:`_encode`), by index."""
    sums: dict[int, np.ndarray] = {}
    for r in parts.to_pylist():
        values = np.asarray(r["n"], dtype=np.int64) if r["n"] is not None else np.asarray(r["f"], dtype=np.float64)
        a = values.reshape(r["shape"])
        sums[r["i"]] = a if r["i"] not in sums else sums[r["i"]] + a
    return sums


def _peer_partition_totals(batches: Any) -> Any:
    """On an executor: :func:`~dplogs.detect.peers.peer_totals` of the partition's rows (their
    role, volumes and executables), added up; the executables never leave the partition."""
    import polars as pl

    from dplogs.detect.peers import peer_totals

    total = None
    for b in batches:
        if b.num_rows:
            part = peer_totals(pl.from_arrow(b))
            total = part if total is None else tuple(a + p for a, p in zip(total, part))
    if total is not None:
        yield _encode(total)


def _with_peer_columns(baseline: Any, clip_norm: float) -> Any:
    """On an executor: each row's features with the peer features against the public ``baseline``
    appended, clipped again to L2 norm ``clip_norm`` (:func:`~dplogs.detect.peers.with_peer_features`)."""

    def run(batches: Any) -> Any:
        import polars as pl

        from dplogs.detect.features import clip_rows
        from dplogs.detect.peers import peer_features

        for b in batches:
            if b.num_rows == 0:
                continue
            own = b.column("x").flatten().to_numpy(zero_copy_only=False).reshape(b.num_rows, -1)
            peers = peer_features(pl.from_arrow(b.select(list(PEER_INPUTS))), baseline)
            x = clip_rows(np.hstack([own.astype(np.float64), peers]), clip_norm)
            offsets = pa.array(np.arange(0, x.size + 1, x.shape[1], dtype=np.int32))
            yield pa.RecordBatch.from_arrays([b.column("unit_id"), pa.ListArray.from_arrays(offsets, pa.array(x.ravel()))],
                                             ["unit_id", "x"])

    return run


@contextlib.contextmanager
def _without_pandas_notice() -> Iterator[None]:
    """Silence pyspark's notice about pandas versions around ``mapInArrow``: dplogs passes Arrow only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


class SparkFeatureBatches:
    """Bounded feature rows persisted on Spark executors, read by the training loops. Close it
    (or use it as a context manager) to release the cached rows.

    ``rows`` (:func:`dplogs.detect.spark_features.feature_rows`) keep each window's peer inputs
    beside its features; ``frame`` is what the loops read: ``unit_id`` and the feature vector
    ``x``, with the peer features once :meth:`with_peers` has appended them."""

    def __init__(self, rows: DataFrame, dim: int, *, clip_norm: float) -> None:
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        self.dim, self.clip_norm = dim, clip_norm
        self.rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
        self.frame = rows.select(col("unit_id"), F.array(*(col(f) for f in FEATURE_NAMES)).alias("x"))

    def _job(self, frame: DataFrame, run: Any) -> pa.Table:
        with _without_pandas_notice():
            return frame.mapInArrow(run, _PARTS).toArrow()

    def total(self, fn: Any, *args: Any) -> tuple[np.ndarray, ...]:
        """The element-wise sum over all feature batches of ``fn(batch, *args)``: partition sums
        on the executors, their sum here."""
        parts = self._job(self.frame, _partition_sums(fn, args, self.dim))
        if parts.num_rows == 0:
            return fn(empty_batch(self.dim), *args)
        sums = _collect_sums(parts)
        return tuple(sums[i] for i in range(len(sums)))

    def peer_totals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The exact peer statistics of the bounded rows (:func:`~dplogs.detect.peers.peer_totals`):
        per-partition sums on the executors, added here."""
        from dplogs.detect.peers import peer_totals

        inputs = self.rows.select(*(col(c) for c in PEER_INPUTS))
        sums = _collect_sums(self._job(inputs, _peer_partition_totals))
        if not sums:
            return peer_totals(pl.DataFrame(schema={"module": pl.String, "events": pl.Int64, "bytes": pl.Float64,
                                                   "processes": pl.List(pl.String)}))
        return sums[0], sums[1], sums[2]

    def with_peers(self, baseline: Any) -> SparkFeatureBatches:
        """Append the peer features against the released ``baseline`` (on the executors) and clip
        again; the loops then read the longer rows. Returns this source (closing it releases
        both)."""
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        from dplogs.detect.peers import PEER_FEATURE_NAMES

        # the features as one array column: mapInArrow does not resolve dotted column names
        inputs = self.rows.select(col("unit_id"), F.array(*(col(f) for f in FEATURE_NAMES)).alias("x"),
                                  *(col(c) for c in PEER_INPUTS))
        with _without_pandas_notice():
            frame = inputs.mapInArrow(_with_peer_columns(baseline, self.clip_norm), "unit_id long, x array<double>")
        self.frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
        self.dim = len(FEATURE_NAMES) + len(PEER_FEATURE_NAMES)
        return self

    def unit_count(self, max_rows_per_unit: int) -> int:
        """Number of units ((unit, budget window) pairs); raises if one has more than K rows (a
        bug upstream: the loop's sensitivity would be wrong)."""
        from pyspark.sql import functions as F

        per_unit = self.frame.groupBy("unit_id").agg(F.count(F.lit(1)).alias("n"))
        row = per_unit.agg(F.count(F.lit(1)).alias("units"), F.max("n").alias("most")).collect()[0]
        if row["most"] is not None and row["most"] > max_rows_per_unit:
            raise InternalError(f"a unit has {row['most']} feature rows, more than the bound K={max_rows_per_unit}")
        return int(row["units"])

    def close(self) -> None:
        self.frame.unpersist()
        self.rows.unpersist()

    def __enter__(self) -> SparkFeatureBatches:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def spark_feature_batches(sdf: DataFrame, *, unit: Any, spec: FeatureSpec, seed: int | None = None) -> SparkFeatureBatches:
    """The bounded feature rows of the store rows ``sdf`` (:func:`dplogs.detect.spark_features.feature_rows`),
    persisted on the executors as the training loops' source."""
    from dplogs.detect.spark_features import feature_rows

    return SparkFeatureBatches(feature_rows(sdf, unit=unit, spec=spec, seed=seed), len(FEATURE_NAMES),
                               clip_norm=spec.clip_norm)
