"""What stands out: released values only; the spray day shows, a quiet day does not."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from dplogs.detect.features import FEATURE_NAMES
from dplogs.detect.kmeans import KMeansModel
from dplogs.detect.model import ModelCard, model_to_json, save_model
from dplogs.privacy.ledger import Ledger
from dplogs.privacy.testing import exact_mode
from dplogs.report import load_report_spec, render, run_report
from dplogs.report import run as run_module
from dplogs.report.run import Coverage
from dplogs.report.render import NO_LOGS
from dplogs.report.summary import summarize
from tests.report.conftest import NIGHTLY, REPO

SPRAY, QUIET = dt.date(2024, 3, 12), dt.date(2024, 3, 6)


def test_the_planted_spray_stands_out_under_noise(new_store):
    """The spray hour's bounded count is 94 under Laplace noise of scale 8, and its joint interval
    is 2.06 × 24 wide below the value, so one run misses it with probability about 0.2%
    (noise below -44). Two of three independent runs must show it: a false failure is about 1e-5."""
    shown = []
    for attempt in range(3):
        run = run_report(load_report_spec(NIGHTLY), new_store(name=f"store{attempt}"), day=SPRAY)
        hits = [x for x in summarize(run).standouts if x.section == "Failed logins per hour"]
        spray = [x for x in hits if x.cell["hour"] == dt.datetime(2024, 3, 12, 2, tzinfo=dt.timezone.utc)]
        if spray and spray[0].low > max(spray[0].baseline, 0) and (spray[0].factor is None or spray[0].factor > 5):
            shown.append(run)
    assert len(shown) >= 2
    md = render(shown[0], "md")
    assert md.index("## What stands out") < md.index("## Failed logins per hour")
    assert "Failed logins per hour — 2024-03-12 02:00: failures" in md


@pytest.mark.parametrize("day, spray", [(SPRAY, True), (QUIET, False), (dt.date(2024, 3, 10), False)])
def test_the_rule_on_the_true_values(new_store, day, spray):
    """With noise off (exact mode) the rule sees the data's own shape: only the spray hour clears
    its joint interval; quiet days, with their ordinary office-hours failures, show nothing."""
    with exact_mode():
        run = run_report(load_report_spec(NIGHTLY), new_store(), day=day)
    found = [(x.section, x.cell) for x in summarize(run).standouts]
    if spray:
        assert ("Failed logins per hour", {"hour": dt.datetime(2024, 3, 12, 2, tzinfo=dt.timezone.utc)}) in found
    else:
        assert found == []
        assert "Nothing stands out" in render(run, "md")


def test_summary_reports_spend_and_budget_left_per_window(new_store):
    store = new_store(epsilon=9)
    spec = load_report_spec(NIGHTLY)
    run_report(spec, store, day=QUIET)
    run = run_report(spec, store, day=SPRAY)
    s = summarize(run)
    assert s.epsilon == pytest.approx(2.0) and s.straddles is False
    doc = json.loads(render(run, "json"))["summary"]
    assert doc["budget_windows"] == [{"window": "2024-03", "cap": {"epsilon": 9.0, "delta": 1e-5},
                                      "spent": {"epsilon": 4.0, "delta": 0.0}, "left": {"epsilon": 5.0, "delta": 1e-5}}]
    # replaying spends nothing and shows the same values
    again = run_report(spec, store, day=SPRAY)
    assert [x.value for x in summarize(again).standouts] == [x.value for x in s.standouts]
    assert Ledger.open(store / "ledger.sqlite").spent("2024-03").epsilon == pytest.approx(4.0)


def test_no_data_for_the_period_is_said_when_coverage_says_so(new_store, monkeypatch):
    run = run_report(load_report_spec(NIGHTLY), new_store(), day=SPRAY)
    assert run.coverage.state == "covered" and "Coverage:" not in render(run, "md")
    monkeypatch.setattr(run_module, "period_coverage", lambda *a: Coverage("no-data", "no logs were ingested for it"))
    run = run_report(load_report_spec(NIGHTLY), new_store(name="s2"), day=dt.date(2024, 5, 1))
    md, page = render(run, "md"), render(run, "html")
    assert "No data for this period" in md and "No data for this period" in page
    assert json.loads(render(run, "json"))["summary"]["coverage"]["state"] == "no-data"


def test_only_published_private_keys_are_named(new_store, tmp_path):
    """A private-key section (source IPs, partition selection): every key the summary names is a
    row of the release, and the summary is computed from the release rows alone."""
    spec = tmp_path / "s.toml"
    spec.write_text(f'name = "ips"\n[[section]]\nquery = "{REPO / "queries" / "password_spray_sources.toml"}"\n'
                    'epsilon = 1.0\ndelta = 1e-6\n')
    run = run_report(load_report_spec(spec), new_store(), day=SPRAY)
    released = {r["source.ip"] for r in run.sections[0].release.data.iter_rows(named=True)}
    named = {x.cell["source.ip"] for x in summarize(run).standouts}
    assert named <= released
    text = render(run, "md").split("## ips", 1)[0].split("> Every number")[0]
    for ip in {"203.0.113.77", "198.51.100.23", "10.0.0.1"} - released:
        assert ip not in text


def test_anomaly_section_uses_a_zero_baseline_and_is_listed(new_store, tmp_path):
    card = ModelCard(detector="kmeans", epsilon=1.0, delta=1e-6, rho=None, accountant="test", privacy_unit="user.name",
                     budget_windows=("2024-03",), max_windows_per_unit=1, clip_norm=3.0, feature_window="day",
                     features=tuple(FEATURE_NAMES))
    model = save_model(model_to_json(KMeansModel(centroids=np.zeros((1, len(FEATURE_NAMES)))), card), tmp_path / "m.json")
    query = tmp_path / "anomalous_per_day.toml"
    query.write_text('name = "anomalous"\nsql = """SELECT date_trunc(\'hour\', "@timestamp") AS hour, COUNT(*) AS n '
                     'FROM logs GROUP BY 1"""\n[privacy]\nepsilon = 1.0\nmax_groups = 1\nmax_rows_per_group = 1\n')
    spec = tmp_path / "s.toml"
    spec.write_text(f'name = "a"\n[[section]]\nquery = "{query}"\ntitle = "Anomalous user-days"\nmodel = "{model}"\nthreshold = 0.0\n')
    with exact_mode():
        run = run_report(load_report_spec(spec), new_store(), day=SPRAY)
    s = summarize(run)
    assert s.anomaly_sections == ("Anomalous user-days",)
    assert all(x.baseline == 0.0 for x in s.standouts)
    assert "Anomaly section 'Anomalous user-days'" in render(run, "md")


def test_each_section_states_its_spend_and_what_is_left(new_store):
    """Issue 13: per section, in every format, the ε/δ it spent and what its budget window has
    left right after it; a refused section spent nothing; a replayed one says so."""
    store = new_store(epsilon=3.2)  # room for six of the eight ε = 0.5 sections of two nights
    spec = load_report_spec(NIGHTLY)
    run_report(spec, store, day=QUIET)  # four sections: ε 2.0, 1.2 left
    run = run_report(spec, store, day=SPRAY)
    assert [s.release is not None for s in run.sections] == [True, True, False, False]
    lefts = [s.left[0].remaining.epsilon for s in run.sections]
    assert lefts == pytest.approx([0.7, 0.2, 0.2, 0.2])
    doc = json.loads(render(run, "json"))
    budgets = [s["budget"] for s in doc["sections"]]
    assert [b["spent"]["epsilon"] for b in budgets] == pytest.approx([0.5, 0.5, 0.0, 0.0])
    assert [b["left"][0]["window"] for b in budgets] == ["2024-03"] * 4
    assert [b["left"][0]["epsilon"] for b in budgets] == pytest.approx(lefts)
    md, page = render(run, "md"), render(run, "html")
    for text in (md, page):
        assert text.count("this section spent epsilon=0.5; left in budget window 2024-03: ε=0.7, δ=1e-05") == 1
        assert text.count("this section spent nothing (not released); left in budget window 2024-03: ε=0.2") == 2
    again = run_report(spec, store, day=QUIET)  # replayed: the same spend, nothing new
    doc = json.loads(render(again, "json"))
    assert all(s["budget"]["replayed"] for s in doc["sections"])
    assert "when first released (replayed now: nothing spent)" in render(again, "md")


def test_days_without_logs_in_a_partly_covered_period_do_not_make_the_others_stand_out(tmp_path):
    """A weekly report over a store that holds logs for two of the week's days: the five other
    daily cells are noise around 0. Used as baseline (median ~0) they made both real days "stand
    out"; now they are neither baseline nor standout, and the report says so."""
    from click.testing import CliRunner

    from dplogs.cli import cli

    lines = [json.dumps({"@timestamp": f"2026-11-{d:02d}T09:00:00Z", "user": {"name": f"u{u}"},
                         "event": {"action": "logon"}}) for d in (2, 3) for u in range(300)]
    (tmp_path / "logs.json").write_text("\n".join(lines) + "\n")
    store = tmp_path / "s"
    assert CliRunner().invoke(cli, ["ingest", str(tmp_path / "logs.json"), "--store", str(store)]).exit_code == 0
    Ledger.open(store / "ledger.sqlite", create=True).set_caps(window_policy="month", epsilon=10, delta=1e-5)
    (tmp_path / "per_day.toml").write_text(
        "name = \"per_day\"\nsql = '''SELECT date_trunc('day', \"@timestamp\") AS day, COUNT(*) AS events FROM logs "
        "GROUP BY 1'''\n[privacy]\nepsilon = 1.0\nmax_groups = 7\nmax_rows_per_group = 1\n")
    (tmp_path / "weekly.toml").write_text(
        "name = \"weekly\"\ntitle = \"Weekly\"\nperiod = \"week\"\n[[section]]\nquery = \"per_day.toml\"\n"
        "title = \"Events per day\"\nchart = \"line\"\n")
    with exact_mode():  # the rule on the true values: 300, 300 and five zeros
        run = run_report(load_report_spec(tmp_path / "weekly.toml"), store, day=dt.date(2026, 11, 4))
    assert run.coverage.state == "partial" and "left out of what stands out" in run.coverage.note
    assert summarize(run).standouts == ()
    assert "left out of what stands out" in render(run, "md")
    # the cells of the five days without logs are marked, and not drawn as values
    page, md = render(run, "html"), render(run, "md")
    assert page.count("<tr class=nolog>") == 5 and md.count(NO_LOGS) == 5
    assert page.count("class=nolog><title>") == 5 and "grey: no logs ingested, noise only" in page
    assert page.count("<polyline") == 1 and page.count("<polygon") == 1  # one stretch: days 2 and 3 only
