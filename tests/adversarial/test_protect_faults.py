"""`dplogs protect` under faults (found by faults4): a full disk or read-only policy folder, a run
killed between the policy files and the ledger's seal, a seal edited in the ledger, hostile roster
files. Every case exits with a documented code (never 70), charges nothing, and never lets a
policy that `dplogs protect` did not seal decide a release."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dplogs.engine import policy
from tests.adversarial.conftest import auth_store, ledger_state
from tests.adversarial.conftest import invoke as run

QUERY = ["--sql", "SELECT COUNT(*) FROM logs", "--epsilon", "0.1", "--start", "2024-03-01", "--end", "2024-04-01"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    store = auth_store(tmp_path_factory.mktemp("protect") / "store")
    assert run("protect", "--store", store, "--networks", "10.0.0.0/8").exit_code == 0
    return store


@pytest.fixture
def store(base, tmp_path) -> Path:
    shutil.copytree(base, tmp_path / "store")
    return tmp_path / "store"


def test_a_full_disk_while_protect_writes_the_policy_is_an_io_error(store, monkeypatch):
    """It was exit 70 ('a bug in dplogs') and left .v2.json.tmp in the policy folder."""
    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(policy.os, "replace", full)
    res = run("protect", "--store", store, "--networks", "10.1.0.0/16")
    assert res.exit_code == 74, res.output
    assert "No space left" in res.output and "rerun" in res.output
    monkeypatch.undo()
    assert sorted(p.name for p in (store / "policy").iterdir()) == ["current", "v1.json"]
    assert policy.load(store).networks == ("10.0.0.0/8",)  # the policy in force is unchanged, and releases
    assert run("query", "--store", store, *QUERY).exit_code == 0
    assert run("protect", "--store", store, "--networks", "10.1.0.0/16").exit_code == 0


def test_a_protect_killed_before_its_seal_releases_nothing_until_protect_runs_again(store, monkeypatch):
    from dplogs.privacy.ledger import Ledger

    def killed(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Ledger, "record_protection", killed)
    run("protect", "--store", store, "--networks", "0.0.0.0/0")  # every address inside: widening by crash?
    monkeypatch.undo()
    before = ledger_state(store)
    res = run("query", "--store", store, *QUERY)
    assert res.exit_code == 74 and "interrupted" in res.output, res.output
    assert ledger_state(store) == before
    assert run("protect", "--store", store, "--show").exit_code == 74
    assert run("protect", "--store", store, "--networks", "10.0.0.0/8").exit_code == 0
    assert run("query", "--store", store, *QUERY).exit_code == 0


@pytest.mark.parametrize("value", ["not json", '{"version": "x", "digest": "1"}', "[]", '{"version": 1}', "null"])
def test_a_seal_edited_in_the_ledger_is_refused_as_tampering(store, value):
    """A protection seal rewritten in the ledger's meta table crashed every release and protect
    --show with exit 70 (JSONDecodeError, ValueError, TypeError, KeyError)."""
    with sqlite3.connect(store / "ledger.sqlite") as c:
        c.execute("UPDATE meta SET value = ? WHERE key = 'protection'", (value,))
    before = ledger_state(store)
    for args in (("query", "--store", store, *QUERY), ("protect", "--store", store, "--show")):
        res = run(*args)
        assert res.exit_code == 74, res.output
        assert "protection policy" in res.output and "changed outside dplogs" in res.output
    assert ledger_state(store) == before


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory", "binary", "empty"])
def test_a_hostile_roster_file_is_refused_without_hanging(store, tmp_path, kind):
    roster = tmp_path / "people.txt"
    if kind == "fifo":
        os.mkfifo(roster)
    elif kind == "dev-zero":
        roster.symlink_to("/dev/zero")
    elif kind == "directory":
        roster.mkdir()
    elif kind == "binary":
        roster.write_bytes(bytes(range(256)) * 4)
    else:
        roster.write_text("# nobody\n\n")
    code = "from dplogs.cli import main; main()"  # a child: a hang fails the test instead of stalling it
    res = subprocess.run([sys.executable, "-c", code, "protect", "--store", str(store), "--users", str(roster)],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode in (2, 65, 66), res.stderr  # 2: click's own check of --users
    assert "roster" in res.stderr
    assert policy.load(store).version == 1


def test_two_protects_at_once_get_their_own_versions_and_the_seal_matches(store, monkeypatch):
    """Two operators setting the policy at once both computed version 2: both were told 'version 2
    in force', one policy file silently replaced the other, and the seal could name the policy that
    lost (every release then refused). Now one waits for the other: versions 2 and 3."""
    import threading
    import time

    from dplogs.privacy.ledger import Ledger

    newest = policy._newest_version

    def slow(folder):  # widen the window between reading the newest version and writing the next
        n = newest(folder)
        time.sleep(0.3)
        return n

    monkeypatch.setattr(policy, "_newest_version", slow)
    saved = []
    threads = [threading.Thread(target=lambda n=n: saved.append(policy.save(store, users=None, networks=(n,))))
               for n in ("10.1.0.0/16", "10.2.0.0/16")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monkeypatch.undo()
    assert sorted(p.version for p in saved) == [2, 3]
    newest_saved = max(saved, key=lambda p: p.version)
    assert policy.load(store) == newest_saved
    assert Ledger.open(store / "ledger.sqlite").protection() == (newest_saved.version, newest_saved.digest)
    assert run("query", "--store", store, *QUERY).exit_code == 0


def test_protect_on_a_tampered_ledger_writes_no_policy_version(store):
    """The ledger refused the seal (74), but v2.json had already been written and made current
    (save() says a refused ledger changes nothing): the unsealed version outlived the repair."""
    run("query", "--store", store, *QUERY)
    with sqlite3.connect(store / "ledger.sqlite") as c:
        c.execute("UPDATE entries SET epsilon = 0.001")
    res = run("protect", "--store", store, "--networks", "0.0.0.0/0")
    assert res.exit_code == 74 and "ledger verification failed" in res.output, res.output
    assert sorted(p.name for p in (store / "policy").iterdir()) == ["current", "v1.json"]


@pytest.mark.parametrize("name, kind", [("current", "fifo"), ("v1.json", "fifo"), ("v1.json", "dev-zero")])
def test_a_policy_file_that_is_no_regular_file_is_refused_without_hanging(store, name, kind):
    """A FIFO at policy/current or policy/v1.json hung every query, report and protect --show
    before anything was charged; a link to /dev/zero ran out of memory (MemoryError, exit 70)."""
    path = store / "policy" / name
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    before = ledger_state(store)
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
            "from dplogs.cli import main; main()")
    for args in (["query", "--store", str(store), *QUERY], ["protect", "--store", str(store), "--show"]):
        res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=30)
        assert res.returncode == 66, res.stderr
        assert "protection policy" in res.stderr and "unreadable" in res.stderr
    assert ledger_state(store) == before
