"""Peer-group features: exact values on a small store, the DP peer baseline's sensitivity under the
per-unit bound, its charge, and its use at scoring time."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dplogs.detect.features import FEATURE_NAMES, FeatureSpec, extract_features
from dplogs.detect.peers import (
    GROUP_NAMES, PEER_FEATURE_NAMES, PROCESS_BUCKETS, PROCESS_CAP, VOLUMES, PeerBaseline, peer_features, peer_inputs,
    plan_peers, process_bucket, release_peers, with_peer_features,
)
from dplogs.errors import DataError, InternalError
from dplogs.privacy.charge import Charge
from dplogs.privacy.testing import exact_mode
from dplogs.schema import conform

T0 = dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC)


def _events(rows):
    """rows: (user, day offset, module, bytes)."""
    return conform(pl.DataFrame({
        "@timestamp": [T0 + dt.timedelta(days=d) for _, d, _, _ in rows],
        "user.name": [u for u, *_ in rows],
        "event.module": [m for _, _, m, _ in rows],
        "source.bytes": [b for *_, b in rows],
    }, schema_overrides={"event.module": pl.String, "source.bytes": pl.Int64})).lazy()


SMALL = [
    # alice: two web days, 3 events of 1023 bytes, then one day of 1 event with 2**20 - 1 bytes
    ("alice", 0, "web", 1023), ("alice", 0, "web", 1023), ("alice", 0, "web", 1023),
    ("alice", 1, "web", 2**20 - 1),
    # bob: one sshd day (system), 7 events without bytes
    *[("bob", 0, "system", 0)] * 7,
]


def test_peer_inputs_are_each_unit_windows_own_role_and_volumes():
    t = extract_features(_events(SMALL), unit="user.name", spec=FeatureSpec(max_windows_per_unit=5, clip_norm=1.0), seed=0)
    f = t.frame.sort("unit", "window_start")
    groups, vols = peer_inputs(f)
    assert [GROUP_NAMES[g] for g in groups] == ["web", "web", "system"]
    # doublings: log2(1 + events), log2(1 + bytes)
    np.testing.assert_allclose(vols, [[2.0, math.log2(1 + 3 * 1023)], [1.0, 20.0], [3.0, 0.0]])


def test_exact_baseline_and_features_on_a_small_store():
    spec = FeatureSpec(max_windows_per_unit=5, clip_norm=10.0)
    t = extract_features(_events(SMALL), unit="user.name", spec=spec, seed=0)
    plan = plan_peers(max_rows_per_unit=5, rho=0.5)
    with exact_mode():
        b = release_peers(t.frame, plan=plan, charge=Charge.for_audit(plan.loss))
    web, system = GROUP_NAMES.index("web"), GROUP_NAMES.index("system")
    assert b.counts[web] == 2 and b.counts[system] == 1 and sum(b.counts) == 3
    caps = [c for _, c in VOLUMES]
    assert b.sums[web] == pytest.approx([(2 + 1) / caps[0], (math.log2(3070) + 20) / caps[1]])
    # with this plan's noise no group is precise enough: every mean falls back to None -> 0
    assert b.min_count > 3 and b.mean_doublings("web") is None
    assert peer_features(t.frame, b).tolist() == [[0.0, 0.0, 0.0]] * 3  # no process named: rarity 0
    # the same release with a public minimum of 1 row: each group's own mean, rises above it
    b1 = PeerBaseline(counts=b.counts, sums=b.sums, min_count=1.0)
    web_mean = np.array([1.5, (math.log2(3070) + 20) / 2])
    assert b1.mean_doublings("web").tolist() == pytest.approx(web_mean.tolist())
    f = t.frame.sort("unit", "window_start")
    rises = peer_features(f, b1)
    expect_day0 = np.clip((np.array([2.0, math.log2(3070)]) - web_mean) / 6, 0, 1)
    expect_day1 = np.clip((np.array([1.0, 20.0]) - web_mean) / 6, 0, 1)
    np.testing.assert_allclose(rises, np.column_stack([[expect_day0, expect_day1, [0.0, 0.0]], [0.0, 0.0, 0.0]]))
    assert rises[1, 1] > 0.7  # the 1 MB day rises ~4.2 doublings above the web peers
    # appended as named features, every row clipped again to C
    t2 = with_peer_features(t, b1)
    assert t2.names == (*FEATURE_NAMES, *PEER_FEATURE_NAMES)
    assert np.all(np.linalg.norm(t2.matrix(), axis=1) <= 10.0 * (1 + 1e-12))
    assert t2.frame.sort("unit", "window_start")["bytes_rise_vs_peers"].to_list() == pytest.approx(rises[:, 1].tolist())


def _process_events(rows):
    """rows: (user, hour offset, executable or None)."""
    return conform(pl.DataFrame({
        "@timestamp": [T0 + dt.timedelta(hours=h) for _, h, _ in rows],
        "user.name": [u for u, *_ in rows],
        "process.executable": [e for *_, e in rows],
    }, schema_overrides={"process.executable": pl.String})).lazy()


PROCS = [
    # carol runs svchost twice and cmd once in one hour, svchost again the next hour; dave runs
    # svchost and a tool nobody else runs; erin's hour names no process
    ("carol", 0, "C:\\Windows\\System32\\svchost.exe"), ("carol", 0, "c:\\windows\\system32\\SVCHOST.EXE"),
    ("carol", 0, "C:\\Windows\\System32\\cmd.exe"), ("carol", 1, "C:\\Windows\\System32\\svchost.exe"),
    ("dave", 0, "C:\\Windows\\System32\\svchost.exe"), ("dave", 0, "C:\\Temp\\Tool.exe"),
    ("erin", 0, None),
]


def test_process_table_and_rarity_exact_values():
    spec = FeatureSpec(max_windows_per_unit=5, clip_norm=10.0, window="hour")
    t = extract_features(_process_events(PROCS), unit="user.name", spec=spec, seed=0)
    f = t.frame.sort("unit", "window_start")
    svc, cmd, tool = (process_bucket(p) for p in ("c:\\windows\\system32\\svchost.exe",
                                                   "c:\\windows\\system32\\cmd.exe", "c:\\temp\\tool.exe"))
    assert len({svc, cmd, tool}) == 3 and f["processes"].to_list() == [
        ["c:\\windows\\system32\\cmd.exe", "c:\\windows\\system32\\svchost.exe"],
        ["c:\\windows\\system32\\svchost.exe"], ["c:\\temp\\tool.exe", "c:\\windows\\system32\\svchost.exe"], []]
    plan = plan_peers(max_rows_per_unit=5, rho=0.5)
    with exact_mode():
        b = release_peers(f, plan=plan, charge=Charge.for_audit(plan.loss))
    table = np.array(b.processes)
    # each window's executables share a weight of 1: carol 1/2 + 1 + dave 1/2 for svchost
    assert table[svc] == 2.0 and table[cmd] == 0.5 and table[tool] == 0.5 and table.sum() == 3.0
    rarity = {k: 1 - math.log1p(w) / math.log1p(PROCESS_CAP) for k, w in ((svc, 2.0), (cmd, 0.5), (tool, 0.5))}
    got = peer_features(f, b)[:, -1]
    np.testing.assert_allclose(got, [(rarity[cmd] + rarity[svc]) / 2, rarity[svc], (rarity[tool] + rarity[svc]) / 2, 0.0])
    # noisy weights below 0 count as 0 (never seen: rarity 1)
    neg = PeerBaseline(counts=b.counts, sums=b.sums, min_count=b.min_count, processes=-table)
    assert peer_features(f, neg)[:, -1].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert PeerBaseline.from_dict(b.to_dict()) == b and len(b.processes) == PROCESS_BUCKETS


def test_pooled_mean_when_a_group_is_too_small():
    n = len(GROUP_NAMES)
    counts = [0.0] * n
    sums = [(0.0, 0.0)] * n
    counts[GROUP_NAMES.index("system")], sums[GROUP_NAMES.index("system")] = 100.0, (50.0, 25.0)
    counts[GROUP_NAMES.index("web")], sums[GROUP_NAMES.index("web")] = 5.0, (5.0, 5.0)
    b = PeerBaseline(counts=counts, sums=sums, min_count=50.0)
    assert b.mean_doublings("system").tolist() == pytest.approx([10.0, 10.0])
    # web holds 5 < 50 noisy rows: the pooled mean of all groups, (55 / 105) of each cap
    assert b.mean_doublings("web").tolist() == pytest.approx([55 / 105 * 20, 30 / 105 * 40])


rows = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 9),
                          st.sampled_from(["web", "system", "windows", "vendorx", None]), st.integers(0, 10**12)),
                min_size=1, max_size=60)


@settings(max_examples=40, deadline=None)
@given(rows=rows, k=st.integers(1, 4), victim=st.sampled_from(["a", "b", "c", "d"]))
def test_one_unit_moves_the_baseline_by_at_most_the_planned_sensitivity(rows, k, victim):
    """Neighbouring stores (all of one unit's events removed) change the pre-noise group sums by at
    most the sums plan's L2 (and L1) sensitivity and the counts by at most K: the noise is
    calibrated to a true bound."""
    spec = FeatureSpec(max_windows_per_unit=k, clip_norm=1.0)
    plan = plan_peers(max_rows_per_unit=k, rho=1.0)
    plan_l = plan_peers(max_rows_per_unit=k, epsilon=1.0)

    def exact(lf):
        t = extract_features(lf, unit="user.name", spec=spec, seed=7)
        with exact_mode():
            b = release_peers(t.frame, plan=plan, charge=Charge.for_audit(plan.loss))
        return np.array(b.sums), np.array(b.counts), np.array(b.processes)

    # executables from a small public pool, so units share and collide in buckets
    pool = ["a.exe", "b.exe", "c.exe", None]
    full = _events(rows).with_columns(pl.Series("process.executable", [pool[r[3] % 4] for r in rows], dtype=pl.String))
    s1, c1, p1 = exact(full)
    s0, c0, p0 = exact(full.filter(pl.col("user.name") != victim))
    assert np.linalg.norm(s1 - s0) <= plan.sum_plan.sensitivity + 1e-9
    assert np.abs(s1 - s0).sum() <= plan_l.sum_plan.sensitivity + 1e-9
    assert np.abs(c1 - c0).sum() <= k and plan.count_plan.sensitivity == k
    assert np.abs(p1 - p0).sum() <= k + 1e-9 and plan.process_plan.sensitivity == plan_l.process_plan.sensitivity == k


def test_release_consumes_its_loss_before_noise():
    t = extract_features(_events(SMALL), unit="user.name", spec=FeatureSpec(max_windows_per_unit=2, clip_norm=1.0), seed=0)
    plan = plan_peers(max_rows_per_unit=2, epsilon=0.5)
    charge = Charge.for_audit(plan.loss)
    release_peers(t.frame, plan=plan, charge=charge)
    assert charge.noise_drawn and charge.left.epsilon == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InternalError):  # a second draw was not reserved
        release_peers(t.frame, plan=plan, charge=charge)


def test_malformed_baseline_in_a_model_card_is_a_data_error():
    with pytest.raises(DataError, match="peer groups"):
        PeerBaseline.from_dict({"groups": ["web"], "volumes": ["events", "bytes"], "counts": [1], "sums": [[0, 0]],
                                "min_count": 1})
    good = PeerBaseline(counts=(1.0,) * len(GROUP_NAMES), sums=((0.0, 0.0),) * len(GROUP_NAMES), min_count=1.0)
    d = json.loads(json.dumps(good.to_dict()))
    assert PeerBaseline.from_dict(d) == good
    d["sums"] = [[0.0]] * len(GROUP_NAMES)
    with pytest.raises(DataError, match="malformed"):
        PeerBaseline.from_dict(d)


def test_training_releases_the_baseline_in_its_ledger_entry_and_scoring_uses_it(store, tmp_path):
    from dplogs.detect.model import load_model
    from dplogs.detect.train import TrainRequest, top_windows, train_from_store
    from dplogs.privacy.dpsgd import rho_for_epsilon
    from dplogs.privacy.ledger import Ledger

    req = TrainRequest(detector="kmeans", epsilon=1.0, delta=1e-6, start="2026-11-01", end="2026-12-01",
                       max_windows_per_unit=3, clip_norm=1.0, k=4, iterations=3)
    path, card = train_from_store(store.path, req, output=tmp_path / "m.json")
    assert card.features == (*FEATURE_NAMES, *PEER_FEATURE_NAMES)
    assert card.peers is not None and card.hyperparameters["peer_baseline"]["share"] == 0.1
    # 50 users at ε = 1 are far too few for a usable baseline, and train says so
    assert not card.peers.usable
    assert any("peer baseline is too noisy" in w for w in card.hyperparameters["warnings"])
    with Ledger.open(store.ledger_path) as ledger:
        (entry,) = ledger.history()
    # ONE entry holds the model, the score histogram and the peer baseline: ρ of the whole ε
    assert entry.id == card.ledger_entry and entry.loss.rho == pytest.approx(rho_for_epsilon(1.0, 1e-6), rel=1e-9)
    top = top_windows(store.path, path, n=3)
    assert len(top) == 3 and all(len(r["drivers"]) == 3 for r in top)
    # a model file whose card lost its baseline no longer matches its own weights' vocabulary
    doc = json.loads(path.read_text())
    doc["model_card"]["peer_baseline"] = None
    (tmp_path / "old.json").write_text(json.dumps(doc))
    from dplogs.errors import DplogsError

    with pytest.raises(DplogsError):
        top_windows(store.path, tmp_path / "old.json", n=3)
    assert load_model(path)[1] == card
