"""A store whose ledger file disappeared (deleted, or a restore/copy that left it out)."""

from __future__ import annotations

import shutil

import pytest

from tests.adversarial.conftest import GOOD, invoke


@pytest.mark.xfail(strict=True, reason="open finding (redteam): a deleted ledger is silently re-created empty, and the "
                                       "refusal tells the operator to set caps, which restores the whole budget")
def test_a_store_whose_ledger_vanished_is_refused_as_a_ledger_problem(store, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    for f in copy.glob("ledger.sqlite*"):
        f.unlink()
    res = invoke("query", "--store", copy, *GOOD)
    assert res.exit_code == 74, res.output  # today: 77 "no budget caps are set; set them with `dplogs budget set`"
    assert not (copy / "ledger.sqlite").exists()
