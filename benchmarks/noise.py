"""Noise draws per second for a 1M-group release: OpenDP's exact discrete Laplace vs dplogs'
exact vectorised sampler (dplogs.privacy.sampler), measured in the same run.

    .venv/bin/python benchmarks/noise.py [--draws 1000000] [--repeat 3]

Prints one line per scale on stdout (best of ``--repeat`` timings; the machine is shared, so
the best run is the least disturbed one) and the ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import opendp.prelude as dp

from dplogs.privacy.sampler import discrete_laplace

dp.enable_features("contrib")


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    n = args.draws
    print(f"{'scale':>10} {'opendp draws/s':>15} {'dplogs draws/s':>15} {'ratio':>7}")
    for scale in (1.0, 10 / 3, 20.0, 1000.0):
        meas = dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=scale)
        zeros = [0] * n
        t_opendp = _best(lambda: np.asarray(meas(zeros), dtype=np.int64), args.repeat)
        t_ours = _best(lambda: discrete_laplace(scale, n), args.repeat)
        print(f"{scale:>10.4g} {n / t_opendp:>15,.0f} {n / t_ours:>15,.0f} {t_opendp / t_ours:>6.1f}x", flush=True)


if __name__ == "__main__":
    main()
