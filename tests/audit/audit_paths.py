"""Reference release paths for the audits, and deliberately broken variants of them.

The reference path is the whole release as DESIGN.md describes it: a keyed pseudo-random rank
with a fresh secret seed per run keeps ≤ L∞ rows per (unit, key) and ≤ L0 keys per unit, then a
per-key aggregate over the declared public keys, then noise from :func:`add_noise` with a plan
calibrated from :mod:`dplogs.privacy.sensitivity`. Broken variants change exactly one thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from dplogs.privacy import (
    Charge, Clamp, ContributionBounds, Sensitivity, calibrate, add_noise,
    count_sensitivity, distinct_units_sensitivity, sum_sensitivity,
)
from dplogs.privacy.randomness import secret_seed

KEYS = ["success", "failure", "unknown"]
VICTIM = "victim"


def dataset(*, victim_keys: list[str], victim_rows: int, victim_value: float = 1.0, others: int = 30) -> pl.DataFrame:
    """Background units with one row each (inside any bounds, so bounding them is deterministic)
    plus a victim with ``victim_rows`` rows in each of ``victim_keys``: the worst case when
    victim_rows ≥ L∞ and len(victim_keys) ≥ L0."""
    units = [f"u{i}" for i in range(others)]
    keys = [KEYS[i % 3] for i in range(others)]
    vals = [float(i % 50) for i in range(others)]
    for k in victim_keys:
        units += [VICTIM] * victim_rows
        keys += [k] * victim_rows
        vals += [victim_value] * victim_rows
    return pl.DataFrame({"unit": units, "key": keys, "value": vals})


STRICT_ALPHA = 1e-3


def assert_within_claim(result) -> None:
    """CI's check of "ε_lb never exceeds the claim": the 95% bound of a *tight* audit exceeds the
    true ε in up to 5% of runs by construction (measured 1.3% for the Laplace count at 30 000
    runs), so CI checks the same test's bound at 99.9% confidence; reports show the 95% figure."""
    strict = result.lower_bound(STRICT_ALPHA)
    assert strict <= result.claimed_epsilon, f"{result.summary()}; at 99.9%: ε_lb={strict:.4g}"


def neighbours(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    return frame, frame.filter(pl.col("unit") != VICTIM)


def bound(frame: pl.DataFrame, bounds: ContributionBounds) -> pl.DataFrame:
    seed = secret_seed()
    f = frame.with_row_index("_i").with_columns(
        pl.col("_i").hash(seed).alias("_r"), pl.col("key").hash(seed ^ 0x5BD1E995).alias("_g")
    )
    f = f.filter(pl.col("_r").rank("ordinal").over(["unit", "key"]) <= bounds.max_rows_per_group)
    return f.filter(pl.col("_g").rank("dense").over("unit") <= bounds.max_groups)


def _per_key(frame: pl.DataFrame, agg: pl.Expr, dtype) -> np.ndarray:
    got = frame.group_by("key").agg(agg.alias("v"))
    full = pl.DataFrame({"key": KEYS}).join(got, on="key", how="left").fill_null(0)
    return full["v"].to_numpy().astype(dtype)


@dataclass(frozen=True)
class CountPath:
    bounds: ContributionBounds
    mechanism: str = "laplace"
    epsilon: float | None = None
    rho: float | None = None
    sensitivity_factor: float = 1.0  # broken fixture: 0.5 under-states the sensitivity
    skip_bounding: bool = False  # broken fixture: no per-unit bound

    @property
    def plan(self):
        s = count_sensitivity(self.bounds)
        s = Sensitivity(l1=s.l1 * self.sensitivity_factor, l2=s.l2 * self.sensitivity_factor)
        return calibrate(mechanism=self.mechanism, sensitivity=s, epsilon=self.epsilon, rho=self.rho, integer=True)

    def __call__(self, frame: pl.DataFrame) -> np.ndarray:
        f = frame if self.skip_bounding else bound(frame, self.bounds)
        counts = _per_key(f, pl.len(), np.int64)
        return add_noise(counts, self.plan, charge=Charge.for_audit(self.plan.loss))


@dataclass(frozen=True)
class SumPath:
    bounds: ContributionBounds
    clamp: Clamp
    epsilon: float

    @property
    def plan(self):
        return calibrate(mechanism="laplace", sensitivity=sum_sensitivity(self.bounds, self.clamp),
                         epsilon=self.epsilon, integer=False)

    def __call__(self, frame: pl.DataFrame) -> np.ndarray:
        f = bound(frame, self.bounds)
        sums = _per_key(f, pl.col("value").clip(self.clamp.lo, self.clamp.hi).sum(), np.float64)
        return add_noise(sums, self.plan, charge=Charge.for_audit(self.plan.loss))


@dataclass(frozen=True)
class DistinctPath:
    bounds: ContributionBounds
    epsilon: float

    @property
    def plan(self):
        return calibrate(mechanism="laplace", sensitivity=distinct_units_sensitivity(self.bounds),
                         epsilon=self.epsilon, integer=True)

    def __call__(self, frame: pl.DataFrame) -> np.ndarray:
        f = bound(frame, self.bounds)
        n = _per_key(f, pl.col("unit").n_unique(), np.int64)
        return add_noise(n, self.plan, charge=Charge.for_audit(self.plan.loss))
