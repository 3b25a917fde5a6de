"""``dplogs budget show|history|set|verify`` end to end through the real command group."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.errors import UsageError
from dplogs.ingest.store import Store
from dplogs.privacy.accounting import zcdp_to_epsilon
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.loss import PrivacyLoss


@pytest.fixture
def store(tmp_path):
    return Store.init(tmp_path / "st", dataset="demo")


def run(*args):
    return CliRunner().invoke(cli, ["budget", *map(str, args)])


def _spend(store, loss, windows=("2026-11",), **kw):
    with Ledger.open(store.ledger_path) as led, led.charge(loss, windows=list(windows), caller="cli", **kw) as c:
        c.record({"v": 1})


def test_set_then_show_json(store):
    r = run("set", "--store", store.path, "--epsilon", 2, "--delta", 1e-6)
    assert r.exit_code == 0, r.output
    assert "epsilon=2" in r.stderr and r.stdout == ""
    _spend(store, PrivacyLoss(epsilon=0.5))
    _spend(store, PrivacyLoss(rho=0.01), windows=("2026-11", "2026-12"))
    r = run("show", "--store", store.path, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["window_policy"] == "month" and data["caps"] == {"epsilon": 2.0, "delta": 1e-6, "rho": None}
    nov, dec = data["windows"]
    assert (nov["window"], dec["window"]) == ("2026-11", "2026-12")
    assert nov["spent"]["epsilon"] == pytest.approx(min(0.5 + zcdp_to_epsilon(0.01, 1e-6), zcdp_to_epsilon(0.01 + 0.125, 1e-6)))
    assert dec["spent"]["epsilon"] == pytest.approx(zcdp_to_epsilon(0.01, 1e-6))
    assert nov["entries"] == 2 and dec["entries"] == 1 and nov["unfinished"] == 0
    assert 0 < nov["remaining"]["epsilon"] < dec["remaining"]["epsilon"] < 2


def test_show_table_and_options_kept_by_set(store):
    assert run("set", "--store", store.path, "--epsilon", 1, "--delta", 1e-7).exit_code == 0
    assert run("set", "--store", store.path, "--epsilon", 3).exit_code == 0  # δ is kept
    with Ledger.open(store.ledger_path) as led:
        caps = led.caps()
    assert (caps.epsilon, caps.delta) == (3.0, 1e-7)
    _spend(store, PrivacyLoss(epsilon=0.25))
    r = run("show", "--store", store.path)
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["window", "spent", "ε"]
    assert lines[1].split()[:2] == ["2026-11", "0.25"]
    assert "2.75" in lines[1]


def test_history(store):
    run("set", "--store", store.path, "--epsilon", 1)
    for i in range(3):
        _spend(store, PrivacyLoss(epsilon=0.1), query=f"SELECT {i}")
    r = run("history", "--store", store.path, "--limit", 2, "--json")
    entries = json.loads(r.stdout)
    assert [e["query"] for e in entries] == ["SELECT 2", "SELECT 1"]
    assert entries[0]["payload"] == {"v": 1} and entries[0]["status"] == "committed"
    r = run("history", "--store", store.path)
    assert r.exit_code == 0 and r.stdout.count("committed") == 3
    assert run("history", "--store", store.path, "--limit", 0).exit_code == 2


def test_verify_ok_and_tampered(store):
    run("set", "--store", store.path, "--epsilon", 1)
    _spend(store, PrivacyLoss(epsilon=0.1))
    _spend(store, PrivacyLoss(epsilon=0.2))
    r = run("verify", "--store", store.path)
    assert r.exit_code == 0 and r.stdout.startswith("ok: 2 entries, head hash ")
    con = sqlite3.connect(store.ledger_path)
    with con:
        con.execute("UPDATE entries SET epsilon = 0.0001 WHERE seq = 2")
    con.close()
    r = run("verify", "--store", store.path, "--json")
    assert r.exit_code == 74
    report = json.loads(r.stdout)
    assert not report["ok"] and any("#2" in p for p in report["problems"])
    assert "verification failed" in r.stderr


def test_errors_say_the_fix(store):
    r = run("show", "--store", store.path)
    assert r.exit_code == 0 and "dplogs budget set" in r.stderr  # no ledger yet: no caps, nothing spent
    r = run("set", "--store", store.path, "--delta", 1e-6)
    assert r.exit_code == 64 and "--epsilon" in r.stderr
    r = run("set", "--store", store.path, "--epsilon", -1)
    assert r.exit_code == 64 and "epsilon must be a finite number > 0" in r.stderr
    r = run("set", "--store", store.path, "--epsilon", 1, "--window-policy", "day")
    assert r.exit_code == 64 and "budget window is month" in r.stderr
    r = run("show", "--store", store.path.parent / "nope")
    assert r.exit_code == 66


def test_corrupt_ledger_exit_code(store):
    run("set", "--store", store.path, "--epsilon", 1)
    store.ledger_path.write_bytes(b"\x00garbage" * 500)
    for cmd in ("show", "history", "verify"):
        r = run(cmd, "--store", store.path)
        assert r.exit_code == 74 and "corrupt" in r.stderr, cmd


def test_help_documents_every_option():
    for cmd in ("show", "history", "set", "verify"):
        r = run(cmd, "--help")
        assert r.exit_code == 0
        ctx_cmd = cli.get_command(None, "budget").commands[cmd]
        for param in ctx_cmd.params:
            if param.param_type_name == "option":
                assert param.help, f"budget {cmd} {param.opts[0]} has no help text"
                assert param.opts[0] in r.stdout


def test_set_aligns_a_ledger_created_before_any_caps_with_the_store_policy(tmp_path):
    store = Store.init(tmp_path / "daily", dataset="demo", budget_window="day")
    Ledger.open(store.ledger_path, create=True).close()  # e.g. a first query, refused for lack of caps
    with Ledger.open(store.ledger_path) as led, pytest.raises(UsageError, match="dplogs budget set"):
        with led.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11-22"], caller="cli"):
            pass
    r = run("set", "--store", store.path, "--epsilon", 1)
    assert r.exit_code == 0 and "every day window" in r.stderr
    _spend(store, PrivacyLoss(epsilon=0.1), windows=("2026-11-22",))
    with Ledger.open(store.ledger_path) as led:
        assert led.window_policy == "day" and led.spent("2026-11-22").epsilon == pytest.approx(0.1)
        with pytest.raises(UsageError, match="budget windows are days"):
            with led.charge(PrivacyLoss(epsilon=0.1), windows=["2026-11"], caller="cli"):
                pass


def test_budget_show_on_a_new_store_says_no_caps_and_exits_0(tmp_path):
    """A store no one ran `budget set` on has no ledger yet: `budget show` exited 74 ('no budget
    ledger'), the code of a lost or corrupt ledger, which a monitor reads as an alarm. It now says
    nothing is spent and no caps are set (0); a recorded ledger gone missing is still 74."""
    import json

    from click.testing import CliRunner

    from dplogs.cli import cli

    log = tmp_path / "auth.log"
    log.write_text("Mar 31 10:00:01 web1 sshd[1]: Failed password for bob from 203.0.113.9 port 1 ssh2\n")
    store = tmp_path / "st"
    assert CliRunner().invoke(cli, ["ingest", str(log), "--store", str(store), "--year", "2024"]).exit_code == 0
    res = CliRunner().invoke(cli, ["budget", "show", "--store", str(store)])
    assert res.exit_code == 0 and "no budget caps set" in res.output and "no releases charged yet" in res.output
    res = CliRunner().invoke(cli, ["budget", "show", "--store", str(store), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout) == {"window_policy": "month", "caps": None, "windows": []}
    assert not (store / "ledger.sqlite").exists()  # reading made nothing
    assert CliRunner().invoke(cli, ["budget", "set", "--store", str(store), "--epsilon", "1"]).exit_code == 0
    (store / "ledger.sqlite").unlink()
    res = CliRunner().invoke(cli, ["budget", "show", "--store", str(store)])
    assert res.exit_code == 74 and "missing" in res.output
