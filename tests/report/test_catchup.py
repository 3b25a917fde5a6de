"""Catch-up: every period after the last one released, oldest first, stopping cleanly at the budget."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.errors import BudgetExhausted
from dplogs.privacy.ledger import Ledger
from dplogs.report import load_report_spec
from dplogs.report.run import catch_up, catch_up_periods, released_periods
from tests.report.conftest import NIGHTLY

D = dt.date
PER_DAY = 2.0  # the nightly spec's four sections of ε = 0.5


def _cli(*args: str):
    return CliRunner().invoke(cli, ["report", str(NIGHTLY), *args])


def test_catch_up_releases_each_missing_day_once_oldest_first(new_store, tmp_path):
    store, out = new_store(epsilon=20), tmp_path / "out"
    spec = load_report_spec(NIGHTLY)
    # no history: only the last ended period (yesterday of "today")
    assert catch_up_periods(spec, store, today=D(2024, 3, 13)) == [D(2024, 3, 12)]

    first = _cli("--store", str(store), "--catch-up", "--since", "2024-03-10", "--until", "2024-03-12",
                 "--out-dir", str(out))
    assert first.exit_code == 0, first.output
    assert released_periods(spec, store) == {D(2024, 3, 10): 4, D(2024, 3, 11): 4, D(2024, 3, 12): 4}
    assert first.stderr.index("2024-03-10 to") < first.stderr.index("2024-03-11 to") < first.stderr.index("2024-03-12 to")
    ledger = Ledger.open(store / "ledger.sqlite")
    assert ledger.spent("2024-03").epsilon == pytest.approx(3 * PER_DAY)
    keys = ledger.committed_keys("report:nightly-soc:")
    assert len(keys) == 12 and keys[0] == "report:nightly-soc:2024-03-10:0:failed_logins_per_hour"

    # the next night continues after the last period released, up to yesterday
    assert catch_up_periods(spec, store, today=D(2024, 3, 15)) == [D(2024, 3, 13), D(2024, 3, 14)]
    assert catch_up_periods(spec, store, today=D(2024, 3, 13)) == []  # up to date
    # re-running the same backfill spends nothing and writes the same files again
    again = _cli("--store", str(store), "--catch-up", "--since", "2024-03-10", "--until", "2024-03-12",
                 "--out-dir", str(out))
    assert again.exit_code == 0 and again.stderr.count("replayed (nothing spent)") == 12
    assert Ledger.open(store / "ledger.sqlite").spent("2024-03").epsilon == pytest.approx(3 * PER_DAY)


def test_budget_running_out_midway_stops_names_the_periods_left_and_resumes(new_store, tmp_path):
    store, out = new_store(epsilon=5.0), tmp_path / "out"  # two days and a half
    res = _cli("--store", str(store), "--catch-up", "--since", "2024-03-10", "--until", "2024-03-14",
               "--out-dir", str(out))
    assert res.exit_code == 77, res.output
    assert "periods left: 2024-03-12, 2024-03-13, 2024-03-14" in res.stderr
    spec = load_report_spec(NIGHTLY)
    assert released_periods(spec, store) == {D(2024, 3, 10): 4, D(2024, 3, 11): 4, D(2024, 3, 12): 2}
    ledger = Ledger.open(store / "ledger.sqlite")
    assert ledger.spent("2024-03").epsilon == pytest.approx(5.0)
    # the partial period's report is written and says what is missing; latest stays on a whole one
    assert (out / "nightly-soc-2024-03-12.md").read_text().count("**Not released:**") == 2
    assert (out / "nightly-soc-latest.md").resolve().name == "nightly-soc-2024-03-11.md"

    # without --since the next run resumes at the partial period
    assert catch_up_periods(spec, store, today=D(2024, 3, 15))[0] == D(2024, 3, 12)
    ledger.set_caps(window_policy="month", epsilon=20.0, delta=1e-5)
    result = catch_up(spec, store, today=D(2024, 3, 15))
    assert result.error is None and [r.start for r in result.runs] == [D(2024, 3, 12), D(2024, 3, 13), D(2024, 3, 14)]
    replayed = [bool(s.release.privacy.get("replayed")) for s in result.runs[0].sections]
    assert replayed == [True, True, False, False]  # the two sections released before replay for free
    assert Ledger.open(store / "ledger.sqlite").spent("2024-03").epsilon == pytest.approx(5 * PER_DAY)


def test_catch_up_stops_at_once_on_exhausted_budget_and_returns_the_error(new_store):
    store = new_store(epsilon=1.0)
    result = catch_up(load_report_spec(NIGHTLY), store, today=D(2024, 3, 13), since=D(2024, 3, 11))
    assert isinstance(result.error, BudgetExhausted)
    assert result.left == (D(2024, 3, 11), D(2024, 3, 12)) and len(result.runs) == 1


@pytest.mark.parametrize("args, message", [
    (["--catch-up"], "pass --out-dir"),
    (["--since", "2024-03-10", "--out-dir", "X"], "bound a --catch-up"),
    (["--catch-up", "--date", "2024-03-10", "--out-dir", "X"], "--date names one period"),
    (["--catch-up", "--since", "2024-03-12", "--until", "2024-03-10", "--out-dir", "X"], "is before --since"),
    (["--out-dir", "X", "-o", "y.html"], "drop --output"),
    (["--tz", "Mars/Olympus", "--date", "2024-03-10"], "unknown time zone"),
])
def test_bad_options_exit_64_and_charge_nothing(new_store, tmp_path, args, message):
    store = new_store()
    args = [str(tmp_path / a) if a == "X" else a for a in args]
    res = _cli("--store", str(store), *args)
    assert res.exit_code == 64 and message in res.stderr, res.output
    assert Ledger.open(store / "ledger.sqlite").history() == []


def test_a_bad_section_charges_nothing(new_store, tmp_path):
    store = new_store()
    spec = tmp_path / "s.toml"
    spec.write_text(f'name = "x"\n[[section]]\nquery = "{NIGHTLY.parent.parent / "failed_logins_per_hour.toml"}"\n'
                    f'[[section]]\nquery = "{NIGHTLY.parent.parent / "failed_logins_per_hour.toml"}"\nbucket = "year"\n')
    res = CliRunner().invoke(cli, ["report", str(spec), "--store", str(store), "--date", "2024-03-12"])
    assert res.exit_code == 64 and Ledger.open(store / "ledger.sqlite").history() == []


def test_a_period_without_logs_says_so_spends_nothing_and_exits_66(new_store, tmp_path):
    store = new_store(epsilon=10)
    out = tmp_path / "r.md"
    res = _cli("--store", str(store), "--date", "2025-01-10", "--format", "md", "-o", str(out))
    assert res.exit_code == 66, res.output
    assert "No data for this period" in out.read_text() and "2024-03-04 to 2024-03-17" in out.read_text()
    # a nightly job's default (yesterday) on older logs: the refusal names a day to ask for
    assert "report a day it covers with --date, e.g. --date 2024-03-17" in " ".join(res.output.split())
    assert Ledger.open(store / "ledger.sqlite").history() == []  # nothing charged
