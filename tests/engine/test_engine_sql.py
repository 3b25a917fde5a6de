"""SQL front-end: what is accepted (and what it means), and what is refused with a clear message."""

from __future__ import annotations

import datetime as dt

import pytest

from dplogs.engine.plan import AggKind, And, Cmp, In, IsNull, Like, Not, Or
from dplogs.engine.sql import parse_sql, parse_where
from dplogs.errors import QueryError


def test_dotted_columns_map_back_to_ecs_names():
    q = parse_sql("SELECT http.request.method, winlog.logon.type, COUNT(*) FROM logs "
                  "WHERE http.response.body.bytes > 10 GROUP BY http.request.method, winlog.logon.type")
    assert [k.column for k in q.keys] == ["http.request.method", "winlog.logon.type"]
    assert q.where == Cmp("http.response.body.bytes", ">", 10)


def test_all_aggregates_and_aliases():
    q = parse_sql(
        "SELECT date_trunc('hour', \"@timestamp\") AS h, COUNT(*) AS n, COUNT(DISTINCT user.name) AS users, "
        "SUM(source.bytes) AS s, AVG(source.bytes), QUANTILE(source.bytes, [0.5, 0.99]), "
        "PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY destination.bytes), HISTOGRAM(source.port) AS ports, "
        "COUNT_IF(event.outcome = 'failure') / COUNT(*) AS fail_rate FROM logs GROUP BY 1"
    )
    assert q.keys[0].column == "@timestamp" and q.keys[0].bucket == "hour" and q.keys[0].output == "h"
    kinds = {a.label: a.kind for a in q.aggregations}
    assert kinds == {
        "n": AggKind.COUNT, "users": AggKind.UNITS, "s": AggKind.SUM, "mean(source.bytes)": AggKind.MEAN,
        "ports": AggKind.HISTOGRAM, "fail_rate": AggKind.RATIO,
        "quantiles(source.bytes)": AggKind.QUANTILES, "quantiles(destination.bytes)": AggKind.QUANTILES,
    }
    qs = {a.column: a.quantiles for a in q.aggregations if a.kind is AggKind.QUANTILES}
    assert qs == {"source.bytes": (0.5, 0.99), "destination.bytes": (0.9,)}
    ratio = next(a for a in q.aggregations if a.kind is AggKind.RATIO)
    assert ratio.where == Cmp("event.outcome", "=", "failure")


def test_where_translation():
    f = parse_where(
        "event.outcome != 'success' AND (source.ip IN ('1.2.3.4', '5.6.7.8') OR NOT user.name LIKE 'svc_%') "
        "AND host.name IS NOT NULL AND url.original IS NULL AND 100 < source.port AND source.port BETWEEN 1 AND 9"
    )
    assert isinstance(f, And)
    parts = list(f.parts)
    assert parts[0] == Cmp("event.outcome", "!=", "success")
    assert parts[1] == Or((In("source.ip", ("1.2.3.4", "5.6.7.8")), Not(Like("user.name", "svc_%"))))
    assert parts[2] == IsNull("host.name", negate=True) and parts[3] == IsNull("url.original")
    assert parts[4] == Cmp("source.port", ">", 100)  # constant on the left is flipped
    assert parts[5] == And((Cmp("source.port", ">=", 1), Cmp("source.port", "<=", 9)))


def test_timestamp_conjuncts_set_the_window():
    q = parse_sql("SELECT COUNT(*) FROM logs WHERE \"@timestamp\" >= '2026-11-01' AND \"@timestamp\" < '2026-11-08T12:00:00Z'")
    assert q.start == dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    assert q.end == dt.datetime(2026, 11, 8, 12, tzinfo=dt.timezone.utc)


def test_top_k():
    q = parse_sql("SELECT source.ip, COUNT(DISTINCT user.name) AS users FROM logs GROUP BY source.ip ORDER BY users DESC LIMIT 5")
    assert (q.top_k, q.order_by) == (5, "users")
    q2 = parse_sql("SELECT source.ip, COUNT(*) FROM logs GROUP BY 1 ORDER BY COUNT(*) DESC LIMIT 3")
    assert (q2.top_k, q2.order_by) == (3, "count")


def test_count_distinct_of_configured_unit():
    q = parse_sql("SELECT COUNT(DISTINCT source.ip) FROM logs", unit="source.ip")
    assert q.aggregations[0].kind is AggKind.UNITS


@pytest.mark.parametrize("sql, message", [
    ("SELECT COUNT(*) FROM logs a JOIN logs b ON a.x = b.x", "JOIN is not supported"),
    ("SELECT COUNT(*) FROM (SELECT * FROM logs)", "subqueries"),
    ("SELECT COUNT(*) FROM logs WHERE user.name IN (SELECT user.name FROM logs)", "subqueries"),
    ("SELECT DISTINCT user.name FROM logs", "DISTINCT"),
    ("SELECT COUNT(DISTINCT source.ip) FROM logs", "only for the privacy unit"),
    ("SELECT COUNT(*) OVER (PARTITION BY user.name) FROM logs", "window functions"),
    ("SELECT event.action, COUNT(*) FROM logs GROUP BY event.action HAVING COUNT(*) > 5", "HAVING"),
    ("SELECT event.action, COUNT(*) FROM logs GROUP BY event.action ORDER BY user.name", "only released keys or aggregates"),
    ("SELECT event.action, COUNT(*) FROM logs GROUP BY event.action LIMIT 5", "LIMIT needs ORDER BY"),
    ("SELECT event.action, COUNT(*) AS n FROM logs GROUP BY event.action ORDER BY n DESC", "needs LIMIT"),
    ("SELECT event.action, COUNT(*) AS n FROM logs GROUP BY event.action ORDER BY n ASC LIMIT 3", "DESC"),
    ("SELECT user.name FROM logs", "neither an aggregate nor in GROUP BY"),
    ("SELECT MAX(source.bytes) FROM logs", "MIN/MAX are not released"),
    ("SELECT * FROM logs", "SELECT \\*"),
    ("SELECT COUNT(*) FROM users", "FROM logs"),
    ("SELECT COUNT(*) FROM logs UNION SELECT COUNT(*) FROM logs", "only SELECT"),
    ("WITH x AS (SELECT 1) SELECT COUNT(*) FROM logs", "WITH|subqueries"),
    ("SELECT COUNT(*) FROM logs WHERE no.such = 1", "unknown column"),
    ("SELECT COUNT(user.name) FROM logs", "COUNT\\(col\\)"),
    ("SELECT date_trunc('year', \"@timestamp\"), COUNT(*) FROM logs GROUP BY 1", "date_trunc unit"),
    ("SELECT COUNT(*) FROM logs; SELECT COUNT(*) FROM logs", "exactly one"),
    ("SELEC COUNT(*) FROM logs", "SELECT|parse"),
])
def test_refused(sql, message):
    with pytest.raises(QueryError, match=message):
        parse_sql(sql)


def test_a_syntax_error_says_where_and_why_in_words():
    """A WHERE with no condition read "Required keyword: 'this' missing for <class
    'sqlglot.expressions.query.Where'>" (sqlglot's own class names, no position); an unclosed
    quote, "Error tokenizing ..." only."""
    with pytest.raises(QueryError, match=r"^cannot parse the SQL near 'WHERE' \(line 1, column 31\): the WHERE "
                                         r"clause is incomplete; quote special names"):
        parse_sql("SELECT COUNT(*) FROM logs WHERE")
    with pytest.raises(QueryError, match=r"^cannot parse the SQL near 'FROM' \(line 1, column 19\): Expecting \)"):
        parse_sql("SELECT COUNT(* FROM logs")
    with pytest.raises(QueryError, match=r"^cannot parse the SQL: a quote is not closed\?"):
        parse_sql("SELECT COUNT(*) FROM logs WHERE event.outcome = 'failure")


def test_order_by_unaliased_aggregates():
    q = parse_sql("SELECT source.ip, COUNT(DISTINCT user.name) FROM logs GROUP BY 1 ORDER BY COUNT(DISTINCT user.name) DESC LIMIT 2")
    assert (q.top_k, q.order_by) == (2, "distinct_units")
    q = parse_sql("SELECT source.ip, QUANTILE(source.bytes, 0.95) FROM logs GROUP BY 1 ORDER BY 2 DESC LIMIT 2")
    assert q.order_by == "p95(source.bytes)"


def test_count_distinct_of_another_identity_field_says_the_query_does_not_fit_the_store():
    """The shipped nightly report failed on a source.ip store (the unit the ingest recommends for
    web logs) with a generic 'supported only for the privacy unit' and no word of what to do."""
    with pytest.raises(QueryError, match=r"user.name is not this store's privacy unit \(source.ip\): counting distinct "
                                         r"user.name needs a store made with --privacy-unit user.name"):
        parse_sql("SELECT host.name, COUNT(DISTINCT user.name) FROM logs GROUP BY host.name", unit="source.ip")
    with pytest.raises(QueryError, match=r"^COUNT\(DISTINCT \.\.\.\) is supported only for the privacy unit"):
        parse_sql("SELECT COUNT(DISTINCT url.original) FROM logs", unit="source.ip")
