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
or a secret but the feature rank's per-run seed.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from dplogs.backends.spark import col
from dplogs.detect.features import FEATURE_NAMES, FeatureSpec, empty_batch
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


class SparkFeatureBatches:
    """Bounded feature rows persisted on Spark executors, read by the training loops. Close it
    (or use it as a context manager) to release the cached rows."""

    def __init__(self, rows: DataFrame, dim: int) -> None:
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        self.dim = dim
        self.frame = rows.select(col("unit_id"), F.array(*(col(f) for f in FEATURE_NAMES)).alias("x"))
        self.frame.persist(StorageLevel.MEMORY_AND_DISK)

    def total(self, fn: Any, *args: Any) -> tuple[np.ndarray, ...]:
        """The element-wise sum over all feature batches of ``fn(batch, *args)``: partition sums
        on the executors, their sum here."""
        with warnings.catch_warnings():  # pyspark's notice about pandas versions: dplogs passes Arrow only
            warnings.simplefilter("ignore", FutureWarning)
            parts = self.frame.mapInArrow(_partition_sums(fn, args, self.dim), _PARTS).toArrow()
        if parts.num_rows == 0:
            return fn(empty_batch(self.dim), *args)
        sums: dict[int, np.ndarray] = {}
        for r in parts.to_pylist():
            values = np.asarray(r["n"], dtype=np.int64) if r["n"] is not None else np.asarray(r["f"], dtype=np.float64)
            a = values.reshape(r["shape"])
            sums[r["i"]] = a if r["i"] not in sums else sums[r["i"]] + a
        return tuple(sums[i] for i in range(len(sums)))

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

    def __enter__(self) -> SparkFeatureBatches:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def spark_feature_batches(sdf: DataFrame, *, unit: Any, spec: FeatureSpec, seed: int | None = None) -> SparkFeatureBatches:
    """The bounded feature rows of the store rows ``sdf`` (:func:`dplogs.detect.spark_features.feature_rows`),
    persisted on the executors as the training loops' source."""
    from dplogs.detect.spark_features import feature_rows

    return SparkFeatureBatches(feature_rows(sdf, unit=unit, spec=spec, seed=seed), len(FEATURE_NAMES))
