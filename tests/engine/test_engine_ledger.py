"""The release path and the ledger: charged before noise, refunded when nothing was drawn, spent
once noise exists, nothing reserved for a query that fails validation; plus mixed public/private
keys and quantile interval coverage under noise."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from dplogs.engine import Aggregation, time_bucket
from dplogs.engine import execute
from dplogs.engine.execute import aggregate, noisy_release
from dplogs.errors import PrivacyParameterError, QueryError
from dplogs.privacy.charge import Charge
from dplogs.privacy.testing import exact_mode

START, END = "2026-11-01", "2026-11-08"


def frame(n: int = 40) -> pl.DataFrame:
    return pl.DataFrame({
        "@timestamp": [dt.datetime(2026, 11, 1 + i % 7, tzinfo=dt.timezone.utc) for i in range(n)],
        "user.name": [f"u{i}" for i in range(n)],
        "event.outcome": ["failure", "success"] * (n // 2),
        "source.ip": ["10.0.0.1" if i % 10 else "10.0.0.2" for i in range(n)],
        "source.bytes": [100 * (i % 10) for i in range(n)],
    })


def count_query(eng):
    return eng.build(Aggregation.count(), keys=["event.outcome"], epsilon=0.25, max_groups=1, max_rows_per_group=1,
                     start=START, end=END)


def test_failure_before_noise_is_refunded(make_engine, monkeypatch):
    eng = make_engine(frame())
    q = count_query(eng)

    def boom(*args, **kwargs):
        raise RuntimeError("crash between reservation and noise")

    monkeypatch.setattr(execute, "noisy_release", boom)
    with pytest.raises(RuntimeError):
        q.release(caller="cli")
    (entry,) = eng.ledger.history()
    assert entry.status == "refunded"
    assert eng.ledger.spent("2026-11").epsilon == 0


def test_failure_after_noise_stays_spent(make_engine, monkeypatch):
    eng = make_engine(frame())
    q = count_query(eng)
    real = execute.noisy_release

    def noise_then_crash(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("crash after noise was drawn")

    monkeypatch.setattr(execute, "noisy_release", noise_then_crash)
    with pytest.raises(RuntimeError):
        q.release(caller="cli")
    (entry,) = eng.ledger.history()
    assert entry.status == "failed-after-noise"
    assert eng.ledger.spent("2026-11").epsilon == pytest.approx(0.25)


def test_invalid_queries_reserve_nothing(make_engine):
    eng = make_engine(frame())
    with pytest.raises(PrivacyParameterError):  # a negative δ
        eng.sql("SELECT source.ip, COUNT(*) FROM logs GROUP BY source.ip", epsilon=1, delta=-1e-6, max_groups=1,
                max_rows_per_group=1, start=START, end=END)
    with pytest.raises(QueryError):
        eng.sql("SELECT COUNT(*) FROM logs WHERE nope = 1", epsilon=1, max_groups=1, max_rows_per_group=1, start=START, end=END)
    assert eng.ledger.history() == []


def test_release_charges_every_touched_window(make_engine):
    eng = make_engine(frame(), policy="week")
    rel = count_query(eng).release(caller="cli")
    assert rel.privacy["budget_windows"] == ["2026-W44", "2026-W45"]
    assert eng.ledger.spent("2026-W44").epsilon == pytest.approx(0.25) == eng.ledger.spent("2026-W45").epsilon


def test_mixed_public_and_private_keys_select_tuples(make_engine):
    eng = make_engine(frame(400))
    q = eng.build(Aggregation.count(), keys=[time_bucket("day"), "source.ip"], epsilon=1.0, delta=1e-3,
                  max_groups=1, max_rows_per_group=1, start=START, end=END)
    t = q.plan.selection.threshold
    with exact_mode():
        rel = q.release(caller="cli").data
    truth = frame(400).group_by(pl.col("@timestamp").alias("bucket"), "source.ip").len()
    expected = {(b, ip): float(n) for b, ip, n in truth.iter_rows() if n >= t}
    assert 0 < len(expected) < truth.height  # ~51 users per day pass the threshold, ~6 do not
    assert {(b, ip): v for b, ip, v in rel.select("bucket", "source.ip", "value").iter_rows()} == expected


def test_quantile_intervals_cover_under_noise(make_engine):
    values = [int(1000 * (i / 2000) ** 2) for i in range(2000)]
    f = pl.DataFrame({"@timestamp": [dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)] * 2000,
                      "user.name": [f"u{i}" for i in range(2000)], "source.bytes": values})
    eng = make_engine(f)
    q = eng.build(Aggregation.quantile_set("source.bytes", [0.25, 0.5, 0.9]), epsilon=0.5, max_groups=1,
                  max_rows_per_group=1, bins={"source.bytes": {"lo": 0, "hi": 1000, "n": 40, "scale": "linear"}},
                  start=START, end=END)
    main, hists = aggregate(q.plan, eng.scan(), eng.backend)
    edges = np.linspace(0, 1000, 41)
    hits, trials = 0, 0
    for _ in range(100):
        rel = noisy_release(q.plan, main, hists, charge=Charge.for_audit(q.plan.loss)).data
        for level, row in zip((0.25, 0.5, 0.9), rel.iter_rows(named=True)):
            true = float(np.quantile(values, level))
            lo_edge = edges[np.searchsorted(edges, true, side="right") - 1]  # the bin holding the true quantile
            hits += row["ci_low"] <= lo_edge and true <= row["ci_high"]
            trials += 1
    assert hits / trials >= 0.95
