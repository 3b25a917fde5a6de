"""add_noise produces the declared distribution, for all four kinds (integer/float × Laplace/
Gaussian): chi-square against the exact pmf for the discrete kinds, Kolmogorov–Smirnov against
the exact cdf for the float kinds, and the variance against the declared one. Fixed significance
1e-4 per test, so a correct sampler fails CI about once in 10 000 runs."""

import math

import numpy as np
import pytest
from scipy import stats

from dplogs.privacy import Charge, Sensitivity, add_noise, calibrate

N = 20_000
P_MIN = 1e-4


def _draw(plan, n=N, *, at=0):
    values = np.full(n, at, dtype=np.int64 if plan.integer else np.float64)
    return add_noise(values, plan, charge=Charge.for_audit(plan.loss)) - at


def _chi_square(noise: np.ndarray, pmf) -> float:
    """p-value of a chi-square test on integer support, pooling tails with expected count < 5."""
    lo, hi = -1, 1
    while pmf(lo - 1) * len(noise) >= 5:
        lo -= 1
    while pmf(hi + 1) * len(noise) >= 5:
        hi += 1
    support = np.arange(lo, hi + 1)
    p = np.array([pmf(k) for k in support])
    p_low, p_high = 1 - p.sum() - (1 - p.sum()) / 2, (1 - p.sum()) / 2  # symmetric tails
    expected = np.concatenate([[p_low], p, [p_high]]) * len(noise)
    observed = np.concatenate([[np.sum(noise < lo)], [np.sum(noise == k) for k in support], [np.sum(noise > hi)]])
    return stats.chisquare(observed, expected).pvalue


@pytest.mark.parametrize("scale_eps", [(1.0, 1.0), (3.0, 1.0), (1.0, 0.2)])
def test_integer_laplace_matches_the_discrete_laplace_pmf(scale_eps):
    l1, eps = scale_eps
    plan = calibrate(mechanism="laplace", sensitivity=Sensitivity(l1=l1, l2=l1), epsilon=eps, integer=True)
    b = l1 / eps
    assert plan.scale == b
    q = math.exp(-1 / b)
    noise = _draw(plan, at=17)
    assert noise.dtype.kind == "i"
    pmf = lambda k: (1 - q) / (1 + q) * q ** abs(k)  # noqa: E731
    assert _chi_square(noise, pmf) > P_MIN
    var = 2 * q / (1 - q) ** 2
    assert abs(noise.var() / var - 1) < 5 * math.sqrt(5 / N)  # rel. sd of a Laplace variance: √((κ−1)/n), κ = 6


@pytest.mark.parametrize("sigma_rho", [(1.0, 0.5), (4.0, 0.5)])
def test_integer_gaussian_matches_the_discrete_gaussian_pmf(sigma_rho):
    l2, rho = sigma_rho
    plan = calibrate(mechanism="gaussian", sensitivity=Sensitivity(l1=l2, l2=l2), rho=rho, integer=True)
    sigma = l2 / math.sqrt(2 * rho)
    assert plan.scale == pytest.approx(sigma)
    ks = np.arange(-int(12 * sigma) - 5, int(12 * sigma) + 6)
    w = np.exp(-(ks.astype(float) ** 2) / (2 * sigma**2))
    z = w.sum()
    table = dict(zip(ks.tolist(), (w / z).tolist()))
    noise = _draw(plan, at=-3)
    assert _chi_square(noise, lambda k: table.get(int(k), 0.0)) > P_MIN
    var = sum(p * k * k for k, p in table.items())
    assert abs(noise.var() / var - 1) < 5 * math.sqrt(2 / N)


@pytest.mark.parametrize("eps", [1.0, 0.1])
def test_float_laplace_matches_the_laplace_cdf(eps):
    plan = calibrate(mechanism="laplace", sensitivity=Sensitivity(l1=2.0, l2=2.0), epsilon=eps, integer=False)
    noise = _draw(plan, n=10_000, at=123.25)
    assert stats.kstest(noise, stats.laplace(scale=2.0 / eps).cdf).pvalue > P_MIN
    assert abs(noise.var() / (2 * (2.0 / eps) ** 2) - 1) < 5 * math.sqrt(5 / 10_000)


@pytest.mark.parametrize("rho", [0.5, 0.02])
def test_float_gaussian_matches_the_normal_cdf(rho):
    plan = calibrate(mechanism="gaussian", sensitivity=Sensitivity(l1=3.0, l2=3.0), rho=rho, integer=False)
    sigma = 3.0 / math.sqrt(2 * rho)
    noise = _draw(plan, n=10_000, at=-7.5)
    assert stats.kstest(noise, stats.norm(scale=sigma).cdf).pvalue > P_MIN
    assert abs(noise.var() / sigma**2 - 1) < 5 * math.sqrt(2 / 10_000)


def test_noise_is_fresh_per_cell_and_per_call():
    plan = calibrate(mechanism="laplace", sensitivity=Sensitivity(l1=1, l2=1), epsilon=1.0, integer=False)
    a, b = _draw(plan, n=1000), _draw(plan, n=1000)
    assert len(np.unique(a)) > 990 and not np.array_equal(a, b)
    # independence across cells: lag-1 correlation is ~N(0, 1/n)
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 5 / math.sqrt(1000)
