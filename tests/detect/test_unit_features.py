"""The detector follows the store's unit rule: feature rows per unit of the chain (namespaced by
field, one shared unit for rows without identity), anomaly rows that read back as the same unit
with the same protection, and the anomaly-count release's exact part under a policy."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from dplogs.detect.anomaly_counts import anomaly_events
from dplogs.detect.features import FEATURE_NAMES, FeatureSpec, extract_features
from dplogs.detect.kmeans import KMeansModel
from dplogs.detect.model import ModelCard, model_to_json, save_model
from dplogs.engine.api import Engine
from dplogs.engine.policy import PROTECTED, Policy
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.testing import exact_mode
from dplogs.schema import conform
from dplogs.schema.units import PER_ROW, UnitRule

T = dt.datetime(2026, 11, 3, 12, tzinfo=dt.UTC)
CHAIN = UnitRule(("user.name", "host.name"))
SPEC = FeatureSpec(max_windows_per_unit=3, clip_norm=3.0)


def _store() -> pl.LazyFrame:
    rows = ([("x", "laptop-1")] * 3 + [("root", "srv")] * 2 + [(None, "x")] * 2 + [(None, "web1")] * 4
            + [(None, None)] * 5)
    return conform(pl.DataFrame({"@timestamp": [T] * len(rows), "user.name": [u for u, _ in rows],
                                 "host.name": [h for _, h in rows], "event.outcome": ["failure"] * len(rows)}).lazy())


def test_features_are_per_unit_of_the_chain():
    units = extract_features(_store(), unit=CHAIN, spec=SPEC, seed=1).frame["unit"].to_list()
    assert sorted((u["field"], u["value"]) for u in units) == [(0, "root"), (0, "x"), (1, "web1"), (1, "x"), (2, "")]
    per_row = extract_features(_store(), unit=UnitRule(CHAIN.fields, PER_ROW), spec=SPEC, seed=1).frame
    assert per_row.height == 4 + 5  # each unattributed row its own unit
    plain = extract_features(_store(), unit=UnitRule(("user.name",), PER_ROW), spec=SPEC, seed=1).frame
    assert plain.height == 2 + 11  # today's rule: every row without user.name alone


def test_anomaly_rows_read_back_as_their_unit_with_the_same_protection():
    model = KMeansModel(centroids=np.zeros((1, len(FEATURE_NAMES))))
    rows = anomaly_events(_store(), model=model, unit=CHAIN, threshold=0.0, max_windows_per_unit=3, clip_norm=3.0, seed=1)
    table = extract_features(_store(), unit=CHAIN, spec=SPEC, seed=1).frame
    back = rows.select(CHAIN.expr().alias("u")).collect()["u"].to_list()
    assert sorted(map(str, back)) == sorted(map(str, table["unit"].to_list()))
    got = rows.collect()
    assert got.filter(pl.col("user.name") == "x")["host.name"].to_list() == ["laptop-1"]  # its busiest host
    policy = Policy(version=1, users=frozenset({"x"}), networks=None)
    marked = policy.mark(rows, CHAIN).collect()
    unprotected = marked.filter(~pl.col(PROTECTED))
    assert unprotected["user.name"].to_list() == ["root"]  # host units and the shared unit stay protected


@pytest.mark.parametrize("rule, total", [
    (CHAIN, 5),  # x, root, host x, host web1, the shared unit
    (UnitRule(("user.name",)), 3),  # x, root, the shared unit
    (UnitRule(("user.name",), PER_ROW), 13),  # x, root, and 11 rows each their own unit
])
def test_anomaly_count_release_uses_the_policys_exact_part(tmp_path, rule, total):
    """Only root's unit-window (an account off the roster, all of whose rows are unprotected) is
    counted exactly; under per-row, the unattributed rows' own units stay protected (their anomaly
    rows carry no user name, which the roster would otherwise call an account off the roster)."""
    card = ModelCard(detector="kmeans", epsilon=1.0, delta=1e-6, rho=None, accountant="test", privacy_unit=rule.label,
                     budget_windows=("2026-11",), max_windows_per_unit=1, clip_norm=3.0, feature_window="day",
                     features=tuple(FEATURE_NAMES))
    path = save_model(model_to_json(KMeansModel(centroids=np.zeros((1, len(FEATURE_NAMES)))), card), tmp_path / "m.json")
    ledger = Ledger.open(tmp_path / "ledger.sqlite", create=True)
    ledger.set_caps(window_policy="month", epsilon=10.0, delta=1e-6)
    eng = Engine(scan=_store, privacy_unit=rule, budget_window="month", ledger=ledger,
                 policy=Policy(version=1, users=frozenset({"x"}), networks=None))
    q = eng.over_anomalies(path, threshold=0.0, seed=1).sql("SELECT COUNT(*) FROM logs", epsilon=1.0,
                                                             start="2026-11-01", end="2026-12-01")
    with exact_mode():
        rel = q.release(caller="t")
    assert rel.data["exact"].item() == 1 and rel.data["value"].item() == total
    assert rel.privacy["protection"]["version"] == 1


def test_a_user_name_cannot_name_a_rows_own_unit(tmp_path):
    """Under the per-row opt-in of a single-field rule, a row without identity was its own unit
    keyed by the string "\\x00null:<row number>", which a user name can spell (JSON logs carry
    "\\u0000"): that user then merged with the row's own unit in training, and its anomaly rows
    read back with no user name, i.e. each its own unit to the engine, so nothing bounded them.
    A scalar count of anomalous unit-windows (L0 = L∞ = 1 charged) moved by K = 5 for one unit
    (redteam5). Units of the rule are now namespaced, as in a chain."""
    rule = UnitRule(("user.name",), PER_ROW)
    hostile = "\x00null:0"  # row 0 below is a row without identity: the key it had

    def events(with_victim: bool) -> pl.LazyFrame:
        rows = [(T, None)] + [(T + dt.timedelta(days=d), hostile) for d in range(1, 6) if with_victim]
        return conform(pl.DataFrame({"@timestamp": [t for t, _ in rows], "user.name": [u for _, u in rows],
                                     "event.outcome": ["failure"] * len(rows)}).lazy())

    table = extract_features(events(True), unit=rule, spec=FeatureSpec(max_windows_per_unit=5, clip_norm=3.0), seed=1)
    assert table.frame.select("unit", "budget_window").n_unique() == 2  # the user, and row 0 alone
    assert table.frame.height == 6
    model = KMeansModel(centroids=np.zeros((1, len(FEATURE_NAMES))))
    rows = anomaly_events(events(True), model=model, unit=rule, threshold=-1.0, max_windows_per_unit=5,
                          clip_norm=3.0, seed=1).collect()
    assert rows["user.name"].to_list().count(hostile) == 5  # read back as the user's unit
    card = ModelCard(detector="kmeans", epsilon=1.0, delta=1e-6, rho=None, accountant="test", privacy_unit=rule.label,
                     budget_windows=("2026-11",), max_windows_per_unit=5, clip_norm=3.0, feature_window="day",
                     features=tuple(FEATURE_NAMES))
    path = save_model(model_to_json(model, card), tmp_path / "m.json")
    counts = []
    for side, with_victim in (("d", True), ("d_prime", False)):
        ledger = Ledger.open(tmp_path / f"{side}.sqlite", create=True)
        ledger.set_caps(window_policy="month", epsilon=10.0, delta=1e-6)
        eng = Engine(scan=lambda w=with_victim: events(w), privacy_unit=rule, budget_window="month", ledger=ledger)
        q = eng.over_anomalies(path, threshold=-1.0, seed=1).sql("SELECT COUNT(*) FROM logs", epsilon=1.0,
                                                                  start="2026-11-01", end="2026-12-01")
        with exact_mode():
            rel = q.release(caller="t")
        counts.append(rel.data["value"].item())
        assert rel.data["scale"].item() == 1.0  # L0 = L∞ = 1 charged for a scalar count
    assert counts[0] - counts[1] == 1  # one unit moves it by one, not by its five unit-windows


def _busy_month() -> pl.DataFrame:
    """Two months of mixed events: users, hosts, rows without identity, several roles (modules),
    executables, source addresses and byte counts, so every feature and peer input moves. ann is
    the busiest unit: a statistic over units computed in the clear (a scale fitted to the busiest
    window, say) moves with her (checked by planting one in the history features)."""
    import random

    r = random.Random(5)
    rows = []
    for _ in range(1500):
        t = dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=r.randrange(59 * 24 * 60))
        rows.append({"@timestamp": t, "user.name": r.choice(["ann", "ann", "ann", "bob", "cy", "dee", None, None]),
                     "host.name": r.choice(["h1", "h2", "h3", None]), "event.module": r.choice(["system", "web", None]),
                     "process.executable": r.choice(["/bin/sh", "/usr/bin/ssh", None]),
                     "source.ip": r.choice(["10.0.0.1", "10.0.0.2", "192.0.2.9"]),
                     "event.outcome": r.choice(["success", "failure"]), "source.bytes": r.randrange(10**6)})
    return conform(pl.DataFrame(rows))


@pytest.mark.parametrize("rule, victim", [
    (UnitRule(("user.name",)), pl.col("user.name") == "ann"),
    (UnitRule(("user.name",)), pl.col("user.name").is_null()),  # the shared unit
    (CHAIN, pl.col("user.name").is_null() & (pl.col("host.name") == "h1")),  # a host unit
    (UnitRule(("user.name",), PER_ROW), pl.col("user.name") == "bob"),
    (UnitRule(CHAIN.fields, PER_ROW), pl.col("user.name") == "cy"),
], ids=["user", "shared", "chain-host", "per-row", "per-row-chain"])
@pytest.mark.parametrize("budget_window", ["month", "week"])
def test_one_units_events_in_one_budget_window_change_no_other_feature_row(rule, victim, budget_window):
    """Candidate 1 of redteam5: no feature row, nor the peer inputs a row carries (role, volumes,
    executables), of any OTHER (unit, budget window) moves when one unit's events of one budget
    window go: the history and first-seen features are per unit, scaling uses public constants,
    and peer features come from a released baseline. Rows of units alone (per-row) are compared
    without their keys, which are row numbers."""
    d = _busy_month()
    window = pl.col("@timestamp").dt.strftime("%Y-%m" if budget_window == "month" else "%G-W%V")
    gone = victim.fill_null(False) & (window == ("2026-03" if budget_window == "month" else "2026-W11"))
    spec = FeatureSpec(max_windows_per_unit=4, clip_norm=1.0, budget_window=budget_window)
    cols = ["budget_window", "window_start", "module", "events", "bytes", "processes", *FEATURE_NAMES]

    def rows(frame: pl.DataFrame) -> pl.DataFrame:
        out = extract_features(frame.lazy(), unit=rule, spec=spec, seed=3).frame
        unit = pl.col("unit")
        if out.schema["unit"] == pl.Binary:  # the shared unit is b"\xff"
            return out.with_columns(unit.bin.encode("hex")).select("unit", *cols).sort(pl.all())
        alone = unit.struct.field("field") == len(rule.fields) + 1
        text = pl.when(alone).then(pl.lit("alone")).otherwise(unit.struct.json_encode())
        return out.with_columns(text.alias("unit")).select("unit", *cols).sort(pl.all())

    a, b = rows(d), rows(d.filter(~gone))
    victims = a.join(b, on=["unit", *cols], how="anti", nulls_equal=True)
    assert victims.height > 0 and b.join(a, on=["unit", *cols], how="anti", nulls_equal=True).height == 0
    touched = victims.select("unit", "budget_window").unique()
    assert touched.height == 1, touched  # one (unit, budget window): the victim's
    others = a.join(touched, on=["unit", "budget_window"], how="anti")
    assert others.equals(b.join(touched, on=["unit", "budget_window"], how="anti"))
