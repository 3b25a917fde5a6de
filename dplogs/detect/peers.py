"""Peer-group features: how far a unit-window's volume rises above that of its PEERS, the
unit-windows of the same role (the dominant ``event.module`` of the window: system, windows, web,
...), against a peer baseline that is itself a DP release.

Why a release: a peer statistic mixes other units' data into a unit's feature row, so computed
in the clear one unit would move every peer's row and the per-unit bound of training would no
longer hold. Here the baseline is released first (noise drawn against the training charge, in the
SAME ledger entry), and a row then depends only on its own unit's data and that public release
(post-processing). Scoring reuses the baseline stored in the model card.

The baseline, per peer group g (a PUBLIC enumeration: :data:`PEER_GROUPS`, the event.module
values dplogs's parsers write, anything else is "other"):

- the noisy number of bounded training rows in g (integer noise, L1 = L2 sensitivity K: a unit's
  K rows may all fall in one group), and
- the noisy sums of each row's volumes in doublings, ``min(log2(1 + x), cap) / cap`` for x =
  events and bytes (public caps), so each row adds a vector of L2 norm ≤ √2 to one group: L2
  sensitivity K·√2.

The mean of g is sums / count (post-processing). It is used only when its noise is small: the
noisy count must reach ``cap · (σ_sum + σ_count) / PEER_PRECISION`` (≈ the count at which the
mean's noise std is one doubling); otherwise the group falls back to the pooled mean of all groups
(the sum of the noisy sums and counts, free), and when that is too noisy as well the peer features
are 0. A store with few units (tens) gets no usable baseline at ε ≈ 1: the noise of a mean over
n rows is ≈ K·cap·√2 / (n·√(2ρ)) doublings.

The features: ``{events,bytes}_rise_vs_peers`` = clip((log2(1 + x) − peer mean) / RISE_CAP, 0, 1),
the rise above the peers' typical (log-mean) volume, saturating at 64×. Noise in a shared
baseline shifts every row of the group alike, so the order of the group's rows is unaffected
until it saturates.

The baseline also holds the peers' **process table**: how many training unit-windows run each
process executable, as noisy weights in :data:`PROCESS_BUCKETS` public hash buckets of the
lower-cased path (BLAKE2b, :func:`process_bucket`). A row with m distinct executables adds 1/m to
each of their buckets (L1 and L2 ≤ 1 per row, K per unit), so the same noise as the counts
applies. ``process_rarity_vs_peers`` is then the mean, over the window's executables, of
1 − log(1 + max(weight, 0)) / log(1 + PROCESS_CAP): 0 for a process every peer runs (≥ 2^20
windows), ≈ 1 for one no peer runs (0 when the window names no process). A first-seen attack tool
is rare among the peers even when its few events are each their own unit (no history to compare
with); so is any rare benign binary.

>>> b = PeerBaseline(counts=(0.0,) * len(GROUP_NAMES), sums=((0.0, 0.0),) * len(GROUP_NAMES), min_count=1.0)
>>> b.mean_doublings("web") is None, b.usable  # nothing released for the group, nor pooled
(True, False)
>>> process_bucket(r"c:\\windows\\system32\\svchost.exe")
3169
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from dplogs.detect.features import RISE_CAP, FeatureTable, clip_rows
from dplogs.errors import InternalError
from dplogs.privacy.charge import Charge
from dplogs.privacy.dpsgd import assignment_count_sensitivity, clipped_sum_sensitivity
from dplogs.privacy.mechanisms import NoisePlan, add_noise, calibrate

PEER_GROUPS: tuple[str, ...] = ("system", "windows", "web", "iis", "zeek", "aws", "cef", "leef", "suricata", "json",
                                "csv", "parquet")
"""Public peer groups: the event.module values dplogs's parsers write (a role of the source)."""
GROUP_NAMES: tuple[str, ...] = (*PEER_GROUPS, "other")
VOLUMES: tuple[tuple[str, float], ...] = (("events", 20.0), ("bytes", 40.0))
"""Per-row volumes the baseline averages, with their public caps in doublings (1M events, 1 TB)."""
PEER_FEATURE_NAMES: tuple[str, ...] = (*(f"{name}_rise_vs_peers" for name, _ in VOLUMES), "process_rarity_vs_peers")
PEER_SHARE = 0.1
"""Share of a training release's budget spent on the peer baseline (ρ for k-means, ε for the
autoencoder)."""
COUNT_SHARE = 0.3  # of the peer budget, to the group counts
PROCESS_SHARE = 0.3  # of the peer budget, to the process table (the rest, 0.4, to the volume sums)
PROCESS_BUCKETS = 4096  # public hash buckets of the process table
PROCESS_CAP = 2.0**20  # windows running a process from which it counts as fully common
PEER_PRECISION = 1.0  # doublings: the largest noise std of a group mean that is still used


@dataclass(frozen=True)
class PeerPlan:
    """Public: the noise of the peer baseline (sums of volumes and counts per group)."""

    sum_plan: NoisePlan
    count_plan: NoisePlan
    process_plan: NoisePlan

    @property
    def loss(self):
        return self.sum_plan.loss + self.count_plan.loss + self.process_plan.loss

    @property
    def min_count(self) -> float:
        """The noisy group count from which a group mean's noise std is about PEER_PRECISION
        doublings (the largest cap, with the count's noise at a mean volume of 1)."""
        cap = max(c for _, c in VOLUMES)
        return cap * (self.sum_plan.std + self.count_plan.std) / PEER_PRECISION


def plan_peers(*, max_rows_per_unit: int, rho: float | None = None, epsilon: float | None = None) -> PeerPlan:
    """Gaussian noise with ``rho`` (zCDP, k-means) or Laplace with ``epsilon`` (pure ε, composed
    with DP-SGD's (ε, δ)); COUNT_SHARE of it to the counts."""
    if (rho is None) == (epsilon is None):
        raise InternalError("the peer baseline needs exactly one of rho and epsilon")
    k = max_rows_per_unit
    sums = clipped_sum_sensitivity(max_rows_per_unit=k, clip_norm=math.sqrt(len(VOLUMES)), dim=len(VOLUMES))
    counts = assignment_count_sensitivity(max_rows_per_unit=k)
    sum_share = 1 - COUNT_SHARE - PROCESS_SHARE
    # the process table: a row's weights sum to 1 (L1 = L2 ≤ 1), so K per unit like the counts
    if rho is not None:
        return PeerPlan(calibrate(mechanism="gaussian", integer=False, rho=rho * sum_share, sensitivity=sums),
                        calibrate(mechanism="gaussian", integer=True, rho=rho * COUNT_SHARE, sensitivity=counts),
                        calibrate(mechanism="gaussian", integer=False, rho=rho * PROCESS_SHARE, sensitivity=counts))
    return PeerPlan(calibrate(mechanism="laplace", integer=False, epsilon=epsilon * sum_share, sensitivity=sums),
                    calibrate(mechanism="laplace", integer=True, epsilon=epsilon * COUNT_SHARE, sensitivity=counts),
                    calibrate(mechanism="laplace", integer=False, epsilon=epsilon * PROCESS_SHARE, sensitivity=counts))


def process_bucket(executable: str) -> int:
    """The public bucket of a (lower-cased) executable path in the process table."""
    digest = hashlib.blake2b(executable.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % PROCESS_BUCKETS


def process_weights(frame: pl.DataFrame) -> list[dict[int, float]]:
    """Per row, {bucket: weight} of its distinct executables: each of m executables weighs 1/m
    (several in one bucket add up), so a row's weights sum to 1 (0 rows without a process)."""
    cache: dict[str, int] = {}
    out = []
    for names in frame["processes"].to_list():
        row: dict[int, float] = {}
        for name in names or ():
            b = cache.setdefault(name, process_bucket(name))
            row[b] = row.get(b, 0.0) + 1.0 / len(names)
        out.append(row)
    return out


def peer_inputs(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(group index per row, volumes per row in doublings) from a feature frame's ``module``,
    ``events`` and ``bytes`` columns (the unit-window's own data)."""
    index = {g: i for i, g in enumerate(PEER_GROUPS)}
    groups = np.array([index.get(m, len(PEER_GROUPS)) for m in frame["module"].to_list()], dtype=np.int64)
    vols = np.column_stack([np.log2(1.0 + frame[name].cast(pl.Float64).fill_null(0).to_numpy()) for name, _ in VOLUMES])
    return groups, vols.reshape(len(groups), len(VOLUMES))


@dataclass(frozen=True)
class PeerBaseline:
    """Public (a DP release): noisy row ``counts`` and volume ``sums`` (each volume / its cap) per
    group of GROUP_NAMES; ``min_count`` is the public noisy count a mean needs to be used."""

    counts: tuple[float, ...]
    sums: tuple[tuple[float, ...], ...]
    min_count: float
    processes: tuple[float, ...] = (0.0,) * PROCESS_BUCKETS
    """Noisy weights of the process table per bucket (see the module docstring)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", tuple(float(c) for c in self.counts))
        object.__setattr__(self, "sums", tuple(tuple(float(v) for v in s) for s in self.sums))
        object.__setattr__(self, "processes", tuple(float(w) for w in self.processes))
        if len(self.counts) != len(GROUP_NAMES) or any(len(s) != len(VOLUMES) for s in self.sums) \
                or len(self.sums) != len(GROUP_NAMES) or len(self.processes) != PROCESS_BUCKETS:
            raise InternalError("peer baseline with a shape other than groups × volumes and the process buckets")
        if not all(math.isfinite(c) for c in (*self.counts, *self.processes)) \
                or not all(math.isfinite(v) for s in self.sums for v in s):
            raise InternalError("peer baseline with non-finite values")

    def to_dict(self) -> dict:
        return {"groups": list(GROUP_NAMES), "volumes": [n for n, _ in VOLUMES], "counts": list(self.counts),
                "sums": [list(s) for s in self.sums], "min_count": self.min_count,
                "process_buckets": PROCESS_BUCKETS, "processes": list(self.processes)}

    @classmethod
    def from_dict(cls, d: dict) -> PeerBaseline:
        from dplogs.errors import DataError

        if d.get("groups") != list(GROUP_NAMES) or d.get("volumes") != [n for n, _ in VOLUMES] \
                or d.get("process_buckets") != PROCESS_BUCKETS:
            raise DataError("the model's peer baseline uses other peer groups, volumes or process buckets than this "
                            "dplogs version; retrain it with `dplogs train`")
        try:
            return cls(counts=d["counts"], sums=d["sums"], min_count=float(d["min_count"]), processes=d["processes"])
        except (KeyError, TypeError, ValueError, InternalError):
            raise DataError("the model's peer baseline is malformed; retrain it with `dplogs train`") from None

    @property
    def usable(self) -> bool:
        """Whether any group has a mean (otherwise every peer feature is 0)."""
        return any(self.mean_doublings(g) is not None for g in GROUP_NAMES)

    def mean_doublings(self, group: str) -> np.ndarray | None:
        """The group's mean volumes in doublings, the pooled mean when the group's noisy count is
        too small, or None when that is too small as well (post-processing of the release)."""
        caps = np.array([c for _, c in VOLUMES])
        i = GROUP_NAMES.index(group)
        if self.counts[i] >= self.min_count:
            return np.asarray(self.sums[i]) / self.counts[i] * caps
        total = sum(self.counts)
        if total >= self.min_count:
            return np.asarray(self.sums).sum(axis=0) / total * caps
        return None


def peer_totals(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact (pre-noise) peer statistics of bounded training rows: row counts per group,
    volume sums per group (each volume / its cap, so a row adds ≤ √2 in L2) and the process table.
    Sums over disjoint row sets add up, so Spark computes them per partition on the executors
    (:meth:`dplogs.detect.spark_loop.SparkFeatureBatches.peer_totals`) and adds them on the driver."""
    groups, vols = peer_inputs(frame)
    caps = np.array([c for _, c in VOLUMES])
    scaled = np.minimum(vols, caps) / caps  # each entry in [0, 1]: a row's vector has L2 ≤ √2
    sums = np.zeros((len(GROUP_NAMES), len(VOLUMES)))
    np.add.at(sums, groups, scaled)
    counts = np.bincount(groups, minlength=len(GROUP_NAMES)).astype(np.int64)
    table = np.zeros(PROCESS_BUCKETS)
    for row in process_weights(frame):
        for b, w in row.items():
            table[b] += w
    return counts, sums, table


def release_peer_totals(totals: tuple[np.ndarray, np.ndarray, np.ndarray], *, plan: PeerPlan, charge: Charge) -> PeerBaseline:
    """The DP peer baseline from :func:`peer_totals` of the bounded training rows (≤ K rows per
    unit per budget window). Consumes ``plan.loss`` from ``charge`` before any noise is drawn."""
    counts, sums, table = totals
    if counts.shape != (len(GROUP_NAMES),) or sums.shape != (len(GROUP_NAMES), len(VOLUMES)) \
            or table.shape != (PROCESS_BUCKETS,):
        raise InternalError("peer totals with a shape other than groups × volumes and the process buckets")
    noisy_sums = add_noise(sums.ravel(), plan.sum_plan, charge=charge).reshape(sums.shape)
    noisy_counts = add_noise(counts, plan.count_plan, charge=charge)
    noisy_table = add_noise(table, plan.process_plan, charge=charge)
    return PeerBaseline(counts=tuple(noisy_counts.tolist()), sums=tuple(map(tuple, noisy_sums.tolist())),
                        min_count=plan.min_count, processes=tuple(noisy_table.tolist()))


def release_peers(frame: pl.DataFrame, *, plan: PeerPlan, charge: Charge) -> PeerBaseline:
    """The DP peer baseline of the bounded training rows ``frame`` (≤ K rows per unit per budget
    window). Consumes ``plan.loss`` from ``charge`` before any noise is drawn."""
    return release_peer_totals(peer_totals(frame), plan=plan, charge=charge)


def peer_features(frame: pl.DataFrame, baseline: PeerBaseline) -> np.ndarray:
    """``{events,bytes}_rise_vs_peers`` per row: the rise of the row's volumes above its peer
    group's released mean, in [0, 1] (0 without a usable baseline); ``process_rarity_vs_peers``:
    how rarely the peers run the row's executables (module docstring).

    >>> import polars as pl
    >>> n = len(GROUP_NAMES)
    >>> b = PeerBaseline(counts=(100.0,) * n, sums=((50.0, 50.0),) * n, min_count=10.0)
    >>> f = pl.DataFrame({"module": ["web", None], "events": [1023, 0], "bytes": [2**26 - 1, 0],
    ...                   "processes": [["a.exe"], []]})
    >>> peer_features(f, b).round(3).tolist()  # peers: 10 doublings of events, 20 of bytes; a.exe unseen
    [[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    """
    groups, vols = peer_inputs(frame)
    means = [baseline.mean_doublings(g) for g in GROUP_NAMES]
    out = np.zeros((len(groups), len(PEER_FEATURE_NAMES)))
    for i, mean in enumerate(means):
        rows = groups == i
        if mean is not None and rows.any():
            out[rows, : len(VOLUMES)] = np.clip((vols[rows] - mean) / RISE_CAP, 0.0, 1.0)
    rarity = 1.0 - np.log1p(np.minimum(np.maximum(np.asarray(baseline.processes), 0.0), PROCESS_CAP)) / math.log1p(PROCESS_CAP)
    out[:, len(VOLUMES)] = [sum(w * rarity[b] for b, w in row.items()) for row in process_weights(frame)]
    return out


def with_peer_features(table: FeatureTable, baseline: PeerBaseline) -> FeatureTable:
    """The table with the peer features appended and every row clipped again to L2 norm C (the
    bound of training holds for the rows the model sees)."""
    x = clip_rows(np.hstack([table.matrix(), peer_features(table.frame, baseline)]), table.spec.clip_norm)
    names = (*table.names, *PEER_FEATURE_NAMES)
    frame = table.frame.with_columns(pl.Series(name, x[:, j]) for j, name in enumerate(names))
    return FeatureTable(frame=frame, names=names, spec=table.spec)
