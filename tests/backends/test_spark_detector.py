"""The detector's loop on Spark: feature rows in Spark SQL under the same bounds, per-batch clipped
sums through ``mapInArrow`` reduced on the driver, noise once per iteration on the driver, and the
same ledger entry as the polars loop.

With the same seed the two backends pick windows by different keyed hashes (xxhash64 vs polars'),
so the loops are compared where K does not bind (all windows kept on both) and, where it binds, on
the windows Spark kept: the same rows must give the same clipped sums."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from tests.detect.detect_helpers import synthetic_events

from dplogs.backends.spark import SparkBackend
from dplogs.cli import cli
from dplogs.detect import kmeans
from dplogs.detect.calibration import batch_score_counts, score_counts
from dplogs.detect.features import FEATURE_NAMES, FeatureBatches, FeatureSpec, extract_features, feature_batches
from dplogs.detect.kmeans import init_centroids, kmeans_batch_stats, plan_kmeans, train_kmeans
from dplogs.detect.model import load_model
from dplogs.detect.peers import (
    PEER_FEATURE_NAMES, PROCESS_BUCKETS, PeerBaseline, peer_totals, plan_peers, release_peer_totals, with_peer_features,
)
from dplogs.detect.spark_features import feature_rows
from dplogs.detect.spark_loop import SparkFeatureBatches, spark_feature_batches
from dplogs.detect.train import TrainRequest, train_from_store
from dplogs.privacy.charge import Charge
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.testing import exact_mode
from dplogs.schema.units import PER_ROW, UnitRule

REPO = Path(__file__).resolve().parents[2]
ALL_WINDOWS = 10_000  # K that never binds
KEYS = ["unit", "window_start"]


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory) -> Path:
    """The shipped sample logs: every feature column (HTTP, ports, processes, null units) occurs."""
    path = tmp_path_factory.mktemp("spark_detect") / "st"
    r = CliRunner().invoke(cli, ["ingest", str(REPO / "sample_logs"), "--store", str(path), "--year", "2024"])
    assert r.exit_code == 0, r.output
    return path


@pytest.fixture
def synthetic_store(tmp_path):
    from dplogs.ingest.store import Store

    s = Store.init(tmp_path / "store", dataset="synthetic")
    s.write_events(synthetic_events(), stem="part0")
    Ledger.open(s.ledger_path, create=True).set_caps(window_policy="month", epsilon=10.0, delta=1e-5)
    return s


PER_ROW_RULE = UnitRule(("user.name",), PER_ROW)


def _both(events: pl.DataFrame, spec: FeatureSpec, seed: int, unit: UnitRule = PER_ROW_RULE) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(polars, Spark) feature rows of ``events`` under one seed, sorted by (unit, window)."""
    want = _spelled_as_on_spark(extract_features(events.lazy(), unit=unit, spec=spec, seed=seed).frame, unit)
    got = pl.from_arrow(feature_rows(SparkBackend().frame(events), unit=unit, spec=spec, seed=seed).toArrow())
    return want.sort(KEYS), got.sort(KEYS)


def _spelled_as_on_spark(frame: pl.DataFrame, unit: UnitRule) -> pl.DataFrame:
    """Polars keys the units of a single-field per-row rule as a one-field chain's {field, value}
    (:func:`~dplogs.detect.features.unit_keys`); Spark spells them "0:value", a row alone
    "\\x00null:<row>" (row numbers differ: compare those rows by count only)."""
    if not unit.plain:
        return frame
    field, value = pl.col("unit").struct.field("field"), pl.col("unit").struct.field("value")
    return frame.with_columns(pl.when(field == len(unit.fields) + 1).then(pl.lit("\x00null:") + value)
                              .otherwise(field.cast(pl.String) + ":" + value).alias("unit"))


def _sample_events(store: Path) -> pl.DataFrame:
    """The sample store's events, with an executable per action (the sample logs name none; mixed
    case, since both backends lower-case it) so the peers' process table has something to count."""
    from dplogs.ingest.store import Store

    events = Store.open(store).scan().collect()
    exe = pl.concat_str(pl.lit("C:\\Tools\\"), pl.col("event.action"), pl.lit(".EXE"))
    return events.with_columns(pl.when(pl.col("event.action").is_not_null()).then(exe).alias("process.executable"))


@pytest.mark.parametrize("window,budget", [("day", "month"), ("15min", "week")])
def test_spark_features_equal_polars_features(spark_session, sample_store, window, budget):
    """Same rows, unit ids and features (within float rounding) under the per-row opt-in (each
    null-unit row its own unit)."""
    events = _sample_events(sample_store)
    spec = FeatureSpec(max_windows_per_unit=ALL_WINDOWS, clip_norm=2.0, window=window, budget_window=budget)
    want, got = _both(events, spec, seed=11)
    null = pl.col("unit").str.starts_with("\x00null:")
    assert got.filter(null).height == want.filter(null).height == events["user.name"].null_count() > 0
    want, got = want.filter(~null), got.filter(~null)
    assert want.height > 20
    assert got.select(*KEYS, "budget_window").equals(want.select(*KEYS, "budget_window"))
    assert got["unit_id"].rank("dense").equals(want["unit_id"].rank("dense"))  # same order (null units aside)
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(got[name].to_numpy(), want[name].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
    # history and novelty features move on this store, so they are compared on real values
    assert all(want[name].max() > 0 for name in ("events_rise_vs_own_history", "new_source_ips_share", "distinct_hosts"))
    # the peer baseline's inputs: the window's role (mode, smallest on a tie), volumes, executables
    assert got["module"].equals(want["module"]) and got["module"].n_unique() > 1
    assert (got["events"].cast(pl.Int64) == want["events"].cast(pl.Int64)).all()
    np.testing.assert_allclose(got["bytes"].to_numpy(), want["bytes"].to_numpy(), rtol=1e-12)
    assert got["processes"].to_list() == want["processes"].to_list() and want["processes"].list.len().max() > 1


def test_byte_counts_near_the_int64_limit_neither_wrap_nor_fail(spark_session):
    """A window's bytes were the int64 sum of its rows' source, destination and HTTP body bytes:
    a hostile log's counts near 2^63 wrapped to a negative total in polars (read as 0 bytes) and
    raised an overflow on Spark under ANSI mode (Spark 4's default), failing the training. Both
    now add them as floats: the window's bytes are capped, as for any large count."""
    from dplogs.detect.features import BYTES_CAP

    events = synthetic_events(60, users=3, days=2).with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(3 << 61, pl.Int64)).otherwise(pl.col("source.bytes"))
        .alias("source.bytes"),
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(3 << 61, pl.Int64)).otherwise(pl.col("destination.bytes"))
        .alias("destination.bytes"))
    spec = FeatureSpec(max_windows_per_unit=ALL_WINDOWS, clip_norm=2.0, window="day", budget_window="month")
    want, got = _both(events, spec, seed=5)
    assert want["bytes"].max() >= BYTES_CAP and want["bytes_log_mean"].max() > 0
    np.testing.assert_allclose(got["bytes"].to_numpy(), want["bytes"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(got["bytes_log_mean"].to_numpy(), want["bytes_log_mean"].to_numpy(), rtol=1e-9)


@pytest.mark.parametrize("rule", [UnitRule(("user.name",)), UnitRule(("user.name", "source.ip"))], ids=str)
def test_spark_features_follow_the_shared_and_chain_rules(spark_session, sample_store, rule):
    """Under the default shared unit and a chain, Spark groups rows into the same units as polars
    (units are spelled differently, so rows are compared by window and feature values)."""
    events = _sample_events(sample_store)
    spec = FeatureSpec(max_windows_per_unit=ALL_WINDOWS, clip_norm=2.0, window="day", budget_window="month")
    want, got = _both(events, spec, seed=11, unit=rule)
    assert want.height == got.height > 20
    assert want["unit"].n_unique() == got["unit"].n_unique() < _per_row_units(events)
    order = ["budget_window", "window_start", *FEATURE_NAMES]
    want, got = want.select(order).sort(order), got.select(order).sort(order)
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(got[name].to_numpy(), want[name].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_a_user_name_cannot_name_a_rows_own_unit_on_spark(spark_session):
    """Under the per-row opt-in of a single-field rule Spark named a row without identity
    "\\x00null:<row id>" and every other unit by its bare value, so a user called "\\x00null:0"
    (a JSON log can carry it) merged with the first row's own unit (redteam5)."""
    import datetime as dt

    from dplogs.schema import conform

    t = dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC)
    rows = [(t, None)] + [(t + dt.timedelta(days=d), "\x00null:0") for d in range(1, 6)]
    events = conform(pl.DataFrame({"@timestamp": [r[0] for r in rows], "user.name": [r[1] for r in rows]}))
    spec = FeatureSpec(max_windows_per_unit=ALL_WINDOWS, clip_norm=2.0, window="day", budget_window="month")
    got = pl.from_arrow(feature_rows(SparkBackend().frame(events).coalesce(1), unit=PER_ROW_RULE, spec=spec,
                                     seed=1).toArrow())
    assert got.height == 6 and got["unit_id"].n_unique() == 2  # the user's five days, and the row alone


def _per_row_units(events: pl.DataFrame) -> int:
    """The units of the per-row opt-in: each named user, and each row without one."""
    return events["user.name"].n_unique() - 1 + events["user.name"].null_count()


def _recorded_kmeans(monkeypatch, source, plan, init) -> list[np.ndarray]:
    """Per iteration, the clipped sums and counts handed to the noise (exact mode: noise off)."""
    seen: list[np.ndarray] = []
    original = kmeans.add_noise

    def record(values, noise_plan, *, charge):
        seen.append(np.array(values, dtype=np.float64))
        return original(values, noise_plan, charge=charge)

    monkeypatch.setattr(kmeans, "add_noise", record)
    with exact_mode():
        train_kmeans(source, plan=plan, charge=Charge.for_audit(plan.loss), init=init, min_count=1.0)
    monkeypatch.setattr(kmeans, "add_noise", original)
    return seen


@pytest.mark.parametrize("k_windows", [ALL_WINDOWS, 3], ids=["K-does-not-bind", "K-binds"])
def test_spark_loop_sums_equal_polars_loop_sums(spark_session, monkeypatch, k_windows):
    """Exact mode, same store, seed and initial centroids: every iteration's clipped sums and
    counts from the Spark loop equal the polars loop's over the same kept windows."""
    events = synthetic_events()
    spec = FeatureSpec(max_windows_per_unit=k_windows, clip_norm=1.0)
    plan = plan_kmeans(k=4, dim=len(FEATURE_NAMES), iterations=3, rho=1.0, max_rows_per_unit=k_windows, clip_norm=1.0)
    init = init_centroids(4, len(FEATURE_NAMES), 1.0)
    sdf = SparkBackend().frame(events)
    with spark_feature_batches(sdf, unit=PER_ROW_RULE, spec=spec, seed=9) as spark_rows:
        got = _recorded_kmeans(monkeypatch, spark_rows, plan, init)
    # the same windows on the polars side: all of them (K never binds), or the ones Spark keeps
    # under that seed
    full = _spelled_as_on_spark(
        extract_features(events.lazy(), unit=PER_ROW_RULE, spec=FeatureSpec(ALL_WINDOWS, 1.0), seed=9).frame, PER_ROW_RULE)
    kept = pl.from_arrow(feature_rows(sdf, unit=PER_ROW_RULE, spec=spec, seed=9).select(*KEYS).toArrow())
    table = full.join(kept, on=KEYS, how="semi").sort(KEYS)
    # every one of the 50 units has 20 windows: it keeps min(20, K), all of them real windows
    assert table.height == kept.height == 50 * min(20, k_windows)
    x, unit_id = table.select(FEATURE_NAMES).to_numpy(), table["unit_id"].to_numpy()
    want = _recorded_kmeans(monkeypatch, FeatureBatches(feature_batches(x, unit_id, rows_per_batch=97), x.shape[1]),
                            plan, init)
    assert len(got) == len(want) == 2 * plan.iterations  # sums, counts per iteration
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)
    assert sum(want[1]) == len(x)  # the counts add up to the kept rows


def test_noise_is_drawn_on_the_driver_only(spark_session, monkeypatch):
    """Executors return exact sums (the same on every run, equal to the sums computed here), and
    every noise draw of the run happens in this process, once per iteration."""
    events = synthetic_events()
    spec = FeatureSpec(max_windows_per_unit=5, clip_norm=1.0)
    c = init_centroids(3, len(FEATURE_NAMES), 1.0)
    draws: list[int] = []
    original = kmeans.add_noise

    def record(values, noise_plan, *, charge):
        draws.append(os.getpid())
        return original(values, noise_plan, charge=charge)

    with spark_feature_batches(SparkBackend().frame(events), unit=PER_ROW_RULE, spec=spec) as rows:
        first = rows.total(kmeans_batch_stats, c, 1.0)
        second = rows.total(kmeans_batch_stats, c, 1.0)
        kept = pl.from_arrow(rows.frame.toArrow())
        x = np.array(kept["x"].to_list())
        local = FeatureBatches([pa_batch(x, kept["unit_id"].to_numpy())], x.shape[1]).total(kmeans_batch_stats, c, 1.0)
        for a, b, want in zip(first, second, local):
            assert np.array_equal(a, b)
            np.testing.assert_allclose(a, want, rtol=1e-12, atol=1e-12)
        assert rows.total(batch_score_counts, kmeans.KMeansModel(c), 1.0)[0].tolist() == score_counts(
            kmeans.KMeansModel(c).scores(x), 1.0).tolist()
        plan = plan_kmeans(k=3, dim=x.shape[1], iterations=4, rho=1.0, max_rows_per_unit=5, clip_norm=1.0)
        monkeypatch.setattr(kmeans, "add_noise", record)
        train_kmeans(rows, plan=plan, charge=Charge.for_audit(plan.loss), init=c)
    assert draws == [os.getpid()] * (2 * plan.iterations)


def pa_batch(x: np.ndarray, unit_id: np.ndarray):
    (batch,) = feature_batches(x, unit_id, rows_per_batch=len(x))
    return batch


def test_an_empty_source_gives_zero_sums(spark_session):
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField("unit_id", T.LongType()),
                           *(T.StructField(f, T.DoubleType()) for f in FEATURE_NAMES),
                           T.StructField("module", T.StringType()), T.StructField("events", T.LongType()),
                           T.StructField("bytes", T.DoubleType()), T.StructField("processes", T.ArrayType(T.StringType()))])
    with SparkFeatureBatches(spark_session.createDataFrame([], schema), len(FEATURE_NAMES), clip_norm=1.0) as rows:
        sums, counts = rows.total(kmeans_batch_stats, np.zeros((2, len(FEATURE_NAMES))), 1.0)
        assert rows.unit_count(2) == 0
        group_counts, volume_sums, table = rows.peer_totals()
    assert sums.shape == (2, len(FEATURE_NAMES)) and not sums.any() and counts.tolist() == [0, 0]
    assert not group_counts.any() and not volume_sums.any() and not table.any() and table.shape == (PROCESS_BUCKETS,)


def test_peer_baseline_and_features_on_spark_equal_polars(spark_session, sample_store):
    """The peer baseline's exact totals (per-partition sums from the executors) and the peer
    features appended on the executors equal polars' on the same kept windows, so a model trained
    on Spark has the same features as one trained on polars."""
    events = _sample_events(sample_store)
    rule = UnitRule(("user.name",))  # the shared unattributed unit: the same units on both backends
    spec = FeatureSpec(max_windows_per_unit=ALL_WINDOWS, clip_norm=2.0, window="day", budget_window="month")
    table = extract_features(events.lazy(), unit=rule, spec=spec, seed=5)
    sdf = SparkBackend().frame(events).repartition(3)  # several partitions: their sums are added
    with spark_feature_batches(sdf, unit=rule, spec=spec, seed=5) as rows:
        got = rows.peer_totals()
        want = peer_totals(table.frame)
        assert got[0].tolist() == want[0].tolist() and (want[0] > 0).sum() > 1  # several role groups
        for g, w in zip(got[1:], want[1:]):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
        assert (want[2] > 0).sum() > 3  # executables in several buckets
        plan = plan_peers(max_rows_per_unit=ALL_WINDOWS, rho=1.0)
        with exact_mode():
            baseline = release_peer_totals(want, plan=plan, charge=Charge.for_audit(plan.loss))
        baseline = PeerBaseline(counts=baseline.counts, sums=baseline.sums, min_count=1.0, processes=baseline.processes)
        rows.with_peers(baseline)
        assert rows.dim == len(FEATURE_NAMES) + len(PEER_FEATURE_NAMES)
        gx = np.array(pl.from_arrow(rows.frame.toArrow())["x"].to_list())
    expected = with_peer_features(table, baseline)
    wx = expected.frame.select(expected.names).to_numpy()
    # units are spelled differently on the two backends: compare the rows as sorted multisets
    gx, wx = gx[np.lexsort(gx.T[::-1])], wx[np.lexsort(wx.T[::-1])]
    assert gx.shape == wx.shape and len(wx) > 20
    np.testing.assert_allclose(gx, wx, rtol=1e-9, atol=1e-12)
    assert wx[:, len(FEATURE_NAMES):].max() > 0  # the peer features move on this store


def test_train_on_spark_charges_the_same_entry_as_polars(spark_session, synthetic_store, tmp_path):
    """`dplogs train --engine spark` (k-means) and the API (autoencoder): one committed ledger entry
    each, with the windows, mechanisms, loss and features (the peer features included) of the same
    training on polars."""
    args = ["train", "--store", str(synthetic_store.path), "--detector", "kmeans", "--epsilon", "1", "--delta", "1e-6",
            "--start", "2026-11-01", "--end", "2026-12-01", "--max-windows", "3", "--k", "4", "--iterations", "2"]
    for engine in ("polars", "spark"):
        r = CliRunner().invoke(cli, [*args, "--output", str(tmp_path / f"{engine}.json"), "--engine", engine])
        assert r.exit_code == 0, r.output
    ae = dict(detector="autoencoder", epsilon=1.0, delta=1e-6, start="2026-11-01", end="2026-12-01",
              max_windows_per_unit=3, clip_norm=1.0, steps=3, sampling_rate=0.5, expected_batch_size=25.0)
    for engine in ("polars", "spark"):
        train_from_store(synthetic_store.path, TrainRequest(**ae), output=tmp_path / f"ae-{engine}.json", backend=engine)
    with Ledger.open(synthetic_store.ledger_path) as ledger:
        km_polars, km_spark, ae_polars, ae_spark = reversed(ledger.history())
    for a, b in ((km_polars, km_spark), (ae_polars, ae_spark)):
        assert b.status == a.status == "committed"
        assert (b.windows, b.mechanisms, b.caller) == (a.windows, a.mechanisms, a.caller)
        assert b.loss.delta == a.loss.delta and a.loss.epsilon <= 1.0 and b.loss.epsilon <= 1.0
        assert (b.loss.rho, b.loss.epsilon, b.loss.delta) == (a.loss.rho, a.loss.epsilon, a.loss.delta)
    for name in ("spark.json", "ae-spark.json"):
        model, card = load_model(tmp_path / name)
        assert card.features == (*FEATURE_NAMES, *PEER_FEATURE_NAMES) and card.peers is not None
        # the score histogram saw every kept row: 50 units x 3 windows, up to its noise
        assert abs(card.calibration.total - 150) < 8 * card.calibration.noise_std * len(card.calibration.counts) ** 0.5


def test_a_spark_master_without_the_spark_engine_is_refused_before_anything(synthetic_store, tmp_path):
    r = CliRunner().invoke(cli, ["train", "--store", str(synthetic_store.path), "--detector", "kmeans", "--epsilon", "1",
                                 "--delta", "1e-6", "--start", "2026-11-01", "--end", "2026-12-01",
                                 "--output", str(tmp_path / "m.json"), "--spark-master", "local[1]"])
    assert r.exit_code == 64 and "--engine spark" in r.output
    with Ledger.open(synthetic_store.ledger_path) as ledger:
        assert ledger.history() == []


def test_a_repair_waits_for_spark_training_reading_the_events(spark_session, tmp_path):
    """Spark training lists the events files, then reads them lazily, job after job (the first
    job persists the feature rows; a lost cached block is recomputed from the files). It held no
    lock: a torn last line's repair (`Store.remove_events`, the one write that rewrites or removes
    an events file) ran mid-training, and the next job failed on a file that was gone
    (FAILED_READ_FILE.FILE_NOT_EXIST, exit 70). Now the training's source holds the files still
    until it is closed, as a polars training or release does while it reads."""
    import datetime as dt

    from dplogs.backends.spark import SparkBackend
    from dplogs.detect.train import _feature_source
    from dplogs.ingest.store import Store

    store = Store.init(tmp_path / "store", dataset="synthetic")
    events = synthetic_events(300, users=10, days=3)
    events = events.with_columns(pl.concat_list(pl.int_range(pl.len(), dtype=pl.UInt64), pl.lit(0, pl.UInt64))
                                 .list.to_array(2).alias("event.hash"))
    store.write_events(events, stem="part0")
    emptied = store.event_files()[0]
    day, hashes = emptied.parent.name.removeprefix("day="), pl.read_parquet(emptied)["event.hash"]
    repaired: list = []
    repair = threading.Thread(target=lambda: repaired.append(_repair(store, day, hashes)))
    spec = FeatureSpec(max_windows_per_unit=ALL_WINDOWS, clip_norm=1.0, window="day", budget_window="month")
    lo, hi = dt.datetime(2026, 11, 1, tzinfo=dt.UTC), dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    with _feature_source(store, SparkBackend(), lo, hi, unit=UnitRule.parse("user.name"), spec=spec) as source:
        repair.start()  # the files are listed and the rows defined, not yet read: an ingest repairs now
        repair.join(timeout=1.0)
        repaired.append("waited" if repair.is_alive() else "not waited")
        units = source.unit_count(ALL_WINDOWS)  # a training job: reads every listed file
    repair.join(timeout=60)
    assert repaired == ["waited", hashes.len()] and not emptied.exists()
    assert units == 10  # (unit, budget window) pairs: 10 users, one month


def _repair(store, day: str, hashes: pl.Series) -> int:
    with store.writer_lock():
        return store.remove_events(day, hashes)
