"""Operator commands that print text first written by someone else (an idempotency key from a
scheduler, SQL quoting a log value) show it inert on the terminal."""

from __future__ import annotations

import re

from tests.adversarial.conftest import invoke, ledger_state

# characters a terminal or viewer would obey rather than show
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200b-\u200f]")
KEY = "nightly\x1b]8;;https://evil\x07click\x1b]8;;\x07\u202e"
LITERAL = "a\x1b[2J\u202egpj.exe\u200b"


def test_budget_history_shows_keys_and_query_text_escaped(store):
    res = invoke("query", "--store", store, "--idempotency-key", KEY, "--epsilon", "0.01", "--max-rows-per-group", "1",
                 "--start", "2024-03-01", "--end", "2024-04-01",
                 "--sql", f"SELECT COUNT(*) FROM logs WHERE host.name = '{LITERAL}'")
    assert res.exit_code == 0, res.output
    shown = invoke("budget", "history", "--store", store)
    assert shown.exit_code == 0, shown.output
    assert not RAW_CONTROLS.search(shown.output), ascii(shown.output)
    assert "nightly\\x1b]8;;https://evil\\x07click" in shown.output
    assert "'a\\x1b[2J" in shown.output  # the query column (cut at 60 characters)


def test_report_name_with_control_characters_is_refused_before_any_charge(store, tmp_path):
    # the name becomes file names, idempotency keys and the line `dplogs report` prints
    from tests.adversarial.conftest import REPO

    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "nightly\\u001b]0;owned\\u0007"\n[[section]]\n'
                    f'query = "{REPO / "queries" / "failed_logins_per_hour.toml"}"\n')
    before = ledger_state(store)
    res = invoke("report", spec, "--store", store, "--date", "2024-03-12", "--out-dir", tmp_path / "out")
    assert res.exit_code == 64, res.output
    assert "report name must be non-empty printable text" in res.output
    assert not RAW_CONTROLS.search(res.output), ascii(res.output)
    assert ledger_state(store) == before
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_parquet_is_not_written_to_a_terminal(store):
    # binary Parquet holds released keys as raw bytes: on a terminal they would be obeyed
    import os
    import pty
    import subprocess
    import sys
    from pathlib import Path

    before = ledger_state(store)
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("dplogs")), "query", "--store", str(store), "--sql", "SELECT COUNT(*) FROM logs",
             "--epsilon", "0.1", "--max-rows-per-group", "1", "--day", "2024-03-12", "--format", "parquet"],
            stdout=slave, stderr=subprocess.PIPE, timeout=120, text=True)
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 64, proc.stderr
    assert "--format parquet is binary" in proc.stderr
    assert ledger_state(store) == before
