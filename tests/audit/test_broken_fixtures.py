"""Deliberately broken release paths. Each must be caught: by the auditor (ε_lb above the claim),
by the porous-set test, or by the ledger-protocol watcher."""

import numpy as np
import pytest

from tests.audit.audit_paths import CountPath, dataset, neighbours
from dplogs.audit import audit
from dplogs.audit.paths import vectorised
from dplogs.audit.porous import porous_set_audit
from dplogs.audit.protocol import watch_draws
from dplogs.privacy import Charge, ContributionBounds, PrivacyLoss, Sensitivity, add_noise, calibrate
from dplogs.privacy.ledger import Ledger

BOUNDS = ContributionBounds(max_groups=1, max_rows_per_group=2)


def test_sensitivity_off_by_two_is_caught():
    d, d_prime = neighbours(dataset(victim_keys=["failure"], victim_rows=5))
    broken = CountPath(BOUNDS, epsilon=1.0, sensitivity_factor=0.5)  # true ε is 2
    r = audit(vectorised(broken, broken.plan), d, d_prime, trials=20_000, claimed_epsilon=1.0, name="half sensitivity")
    assert r.violated, r.summary()


def test_missing_per_unit_bound_is_caught():
    d, d_prime = neighbours(dataset(victim_keys=["failure"], victim_rows=12))
    broken = CountPath(BOUNDS, epsilon=1.0, skip_bounding=True)  # the victim moves the count by 12, not 2
    r = audit(vectorised(broken, broken.plan), d, d_prime, trials=10_000, claimed_epsilon=1.0, name="no bounding")
    assert r.violated, r.summary()


def _numpy_laplace(x: float, n: int) -> np.ndarray:
    # the textbook float sampler this project forbids; here only as a broken fixture
    return x + np.random.default_rng().laplace(0.0, 1.0, n)


def test_numpy_float_laplace_fails_the_porous_set_test():
    r = porous_set_audit(_numpy_laplace, scale=1.0, claimed_epsilon=1.0, name="numpy laplace")
    assert r.violated and r.epsilon_lb > 3, r.summary()


@pytest.mark.parametrize("kind", ["laplace", "gaussian"])
def test_opendp_float_samplers_pass_the_porous_set_test(kind):
    budget = {"epsilon": 1.0} if kind == "laplace" else {"rho": 0.5}
    plan = calibrate(mechanism=kind, sensitivity=Sensitivity(l1=1, l2=1), integer=False, **budget)

    def sample(x, n):
        return add_noise(np.full(n, x), plan, charge=Charge.for_audit(plan.loss))

    r = porous_set_audit(sample, scale=plan.scale, claimed_epsilon=1.0, name=f"opendp {kind}")
    assert not r.violated and r.epsilon_lb < 0.2, r.summary()


@pytest.fixture
def ledger(tmp_path):
    led = Ledger.open(tmp_path / "ledger.sqlite", create=True)
    led.set_caps(window_policy="month", epsilon=10.0, delta=1e-6)
    yield led
    led.close()


PLAN = calibrate(mechanism="laplace", sensitivity=Sensitivity(l1=1, l2=1), epsilon=1.0, integer=True)
VALUES = np.array([10, 20, 30], dtype=np.int64)


def _correct_release(ledger):
    with ledger.charge(PLAN.loss, windows=["2026-11"], caller="audit", query="count") as charge:
        noisy = add_noise(VALUES, PLAN, charge=charge)
        charge.record({"values": noisy.tolist()})
    return noisy


def _release_before_charge(ledger):
    noisy = add_noise(VALUES, PLAN, charge=Charge.for_audit(PLAN.loss))  # the bug: drawn first
    with ledger.charge(PLAN.loss, windows=["2026-11"], caller="audit", query="count") as charge:
        charge.consume(PLAN.loss)
        charge.record({"values": noisy.tolist()})
    return noisy


def test_protocol_watcher_accepts_a_correct_release(ledger):
    with watch_draws(ledger.path) as draws:
        _correct_release(ledger)
    assert len(draws) == 1 and all(d.ok for d in draws), draws
    assert ledger.history()[0].status == "committed"


def test_release_drawn_before_the_ledger_charge_is_caught(ledger):
    with watch_draws(ledger.path) as draws:
        _release_before_charge(ledger)
    assert draws and not draws[0].ok and draws[0].entry_id is None, draws


def test_sampler_called_directly_is_caught(ledger):
    """Bypassing add_noise entirely (straight to the OpenDP measurement) is a draw with no charge."""
    from dplogs.privacy import mechanisms

    with watch_draws(ledger.path) as draws:
        mechanisms._measurement(PLAN.mechanism, True, PLAN.scale)(VALUES.tolist())
    assert len(draws) == 1 and not draws[0].ok


def test_draw_after_commit_is_caught(ledger):
    """A stale charge (its entry already committed) cannot cover a new draw."""
    from dplogs.privacy import mechanisms

    with watch_draws(ledger.path) as draws:
        _correct_release(ledger)
        mechanisms._measurement(PLAN.mechanism, True, PLAN.scale)(VALUES.tolist())
    assert [d.ok for d in draws] == [True, False] and draws[1].status == "committed"
