"""Membership inference: a loss-threshold attack on the DP-SGD autoencoder stays within what its
(ε, δ) allows (TPR ≤ e^ε·FPR + δ), while the same attack on a non-private control, trained to
overfit the same members, visibly breaks that line.

Game: each run draws 2n fresh points, trains on the first n (members) and scores all 2n; the
attack says "member" when the reconstruction error is ≤ τ. Thresholds τ come from the first half
of the runs, TPR/FPR (with Clopper-Pearson bounds) from the second half, so the thresholds do not
peek at the evaluated scores. One model per run, many examples per model: each example's
membership is a fair coin independent of the rest, so DP bounds the expected TPR/FPR pair.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dplogs.detect.autoencoder import AutoencoderConfig, init_params, train_autoencoder, train_autoencoder_nonprivate
from dplogs.detect.features import feature_batches
from dplogs.privacy import Charge
from dplogs.privacy.dpsgd import plan_dpsgd
from dplogs.privacy.randomness import random_uint64

D, N, RUNS, EPS, DELTA = 16, 24, 12, 1.0, 1e-5
QUANTILES = (0.05, 0.1, 0.25)


def _uniform(n: int) -> np.ndarray:
    return (random_uint64(n) >> np.uint64(11)).astype(np.float64) / 2.0**53


def _games(train):
    out = []
    for _ in range(RUNS):
        pool = _uniform(2 * N * D).reshape(2 * N, D)
        model = train(feature_batches(pool[:N], np.arange(N)), init_params(dim=D, hidden=6))
        out.append((model.scores(pool[:N]), model.scores(pool[N:])))
    return out


def _rates(games):
    calib, evals = games[: RUNS // 2], games[RUNS // 2:]
    non_calib = np.concatenate([non for _, non in calib])
    mem = np.concatenate([m for m, _ in evals])
    non = np.concatenate([n for _, n in evals])
    rows = []
    for q in QUANTILES:
        tau = np.quantile(non_calib, q)
        tp, fp = int((mem <= tau).sum()), int((non <= tau).sum())
        # one-sided 99% Clopper-Pearson bounds
        tpr_lo = stats.beta.ppf(0.01, tp, len(mem) - tp + 1) if tp else 0.0
        fpr_hi = stats.beta.ppf(0.99, fp + 1, len(non) - fp) if fp < len(non) else 1.0
        rows.append((tpr_lo, fpr_hi))
    return rows


@pytest.mark.slow
def test_dp_sgd_model_leaks_no_more_than_its_profile_while_the_control_does():
    plan = plan_dpsgd(epsilon=EPS, delta=DELTA, sampling_rate=1.0, steps=30, clip_norm=0.05)
    dp_cfg = AutoencoderConfig(hidden=6, steps=30, sampling_rate=1.0, expected_batch_size=N, learning_rate=0.03)
    np_cfg = AutoencoderConfig(hidden=6, steps=300, sampling_rate=1.0, expected_batch_size=N, learning_rate=0.03)

    def dp_train(batches, init):
        return train_autoencoder(batches, dim=D, config=dp_cfg, plan=plan, max_rows_per_unit=1,
                                 charge=Charge.for_audit(plan.loss), init=init)

    def control(batches, init):
        return train_autoencoder_nonprivate(batches, dim=D, config=np_cfg, init=init)

    bound = lambda fpr: math.exp(EPS) * fpr + DELTA  # noqa: E731
    for tpr_lo, fpr_hi in _rates(_games(dp_train)):
        assert tpr_lo <= bound(fpr_hi)
    control_rows = _rates(_games(control))
    assert any(tpr_lo > bound(fpr_hi) for tpr_lo, fpr_hi in control_rows), control_rows
