"""`dplogs demo` shows a catch-up over the sample's spray week and points at the summary."""

from __future__ import annotations

import os
import time

from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.privacy.ledger import Ledger
from tests.report.conftest import REPO


def test_demo_catches_up_and_points_at_the_summary(tmp_path):
    store = tmp_path / "demo"
    args = ["demo", "--store", str(store), "--logs", str(REPO / "sample_logs"), "--queries", str(REPO / "queries")]
    started = time.monotonic()
    first = CliRunner().invoke(cli, args)
    took = time.monotonic() - started
    assert first.exit_code == 0, first.output
    assert "caught up 4 nights" in first.stderr and "what stands out on 2024-03-12" in first.stderr
    assert "2024-03-12 02:00 in Failed logins per hour" in first.stderr
    reports = store / "reports"
    assert os.readlink(reports / "nightly-soc-latest.html") == "nightly-soc-2024-03-14.html"
    spent = Ledger.open(store / "ledger.sqlite").spent("2024-03").epsilon
    # the first release (1), four nights (2 each) and the brute-force query (0.5), inside the demo cap of 10
    assert spent == 9.5
    assert "203.0.113.77: " in first.stderr and "499 of them from outside, exact" in first.stderr
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and Ledger.open(store / "ledger.sqlite").spent("2024-03").epsilon == spent
    assert took < 60  # the README promises a quick first run (about 6 s here)
