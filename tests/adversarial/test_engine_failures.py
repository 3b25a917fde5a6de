"""A failure inside the Spark engine under a release is an unavailable engine (69) with a message
that says what happened to the charge, not "a bug in dplogs" (70): found by redteam2, whose Spark
session stopped mid-release surfaced as an AssertionError from pyspark."""

from __future__ import annotations

import pytest
from tests.adversarial.conftest import GOOD, invoke

from dplogs.engine.api import PreparedQuery


def _assert_in_pyspark(*_a, **_k):
    exec(compile("assert False, 'the Java gateway is gone'", "/opt/site-packages/pyspark/sql/dataframe.py", "exec"))


def _pyspark_exception(*_a, **_k):
    errors = pytest.importorskip("pyspark.errors", reason="pyspark (the dev extra) is not installed")
    raise errors.PySparkRuntimeError("the Spark session was stopped")


@pytest.mark.parametrize("fail", [_assert_in_pyspark, _pyspark_exception])
def test_a_failure_inside_spark_is_exit_69_and_names_the_charge(store, monkeypatch, fail):
    monkeypatch.setattr(PreparedQuery, "release", fail)
    res = invoke("query", "--store", store, *GOOD)
    assert res.exit_code == 69, res.output
    assert "the Spark job failed" in res.output and "stays spent" in res.output and "a bug" not in res.output
    assert "gateway is gone" not in res.output and "session was stopped" not in res.output  # its text may quote rows


def test_an_assertion_of_dplogs_own_is_still_a_bug(store, monkeypatch):
    def own(*_a, **_k):
        raise AssertionError("an invariant of dplogs")

    monkeypatch.setattr(PreparedQuery, "release", own)
    res = invoke("query", "--store", store, *GOOD)
    assert res.exit_code == 70 and "this is a bug in dplogs" in res.output
