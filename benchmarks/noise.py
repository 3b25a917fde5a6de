"""Noise draws per second for a 1M-group release: OpenDP's exact discrete Laplace and discrete
Gaussian vs dplogs' exact vectorised samplers (dplogs.privacy.sampler), measured in the same run.

    .venv/bin/python benchmarks/noise.py [--draws 1000000] [--gaussian-draws 100000] [--repeat 2]

(OpenDP's discrete Gaussian runs ~1e4-3e4 draws/s, hence the smaller default for it.)

Prints one line per scale on stdout (best of ``--repeat`` timings; the machine is shared, so
the best run is the least disturbed one) and the ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import opendp.prelude as dp

from dplogs.privacy.sampler import discrete_gaussian, discrete_laplace

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
    ap.add_argument("--gaussian-draws", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    print(f"{'noise':>9} {'scale':>8} {'draws':>9} {'opendp draws/s':>15} {'dplogs draws/s':>15} {'ratio':>7}")
    cases = [("laplace", s, args.draws) for s in (1.0, 10 / 3, 20.0, 1000.0)]
    cases += [("gaussian", s, args.gaussian_draws) for s in (1.0, 7 * 2**0.5, 100.0)]
    for noise, scale, n in cases:
        make, metric, ours = (
            (dp.m.make_laplace, dp.l1_distance(T=int), discrete_laplace) if noise == "laplace"
            else (dp.m.make_gaussian, dp.l2_distance(T=int), discrete_gaussian)
        )
        meas = make(dp.vector_domain(dp.atom_domain(T=int)), metric, scale=scale)
        zeros = [0] * n
        t_opendp = _best(lambda: np.asarray(meas(zeros), dtype=np.int64), args.repeat)
        t_ours = _best(lambda: ours(scale, n), args.repeat)
        print(f"{noise:>9} {scale:>8.4g} {n:>9,} {n / t_opendp:>15,.0f} {n / t_ours:>15,.0f} {t_opendp / t_ours:>6.1f}x", flush=True)


if __name__ == "__main__":
    main()
