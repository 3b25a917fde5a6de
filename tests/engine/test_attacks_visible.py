"""Attacks become visible while people stay hidden: with the organisation's networks declared
(dplogs protect), the shipped failed_logins_by_source_hour query shows brute-force sources and
their hours at ε = 1 in every run, because their rows are not any employee's data."""

from __future__ import annotations

import shutil

import polars as pl
import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.engine import Engine
from dplogs.privacy.ledger import Ledger
from tests.engine.conftest import REPO

QUERY = REPO / "queries" / "failed_logins_by_source_hour.toml"
PRIVATE_RANGES = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"
REAL_WINDOW = {"start": "2017-03-27", "end": "2017-04-21"}


def _top(store, runs: int, **options) -> list[tuple]:
    eng = Engine.open(store)
    out = []
    for _ in range(runs):
        data = eng.query_file(QUERY, **options).release(caller="test").data
        top = data.sort("value", descending=True).row(0, named=True)
        out.append((top["hour"].isoformat(), top["source.ip"], top["value"], top.get("exact")))
    return out


@pytest.fixture(scope="module")
def real_brute_force_store(datasets_dir, tmp_path_factory):
    store = tmp_path_factory.mktemp("bf") / "st"
    log = datasets_dir / "auth_logs" / "elastic_examples_suspicious_login_auth.log.gz"
    run = CliRunner().invoke
    assert run(cli, ["ingest", str(log), "--store", str(store), "--year", "2017"]).exit_code == 0
    Ledger.open(store / "ledger.sqlite", create=True).set_caps(window_policy="month", epsilon=1000.0, delta=1e-2)
    return store


def test_real_brute_force_source_and_hour_in_every_run(real_brute_force_store, tmp_path):
    """../shared/datasets/auth_logs: 24.151.103.17, 230 failures in the hour 2017-03-30 15:00."""
    store = tmp_path / "st"
    shutil.copytree(real_brute_force_store, store)
    # without a policy every source address is private and every account is bounded: nothing shows
    plain = Engine.open(store).query_file(QUERY, **REAL_WINDOW).release(caller="test").data
    assert "24.151.103.17" not in plain["source.ip"].to_list()
    assert CliRunner().invoke(cli, ["protect", "--store", str(store), "--networks", PRIVATE_RANGES]).exit_code == 0
    tops = _top(store, 20, **REAL_WINDOW)
    assert all(t[:2] == ("2017-03-30T15:00:00+00:00", "24.151.103.17") for t in tops), tops
    assert all(t[3] == 230 and abs(t[2] - 230) < 20 for t in tops), tops


def test_planted_sample_brute_force_in_every_run(sample_store, tmp_path):
    """sample_logs: 203.0.113.77 fails ~300 logins on 2024-03-08 14:00-15:00 (sample_logs/README.md)."""
    store = tmp_path / "st"
    shutil.copytree(sample_store, store)
    assert CliRunner().invoke(cli, ["protect", "--store", str(store), "--networks", PRIVATE_RANGES]).exit_code == 0
    tops = _top(store, 20, start="2024-03-04", end="2024-03-18")
    assert all(t[1] == "203.0.113.77" and t[0].startswith("2024-03-08T14") for t in tops), tops
    # inside addresses are protected: none of the released cells has an exact part from them
    data = Engine.open(store).query_file(QUERY, start="2024-03-04", end="2024-03-18").release(caller="test").data
    inside = data.filter(pl.col("source.ip").str.starts_with("10.") | pl.col("source.ip").str.starts_with("192.168."))
    assert (inside["exact"] == 0).all()
