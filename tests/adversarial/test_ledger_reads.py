"""Reading a tampered ledger (round 3 of the red-team sweep): `budget show` must not present a
tampered ledger's sums as the spend."""

from __future__ import annotations

import shutil
import sqlite3

from tests.adversarial.conftest import invoke as run


def _tampered(store, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    with sqlite3.connect(copy / "ledger.sqlite") as c:
        c.execute("UPDATE entries SET epsilon = 0.001 WHERE seq = 1")  # spend made to look smaller
    return copy


def test_budget_show_refuses_a_ledger_that_fails_verification(store, tmp_path):
    # Found: `budget show` printed the tampered sums (spent ε 0.001 instead of 0.1, more left)
    # with exit 0, while every release was refused (74)
    copy = _tampered(store, tmp_path)
    res = run("budget", "show", "--store", copy)
    assert res.exit_code == 74 and "verification failed" in res.output and "entry #1" in res.output, res.output
    res = run("budget", "show", "--store", copy, "--json")
    assert res.exit_code == 74 and '"spent"' not in res.output
    assert run("budget", "show", "--store", store).exit_code == 0  # the untouched ledger still shows


def test_budget_history_lists_a_tampered_ledger_with_a_warning(store, tmp_path):
    copy = _tampered(store, tmp_path)
    res = run("budget", "history", "--store", copy)
    assert res.exit_code == 0 and "warning: the ledger fails verification" in res.stderr
    assert "warning" not in run("budget", "history", "--store", store).stderr
