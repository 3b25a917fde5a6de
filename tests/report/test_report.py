"""Reports: spec validation, idempotent runs, partial failure, and what the renderers disclose."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.errors import BudgetExhausted, ConcurrentRun, QueryError
from dplogs.privacy.ledger import Ledger
from dplogs.report import load_report_spec, render, run_report
from dplogs.report.summary import summarize
from dplogs.report.render import _chart
from tests.report.conftest import events_of

REPO = Path(__file__).resolve().parents[2]
NIGHTLY = REPO / "queries" / "reports" / "nightly.toml"
SPRAY_DAY = dt.date(2024, 3, 12)


@pytest.fixture
def sample_store(ingested_sample) -> Path:
    return ingested_sample


def _ledger(store: Path, epsilon: float) -> Ledger:
    ledger = Ledger.open(store / "ledger.sqlite", create=True)
    ledger.set_caps(window_policy="month", epsilon=epsilon, delta=1e-5)
    return ledger


def _fresh(sample_store: Path, tmp_path: Path, epsilon: float) -> Path:
    """A copy of the sample store with its own ledger (the events are shared read-only)."""
    store = events_of(sample_store, tmp_path / "store")
    _ledger(store, epsilon)
    return store


def test_spec_validation(tmp_path):
    spec = load_report_spec(NIGHTLY)
    assert spec.period == "day" and len(spec.sections) == 4
    assert all(s.query.is_file() for s in spec.sections)
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[section]]\nquery = "q.toml"\nchart = "pie"\n')
    with pytest.raises(QueryError, match="chart must be one of"):
        load_report_spec(bad)
    bad.write_text('name = "x"\n[[section]]\nquery = "q.toml"\nepsilom = 1\n')
    with pytest.raises(QueryError, match="unknown section option"):
        load_report_spec(bad)
    bad.write_text('name = "x"\nperiod = "year"\n[[section]]\nquery = "q.toml"\n')
    with pytest.raises(QueryError, match="period must be one of"):
        load_report_spec(bad)


def test_a_section_lists_this_organisations_keys(sample_store, tmp_path):
    """The per-host query declares the sample's hosts; a report section replaces them with its own."""
    spec = tmp_path / "hosts.toml"
    query = REPO / "queries" / "distinct_users_failing_per_host.toml"
    spec.write_text(f'name = "hosts"\n[[section]]\nquery = "{query}"\nepsilon = 0.5\n'
                    'keys = { "host.name" = ["web-1", "DC01.corp.example.com"] }\n')
    store = _fresh(sample_store, tmp_path, 10.0)
    run = run_report(load_report_spec(spec), store, day=SPRAY_DAY)
    assert sorted(run.sections[0].release.data["host.name"].to_list()) == ["DC01.corp.example.com", "web-1"]
    spec.write_text(f'name = "hosts"\n[[section]]\nquery = "{query}"\nkeys = ["web-1"]\n')
    with pytest.raises(QueryError, match="keys must be a table of value lists"):
        load_report_spec(spec)
    spec.write_text(f'name = "hosts"\n[[section]]\nquery = "{query}"\nkeyz = 1\n')
    with pytest.raises(QueryError, match="allowed: .*keys"):
        load_report_spec(spec)


def test_period_bounds():
    spec = load_report_spec(NIGHTLY)
    week = type(spec)(name="w", title="w", period="week", sections=spec.sections)
    month = type(spec)(name="m", title="m", period="month", sections=spec.sections)
    assert week.period_bounds(dt.date(2024, 3, 14)) == (dt.date(2024, 3, 11), dt.date(2024, 3, 18))
    assert month.period_bounds(dt.date(2024, 12, 31)) == (dt.date(2024, 12, 1), dt.date(2025, 1, 1))


def test_rerun_replays_and_spends_nothing(sample_store, tmp_path):
    store = _fresh(sample_store, tmp_path, epsilon=10)
    spec = load_report_spec(NIGHTLY)
    first = run_report(spec, store, day=SPRAY_DAY)
    assert first.first_error is None
    ledger = Ledger.open(store / "ledger.sqlite")
    spent = ledger.spent("2024-03").epsilon
    assert spent == pytest.approx(sum(s.options["epsilon"] for s in spec.sections))
    entries = len(ledger.history())

    second = run_report(spec, store, day=SPRAY_DAY)
    assert Ledger.open(store / "ledger.sqlite").spent("2024-03").epsilon == pytest.approx(spent)
    assert len(Ledger.open(store / "ledger.sqlite").history()) == entries
    for a, b in zip(first.sections, second.sections):
        assert b.release.privacy.get("replayed") is True
        assert a.release.data["value"].to_list() == b.release.data["value"].to_list()

    # another day is a new period: it is charged again
    run_report(spec, store, day=SPRAY_DAY + dt.timedelta(days=1))
    assert Ledger.open(store / "ledger.sqlite").spent("2024-03").epsilon == pytest.approx(2 * spent)


def test_budget_exhaustion_keeps_the_rest_and_exits_77(sample_store, tmp_path):
    store = _fresh(sample_store, tmp_path, epsilon=1.2)  # room for two sections of 0.5 only
    run = run_report(load_report_spec(NIGHTLY), store, day=SPRAY_DAY)
    released = [s for s in run.sections if s.release is not None]
    failed = [s for s in run.sections if s.error is not None]
    assert len(released) == 2 and len(failed) == 2
    assert all(isinstance(s.error, BudgetExhausted) for s in failed)
    assert "budget left" in str(failed[0].error)
    page = render(run, "html")
    assert page.count("<p class=error>Not released") == 2
    # each released section draws its chart, or says no cell had enough data for one
    assert page.count("<svg") + page.count("not enough data in any cell") >= 2 and page.count("<svg") >= 1
    assert "Not released: Distinct accounts with a failed login, per host, Windows logon failures" in page  # the summary

    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["report", str(NIGHTLY), "--store", str(store),
                                      "--date", "2024-03-13", "-o", str(out)])
    assert result.exit_code == 77 and out.is_file()


def test_renderers_disclose_privacy(sample_store, tmp_path):
    store = _fresh(sample_store, tmp_path, epsilon=10)
    run = run_report(load_report_spec(NIGHTLY), store, day=SPRAY_DAY)
    doc = json.loads(render(run, "json"))
    assert "user.name" in doc["privacy_model"] and "month" in doc["privacy_model"]
    for section in doc["sections"]:
        assert section["privacy"]["epsilon"] == pytest.approx(0.5)
        assert section["privacy"]["bias_note"]
        assert all(c["ci_low"] <= c["value"] <= c["ci_high"] for c in section["data"]
                   if c["ci_low"] is not None and c["value"] is not None)
    hourly = doc["sections"][0]["data"]
    assert len(hourly) == 24  # public hour buckets of the day, empty ones included
    md = render(run, "md")
    assert md.startswith("# Nightly SOC summary") and "differentially private" in md
    page = render(run, "html")
    assert "<svg" in page and "95% interval" in page and "<script" not in page


def test_html_escapes_untrusted_text(sample_store, tmp_path):
    store = _fresh(sample_store, tmp_path, epsilon=10)
    q = tmp_path / "q.toml"
    q.write_text((REPO / "queries" / "distinct_users_failing_per_host.toml").read_text()
                 .replace('"bastion01"', '"<script>alert(1)</script>"'))
    spec = tmp_path / "s.toml"
    spec.write_text(f'name = "x"\ntitle = "<b>t</b>"\n[[section]]\nquery = "{q}"\nchart = "bar"\n')
    page = render(run_report(load_report_spec(spec), store, day=SPRAY_DAY), "html")
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>t</b>" not in page


def _hold_period_lock(store: Path, day: dt.date, seconds: float) -> subprocess.Popen:
    """Another process holding the lock of the nightly report's period for ``seconds``."""
    spec = load_report_spec(NIGHTLY)
    start = spec.period_bounds(day)[0]
    code = ("import sys, time, datetime as dt; from pathlib import Path; from dplogs.report.run import _period_lock\n"
            f"with _period_lock(Path({str(store)!r}), {spec.name!r}, {start.isoformat()!r}, 0):\n"
            f"    print('locked', flush=True); time.sleep({seconds})\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_of_a_period_exits_75_past_its_wait_and_charges_nothing(sample_store, tmp_path):
    store = _fresh(sample_store, tmp_path, epsilon=10)
    holder = _hold_period_lock(store, SPRAY_DAY, 30)
    try:
        result = CliRunner().invoke(cli, ["report", str(NIGHTLY), "--store", str(store), "--date",
                                          SPRAY_DAY.isoformat(), "--wait", "0.3", "-o", str(tmp_path / "r.html")])
        assert result.exit_code == 75, result.output  # EX_TEMPFAIL: retryable, not a ledger fault (74)
        assert "still going" in result.stderr and not (tmp_path / "r.html").exists()
        with pytest.raises(ConcurrentRun):
            run_report(load_report_spec(NIGHTLY), store, day=SPRAY_DAY, wait=0)
        assert Ledger.open(store / "ledger.sqlite").history() == []
        # another period is not blocked
        assert run_report(load_report_spec(NIGHTLY), store, day=SPRAY_DAY + dt.timedelta(days=1)).first_error is None
    finally:
        holder.kill()
        holder.wait()


def test_second_run_waits_for_the_first_then_replays(sample_store, tmp_path):
    store = _fresh(sample_store, tmp_path, epsilon=10)
    holder = _hold_period_lock(store, SPRAY_DAY, 1.0)
    try:
        started = time.monotonic()
        run = run_report(load_report_spec(NIGHTLY), store, day=SPRAY_DAY, wait=30)
        assert run.first_error is None and time.monotonic() - started >= 0.5  # it waited for the holder
    finally:
        holder.wait()


@pytest.mark.slow
def test_two_processes_running_the_same_period_release_once(sample_store, tmp_path):
    store = _fresh(sample_store, tmp_path, epsilon=10)
    cmd = [sys.executable, "-c", "from dplogs.cli import main; main()", "report", str(NIGHTLY), "--store", str(store),
           "--date", SPRAY_DAY.isoformat(), "--format", "json", "--wait", "120"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    entries = Ledger.open(store / "ledger.sqlite").history()
    assert [e.status for e in entries] == ["committed"] * 4  # one run released, the other replayed
    assert sorted(err.count("replayed (nothing spent)") for _, err in outs) == [0, 4]
    first, second = (json.loads(out) for out, _ in outs)
    assert [s["data"] for s in first["sections"]] == [s["data"] for s in second["sections"]]


def test_time_axes_name_their_zone_and_empty_charts_say_why(new_store):
    """Issue 13: a chart's time axis names its zone, UTC too (it said nothing in UTC reports); an
    aggregate with no cell worth a value gets a sentence, not an empty frame of axes; a time key
    named after its grain follows a bucket override (the nightly's hourly rates sat under "day")."""
    run = run_report(load_report_spec(NIGHTLY), new_store(), day=SPRAY_DAY)
    rates = next(s for s in run.sections if s.section.title.startswith("Authentication failure rate"))
    assert "hour" in rates.release.data.columns and "day" not in rates.release.data.columns
    page = render(run, "html")
    assert "failures (noisy value; shaded/whiskers: 95% interval, times UTC)" in page
    hours = [dt.datetime(2024, 3, 12, h, tzinfo=dt.timezone.utc) for h in range(3)]
    frame = pl.DataFrame({"hour": hours, "aggregate": ["failure_rate"] * 3, "value": [None, None, None],
                          "ci_low": [None] * 3, "ci_high": [None] * 3}, schema_overrides={"value": pl.Float64,
                          "ci_low": pl.Float64, "ci_high": pl.Float64})
    empty = _chart(frame, "hour", "line", "failure_rate", "Europe/Berlin")
    assert "<svg" not in empty and "not enough data in any cell" in empty
    some = _chart(frame.with_columns(value=pl.Series([0.2, None, None]), ci_low=pl.Series([0.1, None, None]),
                                     ci_high=pl.Series([0.3, None, None])), "hour", "line", "failure_rate", "Europe/Berlin")
    assert "<svg" in some and "times Europe/Berlin; gaps: not enough data" in some


def test_output_suffix_picks_the_format(new_store, tmp_path):
    """Issue 13: `-o nightly.md` wrote HTML into a .md file; the suffix now names the format
    (explicit --format still wins)."""
    store = new_store()
    base = ["report", str(NIGHTLY), "--store", str(store), "--date", "2024-03-12"]
    for name, check in (("n.md", lambda t: t.startswith("# Nightly SOC summary")),
                        ("n.json", lambda t: json.loads(t)["report"] == "nightly-soc"),
                        ("n.html", lambda t: t.startswith("<!doctype html>"))):
        res = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        assert check((tmp_path / name).read_text()), name
    res = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "x.txt"), "--format", "md"])
    assert res.exit_code == 0 and (tmp_path / "x.txt").read_text().startswith("# ")


def test_sections_say_which_logs_their_query_reads(sample_store, tmp_path):
    """On a Linux-only store the nightly report's Windows section is pure noise (a logon-type-7
    cell once 'stood out' at 128 on a store without one Windows event) and nothing said which logs
    it needs: every shipped query names them (`logs`), and the report, explain and query show it."""
    store = _fresh(sample_store, tmp_path, 100.0)
    run = run_report(load_report_spec(NIGHTLY), store, day=SPRAY_DAY)
    windows = "Reads Windows Security logs with logon failures (event 4625)"
    assert windows in render(run, "html") and windows in render(run, "md")
    for query in (REPO / "queries").glob("*.toml"):
        assert "logs = " in query.read_text(), query.name
    explain = CliRunner().invoke(cli, ["explain", str(REPO / "queries" / "sudo_per_day.toml"), "--store", str(store)])
    assert "logs it reads: Linux auth.log/secure with sudo lines" in explain.output
    bad = tmp_path / "q.toml"
    bad.write_text('name = "q"\nlogs = 3\nsql = "SELECT COUNT(*) FROM logs"\n')
    res = CliRunner().invoke(cli, ["explain", str(bad), "--store", str(store)])
    assert res.exit_code == 64 and "`logs` must be a string" in res.output


def test_hourly_tables_show_midnight_as_a_time(sample_store, tmp_path):
    """An hourly table's first row read '2024-03-12' (as if a day's total), the next '2024-03-12 01:00'."""
    from dplogs.report.render import _table_rows

    store = _fresh(sample_store, tmp_path, 100.0)
    page = render(run_report(load_report_spec(NIGHTLY), store, day=SPRAY_DAY), "md")
    assert "| 2024-03-12 00:00 | failures |" in page and "| 2024-03-12 | failures |" not in page
    days = pl.DataFrame({"day": [dt.datetime(2024, 3, 11), dt.datetime(2024, 3, 12)]}).with_columns(
        pl.col("day").dt.replace_time_zone("UTC"))
    assert [r[0] for r in _table_rows(days, ["day"], "UTC")] == ["2024-03-11", "2024-03-12"]


def test_standouts_say_how_often_chance_makes_one(sample_store, tmp_path):
    """A logon-type cell of the Windows section 'stood out' on a store without one Windows event;
    the summary says how often a section with nothing unusual shows a cell by chance."""
    store = _fresh(sample_store, tmp_path, 100.0)
    from dplogs.privacy.testing import exact_mode

    with exact_mode():  # no noise: the spray's 02:00 hour stands out for sure
        run = run_report(load_report_spec(NIGHTLY), store, day=SPRAY_DAY)
    assert any(s.section == "Failed logins per hour" for s in summarize(run).standouts)
    assert "about once in 50 reports" in render(run, "md") and "about once in 50 reports" in render(run, "html")


def test_a_store_without_a_protection_policy_says_what_protect_would_show(sample_store, tmp_path):
    """On the real auth.log the brute force stood out only once `dplogs protect --networks` was
    declared, and the report never said so; with a policy the note goes away."""
    store = _fresh(sample_store, tmp_path, 100.0)
    note = "Every row is protected (no "
    assert note in render(run_report(load_report_spec(NIGHTLY), store, day=SPRAY_DAY), "md")
    assert CliRunner().invoke(cli, ["protect", "--store", str(store), "--networks", "10.0.0.0/8"]).exit_code == 0
    page = render(run_report(load_report_spec(NIGHTLY), store, day=SPRAY_DAY + dt.timedelta(days=1)), "md")
    assert note not in page and "Failed logins per hour" in page


def test_a_table_section_shows_its_cells_without_a_click(sample_store, tmp_path):
    """A section with `chart = "table"` drew no chart and folded its cells into a closed <details>:
    the HTML report showed its title and '▶ 2 released cells' and no number (found in headless
    Chromium on a sudo-per-day section). Cells without a chart are shown; under a chart they stay folded."""
    spec = tmp_path / "two.toml"
    spec.write_text(f'name = "two"\n[[section]]\nquery = "{REPO / "queries" / "failed_logins_per_hour.toml"}"\n'
                    'chart = "line"\nepsilon = 0.5\n'
                    f'[[section]]\nquery = "{REPO / "queries" / "sudo_per_day.toml"}"\nchart = "table"\nepsilon = 0.5\n')
    store = _fresh(sample_store, tmp_path, 10.0)
    page = render(run_report(load_report_spec(spec), store, day=SPRAY_DAY), "html")
    charted, tabled = page.split("<section>")[1:]
    assert "<svg" in charted and "<details><summary>24 released cells" in charted
    assert "<svg" not in tabled and "<details open><summary>2 released cells" in tabled


def test_the_budget_note_says_why_spent_delta_is_the_cap_while_delta_is_left(sample_store, tmp_path):
    """After the README tour's `dplogs train` (a zCDP release) the report read 'spent ε=12.1274,
    δ=1e-05 (cap ε=20, δ=1e-05); left ε=7.87261, δ=8.95232e-06': all δ spent, yet δ left. The spent δ
    is the cap at which ρ is converted; the δ left is for one more (partition-selection) release."""
    from dplogs.engine import Engine

    store = _fresh(sample_store, tmp_path, 10.0)
    plain = render(run_report(load_report_spec(NIGHTLY), store, day=SPRAY_DAY), "md")
    assert "zCDP" not in plain and "left for one more release ε=8, δ=1e-05." in plain
    Engine.open(store).sql("SELECT COUNT(*) FROM logs", rho=0.05, max_rows_per_group=5,
                           start="2024-03-04", end="2024-03-18").release()
    page = render(run_report(load_report_spec(NIGHTLY), store, day=SPRAY_DAY), "md")
    assert "δ=1e-05 (cap ε=10, δ=1e-05; its zCDP releases' ρ=0.05 counted at the δ cap); left for one more release ε=" in page
