"""The protected-population policy (engine/policy.py): unprotected rows are aggregated exactly,
protected rows are bounded and noised as before, and keys of unprotected rows need no selection."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from click.testing import CliRunner

from dplogs.audit.engine import audit_plan
from dplogs.backends.base import get_backend
from dplogs.cli import cli
from dplogs.engine import Aggregation, time_bucket
from dplogs.engine import execute
from dplogs.engine.api import Engine
from dplogs.engine.policy import Policy, load, read_roster, save
from dplogs.errors import ConcurrentRun, DataError, InputNotFound, StoreDamaged, UsageError
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.testing import exact_mode
from dplogs.schema import conform
from tests.audit.audit_paths import assert_within_claim

T0 = dt.datetime(2026, 11, 3, 10, tzinfo=dt.UTC)
POLICY = Policy(version=1, users=frozenset({f"emp{i}" for i in range(40)}), networks=("10.0.0.0/8",))


def frame() -> pl.DataFrame:
    """40 employees (on the roster) failing once each from inside; a scanner (24.151.103.17)
    failing 230 times against 'oracle' (not a person) and 20 times against emp1 from outside (a
    person's account: protected wherever it is used from); 'root' failing 7 times from inside
    (not on the roster)."""
    rows = [(T0 + dt.timedelta(minutes=i), f"emp{i}", f"10.0.0.{i}", "failure") for i in range(40)]
    rows += [(T0 + dt.timedelta(seconds=i), "oracle", "24.151.103.17", "failure") for i in range(230)]
    rows += [(T0 + dt.timedelta(seconds=i), "emp1", "24.151.103.17", "failure") for i in range(20)]
    rows += [(T0 + dt.timedelta(seconds=i), "root", "10.9.9.9", "failure") for i in range(7)]
    return pl.DataFrame(rows, schema=["@timestamp", "user.name", "source.ip", "event.outcome"], orient="row")


def protected_mask(df: pl.DataFrame) -> pl.Series:
    return POLICY.mark(conform(df.lazy()), "user.name").collect()["__protected__"]


def test_protection_is_a_function_of_the_row():
    df = frame()
    mask = protected_mask(df).to_list()
    assert sum(mask) == 60  # the employees' rows, also emp1's from the scanner's address
    # the same row gets the same verdict whatever else is in the store
    assert protected_mask(df.head(1)).to_list() == [True]
    assert protected_mask(df.tail(1)).to_list() == [False]


def test_a_person_on_the_roster_stays_protected_from_outside_the_networks():
    # Found by redteam3: emp1's 20 rows from an outside address were aggregated exactly, so an
    # exact release (e.g. failures per source address) carried a person's own activity
    df = frame().filter(pl.col("user.name") == "emp1")
    assert protected_mask(df).to_list() == [True] * 21
    assert POLICY.mark(conform(df.lazy()), "source.ip").collect()["__protected__"].all()  # whatever the unit


def test_exact_part_equals_a_plain_group_by_of_unprotected_rows(make_engine):
    df = frame()
    eng = make_engine(df)
    eng.policy = POLICY
    q = eng.build(Aggregation.count(), Aggregation.units(), keys=["source.ip"], epsilon=1.0, delta=1e-6,
                  max_groups=1, max_rows_per_group=1, start="2026-11-01", end="2026-12-01")
    with exact_mode():
        rel = q.release(caller="test")
    got = rel.data.pivot(on="aggregate", index="source.ip", values="exact")
    unprotected = df.filter(~protected_mask(df))
    want = unprotected.group_by("source.ip").agg(pl.len().alias("count"), pl.col("user.name").n_unique().alias("distinct_units"))
    joined = want.join(got, on="source.ip", how="left", suffix="_got")
    assert (joined["count"] == joined["count_got"]).all() and (joined["distinct_units"] == joined["distinct_units_got"]).all()
    # the scanner's address is released without selection: exact 230 ('oracle') plus the bounded
    # protected part (emp1's 20 rows there, bounded to 1 row in 1 of emp1's 2 groups)
    scanner = rel.data.filter((pl.col("source.ip") == "24.151.103.17") & (pl.col("aggregate") == "count"))
    assert scanner["exact"].item() == 230 and scanner["value"].item() in (230, 231)
    # inside addresses used by one employee each are not released (below the selection threshold)
    assert not rel.data["source.ip"].str.starts_with("10.0.0.").any()
    assert rel.privacy["protection"]["version"] == 1 and "outside 10.0.0.0/8" in rel.privacy["protection"]["rule"]


def test_the_bias_note_points_at_the_policy_only_while_everything_is_protected(make_engine):
    """A chosen bound that cuts heavy units unseen: the note suggests `dplogs protect` (root and
    guessed names are then counted exactly) only on a store without a policy."""
    notes = []
    for policy in (None, POLICY):
        eng = make_engine(frame())
        if policy is not None:
            eng.policy = policy
        with exact_mode():
            rel = eng.build(Aggregation.count(), epsilon=1.0, start="2026-11-01", end="2026-12-01").release(caller="t")
        assert "chosen from the data with DP" in rel.privacy["bias_note"]
        notes.append("`dplogs protect`" in rel.privacy["bias_note"])
    assert notes == [True, False]


def test_protected_part_matches_the_release_without_a_policy(make_engine):
    df = frame()
    eng = make_engine(df.filter(protected_mask(df)))
    with exact_mode():
        plain = eng.build(Aggregation.count(), keys=[time_bucket("hour")], epsilon=1.0, max_groups=1,
                          max_rows_per_group=1, start="2026-11-03", end="2026-11-04").release(caller="t")
    eng2 = make_engine(df)
    eng2.policy = POLICY
    with exact_mode():
        guarded = eng2.build(Aggregation.count(), keys=[time_bucket("hour")], epsilon=1.0, max_groups=1,
                             max_rows_per_group=1, start="2026-11-03", end="2026-11-04").release(caller="t")
    protected_part = guarded.data["value"] - guarded.data["exact"]
    assert protected_part.to_list() == plain.data["value"].to_list()
    assert guarded.data["exact"].sum() == df.height - 60


@pytest.mark.slow
def test_audit_neighbours_differ_in_one_units_protected_rows():
    """D′ removes emp1's protected rows (all of them, also those from the scanner's address), and
    everyone else's stay. The planted bug counts every row exactly."""
    heavy = pl.DataFrame([(T0 + dt.timedelta(hours=1, minutes=i), "emp1", "10.0.0.1", "failure") for i in range(5)],
                         schema=["@timestamp", "user.name", "source.ip", "event.outcome"], orient="row")
    d = conform(pl.concat([frame(), heavy]).lazy())  # emp1: 6 protected rows, bounded to 1
    mask = POLICY.mark(d, "user.name")
    d_prime = mask.filter(~((pl.col("user.name") == "emp1") & pl.col("__protected__"))).drop("__protected__")
    eng = Engine(scan=lambda: None, privacy_unit="user.name", budget_window="month", ledger=None, policy=POLICY)
    plan = eng.build(Aggregation.count(), keys=["event.outcome"], epsilon=1.0, max_groups=1, max_rows_per_group=1,
                     start="2026-11-01", end="2026-12-01").plan
    r = audit_plan(plan, get_backend("polars"), d, d_prime, trials=20_000, name="count under a policy")
    assert_within_claim(r)
    assert r.epsilon_lb > 0.8, r.summary()
    everything_exact = Policy(version=9, users=frozenset(), networks=("192.0.2.0/32",))  # BROKEN: nobody protected
    from dataclasses import replace

    broken = replace(plan, policy=everything_exact)
    r = audit_plan(broken, get_backend("polars"), d, d_prime, trials=2_000, name="BROKEN: protected rows in the exact part")
    assert r.violated, r.summary()


def test_roster_and_network_errors_are_specific(tmp_path):
    with pytest.raises(InputNotFound):
        read_roster(tmp_path / "missing.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match="UTF-8"):
        read_roster(tmp_path / "bin.txt")
    (tmp_path / "empty.txt").write_text("# nobody\n\n")
    with pytest.raises(DataError, match="names no account"):
        read_roster(tmp_path / "empty.txt")
    with pytest.raises(UsageError, match="CIDR"):
        Policy(networks=("10.0.0.0/33",))


def test_protect_cli_versions_the_policy_and_charges_nothing(sample_store, tmp_path):
    import shutil

    store = tmp_path / "st"
    shutil.copytree(sample_store, store)
    entries = len(Ledger.open(store / "ledger.sqlite").history())
    roster = tmp_path / "people.txt"
    roster.write_text("anna.ito\nbob.smith\n")
    run = CliRunner().invoke
    assert run(cli, ["protect", "--store", str(store), "--networks", "10.0.0.0/8,not-a-net"]).exit_code == 64
    assert run(cli, ["protect", "--store", str(store), "--users", str(tmp_path / "nope.txt")]).exit_code == 66
    assert load(store).version == 0
    res = run(cli, ["protect", "--store", str(store), "--users", str(roster), "--networks", "10.0.0.0/8,192.168.0.0/16"])
    assert res.exit_code == 0, res.output
    shown = run(cli, ["protect", "--store", str(store), "--show"])
    assert shown.exit_code == 0 and "version 1" in shown.output and "2 accounts" in shown.output
    assert "anna.ito" not in shown.output  # the roster is not printed
    save(store, users=None, networks=("10.0.0.0/8",))
    assert load(store).version == 2 and (store / "policy" / "v1.json").exists()
    ledger = Ledger.open(store / "ledger.sqlite")
    assert len(ledger.history()) == entries and ledger.verify().ok  # nothing charged
    assert ledger.protection() == (2, load(store).digest)  # the version in force is sealed in the ledger


def test_protect_says_what_a_new_version_stops_protecting(sample_store, tmp_path):
    """`protect --networks` after a roster dropped the roster without a word, so every person's rows
    from outside the networks (working from home) were released exactly from then on, also in the
    budget window whose earlier releases protected them (redteam5)."""
    import shutil

    store = tmp_path / "st"
    shutil.copytree(sample_store, store)
    people, fewer = tmp_path / "people.txt", tmp_path / "fewer.txt"
    people.write_text("anna.ito\nbob.smith\nomar.haddad\n")
    fewer.write_text("anna.ito\nbob.smith\n")
    run = lambda *args: CliRunner().invoke(cli, ["protect", "--store", str(store), *args])  # noqa: E731
    first = run("--users", str(people), "--networks", "10.0.0.0/8")
    assert first.exit_code == 0 and "warning" not in first.stderr  # a first policy is what was asked
    dropped = run("--networks", "10.0.0.0/8")
    assert dropped.exit_code == 0 and "the roster of 3 people is dropped" in dropped.stderr
    assert "count those rows exactly, also in budget windows" in dropped.stderr
    assert run("--users", str(people), "--networks", "10.0.0.0/8").exit_code == 0
    left = run("--users", str(fewer), "--networks", "10.20.0.0/16")
    assert "1 account left the roster" in left.stderr and "addresses in 10.0.0.0/8 outside 10.20.0.0/16" in left.stderr
    only_users = run("--users", str(fewer))
    assert "networks rule of version 4 (10.20.0.0/16) is dropped" in only_users.stderr
    assert "warning" not in only_users.stderr  # dropping the networks protects more
    assert "warning" not in run("--clear").stderr
    assert load(store).version == 6


def _failed_logins(store) -> int:
    return CliRunner().invoke(cli, ["query", "--store", str(store), "--sql", FAILURES, "--epsilon", "0.5",
                                    "--start", "2024-03-01", "--end", "2024-03-31"]).exit_code


FAILURES = "SELECT source.ip, COUNT(*) FROM logs WHERE event.outcome = 'failure' GROUP BY source.ip"


@pytest.mark.parametrize("tamper", ["widened by hand", "rolled back", "policy deleted", "a new version by hand"])
def test_a_policy_changed_outside_protect_releases_nothing(sample_store, tmp_path, tamper):
    """A well-formed policy edited by hand (every address made outside the networks, so every
    source address would be released exactly), put back to an older version, deleted or written
    as a new version is not the one `dplogs protect` sealed in the ledger: refused (74) before
    anything is charged, also by `protect --show`; `dplogs protect` again puts it right."""
    import json
    import shutil

    store = tmp_path / "st"
    shutil.copytree(sample_store, store)
    run = CliRunner().invoke
    assert run(cli, ["protect", "--store", str(store), "--networks", "10.0.0.0/8"]).exit_code == 0
    assert run(cli, ["protect", "--store", str(store), "--networks", "10.0.0.0/8,192.168.0.0/16"]).exit_code == 0
    folder = store / "policy"
    if tamper == "widened by hand":
        doc = json.loads((folder / "v2.json").read_text())
        doc["networks"] = ["203.0.113.0/32"]  # nearly every address is now 'outside'
        (folder / "v2.json").write_text(json.dumps(doc))
    elif tamper == "rolled back":
        (folder / "v2.json").unlink()
        (folder / "current").write_text("1")
    elif tamper == "policy deleted":
        shutil.rmtree(folder)
    else:
        doc = json.loads((folder / "v2.json").read_text())
        (folder / "v3.json").write_text(json.dumps({**doc, "version": 3, "networks": ["203.0.113.0/32"]}))
        (folder / "current").write_text("3")
    ledger = Ledger.open(store / "ledger.sqlite")
    before = len(ledger.history())
    assert _failed_logins(store) == 74
    shown = run(cli, ["protect", "--store", str(store), "--show"])
    assert shown.exit_code == 74 and "not the one `dplogs protect` recorded" in shown.output
    with pytest.raises(StoreDamaged, match="edited, replaced or rolled back"):
        Engine.open(store).sql(FAILURES, start="2024-03-01", end="2024-03-31", epsilon=0.5).release(caller="t")
    assert len(ledger.history()) == before  # nothing charged
    assert run(cli, ["protect", "--store", str(store), "--networks", "10.0.0.0/8"]).exit_code == 0
    assert _failed_logins(store) == 0 and len(ledger.history()) == before + 1


def test_protect_show_refuses_what_releases_refuse(sample_store, tmp_path):
    """`protect --show` exits as a release would: 74 with the store's ledger missing, and 74 for a
    policy in a store that never had a ledger (so none recorded it)."""
    import shutil

    from dplogs.engine.policy import _write

    store = tmp_path / "st"
    shutil.copytree(sample_store, store)
    assert CliRunner().invoke(cli, ["protect", "--store", str(store), "--networks", "10.0.0.0/8"]).exit_code == 0
    (store / "ledger.sqlite").unlink()
    shown = CliRunner().invoke(cli, ["protect", "--store", str(store), "--show"])
    assert shown.exit_code == 74 and "missing" in shown.output
    assert _failed_logins(store) == 74
    fresh = tmp_path / "fresh"
    log = tmp_path / "a.log"
    log.write_text("Mar  5 10:00:00 h sshd[1]: Failed password for root from 198.51.100.7 port 22 ssh2\n")
    assert CliRunner().invoke(cli, ["ingest", str(log), "--store", str(fresh), "--year", "2024", "-q"]).exit_code == 0
    _write(fresh, users=None, networks=("10.0.0.0/8",))
    shown = CliRunner().invoke(cli, ["protect", "--store", str(fresh), "--show"])
    assert shown.exit_code == 74 and "(none)" in shown.output


def test_the_recorded_policy_is_sealed_in_the_ledger(sample_store, tmp_path):
    """Rewriting the ledger's record of the policy to match a hand-edited file breaks the ledger's
    seal: the ledger itself is refused."""
    import shutil
    import sqlite3

    store = tmp_path / "st"
    shutil.copytree(sample_store, store)
    assert CliRunner().invoke(cli, ["protect", "--store", str(store), "--networks", "10.0.0.0/8"]).exit_code == 0
    with sqlite3.connect(store / "ledger.sqlite") as c:
        c.execute("UPDATE meta SET value = '{\"digest\":\"0\",\"version\":1}' WHERE key = 'protection'")
    assert _failed_logins(store) == 74
    assert not Ledger.open(store / "ledger.sqlite").verify().ok


def test_a_policy_the_ledger_never_recorded_is_refused_until_protect_runs(sample_store, tmp_path):
    """A policy written without its ledger record (by hand, or by a dplogs before the record) is refused."""
    import shutil

    from dplogs.engine.policy import _write

    store = tmp_path / "st"
    shutil.copytree(sample_store, store)
    _write(store, users=None, networks=("10.0.0.0/8",))
    assert _failed_logins(store) == 74
    assert CliRunner().invoke(cli, ["protect", "--store", str(store), "--networks", "10.0.0.0/8"]).exit_code == 0
    assert _failed_logins(store) == 0


@pytest.mark.parametrize("when", ["before its ledger is opened", "between two releases"])
def test_a_protect_that_finishes_while_a_query_runs_asks_for_a_rerun(sample_store, tmp_path, when):
    """A query prepared under policy 1 while `dplogs protect` then sealed policy 2 releases nothing
    under 1: refused as a concurrent run (75, not "damaged"), at the ledger's opening or, once it
    is open, in the charge's own transaction; nothing is charged. The same engine's next query
    takes up policy 2 (a long-lived engine needs no reopening)."""
    import shutil

    store = tmp_path / "st"
    shutil.copytree(sample_store, store)
    run = CliRunner().invoke
    assert run(cli, ["protect", "--store", str(store), "--networks", "10.0.0.0/8"]).exit_code == 0
    engine = Engine.open(store)
    if when == "between two releases":
        engine.sql(FAILURES, start="2024-03-01", end="2024-03-31", epsilon=0.25).release(caller="t")
    ledger = Ledger.open(store / "ledger.sqlite")
    before = len(ledger.history())
    prepared = engine.sql(FAILURES, start="2024-03-01", end="2024-03-31", epsilon=0.25)
    assert run(cli, ["protect", "--store", str(store), "--networks", "10.0.0.0/8,192.168.0.0/16"]).exit_code == 0
    with pytest.raises(ConcurrentRun, match="while this (ran|release was prepared) under version 1") as refused:
        prepared.release(caller="t")
    assert refused.value.exit_code == 75 and len(ledger.history()) == before
    rerun = engine.sql(FAILURES, start="2024-03-01", end="2024-03-31", epsilon=0.25).release(caller="t")
    assert rerun.privacy["protection"]["version"] == 2 and len(ledger.history()) == before + 1


def test_a_policy_is_never_read_half_written(tmp_path):
    """`dplogs protect` writes a version's file, then `current`, under the folder's exclusive lock;
    a reader waits for both (it read the new file beside the old `current` as an unreadable policy)."""
    import threading
    import time

    from dplogs.engine.policy import _write
    from dplogs.files import directory_locked

    _write(tmp_path, users=None, networks=("10.0.0.0/8",))
    folder = tmp_path / "policy"
    got: list = []
    with directory_locked(folder):
        (folder / "v2.json").write_text((folder / "v1.json").read_text().replace('"version": 1', '"version": 2'))
        reader = threading.Thread(target=lambda: got.append(load(tmp_path)))
        reader.start()
        time.sleep(0.3)
        assert reader.is_alive() and not got
        (folder / "current").write_text("2")
    reader.join(timeout=10)
    assert [p.version for p in got] == [2]


def test_protect_clears_what_a_killed_protect_left(tmp_path):
    """A protect killed mid-write leaves a hidden temporary file; the next one (holding the lock,
    so no write is live) removes it, and leaves others' files alone."""
    from dplogs.engine.policy import _write

    _write(tmp_path, users=None, networks=("10.0.0.0/8",))
    folder = tmp_path / "policy"
    (folder / ".v2.json.k1ll3d.tmp").write_text('{"version": 2, "netw')
    (folder / "README").write_text("mine")
    _write(tmp_path, users=None, networks=("10.0.0.0/8",))
    assert sorted(p.name for p in folder.iterdir()) == ["README", "current", "v1.json", "v2.json"]


def test_bound_choice_profiles_only_protected_rows(make_engine):
    """Removing a unit's protected rows removes its profile entry: it never just moves between bins."""
    from dplogs.engine.execute import profile

    df = frame()
    eng = make_engine(df)
    eng.policy = POLICY
    plan = eng.build(Aggregation.count(), keys=["source.ip"], epsilon=1.0, delta=1e-6, max_groups=1,
                     start="2026-11-01", end="2026-12-01").plan
    counts = profile(plan, eng.scan())["max_rows_per_group"]
    assert counts.sum() == 40  # the 40 employees' own rows; not oracle, root, nor emp1's outside rows


def test_shipped_audit_neighbour_removes_only_protected_rows(make_engine):
    """On a store with a policy, `dplogs audit`'s neighbour is the heaviest contributor of
    protected rows, minus those rows only: 'oracle' (230 unprotected rows) is not it, and the
    release is within its claim (removing unprotected, exact rows would 'violate' a claim never made)."""
    from dplogs.audit.engine import audit_prepared, heaviest_unit

    eng = make_engine(frame())
    eng.policy = POLICY
    prepared = eng.build(Aggregation.count(), keys=[time_bucket("hour")], epsilon=1.0, max_groups=1,
                         max_rows_per_group=1, start="2026-11-03", end="2026-11-04")
    victim = heaviest_unit(prepared.plan, eng.scan())
    assert victim.unit.startswith(b"emp")  # the user name as the unit's Binary value
    assert victim.of(prepared.plan, eng.scan()).collect().height == 21  # its protected rows: all, a person's from outside too
    assert heaviest_unit(prepared.plan, eng.scan().filter(pl.col("user.name") != "emp1")).of(
        prepared.plan, eng.scan()).collect().get_column("user.name").is_in(["oracle", "root"]).sum() == 0
    r = audit_prepared(prepared, trials=2_000)
    assert not r.violated, r.summary()


def test_time_series_scores_accept_a_release_with_an_exact_part():
    import datetime as dt

    from dplogs.detect.timeseries import score_release

    days = [dt.datetime(2026, 11, d, tzinfo=dt.timezone.utc) for d in range(1, 8)]
    rel = pl.DataFrame({"day": days, "aggregate": "count", "value": [10.0, 12, 9, 11, 10, 11, 240], "exact": [0.0] * 6 + [230.0],
                        "mechanism": "laplace", "scale": 1.0, "ci_low": 0.0, "ci_high": 0.0})
    assert score_release(rel, history=5)["anomalous"].to_list()[-1]
