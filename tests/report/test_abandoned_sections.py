"""A report section whose release was reserved by a run that died (SIGKILL, a pod evicted) on
another host, or under a pid now used by a live process, is released again by the next run of
that period: a run holding the period's lock knows no other run of it is going on."""

from __future__ import annotations

import datetime as dt

from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.engine import Engine
from dplogs.privacy.ledger import ANY_PROTECTION, Ledger
from dplogs.privacy.loss import PrivacyLoss
from dplogs.report import load_report_spec
from tests.report.conftest import NIGHTLY


def test_a_section_left_reserved_by_a_dead_run_elsewhere_is_released_again(new_store):
    """Was: exit 75 'in progress (entry ..., pid ... on pod-a)' on every rerun, forever: the nightly
    series stuck at that period (the pid of another host cannot be checked)."""
    store = new_store(epsilon=30)
    key = load_report_spec(NIGHTLY).section_key(dt.date(2024, 3, 11), 0)
    with Engine.open(store) as engine:  # a run on another host, killed after its reservation
        dead = engine.ledger
        dead._host = "pod-a"
        dead._reserve(PrivacyLoss(epsilon=0.5), ["2024-03"], "report", "q", key, (), ANY_PROTECTION)

    res = CliRunner().invoke(cli, ["report", str(NIGHTLY), "--store", str(store), "--date", "2024-03-11", "--format", "json"])
    assert res.exit_code == 0, res.output
    with Ledger.open(store / "ledger.sqlite") as led:
        statuses = [(e.idempotency_key, e.status) for e in led.history()]
        assert led.verify().ok
        assert led.spent("2024-03").epsilon == 2.5  # the dead run's reservation stays spent; the section is charged anew
    assert (key, "reserved") in statuses and (key, "committed") in statuses
