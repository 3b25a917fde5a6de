"""Unit codes in the store (format note: docs/architecture.md, "Stores"): every events file of a
store made with them carries its rows' unit as a dense code into the store's unit dictionary, the
polars backend bounds on those codes, and the release is the one the values give, for every unit
rule; stores made before them read by value."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from dplogs.backends.polars_backend import PolarsBackend
from dplogs.engine import execute
from dplogs.engine.api import Engine
from dplogs.errors import StoreError
from dplogs.ingest.store import UNIT, UNIT_CODE, DayWriter, Store
from dplogs.privacy.bounds import Clamp, ContributionBounds
from dplogs.schema import STORE_SCHEMA, conform
from dplogs.schema.units import UnitRule

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def _events(n: int, *, seed: int, users: int = 40, hosts: int = 7, days: int = 3) -> pl.DataFrame:
    """``n`` events over ``days`` days: users (a fifth of rows without one), hosts (some rows
    without either), actions and byte counts, deterministic in ``seed``."""
    i = pl.int_range(n, eager=True)
    mix = (i * 7919 + seed * 104729) % 1_000_003
    return conform(pl.DataFrame({
        "@timestamp": [START + dt.timedelta(seconds=int(s)) for s in (mix * 37 % (days * 86_400)).sort()],
        "user.name": pl.select(pl.when(mix % 5 == 0).then(None).otherwise(pl.format("u{}", mix % users))).to_series(),
        "host.name": pl.select(pl.when(mix % 11 == 0).then(None).otherwise(pl.format("h{}", mix % hosts))).to_series(),
        "event.action": pl.select(pl.format("a{}", mix % 4)).to_series(),
        "source.bytes": (mix % 1000).cast(pl.Int64),
    }))


def _store(path, rule: str, unattributed: str, chunks: list[pl.DataFrame], *, codes: bool = True) -> Store:
    """A store of ``chunks`` written as ingest writes (``DayWriter``). ``codes=False`` makes a
    store as dplogs wrote them before unit codes (schema version 3: no ``unit_codes`` in the
    manifest, no code column, no dictionary)."""
    store = Store.init(path, dataset="t", privacy_unit=rule, unattributed=unattributed)
    if not codes:
        manifest = json.loads((path / "manifest.json").read_text())
        del manifest["unit_codes"]
        (path / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 3}))
        (path / "units").rmdir()
        store = Store.open(path)
    with store.writer_lock():
        writer = DayWriter(store, "in", min_rows=50)
        for chunk in chunks:
            writer.add(chunk)
        writer.close()
    return store


RULES = [("user.name", "shared"), ("user.name", "per-row"), ("user.name,host.name", "shared"),
         ("user.name,host.name", "per-row")]


@pytest.mark.parametrize(("rule", "unattributed"), RULES)
def test_each_row_carries_the_code_of_its_unit_under_the_rule(tmp_path, rule, unattributed):
    chunks = [_events(300, seed=s) for s in range(3)]
    store = _store(tmp_path / "s", rule, unattributed, chunks)
    unit_rule = UnitRule.parse(rule, unattributed)
    values = store.unit_codes(unit_rule)
    rows = store.scan_coded().select(unit_rule.expr().alias("want"), pl.col(UNIT_CODE)).collect()
    decoded = values[UNIT].gather(rows[UNIT_CODE])
    assert decoded.equals(rows["want"], check_names=False)  # nulls (per-row rule) stay null
    assert rows[UNIT_CODE].is_null().any() == (unattributed == "per-row")
    assert values[UNIT].n_unique() == values.height == rows["want"].drop_nulls().n_unique()
    # a later run (a new Store object, under the lock) continues the dictionary: no code reused
    more = _events(200, seed=9, users=60)
    later = Store.open(tmp_path / "s")
    with later.writer_lock():
        later.write_events(more, stem="later")
    grown = later.unit_codes(unit_rule)
    assert grown.head(values.height).equals(values) and grown[UNIT].n_unique() == grown.height > values.height
    rows = later.scan_coded().select(unit_rule.expr().alias("want"), pl.col(UNIT_CODE)).collect()
    assert grown[UNIT].gather(rows[UNIT_CODE]).equals(rows["want"], check_names=False)
    assert later.scan().collect_schema() == STORE_SCHEMA  # the code column is not part of the events


def _release_frames(store: Store, *, values: bool, seed: int, monkeypatch, sql: str, **options) -> pl.DataFrame:
    """The pre-noise aggregates of ``sql`` over ``store`` with a fixed bounding seed, through the
    codes (``values=False``) or the values."""
    monkeypatch.setattr(execute, "secret_seed", lambda: seed)
    eng = Engine.open(store.path)
    plan = eng.sql(sql, epsilon=1.0, max_groups=2, max_rows_per_group=3, clamp={"source.bytes": (0, 500)},
                   declared={"event.action": ["a0", "a1", "a2", "a3"]}, **options).plan
    rows, unit_values = (eng.scan(), None) if values else eng.source()
    if not values:
        assert unit_values is not None and execute.coded(plan, unit_values) == (len(plan.budget_windows) == 1)
    main, _ = execute.aggregate(plan, rows, eng.backend, unit_values)
    return main


SQL = ('SELECT event.action, date_trunc(\'day\', "@timestamp") AS day, COUNT(*), SUM(source.bytes) FROM logs '
       "GROUP BY 1, 2")


@pytest.mark.parametrize(("rule", "unattributed"), RULES)
def test_bounding_on_codes_gives_the_release_of_the_values(tmp_path, monkeypatch, rule, unattributed):
    """Same seed, same bounded aggregates: through the codes, by value on the same store, and on
    a store written before unit codes (which still reads); L0 = 2 and L∞ = 3 bind."""
    chunks = [_events(2000, seed=s) for s in range(2)]
    coded = _store(tmp_path / "new", rule, unattributed, chunks)
    old = _store(tmp_path / "old", rule, unattributed, chunks, codes=False)
    assert old.unit_codes(old.manifest.unit_rule) is None and Engine.open(old.path).source()[1] is None
    assert not any(UNIT_CODE in pl.read_parquet_schema(f) for f in old.event_files())
    assert (coded.manifest.schema_version, old.manifest.schema_version) == (4, 3)
    for seed in (1, 2**63 + 5):
        kw = dict(seed=seed, monkeypatch=monkeypatch, sql=SQL, start="2026-03-01", end="2026-03-04")
        by_codes = _release_frames(coded, values=False, **kw)
        assert by_codes.equals(_release_frames(coded, values=True, **kw))
        assert by_codes.equals(_release_frames(old, values=True, **kw))
        assert by_codes["rows"].sum() < 4000  # the bounds bind


def test_a_query_over_two_budget_windows_bounds_per_window_by_value(tmp_path, monkeypatch):
    """Across windows the bounding unit is (unit, window), which no store code stands for: the
    query reads by value and gives what a store without codes gives."""
    chunks = [_events(1500, seed=1, days=3).with_columns(pl.col("@timestamp") + pl.duration(days=29))]
    coded = _store(tmp_path / "new", "user.name", "shared", chunks)
    old = _store(tmp_path / "old", "user.name", "shared", chunks, codes=False)
    kw = dict(seed=7, monkeypatch=monkeypatch, sql=SQL, start="2026-03-29", end="2026-04-02")
    assert _release_frames(coded, values=False, **kw).equals(_release_frames(old, values=True, **kw))


def test_released_through_the_engine_from_a_coded_store(tmp_path):
    store = _store(tmp_path / "s", "user.name", "shared", [_events(800, seed=3)])
    eng = Engine.open(store.path)
    eng.ledger.set_caps(window_policy="month", epsilon=10)
    release = eng.sql("SELECT event.action, COUNT(*) FROM logs GROUP BY 1", epsilon=1.0, max_groups=2,
                      max_rows_per_group=3, declared={"event.action": ["a0", "a1", "a2", "a3"]},
                      start="2026-03-01", end="2026-03-04").release()
    assert release.to_polars()["event.action"].to_list() == ["a0", "a1", "a2", "a3"]


def test_colliding_unit_ids_fall_back_to_the_values():
    """Ids of two units that collide (4 bits of code for 300 units) must not merge them: the
    backend bounds on the values then, with the same result as without codes."""
    units = pl.DataFrame({"u": [f"user{i}".encode() for i in range(300)]}, schema={"u": pl.Binary})
    rows = pl.DataFrame({
        "u": pl.Series([i % 300 for i in range(6000)], dtype=pl.UInt32),
        "k": [f"k{i % 7}" for i in range(6000)],
        "v": [float(i % 13) for i in range(6000)],
    })
    by_value = rows.with_columns(units["u"].gather(rows["u"]))
    kw = dict(unit="u", keys=["k"], bounds=ContributionBounds(max_groups=2, max_rows_per_group=4),
              sums={"v": Clamp(lo=0, hi=10)}, seed=11)
    for key_bits in (60, 24):  # colliding unit ids, then distinct ones
        backend = PolarsBackend(key_bits=key_bits, rows_per_partition=1000)
        assert (backend._dictionary_coder(rows.lazy(), unit="u", keys=["k"], seed=11, unit_values=units) is None) \
            == (key_bits == 60)
        got = backend.bounded_aggregate(rows.lazy(), unit_values=units, **kw)
        assert got.equals(PolarsBackend(key_bits=key_bits, cell_codes=False).bounded_aggregate(by_value.lazy(), **kw))


def test_a_damaged_unit_dictionary_is_refused(tmp_path):
    store = _store(tmp_path / "s", "user.name", "shared", [_events(300, seed=1)])
    segment = sorted((store.path / "units").iterdir())[0]
    frame = pl.read_parquet(segment)
    frame.with_columns(pl.col("code") + 1).write_parquet(segment)  # a gap at code 0
    with pytest.raises(StoreError, match="gap"):
        store.unit_codes(store.manifest.unit_rule)


def test_codes_of_another_rule_are_not_used(tmp_path):
    store = _store(tmp_path / "s", "user.name", "shared", [_events(100, seed=1)])
    assert store.unit_codes(UnitRule.parse("user.name", "per-row")) is None
    assert store.unit_codes(UnitRule.parse("user.name,host.name")) is None
    assert store.unit_codes(UnitRule.parse("user.name")) is not None


def test_a_key_grid_spares_the_key_pass_and_a_tuple_outside_it_is_found_in_the_data(monkeypatch):
    """Given key tuples (a public grid) stand in for the pass that finds them; a grid that misses
    a tuple present in the data must not drop its cells: the backend then finds the tuples in
    the data, and every variant gives the result of the values alone."""
    import dplogs.backends.polars_backend as pb

    units = pl.DataFrame({"u": [f"user{i}".encode() for i in range(50)]}, schema={"u": pl.Binary})
    rows = pl.DataFrame({
        "u": pl.Series([i * 7 % 50 for i in range(3000)], dtype=pl.UInt32),
        "k": [f"k{i % 5}" for i in range(3000)],
        "v": [float(i % 13) for i in range(3000)],
    })
    kw = dict(unit="u", keys=["k"], bounds=ContributionBounds(max_groups=2, max_rows_per_group=4),
              sums={"v": Clamp(lo=0, hi=10)}, seed=5)
    want = PolarsBackend(cell_codes=False).bounded_aggregate(rows.with_columns(units["u"].gather(rows["u"])).lazy(), **kw)
    full = pl.DataFrame({"k": [f"k{i}" for i in range(8)]})  # a grid may hold tuples the data lacks
    assert PolarsBackend().bounded_aggregate(rows.lazy(), unit_values=units, key_values=full, **kw).equals(want)
    outside = []
    real = pb.PolarsBackend._bounded_aggregate

    def spy(self, *args, **kwargs):
        outside.append(kwargs["key_values"] is not None)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pb.PolarsBackend, "_bounded_aggregate", spy)
    got = PolarsBackend().bounded_aggregate(rows.lazy(), unit_values=units, key_values=full.head(3), **kw)
    assert got.equals(want) and outside == [True, False]  # k3, k4 outside: retried with the data's tuples


def test_a_version_3_store_stays_version_3_without_codes_when_ingested_into(tmp_path):
    """No codes part-way: its older files have none, so a code column in newer files alone would
    leave rows without a code (read as null: each its own unit, unbounded under a shared rule)."""
    old = _store(tmp_path / "old", "user.name", "shared", [_events(300, seed=1)], codes=False)
    again = Store.init(old.path)
    with again.writer_lock():
        again.write_events(_events(300, seed=2), stem="later")
    reopened = Store.open(old.path)
    assert reopened.manifest.schema_version == 3 and not reopened.unit_codes_kept
    assert not any(UNIT_CODE in pl.read_parquet_schema(f) for f in reopened.event_files())
    assert not (old.path / "units").exists()


def test_the_dictionary_is_compacted_and_a_compaction_killed_midway_still_reads(tmp_path, monkeypatch):
    import dplogs.ingest.store as store_module

    monkeypatch.setattr(store_module, "_MAX_UNIT_SEGMENTS", 3)
    store = Store.init(tmp_path / "s", dataset="t")
    kept = []
    with store.writer_lock():
        for i in range(5):  # each write meets new units: a segment each, compacted past 3
            store.write_events(_events(200, seed=i, users=10 * (i + 1), days=1), stem=f"w{i}")
            kept.append(sorted(p.name for p in (store.path / "units").iterdir()))
    assert [len(k) for k in kept] == [1, 2, 3, 1, 2]
    rule = store.manifest.unit_rule
    values = store.unit_codes(rule)
    rows = store.scan_coded().select(rule.expr().alias("want"), pl.col(UNIT_CODE)).collect()
    assert values[UNIT].gather(rows[UNIT_CODE]).equals(rows["want"], check_names=False)
    # a compaction killed after its rename, before removing the segments it covers
    first = pl.read_parquet(store.path / "units" / "0000000000.parquet")
    first.slice(3, 4).write_parquet(store.path / "units" / "0000000003.parquet")
    assert store.unit_codes(rule).equals(values)


def test_a_dictionary_compacted_while_a_reader_reads_it_is_read_whole(tmp_path, monkeypatch):
    """A release reads the segments it listed while an ingest compacts them (the compacted
    segment is written whole before the others are removed): the reader lists again instead of
    failing on the removed segment (it raised FileNotFoundError, a bug's exit 70)."""
    import dplogs.ingest.store as store_module

    monkeypatch.setattr(store_module, "_MAX_UNIT_SEGMENTS", 3)
    writer = Store.init(tmp_path / "s", dataset="t")
    with writer.writer_lock():
        for i in range(3):
            writer.write_events(_events(200, seed=i, users=10 * (i + 1), days=1), stem=f"w{i}")
    reader = Store.open(writer.path)
    read = pl.read_parquet
    compactions = []

    def read_then_compact(source, **kw):  # the first segment read, then an ingest compacts
        frame = read(source, **kw)
        if not compactions and source.parent.name == "units":
            compactions.append("started")  # the writer reads the dictionary too: once only
            with writer.writer_lock():
                writer.write_events(_events(200, seed=9, users=80, days=1), stem="w9")
            compactions[0] = sorted(p.name for p in source.parent.iterdir())
        return frame

    monkeypatch.setattr(store_module.pl, "read_parquet", read_then_compact)
    rule = reader.manifest.unit_rule
    values = reader.unit_codes(rule)
    assert compactions == [["0000000000.parquet"]]
    monkeypatch.setattr(store_module.pl, "read_parquet", read)
    assert values.equals(reader.unit_codes(rule)) and values.height == writer._dictionary.height
    rows = reader.scan_coded().select(rule.expr().alias("want"), pl.col(UNIT_CODE)).collect()
    assert values[UNIT].gather(rows[UNIT_CODE]).equals(rows["want"], check_names=False)


def test_a_store_whose_dictionary_lacks_codes_is_read_by_value(tmp_path, monkeypatch):
    """A store copied without units/ (events linked or copied alone) must not fail or mis-bound:
    the values are in the rows, so the release is the one they give."""
    store = _store(tmp_path / "s", "user.name", "shared", [_events(1500, seed=4)])
    kw = dict(seed=3, monkeypatch=monkeypatch, sql=SQL, start="2026-03-01", end="2026-03-04")
    want = _release_frames(store, values=True, **kw)
    for segment in (store.path / "units").iterdir():
        segment.unlink()
    assert Store.open(store.path).unit_codes(store.manifest.unit_rule).height == 0
    monkeypatch.setattr(execute, "secret_seed", lambda: 3)
    eng = Engine.open(store.path)
    plan = eng.sql(SQL, epsilon=1.0, max_groups=2, max_rows_per_group=3, clamp={"source.bytes": (0, 500)},
                   declared={"event.action": ["a0", "a1", "a2", "a3"]}, start="2026-03-01", end="2026-03-04").plan
    rows, unit_values = eng.source()
    assert execute.aggregate(plan, rows, eng.backend, unit_values)[0].equals(want)
