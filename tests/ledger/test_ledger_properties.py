"""Property: whatever sequence of releases, failures and replays happens, a window's spend never
decreases, never passes its cap, equals the composition of its spent entries, and replays and
refunds leave it unchanged."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dplogs.errors import BudgetExhausted
from dplogs.privacy.accounting import compose
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.mechanisms import add_noise, calibrate
from dplogs.privacy.sensitivity import Sensitivity

CAP_EPS, CAP_DELTA = 1.0, 1e-6
WINDOWS = ["2026-10", "2026-11", "2026-12"]

_loss = st.one_of(
    st.builds(PrivacyLoss, epsilon=st.sampled_from([0.05, 0.1, 0.3])),
    st.builds(PrivacyLoss, rho=st.sampled_from([0.001, 0.01])),
    st.builds(PrivacyLoss, epsilon=st.sampled_from([0.1, 0.2]), delta=st.sampled_from([1e-8, 1e-7])),
)
_op = st.tuples(
    _loss,
    st.lists(st.sampled_from(WINDOWS), min_size=1, max_size=2, unique=True),
    st.sampled_from(["ok", "fail-before-draw", "fail-after-draw"]),
    st.one_of(st.none(), st.sampled_from(["k1", "k2"])),
)


class _Boom(Exception):
    pass


def _draw(charge, loss):
    if loss.rho:
        plan = calibrate(mechanism="gaussian", sensitivity=Sensitivity(l1=1, l2=1), rho=loss.rho, integer=True)
        add_noise(np.array([3]), plan, charge=charge)
    else:
        charge.consume(loss)  # the (ε, δ) of an approximate-DP step, drawn as one unit


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_op, min_size=1, max_size=10))
def test_spend_is_monotone_capped_and_idempotent(ops):
    with tempfile.TemporaryDirectory() as d, Ledger.open(Path(d) / "ledger.sqlite", create=True) as led:
        led.set_caps(window_policy="month", epsilon=CAP_EPS, delta=CAP_DELTA)
        before = {w: led.spent(w).epsilon for w in WINDOWS}
        committed_keys = set()
        for loss, windows, outcome, key in ops:
            n_entries = len(led.history())
            replayed = False
            try:
                with led.charge(loss, windows=windows, caller="test", idempotency_key=key) as c:
                    if c.replayed_payload is not None:
                        replayed = True
                    else:
                        if outcome == "fail-before-draw":
                            raise _Boom
                        _draw(c, loss)
                        if outcome == "fail-after-draw":
                            raise _Boom
                        c.record({"ok": True})
            except (_Boom, BudgetExhausted):
                pass
            after = {w: led.spent(w).epsilon for w in WINDOWS}
            for w in WINDOWS:
                assert after[w] >= before[w] - 1e-12  # monotone
                assert after[w] <= CAP_EPS * (1 + 1e-9)  # capped
            if replayed:
                assert key in committed_keys
                assert after == before and len(led.history()) == n_entries  # idempotent: free
            elif outcome == "fail-before-draw":
                assert after == before  # refunded
            if key is not None and outcome == "ok" and led.history()[0].status == "committed":
                committed_keys.add(key)
            before = after
        for w in WINDOWS:
            spent = [e.loss for e in led.history(window=w) if e.spent]
            assert led.spent(w).epsilon == compose(spent, delta_cap=CAP_DELTA).epsilon
        assert led.verify().ok
