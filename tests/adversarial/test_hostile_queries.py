"""Hostile queries through the CLI: each gets a clear error and its documented exit code, and the
budget ledger is byte-for-byte unchanged (nothing reserved, nothing refunded)."""

from __future__ import annotations

import pytest

from tests.adversarial.conftest import invoke, ledger_state

SQL = "SELECT event.outcome, COUNT(*) FROM logs GROUP BY event.outcome"
PRIVATE = "SELECT host.name, COUNT(*) FROM logs GROUP BY host.name"
BOUNDS = ["--max-groups", "1", "--max-rows-per-group", "2", "--start", "2024-03-01", "--end", "2024-04-01"]

CASES = {
    "epsilon zero": (["--sql", SQL, "--epsilon", "0", *BOUNDS], 64, "epsilon must be"),
    "epsilon negative": (["--sql", SQL, "--epsilon", "-1", *BOUNDS], 64, "epsilon must be"),
    "epsilon nan": (["--sql", SQL, "--epsilon", "nan", *BOUNDS], 64, "epsilon must be"),
    "epsilon inf": (["--sql", SQL, "--epsilon", "inf", *BOUNDS], 64, "epsilon must be"),
    "rho nan": (["--sql", SQL, "--rho", "nan", *BOUNDS], 64, "rho must be"),
    "delta zero": (["--sql", PRIVATE, "--epsilon", "1", "--delta", "0", *BOUNDS], 64, "delta must be"),
    "delta negative": (["--sql", PRIVATE, "--epsilon", "1", "--delta", "-1e-6", *BOUNDS], 64, "delta must be"),
    "delta nan": (["--sql", PRIVATE, "--epsilon", "1", "--delta", "nan", *BOUNDS], 64, "delta must be"),
    "delta inf": (["--sql", PRIVATE, "--epsilon", "1", "--delta", "inf", *BOUNDS], 64, "delta must be"),
    "delta one": (["--sql", PRIVATE, "--epsilon", "1", "--delta", "1", *BOUNDS], 64, "delta must be"),
    "bound zero": (["--sql", SQL, "--epsilon", "1", "--max-groups", "0", "--max-rows-per-group", "2",
                    "--start", "2024-03-01", "--end", "2024-04-01"], 64, "max_groups"),
    "unknown column": (["--sql", "SELECT foo.bar, COUNT(*) FROM logs GROUP BY foo.bar", "--epsilon", "1", *BOUNDS], 64, "unknown column"),
    "unknown column in where": (["--sql", "SELECT COUNT(*) FROM logs WHERE nope = 1", "--epsilon", "1", *BOUNDS], 64, "unknown column"),
    "sql syntax": (["--sql", "SELEC COUNT(*) FROM", "--epsilon", "1", *BOUNDS], 64, "SQL"),
    "sql join": (["--sql", "SELECT COUNT(*) FROM logs a JOIN logs b ON a.x = b.x", "--epsilon", "1", *BOUNDS], 64, "JOIN"),
    "sql two statements": (["--sql", f"{SQL}; DROP TABLE logs", "--epsilon", "1", *BOUNDS], 64, "exactly one SELECT"),
    "sql raw rows": (["--sql", "SELECT user.name FROM logs", "--epsilon", "1", *BOUNDS], 64, "GROUP BY"),
    "empty window": (["--sql", SQL, "--epsilon", "1", "--max-groups", "1", "--max-rows-per-group", "2",
                      "--start", "2024-04-01", "--end", "2024-03-01"], 64, "window"),
    "both file and sql": (["queries/failed_logins_per_hour.toml", "--sql", SQL, "--epsilon", "1"], 64, "exactly one"),
    "missing query file": (["/nonexistent/q.toml", "--epsilon", "1"], 66, "not found"),
    "huge declared key list": (["--sql", "SELECT host.name, COUNT(*) FROM logs GROUP BY host.name", "--epsilon", "1",
                                "--keys", "host.name=" + ",".join(f"h{i}" for i in range(1_100_000)), *BOUNDS], 64, "more than the limit of 100,000"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_query_is_refused_and_charges_nothing(store, case):
    args, code, words = CASES[case]
    before = ledger_state(store)
    res = invoke("query", "--store", store, *args)
    assert res.exit_code == code, (case, res.exit_code, res.output)
    assert res.stderr.startswith("error: ") and words in res.stderr, res.stderr
    assert "Traceback" not in res.output
    assert res.stdout == ""
    assert ledger_state(store) == before


BAD_FILES = {
    "not toml": 'sql = "SELECT COUNT(*) FROM logs"\n[privacy\nepsilon = 1\n',
    "no sql": "[privacy]\nepsilon = 1\n",
    "sql not a string": "sql = 5\n",
    "unknown section": 'sql = "SELECT COUNT(*) FROM logs"\n[mystery]\nx = 1\n',
    "epsilon string": 'sql = "SELECT COUNT(*) FROM logs"\n[privacy]\nepsilon = "lots"\n',
    "epsilon negative": 'sql = "SELECT COUNT(*) FROM logs"\n[privacy]\nepsilon = -2.0\nmax_groups = 1\nmax_rows_per_group = 1\n',
    "binary garbage": "\x00\x01\x02\xff",
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_query_file_is_refused_and_charges_nothing(store, tmp_path, case):
    path = tmp_path / "q.toml"
    path.write_bytes(BAD_FILES[case].encode("utf-8", "surrogateescape"))
    before = ledger_state(store)
    res = invoke("query", "--store", store, path, "--start", "2024-03-01", "--end", "2024-04-01")
    assert res.exit_code == 64, (case, res.output)
    assert res.stderr.startswith("error: ") and "Traceback" not in res.output
    assert ledger_state(store) == before


def test_budget_exhaustion_charges_nothing(store):
    before = ledger_state(store)
    res = invoke("query", "--store", store, "--sql", SQL, "--epsilon", "60", *BOUNDS)
    assert res.exit_code == 77 and "budget left" in res.stderr
    assert ledger_state(store) == before


def test_absurd_epsilon_is_refused_and_charges_nothing(store):
    before = ledger_state(store)
    res = invoke("query", "--store", store, "--sql", SQL, "--epsilon", "1000", *BOUNDS)
    assert ledger_state(store) == before
    assert res.exit_code in (64, 77), res.stderr
