"""The fast discrete Laplace sampler against the exact pmf and against OpenDP's sampler.

The sampler draws from the OS CSPRNG, so it cannot be seeded: each test fails by chance with
probability below 1e-5 (the p-value threshold), and a wrong distribution fails it for certain at
these sample sizes (at scale 1, 1e6 draws reject a 1% error in the scale with p < 1e-15).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from dplogs.errors import PrivacyParameterError
from dplogs.privacy import sampler
from dplogs.privacy.sampler import discrete_laplace, supports

P_MIN = 1e-5


def _pmf_bins(scale: float, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Expected counts for x in [-K, K] plus the two tails beyond, K chosen so every bin
    expects >= 20 draws: P(X = x) = (1-q)/(1+q) q^|x|, P(X > K) = q^(K+1)/(1+q), q = e^(-1/b)."""
    q = math.exp(-1 / float(scale))
    k = 0
    while n * (1 - q) / (1 + q) * q ** (k + 1) >= 20 and n * q ** (k + 2) / (1 + q) >= 20:
        k += 1
    xs = np.arange(-k, k + 1)
    centre = n * (1 - q) / (1 + q) * q ** np.abs(xs)
    tail = n * q ** (k + 1) / (1 + q)
    return np.concatenate([[tail], centre, [tail]]), xs, k


def _observed(draws: np.ndarray, k: int) -> np.ndarray:
    centre = np.bincount(np.clip(draws, -k - 1, k + 1) + k + 1, minlength=2 * k + 3)
    return centre.astype(float)


@pytest.mark.slow
@pytest.mark.parametrize("scale", [0.4, 1.0, 10 / 3, 25.0])
def test_matches_exact_pmf_including_tails(scale):
    n = 1_000_000
    draws = discrete_laplace(scale, n)
    expected, _, k = _pmf_bins(scale, n)
    observed = _observed(draws, k)
    assert observed.sum() == n
    assert observed[0] > 0 and observed[-1] > 0  # both tails are populated
    p = stats.chisquare(observed, expected * n / expected.sum()).pvalue
    assert p > P_MIN, f"chi-square p={p:.2e} at scale {scale}"


def test_symmetric_and_exact_zero_mass():
    # P(X = 0) = (1-q)/(1+q): the "-0" rejection must not double the mass at zero
    n, scale = 200_000, 1.0
    draws = discrete_laplace(scale, n)
    q = math.exp(-1)
    p0 = (1 - q) / (1 + q)
    zeros = int((draws == 0).sum())
    assert stats.binomtest(zeros, n, p0).pvalue > P_MIN
    assert stats.binomtest(int((draws > 0).sum()), n - zeros, 0.5).pvalue > P_MIN


def test_overflow_fallbacks_are_exact():
    # t = 2^62 - 1 forces den·k >= 2^63 in Algorithm 1 (k >= 2) and U + t·V >= 2^63 (V >= 3),
    # so the Python-integer paths carry a large share of the draws
    scale = Fraction(2**62 - 1, 2**61)
    assert supports(scale)
    n = 100_000
    draws = discrete_laplace(scale, n)
    expected, _, k = _pmf_bins(float(scale), n)
    p = stats.chisquare(_observed(draws, k), expected * n / expected.sum()).pvalue
    assert p > P_MIN


def test_scalar_bernoulli_exp_matches_its_rate():
    hits = sum(sampler._bernoulli_exp_scalar(1, 3, 1) for _ in range(20_000))
    assert stats.binomtest(hits, 20_000, math.exp(-1 / 3)).pvalue > P_MIN


def test_vector_bernoulli_exp_matches_its_rate():
    num = np.full(200_000, 2, dtype=np.uint64)
    hits = int(sampler._bernoulli_exp(num, 7).sum())
    assert stats.binomtest(hits, 200_000, math.exp(-2 / 7)).pvalue > P_MIN


@pytest.mark.slow
def test_two_sample_against_opendp():
    import opendp.prelude as dp

    dp.enable_features("contrib")
    scale, n = 2.5, 150_000
    meas = dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=scale)
    theirs = np.asarray(meas([0] * n), dtype=np.int64)
    ours = discrete_laplace(scale, n)
    k = 12
    table = np.vstack([_observed(ours, k), _observed(theirs, k)])
    p = stats.chi2_contingency(table).pvalue
    assert p > P_MIN, f"two-sample chi-square p={p:.2e}"


@pytest.mark.parametrize("scale", [0.0, -1.0, 1e30, 2.0**-70])
def test_refuses_scales_it_cannot_represent(scale):
    if scale > 0:
        assert not supports(scale)
    with pytest.raises(PrivacyParameterError):
        discrete_laplace(scale, 10)


def test_sizes():
    assert discrete_laplace(1.0, 0).shape == (0,)
    assert discrete_laplace(1.0, 7).dtype == np.int64


def test_add_noise_uses_the_exact_distribution_of_its_plan():
    from dplogs.privacy.charge import Charge
    from dplogs.privacy.mechanisms import add_noise, calibrate
    from dplogs.privacy.sensitivity import Sensitivity

    plan = calibrate(mechanism="laplace", sensitivity=Sensitivity(l1=3, l2=3), epsilon=0.9, integer=True)
    n = 200_000
    values = np.full((n // 2, 2), 1000, dtype=np.int64)  # shape is kept
    noisy = add_noise(values, plan, charge=Charge.for_audit(plan.loss))
    assert noisy.shape == values.shape and noisy.dtype == np.int64
    expected, _, k = _pmf_bins(plan.scale, n)
    p = stats.chisquare(_observed((noisy - 1000).ravel(), k), expected * n / expected.sum()).pvalue
    assert p > P_MIN


# -- discrete Gaussian ------------------------------------------------------------------------


def _gauss_bins(sigma: float, n: int) -> tuple[np.ndarray, int]:
    """Expected counts for x in [-K, K] plus both tails, P(x) ∝ exp(-x²/2σ²), K chosen so every
    bin expects >= 20 draws (normalised over |x| <= 60σ + 60, beyond which mass is < 1e-700)."""
    xs = np.arange(-int(60 * sigma) - 60, int(60 * sigma) + 61)
    w = np.exp(-(xs.astype(float) ** 2) / (2 * sigma**2))
    p = w / w.sum()
    k = 0
    while n * p[xs == k + 1][0] >= 20 and n * p[xs > k + 1].sum() >= 20:
        k += 1
    centre = n * p[(xs >= -k) & (xs <= k)]
    tail = n * p[xs > k].sum()
    return np.concatenate([[tail], centre, [tail]]), k


@pytest.mark.slow
@pytest.mark.parametrize("sigma", [0.6, 3.7, 7 * math.sqrt(2)])
def test_gaussian_matches_exact_pmf_including_tails(sigma):
    from dplogs.privacy.sampler import discrete_gaussian

    n = 200_000
    draws = discrete_gaussian(sigma, n)
    expected, k = _gauss_bins(sigma, n)
    observed = _observed(draws, k)
    assert observed[0] > 0 and observed[-1] > 0
    p = stats.chisquare(observed, expected * n / expected.sum()).pvalue
    assert p > P_MIN, f"chi-square p={p:.2e} at sigma {sigma}"


@pytest.mark.slow
def test_gaussian_two_sample_against_opendp():
    import opendp.prelude as dp

    from dplogs.privacy.sampler import discrete_gaussian

    dp.enable_features("contrib")
    sigma, n = 2.3, 20_000
    meas = dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=int), scale=sigma)
    theirs = np.asarray(meas([0] * n), dtype=np.int64)
    ours = discrete_gaussian(sigma, n)
    table = np.vstack([_observed(ours, 6), _observed(theirs, 6)])
    assert stats.chi2_contingency(table).pvalue > P_MIN


def test_big_bernoulli_exp_matches_its_rate():
    num = np.array([5] * 100_000 + [1] * 100_000, dtype=object)  # exp(-5/2) and exp(-1/2)
    hits = sampler._bernoulli_exp_big(num, 2)
    assert stats.binomtest(int(hits[:100_000].sum()), 100_000, math.exp(-2.5)).pvalue > P_MIN
    assert stats.binomtest(int(hits[100_000:].sum()), 100_000, math.exp(-0.5)).pvalue > P_MIN


def test_big_bernoulli_ratio_settles_ties_exactly(monkeypatch):
    # force the 2⁻⁶⁴-probability tie on every lane: the answer must then be Bernoulli(remainder)
    den = 3 * 2**70 + 1
    num = np.array([2**70] * 30_000, dtype=object)
    top = (2**70 << 64) // den
    remainder = (2**70 << 64) % den
    monkeypatch.setattr(sampler, "_random_words", lambda n, width: np.full(n, top, dtype=np.uint64))
    hits = int(sampler._bernoulli_ratio_big(num, den).sum())
    assert stats.binomtest(hits, 30_000, remainder / den).pvalue > P_MIN


def test_add_noise_gaussian_uses_the_fast_exact_sampler(monkeypatch):
    from dplogs.privacy.charge import Charge
    from dplogs.privacy.mechanisms import add_noise, calibrate
    from dplogs.privacy.sensitivity import Sensitivity

    calls = []
    real = sampler.discrete_gaussian
    monkeypatch.setattr(sampler, "discrete_gaussian", lambda s, n: calls.append((s, n)) or real(s, n))
    plan = calibrate(mechanism="gaussian", sensitivity=Sensitivity(l1=4, l2=2), rho=0.1, integer=True)
    noisy = add_noise(np.zeros(50_000, dtype=np.int64), plan, charge=Charge.for_audit(plan.loss))
    assert calls == [(plan.scale, 50_000)]
    expected, k = _gauss_bins(plan.scale, 50_000)
    assert stats.chisquare(_observed(noisy, k), expected * 50_000 / expected.sum()).pvalue > P_MIN


# -- discrete noise on a power-of-two grid (exact sums) ---------------------------------------


def test_grid_noise_is_the_integer_distribution_in_grid_units():
    """A sum on the grid 2^-3 with sensitivity 3 at ε = 0.9: values stay on the grid, the noise
    in grid units has the exact discrete Laplace pmf of scale b/g, and the charged loss is the
    continuous Laplace's Δ/b."""
    from dplogs.privacy.charge import Charge
    from dplogs.privacy.mechanisms import add_noise, calibrate
    from dplogs.privacy.sensitivity import Sensitivity

    grid = 2.0**-3
    plan = calibrate(mechanism="laplace", sensitivity=Sensitivity(l1=3, l2=3), epsilon=0.9, integer=False, grid=grid)
    assert plan.loss.epsilon == pytest.approx(0.9) and plan.scale == pytest.approx(3 / 0.9)
    n = 200_000
    values = np.full(n, 12.375)  # 99 grid steps
    noisy = add_noise(values, plan, charge=Charge.for_audit(plan.loss))
    units = (noisy - 12.375) / grid
    assert np.array_equal(units, np.trunc(units))
    expected, _, k = _pmf_bins(plan.scale / grid, n)
    p = stats.chisquare(_observed(units.astype(np.int64), k), expected * n / expected.sum()).pvalue
    assert p > P_MIN
    assert plan.ci_halfwidth() == pytest.approx(math.log(20) * plan.scale, abs=grid)  # the continuous CI, to a step


def test_grid_noise_refuses_values_off_its_grid_and_bad_grids():
    from dplogs.errors import InternalError
    from dplogs.privacy.charge import Charge
    from dplogs.privacy.mechanisms import add_noise, calibrate
    from dplogs.privacy.sensitivity import Sensitivity

    sens = Sensitivity(l1=3, l2=3)
    plan = calibrate(mechanism="gaussian", sensitivity=sens, rho=0.5, integer=False, grid=0.25)
    assert plan.loss.rho == pytest.approx(0.5)
    with pytest.raises(InternalError, match="off its noise grid"):
        add_noise(np.array([1.0, 0.1]), plan, charge=Charge.for_audit(plan.loss))
    for grid in (0.3, 0.0, -0.5, float("inf")):
        with pytest.raises(InternalError, match="power of two"):
            calibrate(mechanism="laplace", sensitivity=sens, epsilon=1.0, integer=False, grid=grid)
    with pytest.raises(InternalError, match="power of two"):
        calibrate(mechanism="laplace", sensitivity=sens, epsilon=1.0, integer=True, grid=0.5)
