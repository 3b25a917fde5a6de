"""Composition numbers, pinned against independent computations (closed forms and a scipy
optimisation of Canonne–Kamath–Steinke 2020, Corollary 13), not against the code's own output."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq, minimize_scalar

from dplogs.privacy.accounting import Caps, LossSums, compose, fits, remaining, zcdp_to_epsilon
from dplogs.privacy.loss import PrivacyLoss


def _cks_epsilon(rho: float, delta: float) -> float:
    """ε of ρ-zCDP at δ: δ(ε) = min_α exp((α-1)(αρ-ε)) (1-1/α)^(α-1) / α (CKS20, Cor. 13)."""

    def log_delta(eps):
        f = lambda a: (a - 1) * (a * rho - eps) + (a - 1) * math.log1p(-1 / a) - math.log(a)  # noqa: E731
        return minimize_scalar(f, bounds=(1 + 1e-9, 1e5), method="bounded", options={"xatol": 1e-12}).fun

    return brentq(lambda e: log_delta(e) - math.log(delta), 1e-6, 200, xtol=1e-12)


def _closed_form(rho: float, delta: float) -> float:
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


@pytest.mark.parametrize("rho, delta", [(0.5, 1e-6), (0.01, 1e-6), (2.0, 1e-9), (0.125, 1e-5)])
def test_zcdp_conversion_matches_cks_and_beats_closed_form(rho, delta):
    eps = zcdp_to_epsilon(rho, delta)
    assert eps == pytest.approx(_cks_epsilon(rho, delta), rel=1e-7)
    assert eps < _closed_form(rho, delta)


def test_known_numbers():
    # ρ = 0.5, δ = 1e-6: closed form 5.7565 (by hand: 0.5 + 2·√(0.5·13.8155)), tight 5.2215
    assert _closed_form(0.5, 1e-6) == pytest.approx(5.75652, abs=1e-5)
    assert zcdp_to_epsilon(0.5, 1e-6) == pytest.approx(5.22153, abs=1e-5)
    assert compose([PrivacyLoss(epsilon=0.1)] * 10, delta_cap=0).epsilon == 1.0
    basic = compose([PrivacyLoss(epsilon=0.3, delta=1e-7)] * 3, delta_cap=1e-6)
    assert basic.method == "basic"
    assert (basic.epsilon, basic.delta) == (pytest.approx(0.9), pytest.approx(3e-7))


def test_pure_only_is_exact_sum_and_zero_delta():
    t = compose([PrivacyLoss(epsilon=0.2), PrivacyLoss(epsilon=0.05)], delta_cap=1e-6)
    assert (t.epsilon, t.delta, t.rho, t.method) == (0.25, 0.0, 0.0, "pure")


def test_gaussians_add_in_rho_before_converting():
    t = compose([PrivacyLoss(rho=0.1)] * 5, delta_cap=1e-6)
    assert t.rho == pytest.approx(0.5)
    assert t.epsilon == pytest.approx(_cks_epsilon(0.5, 1e-6), rel=1e-7)
    # much tighter than converting each and adding ε
    assert t.epsilon < 5 * zcdp_to_epsilon(0.1, 1e-6 / 5)


def test_mixed_workload_takes_the_tighter_bound():
    delta = 1e-6
    # few large pure releases: adding ε beats converting them (bound A)
    few = compose([PrivacyLoss(epsilon=1.0), PrivacyLoss(rho=0.01)], delta_cap=delta)
    a = 1.0 + _cks_epsilon(0.01, delta)
    b = _cks_epsilon(0.01 + 0.5, delta)
    assert few.method == "pure+zcdp" and few.epsilon == pytest.approx(min(a, b), rel=1e-7) and a < b
    # many small pure releases: Σε²/2 in zCDP beats Σε (bound B)
    many = compose([PrivacyLoss(epsilon=0.05)] * 400 + [PrivacyLoss(rho=0.01)], delta_cap=delta)
    a = 20.0 + _cks_epsilon(0.01, delta)
    b = _cks_epsilon(0.01 + 400 * 0.05**2 / 2, delta)
    assert many.method == "all-zcdp" and many.epsilon == pytest.approx(b, rel=1e-7) and b < a
    assert many.delta == delta


def test_approximate_dp_uses_basic_composition_and_leaves_delta_for_conversion():
    delta = 1e-6
    t = compose([PrivacyLoss(epsilon=0.5, delta=4e-7), PrivacyLoss(rho=0.02)], delta_cap=delta)
    # the approximate part can not become zCDP: its ε adds, its δ leaves 6e-7 for the conversion
    assert t.epsilon == pytest.approx(0.5 + _cks_epsilon(0.02, 6e-7), rel=1e-7)
    assert t.delta == delta


def test_zcdp_without_delta_budget_is_unbounded():
    assert compose([PrivacyLoss(rho=0.01)], delta_cap=0).epsilon == math.inf
    assert compose([PrivacyLoss(rho=0.01), PrivacyLoss(epsilon=0.1, delta=1e-6)], delta_cap=1e-6).epsilon == math.inf
    assert not fits(LossSums.of([PrivacyLoss(rho=0.01)]), Caps(epsilon=100.0))


def test_rho_cap_binds_in_addition_to_epsilon():
    caps = Caps(epsilon=100.0, delta=1e-6, rho=0.1)
    assert fits(LossSums.of([PrivacyLoss(rho=0.1)]), caps)
    assert not fits(LossSums.of([PrivacyLoss(rho=0.1), PrivacyLoss(rho=0.01)]), caps)


@pytest.mark.parametrize(
    "spent, caps",
    [
        ([PrivacyLoss(epsilon=0.5), PrivacyLoss(rho=0.02)], Caps(epsilon=2.0, delta=1e-6)),
        ([PrivacyLoss(epsilon=0.01)] * 90, Caps(epsilon=1.0, delta=1e-6)),  # zCDP bound B helps
        ([PrivacyLoss(epsilon=0.3, delta=2e-7), PrivacyLoss(rho=0.001)], Caps(epsilon=1.0, delta=1e-6)),
        ([PrivacyLoss(epsilon=0.25)], Caps(epsilon=1.0, delta=1e-6, rho=0.05)),
    ],
)
def test_remaining_is_the_largest_release_that_still_fits(spent, caps):
    sums = LossSums.of(spent)
    left = remaining(sums, caps)
    assert left.epsilon > 0 and left.rho > 0
    assert fits(sums + LossSums.one(PrivacyLoss(epsilon=left.epsilon)), caps)
    assert not fits(sums + LossSums.one(PrivacyLoss(epsilon=left.epsilon * 1.001)), caps)
    assert fits(sums + LossSums.one(PrivacyLoss(rho=left.rho)), caps)
    assert not fits(sums + LossSums.one(PrivacyLoss(rho=left.rho * 1.001)), caps)
    assert left.delta == pytest.approx(caps.delta - sums.delta)


def test_many_small_pure_releases_compose_through_zcdp_when_delta_allows():
    t = compose([PrivacyLoss(epsilon=0.05)] * 400, delta_cap=1e-6)
    assert t.method == "all-zcdp" and t.delta == 1e-6
    assert t.epsilon == pytest.approx(_cks_epsilon(400 * 0.05**2 / 2, 1e-6), rel=1e-7)
    assert t.epsilon < 20.0
    assert compose([PrivacyLoss(epsilon=0.05)] * 400, delta_cap=0).epsilon == pytest.approx(20.0)


def test_remaining_when_over_the_cap_is_zero():
    left = remaining(LossSums.of([PrivacyLoss(epsilon=1.5)]), Caps(epsilon=1.0))
    assert (left.epsilon, left.rho) == (0.0, 0.0)


@pytest.mark.parametrize("bad", [dict(epsilon=0), dict(epsilon=1, delta=1.5), dict(epsilon=1, rho=-1)])
def test_caps_validate(bad):
    from dplogs.errors import PrivacyParameterError

    with pytest.raises(PrivacyParameterError):
        Caps(**bad)


_losses = st.lists(
    st.one_of(
        st.builds(PrivacyLoss, epsilon=st.floats(0.001, 2)),
        st.builds(PrivacyLoss, rho=st.floats(0.0001, 1)),
        st.builds(PrivacyLoss, epsilon=st.floats(0.001, 2), delta=st.floats(1e-12, 1e-8)),
    ),
    max_size=8,
)


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(_losses, _losses)
def test_composition_is_monotone_and_order_free(xs, ys):
    cap = 1e-6
    t_x = compose(xs, delta_cap=cap)
    t_xy = compose(xs + ys, delta_cap=cap)
    assert t_xy.epsilon >= t_x.epsilon * (1 - 1e-12)
    assert compose(ys + xs, delta_cap=cap).epsilon == pytest.approx(t_xy.epsilon, rel=1e-12)
    # never worse than plain basic composition of ε with the zCDP parts converted on their own
    basic = sum(x.epsilon for x in xs) + zcdp_to_epsilon(sum(x.rho for x in xs), cap - sum(x.delta for x in xs))
    assert t_x.epsilon <= basic * (1 + 1e-12)
