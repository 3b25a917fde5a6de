"""A scheduled report's --out-dir pins the ledger's head: a whole store put back from an older
copy (ledger and head record together, which the head record cannot see) is refused next run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.ledger_pin import PIN_NAME
from tests.auth_stores import failures_store

REPO = Path(__file__).resolve().parents[2]
NIGHTLY = str(REPO / "queries" / "reports" / "nightly.toml")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return failures_store(tmp_path)


def _report(store: Path, out: Path, day: str):
    return CliRunner().invoke(cli, ["report", NIGHTLY, "--store", str(store), "--date", day, "--out-dir", str(out)])


def test_a_whole_store_restored_from_an_older_copy_is_refused(store, tmp_path):
    out = tmp_path / "reports"
    assert _report(store, out, "2026-03-01").exit_code == 0
    backup = tmp_path / "backup"
    shutil.copytree(store, backup)
    assert _report(store, out, "2026-03-02").exit_code == 0  # spends; the pin moves on
    ledger = Ledger.open(store / "ledger.sqlite")
    assert json.loads((out / PIN_NAME).read_text())["heads"][ledger.identity()] == ledger.verify().head_hash
    shutil.rmtree(store)
    shutil.copytree(backup, store)  # ledger and head record put back together: consistent on their own
    assert CliRunner().invoke(cli, ["budget", "verify", "--store", str(store)]).exit_code == 0
    entries = len(Ledger.open(store / "ledger.sqlite").history())
    res = _report(store, out, "2026-03-03")
    assert res.exit_code == 74, res.output
    assert "restored from an older copy" in res.output and PIN_NAME in res.output
    assert len(Ledger.open(store / "ledger.sqlite").history()) == entries  # nothing charged
    assert not list(out.glob("*2026-03-03*"))
    # deliberate: the administrator deletes the pin, and runs go on (pinning the restored head)
    (out / PIN_NAME).unlink()
    assert _report(store, out, "2026-03-03").exit_code == 0


def test_a_pin_of_another_ledger_is_kept_beside_and_a_damaged_pin_refused(store, tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    (out / PIN_NAME).write_text(json.dumps({"ledger_id": "another", "head_hash": "0" * 64}))
    assert _report(store, out, "2026-03-01").exit_code == 0
    assert set(json.loads((out / PIN_NAME).read_text())["heads"]) > {"another"}
    (out / PIN_NAME).write_text("{not json")
    res = _report(store, out, "2026-03-02")
    assert res.exit_code == 74 and "cannot be read" in res.output


def test_a_catch_up_pins_after_each_period(store, tmp_path):
    out = tmp_path / "reports"
    res = CliRunner().invoke(cli, ["report", NIGHTLY, "--store", str(store), "--catch-up", "--since", "2026-03-01",
                                   "--until", "2026-03-04", "--out-dir", str(out)])
    assert res.exit_code == 0, res.output
    ledger = Ledger.open(store / "ledger.sqlite")
    assert json.loads((out / PIN_NAME).read_text())["heads"][ledger.identity()] == ledger.verify().head_hash


def test_a_pin_that_cannot_be_written_is_an_io_error_not_a_bug(store, tmp_path, monkeypatch):
    """A full disk after the report files were written: exit 74 saying so (was 70, 'a bug')."""
    from dplogs.privacy import ledger_pin

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ledger_pin, "replace_whole", full)
    out = tmp_path / "reports"
    res = _report(store, out, "2026-03-01")
    assert res.exit_code == 74, res.output
    assert "cannot write the ledger pin" in res.output and "No space left" in res.output
    assert list(out.glob("nightly-soc-2026-03-01.*")) and not (out / PIN_NAME).exists()
    monkeypatch.undo()  # the rerun replays, spends nothing, and pins
    entries = len(Ledger.open(store / "ledger.sqlite").history())
    assert _report(store, out, "2026-03-01").exit_code == 0 and (out / PIN_NAME).exists()
    assert len(Ledger.open(store / "ledger.sqlite").history()) == entries
