"""The release protocol: validate → reserve → draw → commit, refunds, idempotent replay."""

from __future__ import annotations

import os

import numpy as np
import pytest

import dplogs.privacy.ledger as ledger_module
from dplogs.errors import BudgetExhausted, ConcurrentRun, InternalError, LedgerError, UsageError
from dplogs.privacy.accounting import zcdp_to_epsilon
from dplogs.privacy.ledger import ANY_PROTECTION
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.mechanisms import add_noise, calibrate
from dplogs.privacy.sensitivity import Sensitivity

NOV = ["2026-11"]
EPS = PrivacyLoss(epsilon=0.25)


def _plan(eps=0.25):
    return calibrate(mechanism="laplace", sensitivity=Sensitivity(l1=1, l2=1), epsilon=eps, integer=True)


def test_commit_stores_entry_and_payload(ledger):
    with ledger.charge(EPS, windows=NOV, caller="cli", query="SELECT count(*)", mechanisms=["laplace"]) as c:
        noisy = add_noise(np.array([10, 20]), _plan(), charge=c)
        c.record({"values": noisy.tolist()})
    (e,) = ledger.history()
    assert e.status == "committed"
    assert e.payload == {"values": noisy.tolist()}
    assert e.loss == EPS and e.windows == ("2026-11",) and e.caller == "cli"
    assert e.mechanisms == ("laplace",) and e.query == "SELECT count(*)"
    assert ledger.spent("2026-11").epsilon == pytest.approx(0.25)
    assert ledger.spent("2026-12").epsilon == 0.0


def test_entry_is_durable_before_noise_is_drawn(ledger, ledger_path):
    from dplogs.privacy.ledger import Ledger

    with ledger.charge(EPS, windows=NOV, caller="cli") as c:
        other = Ledger.open(ledger_path)  # a second process's view
        (e,) = other.history()
        assert e.status == "reserved"
        assert other.spent("2026-11").epsilon == pytest.approx(0.25)
        other.close()
        add_noise(np.array([1]), _plan(), charge=c)
    assert ledger.history()[0].status == "committed"


def test_exception_before_draw_refunds(ledger):
    with pytest.raises(RuntimeError, match="boom"):
        with ledger.charge(EPS, windows=NOV, caller="cli"):
            raise RuntimeError("boom")
    (e,) = ledger.history()
    assert e.status == "refunded"
    assert ledger.spent("2026-11").epsilon == 0.0
    assert ledger.remaining("2026-11").epsilon == 1.0


def test_exception_after_draw_keeps_charge(ledger):
    with pytest.raises(RuntimeError, match="boom"):
        with ledger.charge(EPS, windows=NOV, caller="cli") as c:
            add_noise(np.array([1, 2, 3]), _plan(), charge=c)
            raise RuntimeError("boom")
    (e,) = ledger.history()
    assert e.status == "failed-after-noise"
    assert ledger.spent("2026-11").epsilon == pytest.approx(0.25)


def test_draw_beyond_reserved_loss_is_a_bug(ledger):
    with pytest.raises(InternalError):
        with ledger.charge(EPS, windows=NOV, caller="cli") as c:
            add_noise(np.array([1]), _plan(0.5), charge=c)
    # the over-draw was refused before any noise existed: refunded
    assert ledger.history()[0].status == "refunded"


def test_no_draw_after_commit(ledger):
    with ledger.charge(EPS, windows=NOV, caller="cli") as c:
        pass
    with pytest.raises(InternalError):
        add_noise(np.array([1]), _plan(0.1), charge=c)


def test_budget_exhausted_leaves_ledger_unchanged(ledger, ledger_path):
    for _ in range(4):
        with ledger.charge(EPS, windows=NOV, caller="cli"):
            pass
    before = ledger_path.read_bytes(), [e.to_json() for e in ledger.history()]
    with pytest.raises(BudgetExhausted, match="budget left: epsilon=0 ") as info:
        with ledger.charge(PrivacyLoss(epsilon=0.01), windows=NOV, caller="cli"):
            pytest.fail("the body must not run when the budget is exhausted")
    assert info.value.exit_code == 77
    assert [e.to_json() for e in ledger.history()] == before[1]
    assert len(ledger.history()) == 4


def test_budget_left_is_reported(ledger):
    with ledger.charge(PrivacyLoss(epsilon=0.7), windows=NOV, caller="cli"):
        pass
    with pytest.raises(BudgetExhausted, match=r"budget left: epsilon=0\.3 "):
        with ledger.charge(PrivacyLoss(epsilon=0.5), windows=NOV, caller="cli"):
            pass


def test_release_is_charged_to_every_window_it_touches(ledger):
    with ledger.charge(PrivacyLoss(epsilon=0.6), windows=["2026-10", "2026-11"], caller="cli"):
        pass
    assert ledger.spent("2026-10").epsilon == pytest.approx(0.6)
    assert ledger.spent("2026-11").epsilon == pytest.approx(0.6)
    # October has 0.4 left; the release touching both must fit both
    with pytest.raises(BudgetExhausted, match="2026-10"):
        with ledger.charge(PrivacyLoss(epsilon=0.5), windows=["2026-10"], caller="cli"):
            pass
    with ledger.charge(PrivacyLoss(epsilon=0.4), windows=["2026-11"], caller="cli"):
        pass
    assert ledger.windows() == ["2026-10", "2026-11"]


def test_gaussian_composes_in_rho_against_delta_cap(ledger):
    rho = 0.01
    with ledger.charge(PrivacyLoss(rho=rho), windows=NOV, caller="cli"):
        pass
    spent = ledger.spent("2026-11")
    assert spent.rho == rho
    assert spent.epsilon == pytest.approx(zcdp_to_epsilon(rho, 1e-6))
    assert spent.delta == 1e-6


def test_idempotent_replay_spends_nothing(ledger):
    payload = {"values": [41, 7], "scale": 4.0}
    with ledger.charge(EPS, windows=NOV, caller="report", idempotency_key="nightly/2026-11") as c:
        assert c.replayed_payload is None
        c.record(payload)
    with ledger.charge(EPS, windows=NOV, caller="report", idempotency_key="nightly/2026-11") as c:
        assert c.replayed_payload == payload
        with pytest.raises(InternalError):
            add_noise(np.array([1]), _plan(), charge=c)
    assert len(ledger.history()) == 1
    assert ledger.spent("2026-11").epsilon == pytest.approx(0.25)


def test_key_can_be_retried_after_refund(ledger):
    with pytest.raises(RuntimeError):
        with ledger.charge(EPS, windows=NOV, caller="report", idempotency_key="k"):
            raise RuntimeError("backend failed")
    with ledger.charge(EPS, windows=NOV, caller="report", idempotency_key="k") as c:
        assert c.replayed_payload is None
        c.record({"v": 1})
    assert [e.status for e in ledger.history()] == ["committed", "refunded"]


def test_key_in_flight_in_a_live_process_is_refused_as_retryable(ledger):
    with ledger.charge(EPS, windows=NOV, caller="report", idempotency_key="k"):
        with pytest.raises(ConcurrentRun, match="in progress") as info:
            with ledger.charge(EPS, windows=NOV, caller="report", idempotency_key="k"):
                pass
    assert info.value.exit_code == 75  # EX_TEMPFAIL: a scheduler retries, it is not a ledger fault
    assert len(ledger.history()) == 1  # the refused attempt wrote nothing


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"windows": []}, UsageError),
        ({"windows": "2026-11"}, UsageError),
        ({"windows": ["2026-W47"]}, UsageError),  # a week key in a month ledger
        ({"windows": NOV, "caller": ""}, UsageError),
        ({"windows": NOV, "idempotency_key": ""}, UsageError),
    ],
)
def test_validation_happens_before_reservation(ledger, kwargs, error):
    args = {"caller": "cli", **kwargs}
    with pytest.raises(error):
        with ledger.charge(EPS, **args):
            pytest.fail("body must not run")
    assert ledger.history() == []


def test_no_caps_means_no_release(ledger_path):
    from dplogs.privacy.ledger import Ledger

    with Ledger.open(ledger_path, create=True) as led:  # a setup step left out (64), not a spent budget (77)
        with pytest.raises(UsageError, match="no budget caps are set; set them with `dplogs budget set"):
            with led.charge(EPS, windows=NOV, caller="cli"):
                pass


def test_window_policy_is_fixed_once_releases_exist(ledger):
    with ledger.charge(EPS, windows=NOV, caller="cli"):
        pass
    ledger.set_caps(window_policy="month", epsilon=2.0, delta=1e-6)  # raising the cap is fine
    assert ledger.remaining("2026-11").epsilon == pytest.approx(1.75)
    with pytest.raises(UsageError, match="window policy cannot change"):
        ledger.set_caps(window_policy="day", epsilon=1.0)


def test_per_window_cap_overrides_policy_cap(ledger):
    ledger.set_caps(window_policy="month", epsilon=0.1, window="2026-12")
    assert ledger.caps("2026-12").epsilon == 0.1
    assert ledger.caps("2026-11").epsilon == 1.0
    with pytest.raises(BudgetExhausted):
        with ledger.charge(EPS, windows=["2026-12"], caller="cli"):
            pass


def test_unserialisable_payload_after_noise_keeps_charge(ledger):
    with pytest.raises(InternalError, match="JSON"):
        with ledger.charge(EPS, windows=NOV, caller="cli") as c:
            add_noise(np.array([1]), _plan(), charge=c)
            c.record({"bad": object()})
    assert ledger.history()[0].status == "failed-after-noise"


@pytest.mark.parametrize("named", ["another host", "a live pid of this host", "this process's pid"])
def test_a_reservation_left_under_a_key_by_a_dead_run_does_not_block_the_key(ledger, monkeypatch, named):
    """A keyed run killed after its reservation, on another host or under a pid a later process
    reuses (a container's dplogs is pid 1 every time), was judged alive by pid and host, and every
    later run with the key was refused as in progress (75) forever. The key's lock is free once its
    holder died: the entry stays spent and a new release is charged on top."""
    with monkeypatch.context() as m:  # what the killed run's reservation names
        if named == "another host":
            m.setattr(ledger, "_host", "db-replica-2")
        elif named == "a live pid of this host":
            m.setattr(ledger_module.os, "getpid", os.getppid)
        ledger._reserve(EPS, NOV, "cli", "q", "k", (), ANY_PROTECTION)
    with ledger.charge(EPS, windows=NOV, caller="cli", idempotency_key="k") as c:
        assert c.replayed_payload is None
        c.record({"v": 1})
    assert [e.status for e in ledger.history()] == ["committed", "reserved"]  # newest first; the dead one stays spent
    assert ledger.spent("2026-11").epsilon == pytest.approx(2 * EPS.epsilon)
    assert ledger.verify().ok


def test_a_key_held_by_another_process_is_refused_as_retryable(ledger):
    """The lock is the key's, across processes: a run in another process holding it makes a
    release with the key fail 75 at once, charging nothing; after it exits the key is free."""
    import subprocess
    import sys
    import time

    code = ("import sys, time; from pathlib import Path; from dplogs.privacy.ledger import Ledger\n"
            f"l = Ledger.open(Path({str(ledger.path)!r}))\n"
            "with l._key_lock('k'):\n    print('held', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConcurrentRun, match="in progress") as info:
            with ledger.charge(EPS, windows=NOV, caller="cli", idempotency_key="k"):
                pass
        assert info.value.exit_code == 75 and ledger.history() == []
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.05)
    with ledger.charge(EPS, windows=NOV, caller="cli", idempotency_key="k") as c:
        c.record({"v": 1})
    assert [e.status for e in ledger.history()] == ["committed"]
