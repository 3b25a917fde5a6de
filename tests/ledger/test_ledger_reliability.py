"""Multi-process reliability: concurrent spending never exceeds a cap nor loses an entry, and a
process SIGKILLed mid-release leaves a consistent ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dplogs.privacy.ledger import Ledger
from dplogs.privacy.loss import PrivacyLoss

WORKER = str(Path(__file__).with_name("ledger_worker.py"))
SECONDS = 10  # of concurrent spending (the issue asks ~10 s), after every worker has started
CAP = 2.0  # 200 releases of ε=0.01: reached within the run, so refusals are exercised too


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_eight_processes_never_exceed_the_cap_nor_lose_entries(ledger_path):
    with Ledger.open(ledger_path, create=True) as led:
        led.set_caps(window_policy="month", epsilon=CAP, delta=0.0)  # pure ε: spend is exactly linear
    procs = [
        subprocess.Popen([sys.executable, WORKER, "spend", str(ledger_path), str(SECONDS)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    for p in procs:  # all imported and connected: start them at once
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=50)
        assert p.returncode == 0
        results.append(json.loads(out))
    ok_ids = [i for r in results for i in r["ids"]]
    with Ledger.open(ledger_path) as led:
        report = led.verify()
        entries = led.history()
        nov = led.spent("2026-11")
        dec = led.spent("2026-12")
    assert report.ok, report.problems
    assert report.unfinished == ()
    committed = [e for e in entries if e.status == "committed"]
    # every successful release is in the ledger exactly once, and nothing else was committed
    assert sorted(e.id for e in committed) == sorted(ok_ids)
    assert len(entries) == len(committed)  # refusals write nothing
    print(f"{len(committed)} releases committed, {sum(r['refused'] for r in results)} refused")
    assert sum(r["refused"] for r in results) > 0, "the cap was never reached: the test proves nothing"
    assert nov.epsilon <= CAP * (1 + 1e-9)
    assert nov.epsilon > CAP - 0.01 - 1e-9  # the cap was filled, not under-used
    assert nov.epsilon == pytest.approx(0.01 * sum(1 for e in committed if "2026-11" in e.windows))
    assert dec.epsilon == pytest.approx(0.01 * sum(1 for e in committed if "2026-12" in e.windows))


def _start_and_kill(ledger_path: Path, stage: str) -> None:
    p = subprocess.Popen([sys.executable, WORKER, "hang", str(ledger_path), stage], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == stage
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    assert p.returncode == -signal.SIGKILL


@pytest.fixture
def capped(ledger_path):
    with Ledger.open(ledger_path, create=True) as led:
        led.set_caps(window_policy="month", epsilon=1.0, delta=1e-6)
    return ledger_path


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["reserved", "drawn"])
def test_sigkill_after_reservation_counts_as_spent(capped, stage):
    _start_and_kill(capped, stage)
    with Ledger.open(capped) as led:
        (e,) = led.history()
        assert e.status == "reserved" and e.payload is None  # nothing was released
        assert led.spent("2026-11").epsilon == pytest.approx(0.25)  # never silently refunded
        report = led.verify()
        assert report.ok and [u.id for u in report.unfinished] == [e.id]
        # a rerun with the same key is a new release (the dead one was never emitted) and is
        # charged on top: no double spend, no free replay of a value nobody saw
        with led.charge(PrivacyLoss(epsilon=0.25), windows=["2026-11"], caller="test", idempotency_key="k") as c:
            assert c.replayed_payload is None
            c.record({"v": 1})
        assert led.spent("2026-11").epsilon == pytest.approx(0.5)
        assert [x.status for x in led.history()] == ["committed", "reserved"]
        assert led.verify().ok


@pytest.mark.slow
def test_sigkill_inside_the_reservation_transaction_leaves_nothing(capped):
    _start_and_kill(capped, "in-reserve")
    with Ledger.open(capped) as led:
        assert led.history() == []
        assert led.spent("2026-11").epsilon == 0.0
        assert led.verify().ok
        with led.charge(PrivacyLoss(epsilon=1.0), windows=["2026-11"], caller="test"):
            pass  # the whole cap is still available
        assert led.verify().ok


@pytest.mark.slow
def test_concurrent_first_opens_create_one_ledger(ledger_path):
    procs = [
        subprocess.Popen([sys.executable, WORKER, "create", str(ledger_path), "-"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and out.strip() == "done", err
    with Ledger.open(ledger_path) as led:
        assert len(led.history()) == 4 and led.verify().ok
