"""Audits of the detector's releases besides the model weights (those have the canary audits of
test_detector_audit.py): the score histogram behind percentile thresholds, the peer baseline, and
anomaly queries (a DP count over the flagged unit-windows). Each uses the neighbour that is the
worst case for it and a planted bug the audit catches."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from dplogs.audit.auditor import audit, audit_outputs
from dplogs.audit.engine import audit_plan, corner, corner_statistic
from dplogs.audit.paths import vectorised
from dplogs.backends.polars_backend import PolarsBackend
from dplogs.detect import anomaly_counts, features
from dplogs.detect.anomaly_counts import anomaly_events
from dplogs.detect.calibration import plan_calibration, release_calibration
from dplogs.detect.features import FEATURE_NAMES, FeatureBatches, FeatureSpec, extract_features
from dplogs.detect.kmeans import KMeansModel
from dplogs.detect.peers import GROUP_NAMES, peer_totals, plan_peers, process_bucket, release_peers
from dplogs.engine import time_bucket
from dplogs.engine.api import Engine
from dplogs.engine import execute
from dplogs.engine.plan import Aggregation
from dplogs.engine.policy import PROTECTED, Policy
from dplogs.privacy.charge import Charge
from dplogs.privacy.mechanisms import add_noise, calibrate
from dplogs.privacy.sensitivity import Sensitivity
from dplogs.schema import conform
from dplogs.schema.units import PER_ROW, UnitRule
from tests.audit.audit_paths import assert_within_claim

K = 4  # max_windows_per_unit
SPEC = FeatureSpec(max_windows_per_unit=K, clip_norm=3.0)
DAY = dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC)


def _store(victim_events: int = 400) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """20 background users active one day each; the victim active on K days of one budget window
    with the same activity every day, so its K feature rows are identical: every one lands in the
    same score bin, peer group and process bucket (the worst case for a per-bin count)."""
    rows = [(DAY + dt.timedelta(days=i % 10), f"u{i}", "system", 1_000, "/usr/bin/ssh") for i in range(20)]
    rows += [(DAY + dt.timedelta(days=day, seconds=s), "victim", "system", 2**41, "/usr/bin/victim")
             for day in range(K) for s in range(victim_events)]
    d = conform(pl.DataFrame(rows, schema=["@timestamp", "user.name", "event.module", "source.bytes", "process.executable"],
                             orient="row").lazy())
    return d, d.filter(pl.col("user.name") != "victim")


MODEL = KMeansModel(centroids=np.zeros((1, len(FEATURE_NAMES))))


# -- the score histogram of percentile thresholds ---------------------------------------------

def _calibration_path(plan, rows_per_unit_kept: int = K):
    """Feature extraction (fresh K-window rank per run), scores, the noisy histogram."""
    spec = FeatureSpec(max_windows_per_unit=rows_per_unit_kept, clip_norm=SPEC.clip_norm)

    def run_once(lf):
        scores = MODEL.scores(extract_features(lf, unit="user.name", spec=spec).matrix())
        return np.asarray(release_calibration(scores, plan=plan, clip_norm=spec.clip_norm,
                                              charge=Charge.for_audit(plan.loss)).counts)

    return vectorised(run_once, plan)


def test_score_histogram_with_the_victims_k_rows_in_one_bin_stays_within_the_claim():
    d, d_prime = _store()
    plan = plan_calibration(max_rows_per_unit=K, epsilon=1.0)
    r = audit(_calibration_path(plan), d, d_prime, trials=30_000, claimed_epsilon=1.0, name="score histogram, K rows in one bin")
    assert_within_claim(r)
    assert r.epsilon_lb >= 0.8, r.summary()


def test_score_histogram_charged_for_one_row_per_unit_is_caught():
    """The planted bug: the histogram's sensitivity forgets K (one row per unit)."""
    d, d_prime = _store()
    broken = plan_calibration(max_rows_per_unit=1, epsilon=1.0)
    r = audit(_calibration_path(broken), d, d_prime, trials=5_000, claimed_epsilon=1.0, name="BROKEN: histogram, K forgotten")
    assert r.violated, r.summary()


# -- the peer baseline ------------------------------------------------------------------------

def _moved_cells() -> list[int]:
    """Indices, in the flattened release (counts, sums, process table), of the victim's cells."""
    g = GROUP_NAMES.index("system")
    n = len(GROUP_NAMES)
    return [g, n + 2 * g, n + 2 * g + 1, 3 * n + process_bucket("/usr/bin/victim")]


def _peer_rows(lf) -> pl.DataFrame:
    """The bounded feature rows, the victim's volumes raised past both caps (2^20 events, 2^40
    bytes a window: a store that big would only slow the test down; the baseline reads the
    rows' volumes, nothing else of the store)."""
    frame = extract_features(lf, unit="user.name", spec=SPEC).frame
    victim = pl.col("unit") == b"victim"
    return frame.with_columns(pl.when(victim).then(2.0**21).otherwise(pl.col("events")).alias("events"),
                              pl.when(victim).then(2.0**41).otherwise(pl.col("bytes")).alias("bytes"))


def _exact_cells(lf) -> np.ndarray:
    """The victim's cells of :func:`peer_totals` of the bounded feature rows (pre-noise)."""
    counts, sums, table = peer_totals(_peer_rows(lf))
    return np.concatenate([counts, np.ravel(sums), table])[_moved_cells()]


def _peer_path(plan):
    """The peer release restricted to the victim's cells, each noised by its part's plan as
    :func:`release_peer_totals` does. Every cell's noise is independent, and the other cells have
    the same distribution on D and D′, so leaving them out of the output loses no distinguishing
    power; it saves drawing 4,109 float noises a run (≈0.2 s) for 4."""
    parts = [plan.count_plan, plan.sum_plan, plan.sum_plan, plan.process_plan]

    def run(lf, trials):
        exact = _exact_cells(lf)
        cols = []
        for value, part in zip(exact, parts, strict=True):
            v = np.full(trials, int(value) if part.integer else value, dtype=np.int64 if part.integer else np.float64)
            cols.append(add_noise(v, part, charge=Charge.for_audit(part.loss)).astype(np.float64))
        return np.column_stack(cols)

    return run


def test_peer_release_noises_each_part_with_its_plan(monkeypatch):
    """What :func:`_peer_path` assumes of release_peer_totals: counts by count_plan, sums by
    sum_plan, the process table by process_plan."""
    from dplogs.detect import peers

    seen = []
    monkeypatch.setattr(peers, "add_noise", lambda values, plan, *, charge: seen.append((np.shape(values), plan)) or np.zeros(np.shape(values)))
    plan = plan_peers(max_rows_per_unit=K, epsilon=1.0)
    release_peers(extract_features(_store()[0], unit="user.name", spec=SPEC).frame, plan=plan, charge=Charge.for_audit(plan.loss))
    n = len(GROUP_NAMES)
    assert seen == [((2 * n,), plan.sum_plan), ((n,), plan.count_plan), ((4096,), plan.process_plan)]


def test_peer_baseline_with_the_victim_at_every_cap_stays_within_the_claim():
    """The victim's K rows: one peer group, both volumes above their caps (each scaled to 1: the
    sum moves by K·(1, 1), its full L1 = K·√2·√2), one executable each (weight 1 in one bucket)."""
    d, d_prime = _store()
    plan = plan_peers(max_rows_per_unit=K, epsilon=1.0)
    exact_d, exact_d_prime = _exact_cells(d), _exact_cells(d_prime)
    np.testing.assert_allclose(exact_d - exact_d_prime, K)  # K rows in each moved cell, each at its cap
    run = _peer_path(plan)
    on_d, on_d_prime = run(d, 10_000), run(d_prime, 10_000)
    for statistic, what in ((None, "projection"), (corner(exact_d, exact_d_prime), "corner")):
        r = audit_outputs(on_d, on_d_prime, claimed_epsilon=1.0, statistic=statistic, name=f"peer baseline ({what})")
        assert_within_claim(r)
    # power: the corner of four cells is a rare event, so its bound spreads: 0.704 ± 0.055 over 12
    # audits (min 0.642), and CI saw 0.49 once against a floor of 0.5; 0.4 is > 5 sd below the mean
    assert r.epsilon_lb >= 0.4, r.summary()


def test_peer_baseline_charged_for_one_row_per_unit_is_caught():
    d, d_prime = _store()
    run = _peer_path(plan_peers(max_rows_per_unit=1, epsilon=1.0))  # BROKEN: K forgotten
    r = audit(run, d, d_prime, trials=5_000, claimed_epsilon=1.0, name="BROKEN: peer baseline, K forgotten")
    assert r.violated, r.summary()


# -- anomaly queries: a count over flagged unit-windows ---------------------------------------

RISE = FEATURE_NAMES.index("events_rise_vs_own_history")


class RiseModel:
    """A detector that scores a unit-window by its rise over the unit's own history alone: the
    feature whose history the neighbour below changes."""

    def scores(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)[:, RISE]


def _anomaly_store():
    """Background users one quiet day each. The victim: February 20 and 21 one event each, February
    22 200 events (a rise over its February history: flagged), March 1 200 events (its first
    March window: no history, not flagged). D′ removes the victim's February. A detector whose
    history ran across budget windows would flag March 1 in D (a rise over February) but not in
    D′: one unit's February would move a March cell too."""
    t = dt.datetime(2026, 2, 18, 9, tzinfo=dt.UTC)
    rows = [(t + dt.timedelta(days=i % 12), f"u{i}") for i in range(24)]
    rows += [(dt.datetime(2026, 2, day, 10, tzinfo=dt.UTC), "victim") for day in (20, 21)]
    rows += [(dt.datetime(2026, 2, 22, 10, tzinfo=dt.UTC) + dt.timedelta(seconds=s), "victim") for s in range(200)]
    rows += [(dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC) + dt.timedelta(seconds=s), "victim") for s in range(200)]
    d = conform(pl.DataFrame(rows, schema=["@timestamp", "user.name"], orient="row").lazy())
    feb = (pl.col("user.name") == "victim") & (pl.col("@timestamp") < dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    return d, d.filter(~feb)


def _anomaly_rows(lf):
    """The anomaly query type's rows (fresh K-window rank), checked to be seed-independent."""
    runs = [anomaly_events(lf, model=RiseModel(), unit="user.name", threshold=0.1, max_windows_per_unit=K,
                           clip_norm=SPEC.clip_norm).collect() for _ in range(4)]
    assert all(r.equals(runs[0]) for r in runs[1:])
    return runs[0].lazy()


def _anomaly_plan():
    eng = Engine(scan=lambda: None, privacy_unit="user.name", budget_window="month", ledger=None)
    return eng.build(Aggregation.count(), keys=[time_bucket("day")], epsilon=1.0, max_groups=1, max_rows_per_group=1,
                     start="2026-02-18", end="2026-03-04").plan


def _audit_anomalies(name: str, trials: int):
    d, d_prime = (_anomaly_rows(x) for x in _anomaly_store())
    plan = _anomaly_plan()
    return audit_plan(plan, PolarsBackend(), d, d_prime, trials=trials,
                      statistic=corner_statistic(plan, PolarsBackend(), d, d_prime), name=name)


def test_anomalous_unit_windows_per_day_stay_within_the_claim():
    r = _audit_anomalies("anomalous unit-windows per day, February removed", 30_000)
    assert_within_claim(r)
    assert r.epsilon_lb >= 0.8, r.summary()  # February 22 is the victim's own cell


def test_history_across_budget_windows_is_caught(monkeypatch):
    """The planted bug: the own-history features run over every earlier window, not only the
    same budget window's, so the removed February flips the March 1 flag too."""
    real = features._with_own_history

    def across(rows, events, keys):
        one = pl.lit("all").alias("budget_window")
        out = real(rows.with_columns(one), events.with_columns(one), keys)
        return out.with_columns(pl.col("window_start").dt.strftime("%Y-%m").alias("budget_window"))

    monkeypatch.setattr(features, "_with_own_history", across)
    r = _audit_anomalies("BROKEN: history across budget windows", 5_000)
    assert r.violated, r.summary()


# -- anomaly queries under a protection policy: each row stands for a unit-window ---------------

ADDRESS_POLICY = Policy(version=1, users=frozenset({"anna"}), networks=("10.0.0.0/8",))
VICTIM_DAYS = (2, 3, 4, 5)


class FlagAll:
    """A detector that flags every unit-window: the rows are then all unit-windows."""

    def scores(self, x: np.ndarray) -> np.ndarray:
        return np.ones(len(x))


def _address_store():
    """A source.ip store. Office addresses inside the networks and scanners outside (no account)
    one day each; the victim: the outside address 203.0.113.7, where anna (on the roster) signed
    in on four days, so all its rows are protected. D′ drops them (the neighbouring relation
    restricted to protected rows)."""
    t = dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC)
    rows = [(t + dt.timedelta(days=i % 7), f"10.0.0.{i}", f"clerk{i}") for i in range(1, 15)]
    rows += [(t + dt.timedelta(days=i % 7, hours=-7), f"198.51.100.{i}", None) for i in range(1, 8)]
    rows += [(dt.datetime(2026, 3, day, 21, tzinfo=dt.UTC), "203.0.113.7", "anna") for day in VICTIM_DAYS]
    d = conform(pl.DataFrame(rows, schema=["@timestamp", "source.ip", "user.name"], orient="row").lazy())
    victim = pl.col("source.ip") == "203.0.113.7"
    assert ADDRESS_POLICY.mark(d, "source.ip").filter(victim).collect()[PROTECTED].all()
    return d, d.filter(~victim)


def _address_anomaly_plan():
    """Anomalous address-days per day, L0 = 1, L∞ = 1: the victim's four flagged days must be cut
    to one, as for any protected unit."""
    eng = Engine(scan=lambda: None, privacy_unit="source.ip", budget_window="month", ledger=None, policy=ADDRESS_POLICY)
    eng.anomalies = {"detector": "test"}  # what Engine.over_anomalies sets: the rows are unit-windows
    return eng.build(Aggregation.count(), keys=[time_bucket("day")], epsilon=1.0, max_groups=1, max_rows_per_group=1,
                     start="2026-03-01", end="2026-03-08").plan


def _audit_address_anomalies(name: str, trials: int):
    d, d_prime = (anomaly_events(x, model=FlagAll(), unit="source.ip", threshold=0.5, max_windows_per_unit=K,
                                 clip_norm=SPEC.clip_norm) for x in _address_store())
    # the sum over the victim's days: one of them moves by 1 (L0 = 1) whichever the bounding keeps
    return audit_plan(_address_anomaly_plan(), PolarsBackend(), d, d_prime, trials=trials, name=name,
                      statistic=lambda out: out[:, [day - 1 for day in VICTIM_DAYS]].sum(axis=1))


def test_anomaly_rows_of_an_address_a_person_used_stay_within_the_claim():
    r = _audit_address_anomalies("anomalous address-days, a roster person's outside address removed", 400)
    assert_within_claim(r)


def test_anomaly_rows_marked_row_by_row_are_caught(monkeypatch):
    """The planted bug (dplogs before redteam4): the networks mark each anomaly row by its address
    alone, so the victim's address-days are unprotected, counted exactly and not bounded: all four
    move, with no noise on their part."""
    monkeypatch.setattr(execute, "marked", lambda plan, lf: plan.policy.mark(lf, plan.unit))
    r = _audit_address_anomalies("BROKEN: anomaly rows marked row by row", 1_000)
    assert r.violated, r.summary()


# -- anomaly queries under the per-row opt-in: a user named like a row's own unit ------------------

PER_ROW_RULE = UnitRule(("user.name",), PER_ROW)
HOSTILE = "\x00null:0"  # the key row 0, a row without identity, had before redteam5


def _per_row_store():
    """A single-field per-row store: row 0 and a few more rows without identity (each its own
    unit), users one day each, and the victim, a user named like row 0's old key, on K days.
    D′ drops the victim."""
    t = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    rows = [(t, None)] + [(t + dt.timedelta(days=i % 7, hours=1), None if i % 3 else f"u{i}") for i in range(1, 15)]
    rows += [(t + dt.timedelta(days=day, hours=2), HOSTILE) for day in range(K)]
    d = conform(pl.DataFrame(rows, schema=["@timestamp", "user.name"], orient="row").lazy())
    return d, d.filter((pl.col("user.name") != HOSTILE).fill_null(True))


def _audit_per_row_anomalies(name: str, trials: int):
    """Anomalous unit-windows of the whole window, a scalar count: L0 = L∞ = 1 charged."""
    d, d_prime = (anomaly_events(x, model=FlagAll(), unit=PER_ROW_RULE, threshold=0.5, max_windows_per_unit=K,
                                 clip_norm=SPEC.clip_norm) for x in _per_row_store())
    eng = Engine(scan=lambda: None, privacy_unit=PER_ROW_RULE, budget_window="month", ledger=None)
    plan = eng.build(Aggregation.count(), epsilon=1.0, max_groups=K, max_rows_per_group=1,
                     start="2026-03-01", end="2026-04-01").plan
    return audit_plan(plan, PolarsBackend(), d, d_prime, trials=trials, name=name)


def test_a_user_named_like_a_rows_own_unit_stays_within_the_claim():
    r = _audit_per_row_anomalies("anomalous unit-windows, per-row store, a user named like a row's own unit", 20_000)
    assert_within_claim(r)
    assert r.epsilon_lb >= 0.8, r.summary()


def test_a_rows_own_unit_keyed_by_a_string_a_user_can_spell_is_caught(monkeypatch):
    """The planted bug (dplogs before redteam5): a row without identity keyed "\\x00null:<row>"
    beside bare user names, and anomaly rows with that prefix read back without identity. The
    victim then merges with row 0 and its K anomaly rows come back as K units of one row: the
    scalar count moves by K."""
    def string_keys(rule):
        row = pl.concat_str(pl.lit("\x00null:"), pl.int_range(pl.len()).cast(pl.String))
        return pl.when(rule.expr().is_null()).then(row).otherwise(rule.expr())

    def prefix_identity(rule):
        unit = pl.col("unit")
        return [pl.when(~unit.str.starts_with("\x00null:")).then(unit).alias("user.name"), pl.col("host").alias("host.name")]

    monkeypatch.setattr(features, "unit_keys", string_keys)
    monkeypatch.setattr(anomaly_counts, "_identity", prefix_identity)
    r = _audit_per_row_anomalies("BROKEN: per-row units keyed by a string a user can spell", 2_000)
    assert r.violated, r.summary()


# -- the DP-SGD training's noisy unit count (it sets the sampling rate) ------------------------

def _unit_count_path(plan, count):
    def run_once(lf):
        table = extract_features(lf, unit="user.name", spec=SPEC)
        n = count(FeatureBatches(table.batches(), table.dim))
        return add_noise(np.array([n]), plan, charge=Charge.for_audit(plan.loss))

    return vectorised(run_once, plan)


def test_noisy_unit_count_stays_within_the_claim_and_counting_rows_is_caught():
    """Any unit removed from one budget window moves the count of (unit, window) pairs by one,
    the sensitivity charged (train.py: ESTIMATE_SHARE of ε, Laplace, sensitivity 1); the victim's
    K rows make the planted bug, counting feature rows, move it by K."""
    d, d_prime = _store()
    plan = calibrate(mechanism="laplace", integer=True, epsilon=1.0, sensitivity=Sensitivity(l1=1.0, l2=1.0))
    r = audit(_unit_count_path(plan, lambda src: src.unit_count(K)), d, d_prime, trials=30_000, claimed_epsilon=1.0,
              name="DP-SGD noisy unit count")
    assert_within_claim(r)
    assert r.epsilon_lb >= 0.8, r.summary()
    rows = lambda src: sum(b.num_rows for b in src.batches)  # noqa: E731 (BROKEN: rows, not units)
    r = audit(_unit_count_path(plan, rows), d, d_prime, trials=5_000, claimed_epsilon=1.0, name="BROKEN: unit count over rows")
    assert r.violated, r.summary()
