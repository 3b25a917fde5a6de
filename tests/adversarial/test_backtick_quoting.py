"""Backtick-quoted names (ES|QL, Spark SQL) are rewritten to standard double quotes before
parsing. The rewrite must follow SQL's own quoting: a string literal's text is never changed,
whatever quotes precede it, and a doubled backtick is a backtick inside the name."""

from __future__ import annotations

import pytest

from dplogs.engine.sql import parse_sql


def _where(sql: str) -> str:
    return parse_sql(sql).where.describe()


@pytest.mark.parametrize("alias", ['"it\'s"', "`it's`", '"a""b\'"'])
def test_a_quote_inside_a_quoted_name_does_not_rewrite_later_literals(alias):
    # a ' inside "it's" flipped the rewriter into "string" mode, so the literal '`x`' below was
    # read as outside a string and its backticks became double quotes: the filter matched '"x"'
    sql = f"SELECT COUNT(*) AS {alias} FROM logs WHERE host.name = '`x`'"
    assert _where(sql) == _where("SELECT COUNT(*) FROM logs WHERE host.name = '`x`'")
    assert "'`x`'" in _where(sql)


def test_doubled_backtick_is_a_backtick_in_the_name():
    query = parse_sql("SELECT COUNT(*) AS `a``b` FROM logs")
    assert [a.name for a in query.aggregations] == ["a`b"]


def test_backtick_names_still_read_as_columns():
    query = parse_sql("SELECT `host.name`, COUNT(*) FROM logs WHERE `event.outcome` = 'fail`ure' GROUP BY `host.name`")
    assert [k.column for k in query.keys] == ["host.name"]
    assert "'fail`ure'" in query.where.describe()
