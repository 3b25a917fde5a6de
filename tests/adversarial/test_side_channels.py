"""Side channels: nothing a caller can read may depend on one unit's data except through the noise.

Each test runs a release path on D and on its neighbour D' (one victim's rows of one budget window
removed, the victim chosen as the worst case for the path; see ``sidechannel.py``) with noise off,
and compares everything but the released values: exit code, stdout and stderr, written files, the
privacy metadata (scales, bounds, L0/L∞, groups, coverage, defaults, warnings).

Exempt, by design: ``score --top`` and ``inspect`` show raw per-unit data to the operator (inside
the trust boundary, docs/privacy.md); ``audit`` of a query reads raw events and runs only with
``--inside-trust-boundary``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import statistics
import time
from pathlib import Path

import pytest

from tests.adversarial.sidechannel import (
    APRIL,
    Event,
    MARCH,
    SHARED,
    Pair,
    diff,
    mask_numbers,
    mask_privacy,
    mask_release,
    mask_report,
    observe,
    tokens,
    world,
)

REPO = Path(__file__).resolve().parents[2]
WINDOW = ["--start", "2024-03-01", "--end", "2024-04-01"]
BOUNDS = ["--max-groups", "3", "--max-rows-per-group", "4"]
CLAMP = ["--clamp", "http.response.body.bytes=0:1000000"]


def q(sql: str, *extra: str) -> list[str]:
    return ["query", "--store", "{store}", "--sql", sql, *extra, "--format", "json"]


# path -> (arguments, victims worst for it, whether bounds are chosen by DP)
PATHS = {
    "count": (q("SELECT COUNT(*) FROM logs", *WINDOW, *BOUNDS), ("heavy", SHARED), False),
    "count, default window and bounds": (q("SELECT COUNT(*) FROM logs"), ("heavy", "april"), True),
    "count of the day only the victim has": (q("SELECT COUNT(*) FROM logs", "--day", "2024-03-14", *BOUNDS),
                                              ("dayonly",), False),
    "hourly failures, the victim alone in an hour": (
        q("SELECT date_trunc('hour', \"@timestamp\") AS hour, COUNT(*) FROM logs WHERE event.outcome = 'failure' "
          "GROUP BY 1", "--day", "2024-03-12", *BOUNDS), ("lonely",), False),
    "count --last 7d (no data then)": (q("SELECT COUNT(*) FROM logs", "--last", "7d", *BOUNDS), ("heavy",), False),
    "distinct units": (q("SELECT COUNT(DISTINCT user.name) FROM logs", *WINDOW, *BOUNDS), ("heavy", "lonely"), False),
    "sum and mean at the clamp edge": (
        q("SELECT SUM(http.response.body.bytes) AS s, AVG(http.response.body.bytes) AS a FROM logs", *WINDOW,
          *BOUNDS, *CLAMP), ("clamp", "heavy"), False),
    "sum, chosen clamp": (q("SELECT SUM(http.response.body.bytes) AS s FROM logs", *WINDOW, *BOUNDS),
                          ("clamp", "heavy"), True),
    "quantile": (q("SELECT QUANTILE(http.response.body.bytes, 0.5) AS med FROM logs", *WINDOW, *BOUNDS, *CLAMP),
                 ("clamp",), False),
    "quantiles, chosen clamp": (q("SELECT QUANTILE(http.response.body.bytes, [0.5, 0.9]) AS q FROM logs", *WINDOW,
                                  *BOUNDS),
                                ("clamp", "heavy"), True),
    "count by the unit's own field": (q("SELECT user.name, COUNT(*) AS n FROM logs GROUP BY user.name", *WINDOW,
                                        *BOUNDS, "--delta", "1e-6"), ("winner", SHARED), False),
    "histogram": (q("SELECT HISTOGRAM(http.response.body.bytes) AS h FROM logs", *WINDOW, *BOUNDS, *CLAMP),
                  ("clamp", SHARED), False),
    "ratio per day": (
        q("SELECT date_trunc('day', \"@timestamp\") AS day, COUNT_IF(event.outcome = 'failure') / COUNT(*) AS r "
          "FROM logs WHERE event.category = 'authentication' GROUP BY 1", *WINDOW, *BOUNDS), ("dayonly", "winner"), False),
    "private keys (partition selection)": (
        q("SELECT host.name, COUNT(*) AS n FROM logs GROUP BY host.name", *WINDOW, "--max-groups", "1",
          "--max-rows-per-group", "4", "--delta", "1e-6"), ("lonely", "heavy"), False),
    "public keys, one held by the victim alone": (
        q("SELECT host.name, COUNT(*) AS n FROM logs GROUP BY host.name", *WINDOW, *BOUNDS,
          "--keys", "host.name=host1,host2,host9"), ("lonely",), False),
    "auth rows of a window only the victim has": (
        q("SELECT COUNT(*) FROM logs WHERE event.category = 'authentication'", "--start", "2024-04-01", "--end",
          "2024-05-01", *BOUNDS), ("april",), False),
    "top_attacked_accounts.toml (top-k, private keys)": (
        ["query", str(REPO / "queries/top_attacked_accounts.toml"), "--store", "{store}", *WINDOW, "--format", "json"],
        ("winner", "heavy"), False),
    "failed_logins_per_hour.toml": (
        ["query", str(REPO / "queries/failed_logins_per_hour.toml"), "--store", "{store}", "--day", "2024-03-12",
         "--format", "json"], ("lonely",), False),
    "mean_response_bytes_by_method.toml (formats)": (
        ["query", str(REPO / "queries/mean_response_bytes_by_method.toml"), "--store", "{store}", *WINDOW,
         "--format", "json"], ("clamp", SHARED), False),
    "distinct_users_failing_per_host.toml (keys = {...})": (
        ["query", str(REPO / "queries/distinct_users_failing_per_host.toml"), "--store", "{store}", *WINDOW,
         "--format", "json"], ("heavy",), False),
    "windows_logon_failures_by_type.toml (no such logs)": (
        ["query", str(REPO / "queries/windows_logon_failures_by_type.toml"), "--store", "{store}", *WINDOW,
         "--format", "json"], ("heavy",), False),
}
REFUSED = {"count --last 7d (no data then)", "windows_logon_failures_by_type.toml (no such logs)"}  # exit 64 both
CASES = [(name, victim) for name, (_, victims, _) in PATHS.items() for victim in victims]


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Pair:
    return Pair(tmp_path_factory.mktemp("sidechannel"), world())


@pytest.fixture(scope="module")
def protected(tmp_path_factory) -> Pair:
    """The same world under a policy: the people are on a roster, 10.0.0.0/8 is the organisation."""
    return Pair(tmp_path_factory.mktemp("protected"), world(), policy=True)


def window_of(victim: str):
    return APRIL if victim == "april" else MARCH


def assert_same(a, b, what: str) -> None:
    problems = diff(a, b)
    assert not problems, f"{what} depends on one unit's data:\n" + "\n".join(problems[:12])


def assert_same_run(a, b) -> None:
    assert a.exit_code == b.exit_code, f"exit {a.exit_code} on D, {b.exit_code} on D': {a.stderr} | {b.stderr}"
    assert mask_numbers(a.stderr) == mask_numbers(b.stderr), f"stderr differs:\n{a.stderr}\n---\n{b.stderr}"


@pytest.mark.parametrize(("path", "victim"), CASES, ids=[f"{p}-{v}" for p, v in CASES])
def test_release_shows_nothing_of_one_unit_but_noisy_values(pair, path, victim):
    args, _, chosen = PATHS[path]
    a = observe(pair.store(None), *args)
    b = observe(pair.store(victim, window_of(victim)), *args)
    assert_same_run(a, b)
    assert a.exit_code == (64 if path in REFUSED else 0), a.stderr
    assert a.stderr == b.stderr  # counts of cells, warnings, notes: nothing on stderr is a noisy value
    if a.exit_code == 0:
        assert_same(mask_release(a.json(), chosen_bounds=chosen), mask_release(b.json(), chosen_bounds=chosen), path)


PROTECTED_PATHS = {
    "count": q("SELECT COUNT(*) FROM logs WHERE event.outcome = 'failure'", *WINDOW, *BOUNDS),
    "private source addresses": q("SELECT source.ip, COUNT(*) AS n FROM logs WHERE event.outcome = 'failure' "
                                  "GROUP BY source.ip", *WINDOW, "--max-groups", "1", "--max-rows-per-group", "2",
                                  "--delta", "1e-6"),
    "failed_logins_by_source_hour.toml": ["query", str(REPO / "queries/failed_logins_by_source_hour.toml"), "--store",
                                          "{store}", *WINDOW, "--format", "json"],
    "top_attacked_accounts.toml": ["query", str(REPO / "queries/top_attacked_accounts.toml"), "--store", "{store}",
                                   *WINDOW, "--format", "json"],
}


@pytest.mark.parametrize("path", list(PROTECTED_PATHS))
@pytest.mark.parametrize("victim", ["outside", SHARED])
def test_protected_store_shows_nothing_of_one_unit(protected, path, victim):
    """``outside`` is a roster person who also fails to log in from outside the networks: its
    protected rows go, and the unprotected part (exact) must not tell the difference either."""
    args = PROTECTED_PATHS[path]
    a = observe(protected.store(None), *args)
    b = observe(protected.store(victim), *args)
    assert_same_run(a, b)
    assert a.stderr == b.stderr
    assert_same(mask_release(a.json()), mask_release(b.json()), path)


@pytest.mark.parametrize("victim", ["heavy", "lonely"])
def test_table_and_csv_sidecar_show_nothing_of_one_unit(pair, victim, tmp_path):
    sql = "SELECT host.name, COUNT(*) AS n FROM logs GROUP BY host.name"
    table = ["query", "--store", "{store}", "--sql", sql, *WINDOW, *BOUNDS, "--keys", "host.name=host1,host2,host9"]
    a, b = (observe(s, *table) for s in (pair.store(None), pair.store(victim)))
    assert_same_run(a, b)
    assert mask_numbers(a.stdout, unordered=True) == mask_numbers(b.stdout, unordered=True)
    csv = [*table, "--format", "csv", "--output", "{out}/hosts.csv"]
    a = observe(pair.store(None), *csv, out=tmp_path / "D")
    b = observe(pair.store(victim), *csv, out=tmp_path / "E")
    assert_same_run(a, b)
    assert list(a.files) == list(b.files) == ["hosts.csv", "hosts.csv.privacy.json"]
    assert mask_numbers(a.files["hosts.csv"].decode(), unordered=True) == \
        mask_numbers(b.files["hosts.csv"].decode(), unordered=True)
    sidecar = [mask_privacy(json.loads(o.files["hosts.csv.privacy.json"])) for o in (a, b)]
    assert_same(*sidecar, "the CSV's privacy sidecar")


@pytest.mark.parametrize("victim", ["dayonly", "lonely"])
def test_explain_is_the_same_plan_on_neighbours(pair, victim):
    for args in (["explain", str(REPO / "queries/failed_logins_per_hour.toml"), "--store", "{store}", "--day",
                  "2024-03-14"],
                 ["explain", "--store", "{store}", "--sql", "SELECT SUM(http.response.body.bytes) FROM logs"]):
        a, b = (observe(s, *args) for s in (pair.store(None), pair.store(victim)))
        assert_same_run(a, b)
        # the plan: scales, bounds, L0/L∞, groups, coverage; no noisy value at all. Its last line is
        # the budget each ledger has left, which follows the releases each store has had (the
        # module's stores have had different numbers of them), not their events
        plan, left = zip(*(o.stdout.rsplit("budget now (left for one more release): ", 1) for o in (a, b)))
        assert plan[0] == plan[1] and all(": epsilon=" in line for line in left)


REPORT = ["report", str(REPO / "queries/reports/nightly.toml"), "--store", "{store}", "--date", "2024-03-14",
          "--out-dir", "{out}"]


@pytest.mark.parametrize("victim", ["dayonly", "heavy"])
def test_report_files_show_nothing_of_one_unit(victim, tmp_path):
    pair = Pair(tmp_path / "stores", world())  # a report reruns as a replay: fresh stores, one run each
    a = observe(pair.store(None), *REPORT, out=tmp_path / "D")
    b = observe(pair.store(victim), *REPORT, out=tmp_path / "E")
    assert_same_run(a, b)
    assert mask_numbers(a.stdout, unordered=True) == mask_numbers(b.stdout, unordered=True)
    assert sorted(a.files) == sorted(b.files) == [".dplogs-ledger-pin.json",
                                                  *(f"nightly-soc-2024-03-14.{x}" for x in ("html", "json", "md"))]
    name = "nightly-soc-2024-03-14"
    assert_same(mask_report(json.loads(a.files[f"{name}.json"])), mask_report(json.loads(b.files[f"{name}.json"])),
                "the report's JSON")
    # Markdown and HTML: the same sections, rows, cells and chart elements; a ratio cell released as
    # null (its interval too wide) is a noisy value, so 'not enough data' and gaps are masked with it
    def md(o):
        text = "\n".join(line for line in o.files[f"{name}.md"].decode().splitlines() if not _from_values(line))
        return mask_numbers(text.replace("| | | |", "| # | # | # |"), unordered=True)
    assert md(a) == md(b) or _only_ratio_nulls(md(a), md(b))
    assert _section_headers(a.files[f"{name}.html"]) == _section_headers(b.files[f"{name}.html"])


def _only_ratio_nulls(x: str, y: str) -> bool:
    changed = [line for line in difflib.ndiff(x.splitlines(), y.splitlines()) if line[:1] in "+-"]
    return all("rate" in line or "not enough data" in line for line in changed)


STANDOUTS = ("stand out above", "Nothing stands out", "joint 95% interval from", "Intervals hold jointly",
             "Anomaly section")


def _from_values(text: str) -> bool:
    """What stands out (its headline, cells and notes) is computed from the released values."""
    return any(s in text for s in STANDOUTS)


def _section_headers(html: bytes) -> list[str]:
    return [t for t in tokens(html.decode()) if not _from_values(t) and not t.startswith(("<polyline", "<polygon", "<circle", "<line", "<rect",
                                                                   "<text", "<path"))
            and "not enough data" not in t and t.strip() not in ("#", "")]  # a bare number is a value


def test_report_catch_up_shows_nothing_of_one_unit(tmp_path):
    pair = Pair(tmp_path / "stores", world())
    args = ["report", str(REPO / "queries/reports/nightly.toml"), "--store", "{store}", "--catch-up", "--since",
            "2024-03-13", "--until", "2024-03-15", "--out-dir", "{out}"]
    a = observe(pair.store(None), *args, out=tmp_path / "D")
    b = observe(pair.store("dayonly"), *args, out=tmp_path / "E")
    assert_same_run(a, b)
    assert sorted(a.files) == sorted(b.files)
    for f in a.files:
        if f.endswith(".json") and not f.startswith("."):
            assert_same(mask_report(json.loads(a.files[f])), mask_report(json.loads(b.files[f])), f)


@pytest.mark.parametrize("victim", ["dayonly", "april"])
def test_timeseries_shows_nothing_of_one_unit(pair, victim):
    for window in (WINDOW, []):  # given, and the default window
        args = ["timeseries", "--store", "{store}", "--epsilon", "1", "--bucket", "day", "--history", "7", *BOUNDS,
                "--sql", "SELECT COUNT(*) FROM logs WHERE event.outcome = 'failure'", *window, "--format", "json"]
        a, b = (observe(s, *args) for s in (pair.store(None), pair.store(victim, window_of(victim))))
        assert_same_run(a, b)
        assert a.stderr == b.stderr
        assert_same(_series(a.json()), _series(b.json()), "the time series")


def _series(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    for bucket in doc.get("buckets", []):
        for k in ("value", "count", "z", "baseline", "baseline_mean", "baseline_sd", "flagged", "ci_low", "ci_high"):
            if k in bucket:
                bucket[k] = "<noisy>"
    if isinstance(doc.get("privacy"), dict):
        doc["privacy"] = mask_privacy(doc["privacy"])
    return doc


@pytest.fixture(scope="module")
def models(pair, tmp_path_factory):
    """A k-means model trained on D and on D' (the heaviest contributor removed), noise off."""
    out = tmp_path_factory.mktemp("models")
    args = ["train", "--store", "{store}", "--detector", "kmeans", "--epsilon", "4", "--delta", "1e-6", *WINDOW,
            "--output", "{out}/model.json"]
    return {side: observe(pair.store(victim), *args, out=out / side)
            for side, victim in (("D", None), ("E", "heavy"))}


def test_train_discloses_nothing_of_one_unit(models):
    a, b = models["D"], models["E"]
    assert_same_run(a, b)
    # derived defaults (K) and warnings: the same words; their numbers are DP totals (masked)
    card_a, card_b = (_card(json.loads(o.files["model.json"])) for o in (a, b))
    assert_same(card_a, card_b, "the model card")


def test_autoencoder_training_discloses_nothing_of_one_unit(pair, tmp_path):
    """Its batch settings come from a DP count of units, its warnings from a DP histogram total: the
    same words and settings on both sides, numbers masked (noise off, they are the true counts)."""
    args = ["train", "--store", "{store}", "--detector", "autoencoder", "--epsilon", "4", "--delta", "1e-6", *WINDOW,
            "--steps", "20", "--output", "{out}/model.json"]
    a, b = (observe(pair.store(v), *args, out=tmp_path / side) for side, v in (("D", None), ("E", "heavy")))
    assert_same_run(a, b)
    assert "batch settings from a DP count" in a.stderr
    assert_same(_card(json.loads(a.files["model.json"])), _card(json.loads(b.files["model.json"])), "the model card")


def _card(model: dict) -> dict:
    """A model file's structure and card: weights, centroids and DP histograms are noisy values;
    their shapes, the bounds, the accountant and every setting are not."""
    def shape(v):
        if isinstance(v, list):
            return [shape(x) for x in v] if v and isinstance(v[0], list) else f"<{len(v)} values>"
        if isinstance(v, dict):
            return {k: shape(x) for k, x in v.items()}
        return "<value>" if isinstance(v, float) else v
    model = json.loads(json.dumps(model))
    model.pop("ledger_entry", None)
    for card in ("card", "model_card"):
        if isinstance(model.get(card), dict):
            model[card].pop("ledger_entry", None)
    return shape(model)


def test_anomaly_query_shows_nothing_of_one_unit(pair, models, tmp_path):
    model = tmp_path / "model.json"
    model.write_bytes(models["D"].files["model.json"])  # one public model, queried on both stores
    args = q("SELECT date_trunc('day', \"@timestamp\") AS day, COUNT(*) FROM logs GROUP BY 1", *WINDOW,
             "--anomalies", str(model), "--threshold", "p99", "--epsilon", "1", "--max-groups", "3",
             "--max-rows-per-group", "1")
    a, b = (observe(s, *args) for s in (pair.store(None), pair.store("heavy")))
    assert_same_run(a, b)
    assert_same(mask_release(a.json()), mask_release(b.json()), "the anomaly query")


def test_python_api_release_shows_nothing_of_one_unit(pair):
    from dplogs.engine.api import Engine
    from dplogs.privacy.testing import exact_mode

    def release(store):
        with exact_mode(), Engine.open(store) as eng:
            r = eng.sql("SELECT host.name, COUNT(*) AS n FROM logs GROUP BY host.name", epsilon=1.0, max_groups=3,
                        max_rows_per_group=4, declared={"host.name": ["host1", "host2", "host9"]},
                        start="2024-03-01", end="2024-04-01").release(caller="sidechannel")
        frame = r.to_polars()
        return {"shape": frame.shape, "schema": {k: str(v) for k, v in frame.schema.items()},
                "keys": sorted(str(x) for x in frame["host.name"].to_list()),
                "arrow": str(r.to_arrow().schema), "privacy": mask_privacy(r.privacy)}
    assert_same(release(pair.store(None)), release(pair.store("lonely")), "the Python API release")


def test_budget_show_and_history_are_the_same_after_the_same_releases(tmp_path):
    fresh = Pair(tmp_path, world())  # the module's stores have run different releases

    def run(store):
        assert observe(store, *PATHS["count, default window and bounds"][0]).exit_code == 0
        return [observe(store, "budget", command, "--store", "{store}") for command in ("show", "history")]
    for a, b in zip(run(fresh.store(None)), run(fresh.store("heavy")), strict=True):
        assert_same_run(a, b)
        assert mask_numbers(a.stdout) == mask_numbers(b.stdout)


def test_runtime_does_not_tell_a_unit_apart(pair):
    """Coarse medians: a path that short-circuits when one unit's rows are absent (an empty window,
    an empty day) would run orders of magnitude faster on D'."""
    cases = [("april", q("SELECT COUNT(*) FROM logs WHERE event.category = 'authentication'", "--start",
                         "2024-04-01", "--end", "2024-05-01", *BOUNDS)),
             ("dayonly", q("SELECT COUNT(*) FROM logs WHERE event.category = 'authentication'", "--day",
                           "2024-03-14", *BOUNDS))]
    for victim, args in cases:
        times = {}
        for side, store in (("D", pair.store(None)), ("E", pair.store(victim, window_of(victim)))):
            runs = []
            for _ in range(3):
                t0 = time.perf_counter()
                assert observe(store, *args).exit_code == 0
                runs.append(time.perf_counter() - t0)
            times[side] = statistics.median(runs)
        assert 0.2 < times["D"] / times["E"] < 5, (victim, times)


# --- coverage: derived from events by default (public, edges can be one unit's), or declared -------

DECLARED = "2024-03-01:2024-05-01"  # what the operator's ingest says the logs cover (--covers)
JUNE_2019 = (dt.datetime(2019, 6, 1, tzinfo=dt.UTC), dt.datetime(2019, 7, 1, tzinfo=dt.UTC))


def stray_world() -> list[Event]:
    """The world plus one stray web request of ``stray`` on 2019-06-03 and one of ``late`` on
    2025-02-10 (hosts whose clocks were wrong)."""
    stray = world() + [Event(dt.datetime(2019, 6, 3, 12, tzinfo=dt.UTC), "stray", "web", size=321),
                       Event(dt.datetime(2025, 2, 10, 12, tzinfo=dt.UTC), "late", "web", size=321)]
    return sorted(stray, key=lambda e: e.when)


@pytest.fixture(scope="module")
def stray_pair(tmp_path_factory) -> Pair:
    return Pair(tmp_path_factory.mktemp("stray"), stray_world(), covers=DECLARED)


def test_derived_coverage_runs_from_an_inputs_first_to_its_last_event(tmp_path):
    """The default, as docs/privacy.md declares it: a span's edges are an input's first and last
    event, whoever's they are (one stray record stretches it); `--covers` is the way out."""
    store = Pair(tmp_path, stray_world()).store(None)
    res = observe(store, *q("SELECT COUNT(*) FROM logs", "--start", "2019-06-01", "--end", "2019-07-01", *BOUNDS))
    assert res.exit_code == 0 and "2019-06-03" in json.dumps(res.json()["privacy"]["coverage"])


def test_declared_coverage_decides_a_query_file_with_formats_without_the_unit(tmp_path_factory):
    """``april`` alone has auth events in April; the web log covers April through the crowd. With
    derived coverage a syslog-only query file is refused for April without ``april`` (docs); with
    the ingest's declared coverage it is answered on both sides alike."""
    declared = Pair(tmp_path_factory.mktemp("declared"), world(), covers=DECLARED)
    args = ["query", str(REPO / "queries/top_attacked_accounts.toml"), "--store", "{store}", "--start", "2024-04-01",
            "--end", "2024-05-01", "--format", "json"]
    a, b = (observe(s, *args) for s in (declared.store(None), declared.store("april", APRIL)))
    assert (a.exit_code, b.exit_code) == (0, 0), (a.stderr, b.stderr)
    assert_same(mask_release(a.json()), mask_release(b.json()), "the release")


def test_a_stray_record_does_not_decide_what_is_refused_under_declared_coverage(stray_pair):
    args = q("SELECT COUNT(*) FROM logs", "--start", "2019-06-01", "--end", "2019-07-01", *BOUNDS)
    a, b = (observe(s, *args) for s in (stray_pair.store(None), stray_pair.store("stray", JUNE_2019)))
    assert a.exit_code == b.exit_code == 64, (a.stderr, b.stderr)  # nothing declared covers June 2019
    assert a.stderr == b.stderr


def test_a_stray_record_does_not_stretch_declared_coverage(stray_pair):
    args = q("SELECT COUNT(*) FROM logs", *WINDOW, *BOUNDS)
    a, b = (observe(s, *args) for s in (stray_pair.store(None), stray_pair.store("stray", JUNE_2019)))
    assert_same_run(a, b)
    assert a.json()["privacy"]["coverage"] == b.json()["privacy"]["coverage"]


def test_a_stray_record_does_not_move_the_default_window_under_declared_coverage(stray_pair):
    february = (dt.datetime(2025, 2, 1, tzinfo=dt.UTC), dt.datetime(2025, 3, 1, tzinfo=dt.UTC))
    args = q("SELECT COUNT(*) FROM logs", *BOUNDS)
    a, b = (observe(s, *args) for s in (stray_pair.store(None), stray_pair.store("late", february)))
    assert_same_run(a, b)
    assert a.json()["privacy"]["window"] == b.json()["privacy"]["window"]


@pytest.mark.parametrize("path", [p for p, (_, _, chosen) in PATHS.items() if chosen])
def test_chosen_bounds_come_from_the_noisy_histogram_only(pair, path, monkeypatch):
    """With the bound choice's noisy histogram pinned to the same draw on both sides, the chosen
    bounds and all that follows from them (scales, CI widths, bias note, columns) must be equal:
    nothing else of the data may feed the choice."""
    import numpy as np

    from dplogs.privacy import bound_choice

    def pinned(values, plan, *, charge):
        charge.consume(plan.loss)  # charged as the real draw is
        return np.arange(len(values), dtype=np.int64)[::-1] * 3  # the same 'noisy' histogram on D and D'

    monkeypatch.setattr(bound_choice, "add_noise", pinned)
    args, victims, _ = PATHS[path]
    for victim in victims:
        a = observe(pair.store(None), *args)
        b = observe(pair.store(victim, window_of(victim)), *args)
        assert_same_run(a, b)
        choice = a.json()["privacy"]["bound_choice"]
        assert all(d["histogram"][-1] == 0 for d in choice["detail"].values())  # the pinned draw was used
        assert choice["values"] == b.json()["privacy"]["bound_choice"]["values"]
        assert_same(mask_release(a.json()), mask_release(b.json()), f"{path} without {victim}")


def test_the_harness_catches_a_planted_side_channel(pair, monkeypatch):
    """The diff can fail: a planted 'empty cells' warning (decided on the exact counts, before the
    noise) tells the hour only the victim was active in, and the release test's checks catch it."""
    import click
    import numpy as np

    from dplogs.engine import execute

    real = execute.add_noise

    def leaky(values, plan, *, charge):
        click.echo(f"warning: {int(np.sum(np.asarray(values) == 0))} cells are empty", err=True)
        return real(values, plan, charge=charge)

    monkeypatch.setattr(execute, "add_noise", leaky)
    args = q("SELECT date_trunc('hour', \"@timestamp\") AS hour, COUNT(*) FROM logs WHERE event.outcome = 'failure' "
             "GROUP BY 1", "--day", "2024-03-12", "--max-groups", "24", "--max-rows-per-group", "50")  # nothing cut
    a, b = (observe(s, *args) for s in (pair.store(None), pair.store("lonely")))
    assert a.exit_code == b.exit_code == 0
    assert mask_numbers(a.stderr) == mask_numbers(b.stderr)  # masking every number would miss it,
    assert a.stderr != b.stderr  # the exact comparison the release test makes does not
