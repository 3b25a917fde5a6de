"""SQL the first sweep did not try: clauses sqlglot parses but dplogs does not read, and key names
that collide with the release's own columns. Each is refused with 64 before anything is charged;
before, the clauses were silently ignored (answering another question than the one asked) and the
names crashed the release after the charge (exit 70)."""

from __future__ import annotations

import pytest

from tests.adversarial.conftest import invoke, ledger_state

BOUNDS = ["--epsilon", "0.1", "--max-groups", "1", "--max-rows-per-group", "1",
          "--start", "2024-03-01", "--end", "2024-04-01"]
TOP = "SELECT event.outcome, COUNT(*) AS c FROM logs GROUP BY event.outcome ORDER BY c DESC"


@pytest.mark.parametrize("sql", [
    "SELECT COUNT(*) FROM logs TABLESAMPLE (10 PERCENT)",  # the whole table was counted
    "SELECT COUNT(*) FROM logs SORT BY user.name",
    "SELECT COUNT(*) FROM logs CLUSTER BY user.name",
    "SELECT COUNT(*) FROM logs DISTRIBUTE BY user.name",
    "SELECT COUNT(*) FROM logs CONNECT BY user.name = 'root'",
    "SELECT COUNT(*) INTO copy FROM logs",
    "SELECT COUNT(*) FROM logs FOR UPDATE",
    "SELECT /*+ BROADCAST(logs) */ COUNT(*) FROM logs",
    f"{TOP} LIMIT 1 BY user.name",  # read as LIMIT 1
    f"{TOP} LIMIT 50 PERCENT",  # read as top-50
    f"{TOP} FETCH FIRST 2 ROWS ONLY",  # AttributeError after parsing (exit 70)
    f"{TOP} FETCH FIRST 2 ROWS WITH TIES",
])
def test_a_clause_dplogs_does_not_read_is_refused_before_the_charge(store, sql):
    before = ledger_state(store)
    for command in ("explain", "query"):
        res = invoke(command, "--store", store, "--sql", sql, *BOUNDS)
        assert res.exit_code == 64, (command, res.output)
        assert "not supported" in res.output
    assert ledger_state(store) == before


@pytest.mark.parametrize("name", ["value", "aggregate", "mechanism", "scale", "ci_low", "ci_high", "exact",
                                  "bin_lo", "rows", "units", "sum_v0", "exact_rows", "__gid", "__unit__"])
@pytest.mark.parametrize("bounds", ["given", "chosen"])
def test_a_key_named_like_a_release_column_is_refused_before_the_charge(store, name, bounds):
    sql = f'SELECT event.outcome AS "{name}", COUNT(*) FROM logs GROUP BY 1'
    options = BOUNDS if bounds == "given" else ["--epsilon", "0.1", "--start", "2024-03-01", "--end", "2024-04-01"]
    before = ledger_state(store)
    res = invoke("query", "--store", store, "--sql", sql, *options, "--format", "csv")
    assert res.exit_code == 64, res.output
    assert "taken by the release" in res.output
    assert ledger_state(store) == before


def test_ordinary_names_and_clauses_still_release(store):
    res = invoke("query", "--store", store, *BOUNDS, "--format", "csv", "--sql",
                 "SELECT event.outcome AS outcome, COUNT(*) AS c FROM logs l GROUP BY 1 ORDER BY c DESC LIMIT 2")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].startswith('"outcome","aggregate","value"')


def test_two_aliases_for_the_quantiles_of_one_column_are_refused_not_dropped(store):
    # one histogram per column: 'QUANTILE(x, 0.5) AS a, QUANTILE(x, 0.9) AS b' released p50/p90, names dropped
    before = ledger_state(store)
    res = invoke("query", "--store", store, *BOUNDS, "--clamp", "source.port=0:65536", "--sql",
                 "SELECT QUANTILE(source.port, 0.5) AS a, QUANTILE(source.port, 0.9) AS b FROM logs")
    assert res.exit_code == 64 and "one alias" in res.stderr, res.output
    assert ledger_state(store) == before
    res = invoke("query", "--store", store, *BOUNDS, "--clamp", "source.port=0:65536", "--format", "csv", "--sql",
                 "SELECT QUANTILE(source.port, [0.5, 0.9]) AS q FROM logs")
    assert res.exit_code == 0 and '"q_p50(source.port)"' in res.stdout and '"q_p90(source.port)"' in res.stdout


@pytest.mark.parametrize("where", ["source.ip > '10.0.0.5'", "source.ip BETWEEN '10.0.0.1' AND '10.0.0.20'",
                                   "destination.ip <= '192.168.1.9'"])
def test_an_address_range_is_refused_since_addresses_are_text(store, where):
    # '10.0.0.10' < '10.0.0.5' as text: the range selected other addresses than the ones named
    before = ledger_state(store)
    res = invoke("query", "--store", store, "--sql", f"SELECT COUNT(*) FROM logs WHERE {where}", *BOUNDS)
    assert res.exit_code == 64 and "compare addresses as text" in res.output, res.output
    assert ledger_state(store) == before
    res = invoke("query", "--store", store, "--sql", "SELECT COUNT(*) FROM logs WHERE source.ip LIKE '10.0.%'", *BOUNDS)
    assert res.exit_code == 0, res.output
