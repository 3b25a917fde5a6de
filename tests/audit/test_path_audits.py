"""Audits of the query release paths the older audits left out, each with the neighbour that is
the worst case for it and a planted bug the audit catches (docs/privacy.md, "What the auditor
checks"). Everything runs on the engine's real path (planner → polars bounding with a fresh seed →
selection, noise, post-processing) under audit-only charges."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import polars as pl

from dplogs.audit.auditor import audit, audit_outputs
from dplogs.audit.engine import audit_plan, claimed_loss, corner, corner_statistic, engine_path
from dplogs.backends.polars_backend import PolarsBackend
from dplogs.detect.timeseries import baseline_scores, noise_std
from dplogs.engine import execute, planner, time_bucket
from dplogs.engine.api import Engine
from dplogs.engine.explain import noise_name
from dplogs.engine.plan import Aggregation, Cmp
from dplogs.engine.planner import SumSpec
from dplogs.engine.policy import Policy
from dplogs.privacy.bounds import Clamp
from dplogs.privacy.charge import Charge
from dplogs.privacy.mechanisms import add_noise
from dplogs.privacy.sensitivity import Sensitivity
from dplogs.schema import conform
from tests.audit.audit_paths import assert_within_claim
from tests.audit.engine_data import WINDOW, neighbours

BACKEND = PolarsBackend()
ENGINE = Engine(scan=lambda: None, privacy_unit="user.name", budget_window="month", ledger=None)
FAILURE = Cmp("event.outcome", "=", "failure")


def _halved(sensitivity):
    """A planted bug: the planner's sensitivity for a kind of column, halved."""
    def half(*args):
        s = sensitivity(*args)
        return Sensitivity(l1=s.l1 / 2, l2=s.l2 / 2)
    return half


def _cells_with_fixed_noise(plan, lf, monkeypatch) -> pl.DataFrame:
    """The released cells when every noised column comes out as the same fixed numbers whatever
    the data (50, 51, ...): cells that differ between D and D′ then read something besides the
    noisy columns (the audits below draw the noisy columns only, vectorised)."""
    monkeypatch.setattr(execute, "add_noise", lambda values, noise, *, charge: 50.0 + np.arange(len(values)))
    main, hists = execute.aggregate(plan, lf, BACKEND)
    return execute.noisy_release(plan, main, hists, charge=None).data


def test_post_processed_cells_read_only_the_noisy_columns(monkeypatch):
    """Means, ratios, quantiles and top-k are post-processing of the noisy columns: with the same
    noisy columns, D and D′ release the same cells. The planted bug (a mean's "not enough data"
    decided on the exact count) is caught by the same check."""
    d, d_prime = neighbours(victim_rows=5, victim_bytes=99.0, victim_outcome="failure")
    plans = [
        _ratio_plan(), _mean_plan(),
        ENGINE.build(Aggregation.quantile_set("source.bytes", [0.5, 0.9]), epsilon=1.0, max_groups=1,
                     max_rows_per_group=2, bins={"source.bytes": {"lo": 0, "hi": 100, "n": 16}}, **WINDOW).plan,
        ENGINE.build(Aggregation.count(), keys=["event.outcome"], epsilon=1.0, max_groups=1, max_rows_per_group=2,
                     top_k=1, order_by="count", **WINDOW).plan,
    ]
    for plan in plans:
        assert _cells_with_fixed_noise(plan, d, monkeypatch).equals(_cells_with_fixed_noise(plan, d_prime, monkeypatch))
    real = execute._quotient

    def exact_gate(num, den, sn, sd, lo, hi):  # BROKEN: null when the exact count is small
        value, ci_lo, ci_hi = real(num, den, sn, sd, lo, hi)
        exact = execute.aggregate(_mean_plan(), current[0], BACKEND)[0]["sum_n0"].to_numpy()
        return np.where(exact < 31, np.nan, value), ci_lo, ci_hi  # D: 32, D′: 30

    monkeypatch.setattr(execute, "_quotient", exact_gate)
    current = [d]
    on_d = _cells_with_fixed_noise(_mean_plan(), d, monkeypatch)
    current = [d_prime]
    assert not on_d.equals(_cells_with_fixed_noise(_mean_plan(), d_prime, monkeypatch))


# -- ratio: the victim at the clamp of numerator AND denominator ------------------------------

def _ratio_plan():
    return ENGINE.build(Aggregation.ratio(FAILURE), epsilon=1.0, max_groups=1, max_rows_per_group=2, **WINDOW).plan


def test_ratio_with_the_victim_at_both_clamps_stays_within_the_claim():
    """5 failures, L∞ = 2: the victim adds 2 to the matching rows AND 2 to the rows, the most one
    unit can move either column. Audited on the noisy columns the quotient is computed from (see the test above)."""
    d, d_prime = neighbours(victim_rows=5, victim_outcome="failure")
    plan = _ratio_plan()
    assert [c.source for c in plan.columns] == ["sum_r0", "rows"]
    r = audit_plan(plan, BACKEND, d, d_prime, trials=30_000, statistic=corner_statistic(plan, BACKEND, d, d_prime),
                   name="ratio, victim at both clamps")
    assert_within_claim(r)
    assert r.epsilon_lb >= 0.8, r.summary()


def test_ratio_with_halved_sensitivities_is_caught(monkeypatch):
    monkeypatch.setattr(planner, "count_sensitivity", _halved(planner.count_sensitivity))
    monkeypatch.setattr(planner, "sum_sensitivity", _halved(planner.sum_sensitivity))
    d, d_prime = neighbours(victim_rows=5, victim_outcome="failure")
    plan = _ratio_plan()
    r = audit_plan(plan, BACKEND, d, d_prime, trials=10_000, statistic=corner_statistic(plan, BACKEND, d, d_prime),
                   name="BROKEN: ratio, sensitivities / 2")
    assert r.violated, r.summary()


# -- mean: the victim at the clamp's top on every kept row ------------------------------------

def _mean_plan():
    return ENGINE.build(Aggregation.mean("source.bytes"), epsilon=1.0, max_groups=1, max_rows_per_group=2,
                        clamp={"source.bytes": (0, 100)}, **WINDOW).plan


def test_mean_with_the_victim_at_the_clamp_stays_within_the_claim():
    """Values of 1e6 clamped to 100 on L∞ = 2 kept rows: the sum moves by 2·100 and the count of
    non-null values by 2, both the column's full sensitivity."""
    d, d_prime = neighbours(victim_rows=5, victim_bytes=1e6)
    plan = _mean_plan()
    r = audit_plan(plan, BACKEND, d, d_prime, trials=30_000, statistic=corner_statistic(plan, BACKEND, d, d_prime),
                   name="mean, victim at the clamp")
    assert_within_claim(r)
    assert r.epsilon_lb >= 0.8, r.summary()


def test_mean_without_the_clamp_is_caught():
    """The planted bug: the values are not clamped (the sums' clamp widened to 1e9) while the
    noise is still calibrated for [0, 100]."""
    d, d_prime = neighbours(victim_rows=5, victim_bytes=1e6)
    plan = _mean_plan()
    wide = Clamp(lo=0, hi=1e9)
    broken = replace(plan, clamps={"source.bytes": wide},
                     sums=tuple(replace(s, clamp=wide) if s.kind == "value" else s for s in plan.sums))
    assert isinstance(broken.sums[0], SumSpec) and broken.columns == plan.columns
    r = audit_plan(broken, BACKEND, d, d_prime, trials=1_000, name="BROKEN: mean without the clamp")
    assert r.violated, r.summary()


# -- histogram: the victim spread over L0 bins at L∞ rows each -------------------------------

HIST_BINS = {"source.bytes": {"lo": 0, "hi": 100, "n": 8, "scale": "linear"}}


def _hist_store():
    """Background users one value each; the victim 5 rows in each of 3 bins (L0 = 3, L∞ = 2): the
    histogram grouping reaches 8 bins, so L0 = min(3, 8) = 3 and the victim moves L1 = 6."""
    d, _ = neighbours(victim_rows=0)
    t = d.select("@timestamp").head(1).collect().item()
    victim = conform(pl.LazyFrame({
        "@timestamp": [t] * 15, "user.name": ["victim"] * 15, "source.bytes": [10.0] * 5 + [50.0] * 5 + [90.0] * 5,
    }))
    d = pl.concat([d, victim], how="diagonal_relaxed")
    return d, d.filter(pl.col("user.name") != "victim")


def _hist_plan():
    return ENGINE.build(Aggregation.histogram("source.bytes"), epsilon=1.0, max_groups=3, max_rows_per_group=2,
                        bins=HIST_BINS, **WINDOW).plan


def test_histogram_with_the_victim_over_l0_bins_stays_within_the_claim():
    d, d_prime = _hist_store()
    plan = _hist_plan()
    assert plan.columns[0].noise.sensitivity == 6
    r = audit_plan(plan, BACKEND, d, d_prime, trials=30_000, statistic=corner_statistic(plan, BACKEND, d, d_prime),
                   name="histogram, victim over L0 bins")
    assert_within_claim(r)
    assert r.epsilon_lb >= 0.7, r.summary()  # a 3-cell corner at 30,000 runs: ≈ 0.89 ± 0.04


def test_gaussian_histogram_with_the_victim_over_l0_bins_stays_within_the_claim():
    """Spread over L0 bins at L∞ each is also the L2 worst case (√L0·L∞) the Gaussian charges."""
    d, d_prime = _hist_store()
    plan = ENGINE.build(Aggregation.histogram("source.bytes"), mechanism="gaussian", rho=0.5, max_groups=3,
                        max_rows_per_group=2, bins=HIST_BINS, **WINDOW).plan
    assert np.isclose(plan.columns[0].noise.sensitivity, 2 * np.sqrt(3))  # the victim's L2 move, exactly
    r = audit_plan(plan, BACKEND, d, d_prime, trials=10_000, delta=1e-5, name="gaussian histogram, victim over L0 bins")
    assert_within_claim(r)
    assert r.epsilon_lb > 0.5, r.summary()


def test_histogram_charged_for_one_bin_per_unit_is_caught(monkeypatch):
    """The planted bug: the count sensitivity forgets L0 (L1 = L∞), right for a scalar count, not
    for a histogram a unit spreads over several bins."""
    monkeypatch.setattr(planner, "count_sensitivity", lambda b: Sensitivity(l1=b.max_rows_per_group, l2=b.max_rows_per_group))
    d, d_prime = _hist_store()
    plan = _hist_plan()
    r = audit_plan(plan, BACKEND, d, d_prime, trials=10_000, statistic=corner_statistic(plan, BACKEND, d, d_prime),
                   name="BROKEN: histogram, L0 forgotten")
    assert r.violated, r.summary()


# -- private keys: partition selection with the default max_groups = 1, top-k ----------------

def _selection_plan():
    """No max_groups: a private key defaults to L0 = 1 (disclosed); the three largest hosts."""
    plan = ENGINE.build(Aggregation.count(), keys=["host.name"], epsilon=1.0, delta=1e-6, max_rows_per_group=5,
                        top_k=3, order_by="count", **WINDOW).plan
    assert plan.bounds.max_groups == 1 and "max_groups" in plan.defaults_used
    return plan


def _selection_store():
    """The victim's host is used by threshold − 1 other users: whether it is released is decided
    by the victim (which a key held by the victim alone, released with probability ≤ δ, is not).
    The victim holds 5 rows there, L∞ = 5: its count moves by the full L∞ too."""
    share = _selection_plan().selection.threshold - 1
    return neighbours(victim_rows=5, others=share + 10, host_share=share)


class _RowsAsUnits(PolarsBackend):
    """The planted bug: the distinct-unit counts that partition selection thresholds are the
    rows, so a unit with L∞ rows on a key moves its count by L∞, not 1."""

    def bounded_aggregate(self, *args, **kwargs):
        return super().bounded_aggregate(*args, **kwargs).with_columns(units=pl.col("rows"))


def test_selection_with_the_default_l0_and_top_k_stays_within_the_claim():
    d, d_prime = _selection_store()
    r = audit_plan(_selection_plan(), BACKEND, d, d_prime, trials=2_000, track=[("h-victim",)],
                   name="top-3 hosts, default max_groups = 1")
    assert_within_claim(r)
    assert r.epsilon_lb > 0.1, r.summary()


def test_selection_counting_rows_as_units_is_caught():
    d, d_prime = _selection_store()
    r = audit_plan(_selection_plan(), _RowsAsUnits(), d, d_prime, trials=1_000, track=[("h-victim",)],
                   name="BROKEN: selection on rows")
    assert r.violated, r.summary()


# -- time series: the victim in the scored bucket and in its baseline, one budget window ------

HISTORY = 3
DAY = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)


def _series_store():
    """Six background users an hour; the victim 5 rows in hours 21, 22 (the baseline of hour 23)
    and 23 (the scored bucket), all in one budget window: L0 = 3 of the day's 24 hours, L∞ = 2."""
    rows = [(DAY + dt.timedelta(hours=h, minutes=m), f"u{h}-{m}") for h in range(24) for m in range(6)]
    rows += [(DAY + dt.timedelta(hours=h, minutes=30 + i), "victim") for h in (21, 22, 23) for i in range(5)]
    d = conform(pl.DataFrame(rows, schema=["@timestamp", "user.name"], orient="row").lazy())
    return d, d.filter(pl.col("user.name") != "victim")


def _series_plan():
    return ENGINE.build(Aggregation.count(), keys=[time_bucket("hour")], epsilon=1.0, max_groups=3,
                        max_rows_per_group=2, start="2026-11-03", end="2026-11-04").plan


def _scores(plan, *, exact_baseline: bool = False):
    """The `dplogs timeseries` output of the last bucket, (z, baseline), from the noisy hourly
    counts; ``exact_baseline`` plants the bug "baseline noise omitted": the baseline is the mean
    of the dataset's exact (pre-noise) counts."""
    (col,) = plan.columns
    std = noise_std(noise_name(col.noise), col.noise.scale)

    def post(noisy: np.ndarray, exact: np.ndarray | None) -> np.ndarray:
        base_src = noisy if exact is None else np.broadcast_to(exact, noisy.shape)
        base = base_src[:, -1 - HISTORY:-1].mean(axis=1)
        spread = np.sqrt(np.maximum(noisy[:, -1 - HISTORY:-1].var(axis=1, ddof=1), std**2) * (1 + 1 / HISTORY))
        z = (noisy[:, -1] - base) / spread
        return np.column_stack([noisy, z, base])  # `dplogs timeseries` shows the counts beside z and the baseline

    path = engine_path(plan, BACKEND)

    def run(lf, trials):
        noisy = path(lf, trials)
        exact = None
        if exact_baseline:
            exact = execute.aggregate(plan, lf, BACKEND)[0]["rows"].to_numpy().astype(np.float64)
        return post(noisy, exact)

    return run, post


def test_time_series_scores_with_the_victim_in_bucket_and_baseline_stay_within_the_claim():
    d, d_prime = _series_store()
    plan = _series_plan()
    assert plan.columns[0].noise.sensitivity == 6  # L0 = 3 hours × L∞ = 2
    run, post = _scores(plan)
    # the scores are the release's own: baseline_scores on one noisy row gives the same z
    row = engine_path(plan, BACKEND)(d, 1)
    std = noise_std(noise_name(plan.columns[0].noise), plan.columns[0].noise.scale)
    assert np.isclose(post(row, None)[0, -2], baseline_scores(row[0], history=HISTORY, noise_std=std)[-1])
    pre = [np.append(execute.aggregate(plan, x, BACKEND)[0]["rows"].to_numpy(), [0.0, 0.0]) for x in (d, d_prime)]
    on_d, on_d_prime = run(d, 20_000), run(d_prime, 20_000)
    for statistic, what in ((None, "projection"), (lambda out: out[:, -2], "z alone"), (corner(*pre), "corner")):
        r = audit_outputs(on_d, on_d_prime, claimed_epsilon=1.0, statistic=statistic, name=f"time series: counts, z, baseline ({what})")
        assert_within_claim(r)
    assert r.epsilon_lb >= 0.7, r.summary()  # a 3-cell corner at 20,000 runs: ≈ 0.86 ± 0.05


def test_time_series_baseline_without_noise_is_caught():
    d, d_prime = _series_store()
    run, _ = _scores(_series_plan(), exact_baseline=True)
    r = audit(run, d, d_prime, trials=2_000, claimed_epsilon=1.0, statistic=lambda out: out[:, -1],
              name="BROKEN: exact baseline")
    assert r.violated, r.summary()


# -- protected policy with a private key: a protected unit on a key unprotected rows also carry -

POLICY = Policy(version=1, networks=("10.0.0.0/8",))
"""Networks only: a roster would keep every row of its people protected wherever they come from,
and the victim here must have rows of both kinds."""


def _policy_store(host: str):
    """The victim has 5 protected rows on ``host`` (from inside the networks) and 3 unprotected ones
    there (from an address outside them), which the neighbour keeps. On h-public a scanner's
    unprotected rows also occur, so h-public is released without selection whoever else is there;
    h-alone nobody else uses. L0 = 1, L∞ = 2."""
    t = dt.datetime(2026, 11, 3, 10, tzinfo=dt.UTC)
    rows = [(t, f"u{i}", "10.0.0.1", f"h{i}") for i in range(30)]
    rows += [(t, "scanner", "198.51.100.7", "h-public")] * 40
    rows += [(t, "victim", "198.51.100.8", host)] * 3
    rows += [(t, "victim", "10.0.0.9", host)] * 5
    d = conform(pl.DataFrame(rows, schema=["@timestamp", "user.name", "source.ip", "host.name"], orient="row").lazy())
    marked = POLICY.mark(d, "user.name")
    d_prime = marked.filter(~((pl.col("user.name") == "victim") & pl.col("__protected__"))).drop("__protected__")
    assert d.collect().height - d_prime.collect().height == 5
    return d, d_prime


def _policy_plan():
    """Rows and distinct users per host: the count noised directly, the users by the selection."""
    eng = Engine(scan=lambda: None, privacy_unit="user.name", budget_window="month", ledger=None, policy=POLICY)
    prepared = eng.build(Aggregation.count(), Aggregation.units(), keys=["host.name"], epsilon=1.0, delta=1e-6,
                         max_groups=1, max_rows_per_group=2, **WINDOW)
    return replace(prepared.plan, policy=POLICY)


def test_protected_unit_on_a_key_with_unprotected_rows_stays_within_the_claim():
    """h-public is always released; the victim's protected rows move its count by L∞ = 2 and its
    noisy distinct users by 1, the full sensitivity of each (ε/2 each): the corner test sees both."""
    d, d_prime = _policy_store("h-public")
    plan = _policy_plan()
    eps, delta = claimed_loss(plan.loss)
    run = engine_path(plan, BACKEND, track=[("h-public",)])
    on_d, on_d_prime = run(d, 3_000), run(d_prime, 3_000)
    assert on_d[:, 0].all() and on_d_prime[:, 0].all()  # released without selection on both
    pre = [np.array([0.0, 40 + 3 + 2, 2 + 1]), np.array([0.0, 40 + 3, 2])]  # (shown, rows, users): the exact part is 40 + 3 rows, 2 users
    r = audit_outputs(on_d, on_d_prime, claimed_epsilon=eps, delta=delta, statistic=corner(*pre),
                      name="policy: protected rows on a key released through unprotected rows")
    assert_within_claim(r)
    assert r.epsilon_lb >= 0.5, r.summary()


def test_keys_forced_by_every_row_not_only_unprotected_ones_are_caught(monkeypatch):
    """The planted bug: a key is released without selection when ANY row carries it, not only an
    unprotected one. Here the victim holds h-alone alone, with protected rows only: h-alone then
    appears exactly when the victim is there (under the correct rule, with probability ≤ δ)."""
    real = execute.select
    monkeypatch.setattr(execute, "select", lambda keys, units, plan, *, charge, always=None:
                        real(keys, units, plan, charge=charge, always=np.ones(len(keys), dtype=bool)))
    d, d_prime = _policy_store("h-alone")
    d, d_prime = (x.filter(~((pl.col("user.name") == "victim") & (pl.col("source.ip") == "198.51.100.8"))) for x in (d, d_prime))
    r = audit_plan(_policy_plan(), BACKEND, d, d_prime, trials=500, track=[("h-alone",)],
                   statistic=lambda out: out[:, 0], name="BROKEN: keys forced by protected rows")  # h-alone shown?
    assert r.violated, r.summary()


# -- bounds chosen with DP: the choice histograms (disclosed with the release) ------------------

def _choice_path(plan):
    """The noisy choice histograms as :func:`~dplogs.privacy.bound_choice.choose` draws them, one
    per bound to choose, from :func:`~dplogs.engine.execute.profile` (exact, no seed involved, so
    the noise is drawn vectorised); they are disclosed with the release's chosen bounds."""
    def run(lf, trials):
        counts = execute.profile(plan, lf)
        cols = []
        for step in plan.choice.steps:
            exact = np.asarray(counts[step.name], dtype=np.int64)
            noisy = add_noise(np.tile(exact, trials), step.noise, charge=Charge.for_audit(step.noise.loss))
            cols.append(noisy.reshape(trials, exact.size).astype(np.float64))
        return np.concatenate(cols, axis=1)

    return run


def _choice_audit(name: str, trials: int):
    """The victim (5 failures) moves the groups histogram (one group) and the rows histogram (5
    rows, the bin above 4) by one each: every choice histogram it can move, at sensitivity 1, and
    the release after it (audited with chosen bounds in test_bound_choice.py)."""
    d, d_prime = neighbours(victim_rows=5)
    plan = ENGINE.build(Aggregation.count(), keys=["event.outcome"], epsilon=1.0, **WINDOW).plan
    assert plan.choice.names() == ["max_groups", "max_rows_per_group"]
    exact = [np.concatenate([execute.profile(plan, x)[s.name] for s in plan.choice.steps]) for x in (d, d_prime)]
    eps, _ = claimed_loss(plan.choice.loss)
    return audit(_choice_path(plan), d, d_prime, trials=trials, claimed_epsilon=eps, statistic=corner(*exact), name=name)


def test_choice_histograms_with_a_victim_in_every_one_stay_within_their_share():
    r = _choice_audit("bound-choice histograms", 30_000)
    assert_within_claim(r)
    assert r.epsilon_lb >= 0.3 * r.claimed_epsilon, r.summary()  # 0.19-0.26 of 0.3 measured


def test_choice_histograms_over_rows_instead_of_units_are_caught(monkeypatch):
    """The planted bug: every row is its own entry of the choice histograms (5 for the victim)."""
    monkeypatch.setattr(execute, "bounding_unit", lambda plan: pl.int_range(pl.len()))
    r = _choice_audit("BROKEN: choice histograms over rows", 5_000)
    assert r.violated, r.summary()
