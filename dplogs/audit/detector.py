"""One-run canary audit of the DP k-means training loop (:func:`dplogs.detect.kmeans.train_kmeans`).

Canary ``i`` is a unit with one feature row ``C·e_i`` (``C`` the clip norm, ``e_i`` the i-th
basis vector, so ``dim = m`` canaries), included in the training batches with probability ½
(:func:`~dplogs.audit.canary.canary_inclusion`); ``background`` units with zero rows make the
count realistic. The loop runs once with one cluster and one iteration — the noisy sum of the
clipped rows is then the whole release, which is the worst case for a canary — and canary ``i``'s
score is coordinate ``i`` of the trained centroid. The claim is the plan's ρ converted to (ε, δ).
The feature-extraction bound (≤ K rows per unit) is checked by the loop itself; the audit feeds
it feature batches directly.

>>> (batch,) = canary_batches(np.array([True, False, True]), clip_norm=1.0, background=2)
>>> batch.num_rows, batch.column("x").type.list_size
(4, 3)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from dplogs.audit.canary import CanaryAuditResult, canary_inclusion, one_run_audit
from dplogs.detect.kmeans import KMeansPlan, plan_kmeans, train_kmeans
from dplogs.privacy.accounting import zcdp_to_epsilon
from dplogs.privacy.charge import Charge

Trainer = Callable[[list[pa.RecordBatch], KMeansPlan, Charge], Any]


def _dp_kmeans(batches: list[pa.RecordBatch], plan: KMeansPlan, charge: Charge) -> Any:
    return train_kmeans(batches, plan=plan, charge=charge, init=np.zeros((plan.k, plan.dim)), min_count=1.0)


def canary_batches(included: np.ndarray, *, clip_norm: float, background: int) -> list[pa.RecordBatch]:
    """Feature batches: the included canaries' rows ``C·e_i`` plus ``background`` zero rows."""
    m = len(included)
    idx = np.flatnonzero(included)
    x = np.zeros((len(idx) + background, m))
    x[np.arange(len(idx)), idx] = clip_norm
    unit_id = np.arange(len(x), dtype=np.int64)
    col = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), m)
    return [pa.RecordBatch.from_arrays([pa.array(unit_id), col], names=["unit_id", "x"])]


def kmeans_canary_audit(
    *, canaries: int = 1000, rho: float = 2.0, delta: float = 1e-5, background: int = 200,
    guesses: int | None = None, alpha: float = 0.05, trainer: Trainer = _dp_kmeans,
) -> CanaryAuditResult:
    """Train once with canaries and return the ε lower bound. ``guesses`` (default m/5) is split
    evenly between "in" and "out" guesses."""
    plan = plan_kmeans(k=1, dim=canaries, iterations=1, rho=rho, max_rows_per_unit=1, clip_norm=1.0)
    included = canary_inclusion(canaries)
    batches = canary_batches(included, clip_norm=plan.clip_norm, background=background)
    model = trainer(batches, plan, Charge.for_audit(plan.loss))
    scores = np.asarray(model.centroids)[0]
    g = guesses if guesses is not None else max(2, canaries // 5)
    return one_run_audit(
        scores, included, claimed_epsilon=zcdp_to_epsilon(plan.loss.rho, delta), delta=delta,
        k_pos=g // 2, k_neg=g - g // 2, alpha=alpha, name=f"dp k-means (ρ={rho:g})",
    )


def dpsgd_canary_audit(
    *, canaries: int = 1000, epsilon: float = 4.0, delta: float = 1e-5, sampling_rate: float = 0.25,
    steps: int = 40, guesses: int | None = None, alpha: float = 0.05, noise: bool = True,
) -> CanaryAuditResult:
    """One-run audit of the DP-SGD step (gradient-space canaries): canary ``i`` is a unit whose
    clipped gradient is ``C·e_i``; each step Poisson-samples units with the loop's own exact
    Bernoulli (:func:`~dplogs.privacy.randomness.bernoulli`) and noises the gradient sum with the
    loop's own :class:`~dplogs.privacy.dpsgd.GradientNoise`. The score of canary ``i`` is the sum
    over steps of coordinate ``i``; the claim is the PLD accountant's ε at ``delta``. ``noise=False``
    is the broken fixture (the same loop without noise)."""
    from dplogs.privacy.dpsgd import GradientNoise, plan_dpsgd
    from dplogs.privacy.randomness import bernoulli

    plan = plan_dpsgd(epsilon=epsilon, delta=delta, sampling_rate=sampling_rate, steps=steps, clip_norm=1.0)
    included = canary_inclusion(canaries)
    step_noise = GradientNoise(plan, charge=Charge.for_audit(plan.loss))
    total = np.zeros(canaries)
    for _ in range(plan.steps):
        grad = (bernoulli(plan.sampling_rate, canaries) & included) * plan.clip_norm
        total += step_noise(grad) if noise else grad
    g = guesses if guesses is not None else max(2, canaries // 5)
    return one_run_audit(
        total, included, claimed_epsilon=plan.epsilon, delta=delta, k_pos=g // 2, k_neg=g - g // 2,
        alpha=alpha, name=f"DP-SGD step (ε={plan.epsilon:.3g}, q={plan.sampling_rate:g}, T={plan.steps})",
    )
