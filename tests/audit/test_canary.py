"""One-run canary audit: the p-value against scipy's binomial, and the bound on known paths."""

import math

import numpy as np
import pytest
from scipy.stats import binom

from dplogs.audit.canary import canary_epsilon_lower_bound, canary_inclusion, one_run_audit, p_value
from dplogs.privacy import Charge, Sensitivity, add_noise, calibrate


@pytest.mark.parametrize("r,v,eps", [(100, 70, 0.5), (200, 170, 1.0), (50, 50, 2.0), (10, 0, 0.1)])
def test_p_value_without_delta_is_the_binomial_tail(r, v, eps):
    q = math.exp(eps) / (1 + math.exp(eps))
    assert p_value(m=1000, r=r, v=v, epsilon=eps, delta=0.0) == pytest.approx(binom.sf(v - 1, r, q), rel=1e-9)


def test_delta_only_weakens_the_bound():
    kw = dict(m=1000, r=200, v=170)
    assert canary_epsilon_lower_bound(**kw, delta=1e-5) <= canary_epsilon_lower_bound(**kw, delta=0.0)
    # at the bound, the p-value sits at alpha
    lb = canary_epsilon_lower_bound(**kw, delta=0.0)
    assert p_value(**kw, epsilon=lb, delta=0.0) < 0.05 <= p_value(**kw, epsilon=lb + 1e-6, delta=0.0)


def test_inclusion_is_fair():
    inc = canary_inclusion(20_000)
    assert inc.dtype == bool and 0.48 < inc.mean() < 0.52


def _canary_path(included: np.ndarray, *, epsilon: float, private: bool) -> np.ndarray:
    """Each canary is its own unit adding 1 to its own cell: an ε-DP release per unit when noised."""
    counts = included.astype(np.int64)
    if not private:
        return counts.astype(float)
    plan = calibrate(mechanism="laplace", sensitivity=Sensitivity(l1=1, l2=1), epsilon=epsilon, integer=True)
    return add_noise(counts, plan, charge=Charge.for_audit(plan.loss)).astype(float)


def test_one_run_audit_of_a_private_path_is_tight_and_stays_below_the_claim():
    """For the discrete Laplace every guess is right with probability exactly e^ε/(1+e^ε), so
    the audit is tight: at 95% confidence ε_lb exceeds the true ε in ≈ 5% of runs *by design*
    (measured: 4.7% of 300). CI therefore checks the claim at 1 - 1e-6 confidence (at 1e-3 it
    did fail once, 1806/2000 correct guesses where 1761 ± 15 are expected) and the power at 95%.
    A real violation is far above that: the broken paths below exceed the claim by 2-5x."""
    m, eps = 5000, 2.0
    inc = canary_inclusion(m)
    scores = _canary_path(inc, epsilon=eps, private=True)
    kw = dict(claimed_epsilon=eps, delta=0.0, k_pos=1000, k_neg=1000)
    strict = one_run_audit(scores, inc, alpha=1e-6, **kw)
    assert not strict.violated, strict.summary()
    assert one_run_audit(scores, inc, **kw).epsilon_lb > 0.75 * eps


def test_one_run_audit_catches_a_path_without_noise():
    m = 2000
    inc = canary_inclusion(m)
    r = one_run_audit(_canary_path(inc, epsilon=1.0, private=False), inc, claimed_epsilon=1.0, delta=1e-6,
                      k_pos=300, k_neg=300)
    assert r.violated and r.correct == r.guesses, r.summary()
