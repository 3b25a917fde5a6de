"""A catch-up killed between a period's charge and its files (found by faults4): the rerun must
write that period's files (replaying its releases, spending nothing), never skip it."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.privacy.ledger import Ledger
from tests.auth_stores import failures_store

REPO = Path(__file__).resolve().parents[2]


def _store(tmp_path: Path) -> Path:
    return failures_store(tmp_path)


def test_a_catch_up_killed_after_a_periods_charge_writes_its_files_on_the_rerun(tmp_path, monkeypatch):
    store, out = _store(tmp_path), tmp_path / "reports"
    spec = tmp_path / "spec.toml"  # one section, applicable every day: the period counts as fully released
    spec.write_text(f'name = "fails"\n[[section]]\nquery = "{REPO / "queries" / "failed_logins_per_hour.toml"}"\n'
                    'epsilon = 0.5\nmax_groups = 2\nmax_rows_per_group = 2\n')
    from dplogs.cli import report as report_cli

    real, calls = report_cli.write_outputs, []

    def killed_on_the_second_period(run, out_dir, **kw):
        calls.append(run.start)
        if len(calls) == 2:  # the period is charged; the process dies before its files
            raise KeyboardInterrupt
        return real(run, out_dir, **kw)

    monkeypatch.setattr(report_cli, "write_outputs", killed_on_the_second_period)
    args = ["report", str(spec), "--store", str(store), "--catch-up", "--until", "2026-03-03", "--out-dir", str(out)]
    CliRunner().invoke(cli, [*args, "--since", "2026-03-01"])
    assert len(calls) == 2 and not list(out.glob("fails-2026-03-02.*"))
    monkeypatch.undo()
    spent = len(Ledger.open(store / "ledger.sqlite").history())
    res = CliRunner().invoke(cli, args)  # the scheduled command: no --since
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("fails-2026-03-0*.md")) == [
        "fails-2026-03-01.md", "fails-2026-03-02.md", "fails-2026-03-03.md"]
    assert "2026-03-02 to 2026-03-03 (UTC)" in res.output and "replayed (nothing spent)" in res.output
    assert len(Ledger.open(store / "ledger.sqlite").history()) == spent + 1  # 03-03 only


def test_report_files_in_a_shared_out_dir_replace_what_lies_at_their_names(tmp_path):
    """A report directory may be writable by others (a web root, a share). A link planted at a
    period file's name was followed: the run overwrote the link's target (any file the scheduler's
    account may write) with the report; a FIFO there hung the run after its charge, and every rerun
    again (found by faults4). Both are now replaced by the report file."""
    import os
    import subprocess
    import sys

    store, out = _store(tmp_path), tmp_path / "reports"
    out.mkdir()
    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA... admin\n")
    (out / "nightly-soc-2026-03-01.md").symlink_to(victim)
    os.mkfifo(out / "nightly-soc-2026-03-01.json")
    res = subprocess.run([sys.executable, "-c", "from dplogs.cli import main; main()", "report",
                          str(REPO / "queries" / "reports" / "nightly.toml"), "--store", str(store), "--date", "2026-03-01",
                          "--out-dir", str(out)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert victim.read_text() == "ssh-ed25519 AAAA... admin\n"
    for suffix in ("md", "json", "html"):
        path = out / f"nightly-soc-2026-03-01.{suffix}"
        assert path.is_file() and not path.is_symlink() and path.stat().st_size > 0


def test_a_catch_up_of_a_report_that_fits_the_store_in_no_period_exits_64(tmp_path):
    """The fix for a web-only store's nightly report (exit 64 when no section applies) covered one
    period; the scheduled form, --catch-up, still exited 0 every night saying nothing stands out
    (found by faults4). A catch-up where some period has applicable sections still exits 0."""
    store, out = tmp_path / "web", tmp_path / "reports"
    assert CliRunner().invoke(cli, ["ingest", str(REPO / "sample_logs" / "access.log"), "--store", str(store)]).exit_code == 0
    Ledger.open(store / "ledger.sqlite", create=True).set_caps(window_policy="month", epsilon=100.0, delta=1e-4)
    res = CliRunner().invoke(cli, ["report", str(REPO / "queries" / "reports" / "nightly.toml"), "--store", str(store),
                                   "--catch-up", "--since", "2024-03-09", "--until", "2024-03-11", "--out-dir", str(out)])
    assert res.exit_code == 64, res.output
    assert "in any of the 3 periods" in res.output
    assert len(list(out.glob("nightly-soc-2024-03-1*.html"))) == 2 and Ledger.open(store / "ledger.sqlite").history() == []
