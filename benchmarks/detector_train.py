"""Training throughput of each DP loop next to its non-private twin, in the same run, at 1e6
feature rows (the 36 store and peer features a model sees, 16 Arrow batches of 65,536 rows).

- k-means: one Lloyd iteration reads every batch; the DP iteration adds one Gaussian draw for the
  k×d sums and one integer Gaussian draw for the k counts.
- DP-SGD autoencoder: one step Poisson-samples units (exact Bernoulli over all 1e6 units) and
  scans every batch for the sampled rows; the DP step adds per-example clipping and one exact
  discrete Gaussian draw for all parameters (the vectorised sampler). The twin samples the same way, without clip and noise.

Reports feature rows/s (rows read per iteration ÷ CPU time per iteration; a DP-SGD step reads all
rows to apply the unit sample, and computes gradients only for the ≈ q·n sampled ones), CPU time per iteration
and the DP/non-private ratio (target ≤ 2×); wall times go to stderr. The noise draw is also timed alone, so the part of the gap
due to exact sampling is visible. Timings are medians of several repeats; the machine is shared,
so expect noise.

Run: ``python benchmarks/detector_train.py [--rows 1000000] [--repeats 5]``.
"""

from __future__ import annotations

import os

# numpy's OpenBLAS threads spin-wait on a busy shared machine and turn the skinny matmuls of these
# loops into seconds of CPU; one thread per process is faster here and is what Spark executors run.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import statistics
import sys
import time

import numpy as np

from dplogs.detect.autoencoder import AutoencoderConfig, init_params, train_autoencoder, train_autoencoder_nonprivate
from dplogs.detect.features import FEATURE_NAMES, clip_rows, feature_batches
from dplogs.detect.kmeans import init_centroids, plan_kmeans, train_kmeans, train_kmeans_nonprivate
from dplogs.detect.peers import PEER_FEATURE_NAMES
from dplogs.privacy import Charge
from dplogs.privacy.dpsgd import GradientNoise, plan_dpsgd
from dplogs.privacy.randomness import random_uint64


def _rows(n: int, d: int) -> np.ndarray:
    # synthetic feature rows in [0, 1]^d (timing only; values do not matter)
    u = (random_uint64(n * d) >> np.uint64(11)).astype(np.float64) / 2.0**53
    return clip_rows(u.reshape(n, d) * 0.3, 1.0)


def _median_time(fn, repeats: int) -> float:
    """Median CPU seconds of this process (all threads): on a shared machine wall time mostly
    measures the other tenants; the wall-clock median is printed to stderr alongside."""
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    print(f"  cpu {statistics.median(cpu):.3f}s wall {statistics.median(wall):.3f}s", file=sys.stderr)
    return statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    d, n = len(FEATURE_NAMES) + len(PEER_FEATURE_NAMES), args.rows  # the model's row: store + peer features
    x = _rows(n, d)
    batches = feature_batches(x, np.arange(n))
    report = {"rows": n, "dim": d, "batches": len(batches)}

    k, iters = 8, 2
    init = init_centroids(k, d, 1.0)
    plan = plan_kmeans(k=k, dim=d, iterations=iters, rho=1.0, max_rows_per_unit=1, clip_norm=1.0)
    t_np = _median_time(lambda: train_kmeans_nonprivate(batches, init=init, iterations=iters, clip_norm=1.0), args.repeats) / iters
    t_dp = _median_time(lambda: train_kmeans(batches, plan=plan, charge=Charge.for_audit(plan.loss), init=init), args.repeats) / iters
    report["kmeans"] = {"k": k, "sec_per_iter_dp": t_dp, "sec_per_iter_nonprivate": t_np, "ratio": t_dp / t_np,
                        "rows_per_sec_dp": n / t_dp, "rows_per_sec_nonprivate": n / t_np}

    steps, hidden = 10, 8
    p0 = init_params(dim=d, hidden=hidden)
    n_params = sum(p.size for p in p0)
    report["dpsgd_autoencoder"] = []
    for q in (0.001, 0.01):  # expected batches of 1,000 and 10,000 rows
        config = AutoencoderConfig(hidden=hidden, steps=steps, sampling_rate=q, expected_batch_size=q * n)
        sgd = plan_dpsgd(epsilon=1.0, delta=1e-6, sampling_rate=q, steps=steps, clip_norm=0.05)
        t_np = _median_time(lambda: train_autoencoder_nonprivate(batches, dim=d, config=config, init=p0), args.repeats) / steps
        t_dp = _median_time(lambda: train_autoencoder(batches, dim=d, config=config, plan=sgd, max_rows_per_unit=1,
                                                      charge=Charge.for_audit(sgd.loss), init=p0), args.repeats) / steps
        noise = GradientNoise(sgd, charge=Charge.for_audit(sgd.loss))
        t_noise = _median_time(lambda: noise(np.zeros(n_params)), min(args.repeats, steps))
        report["dpsgd_autoencoder"].append({
            "params": n_params, "sampling_rate": q, "expected_batch": q * n,
            "sec_per_step_dp": t_dp, "sec_per_step_nonprivate": t_np, "ratio": t_dp / t_np,
            "rows_per_sec_dp": n / t_dp, "rows_per_sec_nonprivate": n / t_np,
            "sec_noise_draw_per_step": t_noise, "ratio_without_noise": (t_dp - t_noise) / t_np,
        })
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
