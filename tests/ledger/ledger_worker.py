"""Child process for the ledger reliability tests (run as a script, not collected by pytest).

Modes:
  spend PATH SECONDS   print ready, wait for a line on stdin, charge ε=0.01 releases until
                       SECONDS pass; print a JSON summary
  create PATH -        print ready, wait for a line on stdin, open with create=True, charge once
  hang PATH STAGE      reserve, get to STAGE (in-reserve | reserved | drawn), print STAGE, sleep
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from dplogs.errors import BudgetExhausted
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.mechanisms import add_noise, calibrate
from dplogs.privacy.sensitivity import Sensitivity

EPS = 0.01
PLAN = calibrate(mechanism="laplace", sensitivity=Sensitivity(l1=1, l2=1), epsilon=EPS, integer=True)


def spend(path: str, seconds: float) -> None:
    ledger = Ledger.open(path)
    print("ready", flush=True)
    sys.stdin.readline()  # start together with the other workers
    ok, refused, ids, i = 0, 0, [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        i += 1
        windows = ["2026-11", "2026-12"] if i % 3 == 0 else ["2026-11"]
        try:
            with ledger.charge(PrivacyLoss(epsilon=EPS), windows=windows, caller="test") as c:
                noisy = add_noise(np.array([100]), PLAN, charge=c)
                c.record({"v": noisy.tolist()})
            ok += 1
            ids.append(c.entry_id)
        except BudgetExhausted:
            refused += 1
            time.sleep(0.001)
    print(json.dumps({"ok": ok, "refused": refused, "ids": ids}))


def hang(path: str, stage: str) -> None:
    ledger = Ledger.open(path)

    def announce(what: str) -> None:
        print(what, flush=True)
        time.sleep(120)

    if stage == "in-reserve":  # die while the reservation transaction is still open
        original = Ledger._insert

        def insert_then_hang(self, *args, **kwargs):
            original(self, *args, **kwargs)
            announce(stage)

        Ledger._insert = insert_then_hang
    with ledger.charge(PrivacyLoss(epsilon=0.25), windows=["2026-11"], caller="test", idempotency_key="k") as c:
        if stage == "reserved":
            announce(stage)
        noisy = add_noise(np.array([100]), calibrate(
            mechanism="laplace", sensitivity=Sensitivity(l1=1, l2=1), epsilon=0.25, integer=True), charge=c)
        c.record({"v": noisy.tolist()})
        if stage == "drawn":
            announce(stage)


def create(path: str) -> None:
    print("ready", flush=True)
    sys.stdin.readline()
    with Ledger.open(path, create=True) as ledger:
        ledger.set_caps(window_policy="month", epsilon=1.0)
        with ledger.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11"], caller="test"):
            pass
    print("done", flush=True)


if __name__ == "__main__":
    mode, path, arg = sys.argv[1:4]
    {"spend": lambda: spend(path, float(arg)), "hang": lambda: hang(path, arg), "create": lambda: create(path)}[mode]()
