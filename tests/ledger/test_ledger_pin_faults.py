"""Faults and hostile files around a scheduled report's ledger pin (found by faults4): the pin
lives in a report directory that others may write (a web root, a share), so what lies at its name
must never hang the run, exhaust memory, redirect the write, or make one store forget another's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.ledger_pin import PIN_NAME
from tests.auth_stores import failures_store

REPO = Path(__file__).resolve().parents[2]
NIGHTLY = str(REPO / "queries" / "reports" / "nightly.toml")


def _store(tmp_path: Path, name: str) -> Path:
    return failures_store(tmp_path, name)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return _store(tmp_path, "st")


def _entries(store: Path) -> int:
    return len(Ledger.open(store / "ledger.sqlite").history())


def _report_child(store: Path, out: Path, day: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """In a child process with a memory cap: a hang or an unbounded read must fail the test, not it."""
    code = ("import resource,sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
            "from dplogs.cli import main; sys.argv[0] = 'dplogs'; main()")
    return subprocess.run([sys.executable, "-c", code, "report", NIGHTLY, "--store", str(store), "--date", day,
                           "--out-dir", str(out)], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge"])
def test_a_pin_that_is_no_small_regular_file_is_refused_without_hanging(store, tmp_path, kind):
    """A FIFO at the pin's name hung the run before anything was released (read_bytes blocked),
    a link to /dev/zero read without end; a huge pin was read whole. Now 74 at once, nothing charged."""
    out = tmp_path / "reports"
    out.mkdir()
    pin = out / PIN_NAME
    if kind == "fifo":
        os.mkfifo(pin)
    elif kind == "dev-zero":
        pin.symlink_to("/dev/zero")
    else:
        pin.write_bytes(b'{"ledger_id": "x", "head_hash": "' + b"0" * (64 << 20) + b'"}')
    before = _entries(store)
    res = _report_child(store, out, "2026-03-01")
    assert res.returncode == 74, res.stderr
    assert PIN_NAME in res.stderr and "nothing was released" in res.stderr
    assert _entries(store) == before
    assert not list(out.glob("nightly-soc-2026-03-01.*"))


def test_a_pin_that_is_a_symbolic_link_is_refused_and_never_written_through(store, tmp_path):
    """A link at the pin's name was followed on read and on write (write_atomic replaced the link's
    target, any file the run may write, with the pin)."""
    out = tmp_path / "reports"
    out.mkdir()
    victim = tmp_path / "elsewhere.json"
    assert CliRunner().invoke(cli, ["report", NIGHTLY, "--store", str(store), "--date", "2026-03-01",
                                    "--out-dir", str(tmp_path / "first")]).exit_code == 0
    shutil.copy(tmp_path / "first" / PIN_NAME, victim)  # a well-formed pin, as an attacker could copy
    text = victim.read_text()
    (out / PIN_NAME).symlink_to(victim)
    res = CliRunner().invoke(cli, ["report", NIGHTLY, "--store", str(store), "--date", "2026-03-02",
                                   "--out-dir", str(out)])
    assert res.exit_code == 74, res.output
    assert "not a regular file" in res.output
    assert victim.read_text() == text


def test_an_out_dir_shared_by_two_stores_keeps_both_pins(tmp_path):
    """The second store's run replaced the first store's pin, so a restore of the first store from
    an older backup went unseen (it re-spent the budget it had already spent)."""
    a, b = _store(tmp_path, "a"), _store(tmp_path, "b")
    out = tmp_path / "reports"

    def run(store, day):
        return CliRunner().invoke(cli, ["report", NIGHTLY, "--store", str(store), "--date", day, "--out-dir", str(out)])

    assert run(a, "2026-03-01").exit_code == 0
    backup = tmp_path / "a-backup"
    shutil.copytree(a, backup)
    assert run(a, "2026-03-02").exit_code == 0
    assert run(b, "2026-03-01").exit_code == 0  # the other store's run, into the same directory
    shutil.rmtree(a)
    shutil.copytree(backup, a)  # the first store put back whole
    before = _entries(a)
    res = run(a, "2026-03-03")
    assert res.exit_code == 74, res.output
    assert "restored from an older copy" in res.output
    assert _entries(a) == before
    assert run(b, "2026-03-02").exit_code == 0  # the other store is unaffected


def test_a_pin_written_by_an_older_dplogs_is_still_checked(store, tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    ledger = Ledger.open(store / "ledger.sqlite")
    (out / PIN_NAME).write_text(json.dumps({"ledger_id": ledger.identity(), "head_hash": "f" * 64}))
    res = CliRunner().invoke(cli, ["report", NIGHTLY, "--store", str(store), "--date", "2026-03-01",
                                   "--out-dir", str(out)])
    assert res.exit_code == 74 and "restored from an older copy" in res.output


_PINNER = """
import sys
from pathlib import Path
from types import SimpleNamespace
from dplogs.privacy import ledger_pin

me, out, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
ledger = SimpleNamespace(identity=lambda: me, verify=lambda: SimpleNamespace(problems=[], head_hash="h" * 64))
lost = 0
for i in range(n):
    ledger_pin.write(ledger, out)
    lost += me not in ledger_pin.read(out)
print(lost)
"""


def test_two_stores_pinning_one_directory_at_once_keep_both_heads(tmp_path):
    """Read, add, replace without a lock: one run's replace dropped the head the other had just
    written (the next run of that store then checked nothing)."""
    out = tmp_path / "reports"
    out.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", _PINNER, name, str(out), "150"], stdout=subprocess.PIPE, text=True)
             for name in ("store-a", "store-b", "store-c")]
    lost = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert lost == [0, 0, 0]
    assert set(json.loads((out / PIN_NAME).read_text())["heads"]) == {"store-a", "store-b", "store-c"}
