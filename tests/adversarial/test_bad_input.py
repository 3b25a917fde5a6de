"""Bad input through the CLI (issue 12, item 5): every request an analyst or a file can get wrong is
refused with a specific message and its documented exit code (never 70, which means a bug), huge
requests are refused before any work, and nothing is charged: the ledger history (every entry, its
status and the hash chain) is exactly as it was."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from dplogs.detect.features import FEATURE_NAMES
from dplogs.detect.kmeans import KMeansModel
from dplogs.detect.model import ModelCard, model_to_json
from tests.adversarial.conftest import invoke, ledger_state

SQL = "SELECT event.outcome, COUNT(*) FROM logs GROUP BY event.outcome"
SUM = "SELECT SUM(source.bytes) FROM logs"
BOUNDS = ["--max-groups", "1", "--max-rows-per-group", "2"]
WINDOW = ["--start", "2024-03-01", "--end", "2024-04-01"]


def _refused(store: Path, args: list, code: int, words: str, *, within: float | None = None):
    before = ledger_state(store)
    t = time.perf_counter()
    res = invoke(*args)
    took = time.perf_counter() - t
    assert res.exit_code == code, (res.exit_code, res.output[-500:])
    assert res.stderr.startswith("error: ") and words in res.stderr, res.stderr[-500:]
    assert "Traceback" not in res.output and "bug in dplogs" not in res.output
    assert ledger_state(store) == before  # every entry, its status and the hash chain
    if within is not None:
        assert took < within, f"refusal took {took:.1f} s"
    return res


CLI_CASES = {
    "end beyond the calendar": (["--sql", SQL, "--epsilon", "1", *BOUNDS, "--start", "2024-03-01", "--end", "9999-12-31"],
                                "outside the supported range"),
    "start year 1": (["--sql", SQL, "--epsilon", "1", *BOUNDS, "--start", "0001-01-01", "--end", "2024-04-01"],
                     "outside the supported range"),
    "offset pushes past the calendar": (["--sql", SQL, "--epsilon", "1", *BOUNDS, "--start", "2024-03-01",
                                         "--end", "9999-12-31T23:00:00-05:00"], "outside the calendar"),
    "where beyond int64": (["--sql", "SELECT COUNT(*) FROM logs WHERE source.bytes > 1e300", "--epsilon", "1", *BOUNDS, *WINDOW],
                           "outside its range"),
    "where beyond int32 port": (["--sql", "SELECT COUNT(*) FROM logs WHERE source.port = 3000000000", "--epsilon", "1",
                                 *BOUNDS, *WINDOW], "outside its range"),
    "where integer of 5000 digits": (["--sql", "SELECT COUNT(*) FROM logs WHERE source.bytes > " + "9" * 5000, "--epsilon", "1",
                                      *BOUNDS, *WINDOW], "cannot read the number"),
    "where timestamp is a number": (["--sql", "SELECT COUNT(*) FROM logs WHERE \"@timestamp\" > 5", "--epsilon", "1",
                                     *BOUNDS, *WINDOW], "must be a date or time"),
    "huge clamp": (["--sql", SUM, "--clamp", "source.bytes=-1e308:1e308", "--epsilon", "1", *BOUNDS, *WINDOW], "clamp bounds must lie within ±9.0072e+15"),
    "max_groups int64 max": (["--sql", SQL, "--epsilon", "1", "--max-groups", "9223372036854775807",
                              "--max-rows-per-group", "2", *WINDOW], "max_groups must be an integer"),
    "sum noise could overflow int64": (["--sql", SUM, "--clamp", "source.bytes=0:1e15", "--epsilon", "1e-6",
                                        "--max-groups", "1000", "--max-rows-per-group", "1000", *WINDOW], "above the limit of 2^48"),
    "count noise beyond the limit": (["--sql", SQL, "--epsilon", "1e-12", "--max-groups", "1000000",
                                      "--max-rows-per-group", "1000", *WINDOW], "above the limit of 2^48"),
    "where nested 5000 parentheses": (["--sql", "SELECT COUNT(*) FROM logs WHERE " + "(" * 5000 + "source.port = 1" + ")" * 5000,
                                       "--epsilon", "1", *BOUNDS, *WINDOW], "nest"),
    "where nested 500 NOTs": (["--sql", "SELECT COUNT(*) FROM logs WHERE " + "NOT " * 500 + "source.port = 1",
                               "--epsilon", "1", *BOUNDS, *WINDOW], "nest"),
    "bins n of thousands of digits": (["--sql", "SELECT HISTOGRAM(source.bytes) FROM logs", "--bins", "source.bytes=0:1:" + "9" * 5000,
                                       "--epsilon", "1", *BOUNDS, *WINDOW], "far too many"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_bad_cli_option_is_refused_and_charges_nothing(store, case):
    args, words = CLI_CASES[case]
    _refused(store, ["query", "--store", store, *args], 64, words)


def test_a_long_or_chain_is_not_a_deep_one(store):
    """`a = 1 OR a = 2 OR ...` is one flat OR, however long (no recursion limit to hit)."""
    cond = " OR ".join(f"source.port = {i}" for i in range(3000))
    res = invoke("explain", "--store", store, "--sql", f"SELECT COUNT(*) FROM logs WHERE {cond}", "--epsilon", "1", *BOUNDS, *WINDOW)
    assert res.exit_code == 0, res.output[-500:]


HUGE = {  # each refused fast, before any domain, edge list or key tuple is built
    "1e8 histogram bins": (["--sql", "SELECT HISTOGRAM(source.bytes) FROM logs", "--bins", "source.bytes=0:1000:100000000",
                            "--epsilon", "1", *BOUNDS, *WINDOW], "between 1 and 10000"),
    "1e6 declared keys": (["--sql", "SELECT host.name, COUNT(*) FROM logs GROUP BY host.name", "--epsilon", "1", *BOUNDS, *WINDOW,
                           "--keys", "host.name=" + ",".join(f"h{i}" for i in range(1_000_000))], "limit of 100,000"),
    "minute grid of two years": (["--sql", SQL, "--bucket", "minute", "--epsilon", "1", *BOUNDS,
                                  "--start", "2024-01-01", "--end", "2026-01-01"], "limit of 1,000,000"),
    "grid times bins": (["--sql", "SELECT date_trunc('hour', \"@timestamp\"), HISTOGRAM(source.bytes) FROM logs GROUP BY 1",
                         "--bins", "source.bytes=0:1000:2000", "--epsilon", "1", *BOUNDS, *WINDOW], "histogram bins per group"),
    "301 years of month windows": (["--sql", "SELECT COUNT(*) FROM logs", "--epsilon", "1", *BOUNDS,
                                    "--start", "2024-03-01", "--end", "2325-03-01"], "3,612 month budget windows"),
    "301 years of day buckets": (["--sql", "SELECT date_trunc('day', \"@timestamp\"), COUNT(*) FROM logs GROUP BY 1", "--epsilon", "1",
                                  *BOUNDS, "--start", "2024-03-01", "--end", "2325-03-01"], "budget windows"),
}


@pytest.mark.parametrize("case", sorted(HUGE))
def test_huge_request_is_refused_fast_and_charges_nothing(store, case):
    args, words = HUGE[case]
    _refused(store, ["query", "--store", store, *args], 64, words, within=5.0)


# -- query files ----------------------------------------------------------------------------------

Q = 'name = "q"\nsql = "SELECT event.outcome, COUNT(*) FROM logs GROUP BY event.outcome"\n'
P = "[privacy]\nmax_groups = 1\nmax_rows_per_group = 2\n"
FILES = {
    "epsilon as text": (Q + P + 'epsilon = "0.1"\n', "epsilon must be a number, got '0.1'"),
    "epsilon true": (Q + P + "epsilon = true\n", "epsilon must be a number, got True"),
    "delta true": (Q + P + "epsilon = 1\ndelta = true\n", "delta must be a number, got True"),
    "max_groups true": (Q + "[privacy]\nepsilon = 1\nmax_groups = true\nmax_rows_per_group = 2\n", "max_groups must be an integer"),
    "max_groups int64 max": (Q + "[privacy]\nepsilon = 1\nmax_groups = 9223372036854775807\nmax_rows_per_group = 2\n",
                             "max_groups must be an integer"),
    "max_groups beyond int64": (Q + "[privacy]\nepsilon = 1\nmax_groups = 99999999999999999999999\nmax_rows_per_group = 2\n",
                                "max_groups must be an integer"),
    "mechanism a list": (Q + P + 'epsilon = 1\nmechanism = ["laplace"]\n', "unknown mechanism"),
    "100k nested arrays": (Q + "x = " + "[" * 100_000 + "]" * 100_000 + "\n", "too deeply"),
    "100k nested tables": (Q + "x = " + "{a = " * 100_000 + "1" + "}" * 100_000 + "\n", "too deeply"),
    "privacy not a table": (Q + "privacy = 5\n", "[privacy] must be a table"),
    "clamp not a table": (Q + 'clamp = "x"\n', "[clamp] must be a table"),
    "clamp entry text": (Q + P + 'epsilon = 1\n[clamp]\n"source.bytes" = ["a", "b"]\n', "clamp bound must be a number"),
    "clamp entry true": (Q + P + 'epsilon = 1\n[clamp]\n"source.bytes" = [true, 5]\n', "clamp bound must be a number"),
    "keys a string": (Q + P + 'epsilon = 1\n[keys]\n"host.name" = "web"\n', "lists of values"),
    "keys a number": (Q + P + 'epsilon = 1\n[keys]\n"host.name" = 5\n', "lists of values"),
    "bins edges text": (Q + P + 'epsilon = 1\n[bins]\n"source.bytes" = {edges = ["a", "b"]}\n', "bin edge must be a number"),
    "bins n true": (Q + P + 'epsilon = 1\n[bins]\n"source.bytes" = {lo = 0, hi = 1, n = true}\n', "integer n"),
    "bins n 1e8": (Q + P + 'epsilon = 1\n[bins]\n"source.bytes" = {lo = 0, hi = 1, n = 100000000}\n', "between 1 and 10000"),
    "bins unknown entry": (Q + P + 'epsilon = 1\n[bins]\n"source.bytes" = {lo = 0, hi = 1, n = 3, bogus = 1}\n', "must be a table"),
    "window a time of day": (Q + P + "epsilon = 1\n[window]\nstart = 07:32:00\nend = 2024-04-01\n", "must be a date or time"),
    "window unknown entry": (Q + P + 'epsilon = 1\n[window]\nstart = 2024-03-01\nstop = 2024-04-01\n', "unknown [window]"),
    "integer of 5000 digits": (Q + P + "epsilon = " + "9" * 5000 + "\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(FILES))
def test_bad_query_file_is_refused_and_charges_nothing(store, tmp_path, case):
    text, words = FILES[case]
    path = tmp_path / "q.toml"
    path.write_text(text)
    _refused(store, ["query", "--store", store, path, *WINDOW], 64, words, within=5.0)


def test_epsilon_true_is_not_charged_as_one(store, tmp_path):
    """Regression: `epsilon = true` was read as ε = 1 and charged; explain refuses it too."""
    path = tmp_path / "q.toml"
    path.write_text(Q + P + "epsilon = true\n")
    _refused(store, ["explain", "--store", store, path, *WINDOW], 64, "epsilon must be a number, got True")


def test_python_api_refuses_booleans(store):
    from dplogs.engine import Engine
    from dplogs.errors import PrivacyParameterError, QueryError

    eng = Engine.open(store)
    for bad in ({"epsilon": True}, {"epsilon": 1, "delta": True}, {"epsilon": 1, "max_groups": True},
                {"epsilon": 1, "clamp": {"source.bytes": (False, 10)}}):
        opts = {"epsilon": 1, "max_groups": 1, "max_rows_per_group": 2, "start": "2024-03-01", "end": "2024-04-01", **bad}
        with pytest.raises(PrivacyParameterError, match="must be"):
            eng.sql("SELECT SUM(source.bytes) FROM logs", **opts)
    from dplogs.engine.plan import Aggregation, Bins, Cmp

    with pytest.raises(QueryError, match="not a number"):
        eng.build(Aggregation.count(), where=Cmp("source.port", "=", True))
    with pytest.raises(QueryError, match="integer n"):
        Bins.spaced(0, 10, True)
    with pytest.raises(QueryError, match="bin edge must be a number"):
        Bins((False, 1.0))


# -- model files ----------------------------------------------------------------------------------


def _model_doc() -> dict:
    card = ModelCard(detector="kmeans", epsilon=1.0, delta=1e-6, rho=0.02, accountant="zCDP", privacy_unit="user.name",
                     budget_windows=("2024-03",), max_windows_per_unit=3, clip_norm=1.0, feature_window="day",
                     features=FEATURE_NAMES, hyperparameters={"k": 2})
    return json.loads(json.dumps(model_to_json(KMeansModel(centroids=np.zeros((2, len(FEATURE_NAMES)))), card)))


def _without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


MODELS = {
    "no model_card": lambda d: _without(d, "model_card"),
    "card missing a key": lambda d: {**d, "model_card": _without(d["model_card"], "clip_norm")},
    "card with an extra key": lambda d: {**d, "model_card": {**d["model_card"], "surprise": 1}},
    "card epsilon true": lambda d: {**d, "model_card": {**d["model_card"], "epsilon": True}},
    "card max windows huge": lambda d: {**d, "model_card": {**d["model_card"], "max_windows_per_unit": 2**63}},
    "card hyperparameters nested": lambda d: {**d, "model_card": {**d["model_card"], "hyperparameters": {"k": [[[1]]]}}},
    "card not an object": lambda d: {**d, "model_card": [1, 2]},
    "weights ragged": lambda d: {**d, "weights": {"centroids": [[1, 2], [3]]}},
    "weights wrong width": lambda d: {**d, "weights": {"centroids": [[0.0, 1.0]]}},
    "weights text": lambda d: {**d, "weights": {"centroids": "abc"}},
    "weights missing": lambda d: {**d, "weights": {}},
}


@pytest.mark.parametrize("case", sorted(MODELS))
def test_bad_model_file_is_refused_and_charges_nothing(store, tmp_path, case):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(MODELS[case](_model_doc())))
    _refused(store, ["query", "--store", store, "--anomalies", path, "--threshold", "1", "--sql", "SELECT COUNT(*) FROM logs",
                     "--epsilon", "1", *WINDOW], 65, "model")


def test_deeply_nested_model_file_is_refused(store, tmp_path):
    path = tmp_path / "model.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    _refused(store, ["score", "--store", store, "--model", path], 65, "too deeply")


def test_the_reference_model_doc_is_accepted(store, tmp_path):
    """The mutations above start from a valid model file (so each refusal is about its mutation)."""
    path = tmp_path / "model.json"
    path.write_text(json.dumps(_model_doc()))
    res = invoke("explain", "--store", store, "--anomalies", path, "--threshold", "1", "--sql", "SELECT COUNT(*) FROM logs",
                 "--epsilon", "1", *WINDOW)
    assert res.exit_code == 0, res.output[-500:]


# -- report specs and manifest defaults -----------------------------------------------------------

SPECS = {  # refused with "error: ...": every section is planned before any is released
    "section a number": ('name = "r"\nsection = 5\n', "error: ", "sections are [[section]] tables"),
    "section query a number": ('name = "r"\n[[section]]\nquery = 5\n', "error: ", "needs a `query"),
    "name a list": ('name = ["r"]\n[[section]]\nquery = "q.toml"\n', "error: ", "`name` must be a string"),
    "unknown top-level entry": ('name = "r"\ndefaults = 5\n[[section]]\nquery = "q.toml"\n', "error: ", "unknown entries ['defaults']"),
    "nested 100k deep": ('name = "r"\nx = ' + "[" * 100_000 + "]" * 100_000 + "\n", "error: ", "too deeply"),
    "section epsilon true": ('name = "r"\n[[section]]\nquery = "q.toml"\nepsilon = true\n', "error: ", "epsilon must be a number"),
    "section bucket a list": ('name = "r"\n[[section]]\nquery = "q.toml"\nbucket = ["day"]\n', "error: ", "grouping by"),
}


@pytest.mark.parametrize("case", sorted(SPECS))
def test_bad_report_spec_is_refused_and_charges_nothing(store, tmp_path, case):
    (tmp_path / "q.toml").write_text(Q + P + "epsilon = 0.01\n")
    spec = tmp_path / "spec.toml"
    text, start, words = SPECS[case]
    spec.write_text(text)
    before = ledger_state(store)
    res = invoke("report", spec, "--store", store, "--date", "2024-03-04", "-o", tmp_path / "r.html")
    assert res.exit_code == 64, (res.exit_code, res.output[-500:])
    assert res.stderr.startswith(start) and words in res.stderr and "bug in dplogs" not in res.output, res.stderr[-500:]
    assert ledger_state(store) == before  # every entry, its status and the hash chain


@pytest.fixture()
def store_copy(store, tmp_path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    return copy


DEFAULTS = {
    "not a table": ("defaults must be a table", 5),
    "a list": ("defaults must be a table", [1, 2]),
    "clamp not a table": ("defaults.clamp must be a table", {"clamp": "x"}),
    "clamp entry text": ("defaults.clamp['source.bytes']", {"clamp": {"source.bytes": ["a", 1]}}),
    "max_groups true": ("max_groups must be an integer", {"max_groups": True, "max_rows_per_group": 2,
                                                          "clamp": {"source.bytes": [0, 1]}}),
}


@pytest.mark.parametrize("case", sorted(DEFAULTS))
def test_bad_manifest_defaults_are_a_store_error(store_copy, case):
    words, defaults = DEFAULTS[case]
    manifest = json.loads((store_copy / "manifest.json").read_text())
    (store_copy / "manifest.json").write_text(json.dumps({**manifest, "defaults": defaults}))
    bounds = [] if isinstance(defaults, dict) and "max_groups" in defaults else BOUNDS  # a bound given on the command line wins over the manifest's
    _refused(store_copy, ["query", "--store", store_copy, "--sql", SUM, "--epsilon", "1", *bounds, *WINDOW], 66, words)


TRAIN = ["--detector", "kmeans", "--epsilon", "1", "--delta", "1e-6", "--max-windows", "2"]
TRAIN_CASES = {
    "end beyond the calendar": (["--start", "2024-03-01", "--end", "9999-12-31"], "outside the supported range"),
    "three centuries": (["--start", "2024-03-01", "--end", "2325-03-01"], "3,612 month budget windows"),
    "clip norm 1e308": (["--start", "2024-03-01", "--end", "2024-04-01", "--clip-norm", "1e308"], "clip_norm must be"),
    "k of 1e11": (["--start", "2024-03-01", "--end", "2024-04-01", "--k", "99999999999"], "k must be an integer"),
    "iterations of 1e11": (["--start", "2024-03-01", "--end", "2024-04-01", "--iterations", "99999999999"], "iterations must be"),
    "epsilon 1e-300": (["--start", "2024-03-01", "--end", "2024-04-01", "--epsilon", "1e-300"], "training epsilon must be >= 0.001"),
}


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_bad_training_request_is_refused_fast_and_charges_nothing(store, tmp_path, case):
    args, words = TRAIN_CASES[case]
    _refused(store, ["train", "--store", store, *TRAIN, *args, "--output", tmp_path / "m.json"], 64, words, within=5.0)
    assert not (tmp_path / "m.json").exists()
