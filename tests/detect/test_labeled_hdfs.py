"""Smoke test on real labelled data: DP detectors trained on a small HDFS subset separate
anomalous block sessions from normal ones (AUROC well above chance). The full evaluation is
benchmarks/detector_eval.py."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from dplogs.detect.autoencoder import AutoencoderConfig, train_autoencoder
from dplogs.detect.features import clip_rows, feature_batches
from dplogs.detect.kmeans import plan_kmeans, train_kmeans
from dplogs.detect.sessions import count_vectors
from dplogs.privacy import Charge
from dplogs.privacy.dpsgd import plan_dpsgd, rho_for_epsilon

VOCAB, CAP = 34, 300  # Landauer/loghub HDFS template ids 1..33; public length cap


def _sessions(path):
    with gzip.open(path, "rt") as f:
        return [[int(t) for t in line.strip().split(",")[-1].split()] for line in f if line.strip()]


@pytest.fixture(scope="module")
def hdfs(datasets_dir):
    d = datasets_dir / "labeled" / "hdfs_full_sampled"
    if not (d / "loghub_hdfs_train.gz").is_file():
        pytest.skip(f"labelled HDFS sessions not found under {d}")
    normal = clip_rows(count_vectors(_sessions(d / "loghub_hdfs_train.gz"), vocab_size=VOCAB, cap=CAP), 1.0)
    anomal = clip_rows(count_vectors(_sessions(d / "loghub_hdfs_test_abnormal.gz"), vocab_size=VOCAB, cap=CAP), 1.0)
    # interleaved, not head/tail: the files are in log order and a temporal split shifts the normals
    return normal[0::2], normal[1::2], anomal[::5]


def _auroc(s_normal, s_anomal):
    return mannwhitneyu(s_anomal, s_normal).statistic / (len(s_normal) * len(s_anomal))


@pytest.mark.slow
def test_dp_detectors_beat_chance_on_hdfs(hdfs):
    train, test_normal, test_anomal = hdfs
    batches = feature_batches(train, np.arange(len(train)))
    plan = plan_kmeans(k=8, dim=VOCAB, iterations=3, rho=rho_for_epsilon(4.0, 1e-6), max_rows_per_unit=1, clip_norm=1.0)
    km = train_kmeans(batches, plan=plan, charge=Charge.for_audit(plan.loss))
    sgd = plan_dpsgd(epsilon=4.0, delta=1e-6, sampling_rate=0.2, steps=100, clip_norm=0.02)
    config = AutoencoderConfig(hidden=8, steps=100, sampling_rate=0.2, expected_batch_size=0.2 * len(train))
    ae = train_autoencoder(batches, dim=VOCAB, config=config, plan=sgd, max_rows_per_unit=1, charge=Charge.for_audit(sgd.loss))
    assert _auroc(ae.scores(test_normal), ae.scores(test_anomal)) > 0.9  # 0.99 typical
    assert _auroc(km.scores(test_normal), km.scores(test_anomal)) > 0.7  # 0.84-0.95 typical
