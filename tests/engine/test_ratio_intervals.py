"""Ratio and mean intervals (Fieller, from the noisy numerator and denominator together) cover at
least 95% under Laplace and Gaussian noise, and a cell too noisy to say anything is null."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dplogs.engine.execute import NOT_ENOUGH_DATA, _quotient


@pytest.mark.parametrize("noise", ["laplace", "gaussian"])
@pytest.mark.parametrize("num, den, scale", [(30, 100, 2.0), (5, 400, 5.0), (90, 100, 3.0), (500, 1000, 40.0)])
def test_intervals_cover_at_least_95_percent(noise, num, den, scale):
    rng = np.random.default_rng(7)  # test-only simulation of the release noise
    n = 20_000
    draw = (lambda: rng.laplace(0, scale, n)) if noise == "laplace" else (lambda: rng.normal(0, scale, n))
    std = scale * np.sqrt(2) if noise == "laplace" else scale
    value, lo, hi = _quotient(num + draw(), den + draw(), std, std, 0.0, 1.0)
    shown = ~np.isnan(value)
    assert shown.mean() > 0.99  # these cells carry enough data
    covered = (lo[shown] <= num / den) & (num / den <= hi[shown])
    # one-sided binomial test at 1e-6: a true coverage of 95% is not rejected
    assert stats.binomtest(int(covered.sum()), int(shown.sum()), 0.95, alternative="less").pvalue > 1e-6, covered.mean()


def test_a_cell_without_enough_data_is_null_not_a_0_or_1_spike():
    # a quiet hour: 0 failures of 1 login, noise of scale 3 on both: the interval spans [0, 1]
    value, lo, hi = _quotient(np.array([1.0, 40.0]), np.array([2.0, 100.0]), 3 * np.sqrt(2), 3 * np.sqrt(2), 0.0, 1.0)
    assert np.isnan(value[0]) and np.isnan(lo[0]) and np.isnan(hi[0])
    assert value[1] == pytest.approx(0.4) and hi[1] - lo[1] < NOT_ENOUGH_DATA


def test_a_quotient_noise_put_outside_the_range_is_null_not_a_narrow_0():
    """Counts of ~1,000 under noise of scale 40,000 (ε = 0.001): a denominator pushed to 200,000
    by its noise and a numerator to −100,000 gave −0.5, clipped to 0 with the interval [0, 0.08],
    released as if it said something (~0.4% of such cells; they covered the true rate 1–80% of
    the time). A quotient more than half the threshold outside the range, or an interval wholly
    outside it (1.2 ± 0.12, clipped to [1, 1]), is now null."""
    std = 40_000 * np.sqrt(2)
    value, lo, hi = _quotient(np.array([-100_000.0, 1.2e6]), np.array([200_000.0, 1e6]), std, std, 0.0, 1.0)
    assert np.isnan(value).all() and np.isnan(lo).all() and np.isnan(hi).all()


@pytest.mark.parametrize("scale", [4e4, 4e6])
def test_a_hopeless_rate_is_released_as_a_number_rarely_and_then_mostly_covers(scale):
    """Noise far above the counts: under 0.2% of cells get a number (was 0.4%), and those cover
    the true rate of 5% at least 90% of the time (was 78%)."""
    rng = np.random.default_rng(11)  # test-only simulation of the release noise
    n = 400_000
    std = scale * np.sqrt(2)
    value, lo, hi = _quotient(50 + rng.laplace(0, scale, n), 1000 + rng.laplace(0, scale, n), std, std, 0.0, 1.0)
    shown = ~np.isnan(value)
    assert shown.mean() < 0.002, shown.mean()
    assert ((lo[shown] <= 0.05) & (0.05 <= hi[shown])).mean() > 0.9
