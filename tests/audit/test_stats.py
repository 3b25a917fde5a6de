"""Clopper–Pearson bounds and the ε lower bound, checked against scipy.stats.beta."""

import math

import numpy as np
import pytest
from scipy.stats import beta

from dplogs.audit import audit_outputs, clopper_pearson, epsilon_lower_bound


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (5, 10), (10, 10), (37, 1000), (9990, 10000)])
@pytest.mark.parametrize("use_scipy", [True, False])
def test_clopper_pearson_matches_scipy_beta(k, n, use_scipy):
    lo, hi = clopper_pearson(k, n, alpha=0.05, use_scipy=use_scipy)
    want_lo = 0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1)
    want_hi = 1.0 if k == n else beta.ppf(0.975, k + 1, n - k)
    assert lo == pytest.approx(want_lo, abs=1e-9)
    assert hi == pytest.approx(want_hi, abs=1e-9)


def test_clopper_pearson_rejects_bad_input():
    with pytest.raises(ValueError):
        clopper_pearson(5, 3)
    with pytest.raises(ValueError):
        clopper_pearson(1, 3, alpha=0)


def test_epsilon_lower_bound_formula():
    tp, fp, n = 700, 100, 1000
    lo = beta.ppf(0.025, tp, n - tp + 1)
    hi = beta.ppf(0.975, fp + 1, n - fp)
    assert epsilon_lower_bound(tp=tp, n_pos=n, fp=fp, n_neg=n) == pytest.approx(math.log(lo / hi))
    delta = 0.1
    assert epsilon_lower_bound(tp=tp, n_pos=n, fp=fp, n_neg=n, delta=delta) == pytest.approx(
        math.log((lo - delta) / hi)
    )
    # a test no better than chance proves nothing
    assert epsilon_lower_bound(tp=100, n_pos=1000, fp=100, n_neg=1000) == 0.0


def test_identical_distributions_give_no_violation():
    """Same outputs on D and D′ (ε = 0 path): the bound stays at (about) zero."""
    x = np.arange(4000) % 17
    r = audit_outputs(x, x[::-1], claimed_epsilon=0.01)
    assert not r.violated


def test_coverage_of_the_lower_bound():
    """Over many repetitions, ε_lb exceeds the true ε of a randomised-response path at most ~5% of
    the time (it is a 95% lower bound). Randomised response with p = e/(1+e) has ε = 1 exactly."""
    p = math.e / (1 + math.e)
    exceed = 0
    reps = 200
    rng = np.random.default_rng(7)  # test-side randomness only: this simulates an ideal path
    for _ in range(reps):
        tp = int(rng.binomial(2000, p))
        fp = int(rng.binomial(2000, 1 - p))
        exceed += epsilon_lower_bound(tp=tp, n_pos=2000, fp=fp, n_neg=2000) > 1.0
    assert exceed / reps <= 0.05


def test_auditor_gives_the_same_bound_without_scipy(monkeypatch):
    """scipy is a dev dependency: without it the package's exact fallback gives the same ε_lb."""
    from dplogs.audit import stats

    pos = np.arange(6000) % 23
    neg = (np.arange(6000) * 7) % 19
    with_scipy = audit_outputs(pos, neg, claimed_epsilon=1.0)
    monkeypatch.setattr(stats, "_beta", None)
    without = audit_outputs(pos, neg, claimed_epsilon=1.0)
    assert (without.tp, without.fp, without.threshold) == (with_scipy.tp, with_scipy.fp, with_scipy.threshold)
    assert without.epsilon_lb == pytest.approx(with_scipy.epsilon_lb, abs=1e-9)
