"""SQL front-end: a small, DP-safe subset of SELECT parsed with sqlglot into a :class:`Query`.

Supported::

    SELECT <keys>, <aggregates> FROM logs
    [WHERE <predicate>] [GROUP BY <keys>] [ORDER BY <aggregate> DESC LIMIT k]

- keys: store columns (dotted ECS names such as ``event.action`` work unquoted; quote
  ``"@timestamp"``) and ``date_trunc('minute'|'hour'|'day'|'week', "@timestamp")``; GROUP BY may
  name them, their aliases or their positions;
- aggregates: ``COUNT(*)``, ``COUNT(DISTINCT <privacy unit>)``, ``SUM(col)``, ``AVG(col)``,
  ``QUANTILE(col, q)`` / ``QUANTILE(col, [q1, q2])`` / ``APPROX_QUANTILE`` /
  ``PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col)`` (levels of one column share one histogram),
  ``HISTOGRAM(col)`` and ``COUNT_IF(cond) / COUNT(*)`` (a ratio), each optionally ``AS name``;
- WHERE: = != < <= > >= IN, NOT IN, LIKE, IS [NOT] NULL, BETWEEN, AND, OR, NOT. Top-level
  ``"@timestamp" >= '...'`` and ``"@timestamp" < '...'`` conjuncts set the query window;
- ``ORDER BY <aggregate> DESC LIMIT k``: top-k, ranked on released noisy values.

Everything else (joins, subqueries, CTEs, set operations, DISTINCT outside COUNT, window
functions, HAVING, ORDER BY on something not released) is refused with a :class:`QueryError`.

>>> q = parse_sql("SELECT event.action, COUNT(*) FROM logs WHERE event.outcome = 'failure' GROUP BY event.action")
>>> [k.column for k in q.keys], q.aggregations[0].label, q.where.describe()
(['event.action'], 'count', "event.outcome = 'failure'")
>>> parse_sql("SELECT COUNT(*) FROM logs a JOIN logs b ON a.x = b.x")
Traceback (most recent call last):
...
dplogs.errors.QueryError: JOIN is not supported: dplogs queries read one table (FROM logs)
"""

from __future__ import annotations

import re
from typing import Any

import sqlglot
import sqlglot.expressions as exp
from sqlglot.errors import ParseError, SqlglotError, TokenError

from dplogs.engine.plan import (
    TIME_BUCKETS,
    Aggregation,
    AggKind,
    And,
    Cmp,
    Filter,
    In,
    IsNull,
    KeySpec,
    Like,
    Not,
    Or,
    Query,
    check_column,
    conjunction,
)
from dplogs.errors import QueryError
from dplogs.privacy.limits import MAX_FILTER_DEPTH, MAX_SQL_CHARS
from dplogs.schema import DEFAULT_PRIVACY_UNIT, IDENTITY_FIELDS, TIMESTAMP

TABLES = ("logs", "events")
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}
_CMP = {exp.EQ: "=", exp.NEQ: "!=", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}


def column_name(col: exp.Column) -> str:
    """The store column a (possibly dotted) SQL column names: ``event.action`` parses as table
    ``event`` + column ``action``; the parts are joined back."""
    return check_column(".".join(p.name for p in col.parts))


def _literal(node: exp.Expression) -> Any:
    if isinstance(node, exp.Paren):
        return _literal(node.this)
    if isinstance(node, exp.Cast):  # TIMESTAMP '2026-11-01' and friends
        return _literal(node.this)
    if isinstance(node, exp.Neg):
        v = _literal(node.this)
        if isinstance(v, str):
            raise QueryError(f"cannot negate {node.sql()}")
        return -v
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        try:
            return float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:  # e.g. an integer of thousands of digits
            raise QueryError(f"cannot read the number {text[:30]}...") from None
    if isinstance(node, exp.Boolean):
        raise QueryError("boolean literals are not supported; compare a column with a value")
    raise QueryError(f"expected a constant, got {node.sql()}")


def _refuse(tree: exp.Expression) -> None:
    if not isinstance(tree, exp.Select):
        kind = type(tree).__name__.upper()
        raise QueryError(f"only SELECT queries are supported, not {kind} (set operations and statements are refused)")
    if tree.args.get("with_") or tree.args.get("with"):
        raise QueryError("WITH (common table expressions) is not supported")
    if tree.args.get("joins"):
        raise QueryError("JOIN is not supported: dplogs queries read one table (FROM logs)")
    if tree.args.get("distinct"):
        raise QueryError("SELECT DISTINCT is not supported (it would release raw values); DISTINCT is allowed only in COUNT(DISTINCT <privacy unit>)")
    if tree.args.get("having"):
        raise QueryError("HAVING is not supported: filtering on noisy aggregates is done by the caller after the release")
    for name in ("qualify", "offset", "laterals", "pivots"):
        if tree.args.get(name):
            raise QueryError(f"{name.upper()} is not supported")
    if tree.find(exp.Window):
        raise QueryError("window functions (OVER ...) are not supported")
    # every other clause sqlglot knows (SORT BY, CLUSTER BY, CONNECT BY, INTO, FOR UPDATE, hints,
    # ...) is refused by name: ignoring one would answer another question than the one asked
    for name, value in tree.args.items():
        if name not in _CLAUSES and value not in (None, False, []):
            raise QueryError(f"{name.rstrip('_').upper()} is not supported")
    limit = tree.args.get("limit")
    if limit is not None and (not isinstance(limit, exp.Limit) or set(_present(limit)) != {"expression"}):
        raise QueryError("LIMIT takes one integer k (top-k); LIMIT ... BY, PERCENT and FETCH are not supported")
    for sub in tree.find_all(exp.Select, exp.Subquery):
        if sub is not tree:
            raise QueryError("subqueries are not supported")
    frm = tree.args.get("from_") or tree.args.get("from")
    if frm is None:
        raise QueryError("the query needs FROM logs")
    table = frm.this
    if not isinstance(table, exp.Table) or table.name.lower() not in TABLES or table.args.get("db"):
        raise QueryError(f"unknown table {frm.this.sql()}; dplogs queries read FROM logs")
    extra = set(_present(table)) - {"this", "alias"}
    if extra:  # TABLESAMPLE and the like: the whole table would be read, not what they ask
        raise QueryError(f"FROM logs takes no options ({', '.join(sorted(n.upper() for n in extra))} is not supported)")


_CLAUSES = frozenset({"expressions", "from_", "from", "where", "group", "order", "limit"})
"""The SELECT clauses dplogs reads; :func:`_refuse` names any other one present."""


def _present(node: exp.Expression) -> list[str]:
    return [name for name, value in node.args.items() if value not in (None, False, [])]


def _backticks_to_quotes(text: str) -> str:
    """ES|QL / Spark SQL quote names with backticks (`event.action`): the same identifiers in
    standard double quotes. String literals and double-quoted names are copied as they are (SQL
    doubles a quote inside them, which toggles twice); inside backticks a doubled backtick is one
    backtick and a double quote is doubled.

    >>> print(_backticks_to_quotes("SELECT `event.action`, 'a`b', `x``y` AS \\"it's\\" FROM logs"))
    SELECT "event.action", 'a`b', "x`y" AS "it's" FROM logs
    """
    out, i, quote = [], 0, None  # quote: the character that opened the literal or name we are in
    while i < len(text):
        ch = text[i]
        if quote is None:
            if ch in "'\"`":
                quote = ch
            out.append('"' if ch == "`" else ch)
        elif quote == "`":
            if text.startswith("``", i):
                out.append("`")
                i += 1
            elif ch == "`":
                quote = None
                out.append('"')
            else:
                out.append('""' if ch == '"' else ch)
        else:
            if ch == quote:
                quote = None
            out.append(ch)
        i += 1
    return "".join(out)


def _where_it_failed(exc: ParseError) -> str:
    """Where sqlglot stopped and why, in words: its description names its own classes
    ("Required keyword: 'this' missing for <class 'sqlglot.expressions.query.Where'>")."""
    if not exc.errors:
        return f": {exc}"
    first = exc.errors[0]
    why = re.sub(r"Required keyword: '\w+' missing for <class '(?:\w+\.)*(\w+)'>",
                 lambda m: f"the {m.group(1).upper()} clause is incomplete", str(first.get("description", "")))
    near = f" near {first['highlight']!r}" if first.get("highlight") else " at the end"
    return f"{near} (line {first.get('line')}, column {first.get('col')}): {why}"


def _parse(text: Any, *, prefix: str = "") -> list[exp.Expression]:
    """sqlglot's trees for ``prefix + text``; any failure to parse is a QueryError."""
    if not isinstance(text, str):
        raise QueryError(f"the SQL must be text, got {text!r}")
    if len(text) > MAX_SQL_CHARS:
        raise QueryError(f"the SQL has {len(text):,} characters, more than the limit of {MAX_SQL_CHARS:,}")
    try:
        return [t for t in sqlglot.parse(prefix + _backticks_to_quotes(text)) if t is not None]
    except ParseError as exc:
        raise QueryError(f"cannot parse the SQL{_where_it_failed(exc)}; quote special names like \"@timestamp\"") from None
    except TokenError as exc:
        raise QueryError(f"cannot parse the SQL: a quote is not closed? ({exc})") from None
    except SqlglotError as exc:
        raise QueryError(f"cannot parse the SQL: {exc}") from None
    except RecursionError:
        raise QueryError("the SQL nests too deeply to parse") from None


def parse_sql(text: str, *, unit: str = DEFAULT_PRIVACY_UNIT) -> Query:
    """Parse ``text`` into a :class:`Query` (privacy parameters left for options/defaults)."""
    try:
        return _query(_parse(text), text, unit)
    except RecursionError:  # sqlglot renders and walks its trees recursively
        raise QueryError("the SQL nests too deeply to read") from None


def _query(trees: list[exp.Expression], text: str, unit: str) -> Query:
    if len(trees) != 1:
        raise QueryError("give exactly one SELECT statement")
    tree = trees[0]
    _refuse(tree)

    window: dict[str, Any] = {}
    where = None
    if tree.args.get("where") is not None:
        where = _where(tree.args["where"].this, window)

    selects = list(tree.expressions)
    group = tree.args.get("group")
    group_nodes: list[exp.Expression] = []
    if group is not None:
        if group.args.get("all"):
            group_nodes = [s for s in selects if not _is_aggregate(_unalias(s))]
        else:
            for g in group.expressions:
                group_nodes.append(_resolve_ref(g, selects))
    group_sql = {_unalias(g).sql() for g in group_nodes}

    keys: list[KeySpec] = []
    aggs: list[Aggregation] = []
    quantiles: dict[str, tuple[list[float], list[str | None]]] = {}
    for item in selects:
        node, alias = _unalias(item), item.alias if isinstance(item, exp.Alias) else None
        if isinstance(node, exp.Star):
            raise QueryError("SELECT * is not supported: name the keys and aggregates to release")
        if _is_aggregate(node):
            _aggregate(node, alias or None, unit, aggs, quantiles)
            continue
        if node.sql() not in group_sql:
            raise QueryError(f"{node.sql()} is neither an aggregate nor in GROUP BY; add it to GROUP BY or remove it")
        keys.append(_key(node, alias or None))
    for g in group_nodes:
        if _unalias(g).sql() not in {_unalias(s).sql() for s in selects}:
            keys.append(_key(_unalias(g), None))
    for col, (levels, names) in quantiles.items():
        given = sorted({n for n in names if n})
        if len(given) > 1:  # one histogram per column, so one name: 'AS a', 'AS b' were dropped silently
            raise QueryError(f"the quantiles of {col} are released together, as NAME_pXX({col}): give them one alias "
                             f"(QUANTILE({col}, [0.5, 0.9]) AS NAME), not {', '.join(given)}")
        aggs.append(Aggregation.quantile_set(col, levels, name=given[0] if given else None))

    top_k, order_by = _order(tree, selects, aggs, unit)
    return Query(
        aggregations=tuple(aggs), keys=tuple(keys), where=where, top_k=top_k, order_by=order_by,
        start=window.get("start"), end=window.get("end"), text=text.strip(),
    )


def _unalias(node: exp.Expression) -> exp.Expression:
    return node.this if isinstance(node, exp.Alias) else node


def _resolve_ref(g: exp.Expression, selects: list[exp.Expression]) -> exp.Expression:
    """GROUP BY / ORDER BY entries may be positions (1-based) or select aliases."""
    if isinstance(g, exp.Literal) and not g.is_string:
        i = int(g.this)
        if not 1 <= i <= len(selects):
            raise QueryError(f"position {i} is out of range (the SELECT list has {len(selects)} items)")
        return _unalias(selects[i - 1])
    if isinstance(g, exp.Column) and len(g.parts) == 1:
        for s in selects:
            if isinstance(s, exp.Alias) and s.alias == g.name:
                return _unalias(s)
    return g


_AGG_TYPES = (exp.Count, exp.Sum, exp.Avg, exp.Quantile, exp.ApproxQuantile, exp.WithinGroup, exp.Div, exp.CountIf,
              exp.Max, exp.Min, exp.Median, exp.AggFunc)


def _is_aggregate(node: exp.Expression) -> bool:
    if isinstance(node, exp.Anonymous):
        return node.name.upper() == "HISTOGRAM"
    return isinstance(node, _AGG_TYPES)


def _key(node: exp.Expression, alias: str | None) -> KeySpec:
    if isinstance(node, exp.Column):
        name = column_name(node)
        if name == TIMESTAMP:
            raise QueryError(f"group by time with date_trunc('hour', \"{TIMESTAMP}\") (minute, hour, day or week)")
        return KeySpec(name, name=alias)
    if isinstance(node, (exp.DateTrunc, exp.TimestampTrunc)):
        unit = node.args.get("unit")
        grain = (unit.name if unit is not None else "").lower()
        if grain not in TIME_BUCKETS:
            raise QueryError(f"date_trunc unit must be one of {', '.join(TIME_BUCKETS)}, got {grain!r}")
        col = node.this
        if not isinstance(col, exp.Column) or column_name(col) != TIMESTAMP:
            raise QueryError(f"date_trunc applies to \"{TIMESTAMP}\" only")
        return KeySpec(TIMESTAMP, bucket=grain, name=alias)
    raise QueryError(f"unsupported group key {node.sql()}: use a column or date_trunc('hour', \"{TIMESTAMP}\")")


def _value_column(node: exp.Expression, fn: str) -> str:
    if not isinstance(node, exp.Column):
        raise QueryError(f"{fn}() takes a column, got {node.sql()}")
    return column_name(node)


def _aggregate(node: exp.Expression, alias: str | None, unit: str, aggs: list[Aggregation],
               quantiles: dict[str, tuple[list[float], list[str | None]]]) -> None:
    if isinstance(node, exp.Count):
        arg = node.this
        if isinstance(arg, exp.Star):
            aggs.append(Aggregation.count(name=alias))
            return
        if isinstance(arg, exp.Distinct):
            cols = arg.expressions
            if len(cols) == 1 and isinstance(cols[0], exp.Column) and column_name(cols[0]) == unit:
                aggs.append(Aggregation.units(name=alias))
                return
            named = column_name(cols[0]) if len(cols) == 1 and isinstance(cols[0], exp.Column) else None
            other_unit = (f"{named} is not this store's privacy unit ({unit}): counting distinct {named} needs a "
                          f"store made with --privacy-unit {named}, so on this store leave this query out (or its "
                          "section out of a report spec). ") if named in IDENTITY_FIELDS else ""
            raise QueryError(
                f"{other_unit}COUNT(DISTINCT ...) is supported only for the privacy unit: COUNT(DISTINCT {unit}); "
                "distinct values of other columns would need private partition selection (GROUP BY them with --delta)"
            )
        raise QueryError("COUNT(col) is not supported; use COUNT(*) with WHERE col IS NOT NULL")
    if isinstance(node, exp.Sum):
        aggs.append(Aggregation.sum(_value_column(node.this, "SUM"), name=alias))
        return
    if isinstance(node, exp.Avg):
        aggs.append(Aggregation.mean(_value_column(node.this, "AVG"), name=alias))
        return
    if isinstance(node, (exp.Quantile, exp.ApproxQuantile)):
        col = _value_column(node.this, "QUANTILE")
        q = node.args.get("quantile")
        levels = [_literal(e) for e in q.expressions] if isinstance(q, exp.Array) else [_literal(q)]
        _add_quantiles(quantiles, col, levels, alias)
        return
    if isinstance(node, exp.WithinGroup) and isinstance(node.this, exp.PercentileCont):
        order = node.expression
        if not isinstance(order, exp.Order) or len(order.expressions) != 1:
            raise QueryError("PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col) needs exactly one column")
        col = _value_column(order.expressions[0].this, "PERCENTILE_CONT")
        _add_quantiles(quantiles, col, [_literal(node.this.this)], alias)
        return
    if isinstance(node, exp.Anonymous) and node.name.upper() == "HISTOGRAM":
        if len(node.expressions) != 1:
            raise QueryError("HISTOGRAM(col) takes one column; give its bins with --bins COL=LO:HI:N")
        aggs.append(Aggregation.histogram(_value_column(node.expressions[0], "HISTOGRAM"), name=alias))
        return
    if isinstance(node, exp.Div) and isinstance(node.this, exp.CountIf):
        den = node.expression
        if isinstance(den, exp.Count) and isinstance(den.this, exp.Star):
            aggs.append(Aggregation.ratio(_predicate(node.this.this, {}), name=alias))
            return
        raise QueryError("a ratio is COUNT_IF(condition) / COUNT(*)")
    raise QueryError(
        f"unsupported aggregate {node.sql()}; use COUNT(*), COUNT(DISTINCT {unit}), SUM, AVG, QUANTILE, "
        "HISTOGRAM or COUNT_IF(cond) / COUNT(*) (MIN/MAX are not released: they reveal single values)"
    )


def _add_quantiles(quantiles: dict[str, tuple[list[float], list[str | None]]], col: str, levels: list[Any], alias: str | None) -> None:
    for q in levels:
        if not isinstance(q, (int, float)):
            raise QueryError(f"quantile levels must be numbers, got {q!r}")
    entry = quantiles.setdefault(col, ([], []))
    entry[0].extend(float(q) for q in levels)
    entry[1].append(alias)


def _order(tree: exp.Select, selects: list[exp.Expression], aggs: list[Aggregation], unit: str) -> tuple[int | None, str | None]:
    order, limit = tree.args.get("order"), tree.args.get("limit")
    k = None
    if limit is not None:
        k = _literal(limit.expression)
        if not isinstance(k, int):
            raise QueryError("LIMIT takes an integer")
    if order is None:
        if k is not None:
            raise QueryError("LIMIT needs ORDER BY <aggregate> DESC (top-k by a released value)")
        return None, None
    agg_labels = {a.label for a in aggs} | {lab for a in aggs if a.kind is AggKind.QUANTILES for lab in a.quantile_labels()}
    by = None
    for o in order.expressions:
        target = _resolve_ref(o.this, selects)
        label = _label_of(target, selects, aggs, unit)
        if label is None:
            if _is_aggregate(target):
                raise QueryError(f"ORDER BY {o.this.sql()}: only released aggregates (in the SELECT list) can be ranked")
            if target.sql() not in {_unalias(x).sql() for x in selects}:
                raise QueryError(f"ORDER BY {o.this.sql()}: only released keys or aggregates can order a release")
            continue  # ordering by a key: the release is sorted by keys anyway
        if by is not None or not o.args.get("desc"):
            raise QueryError("ORDER BY supports one aggregate, DESC, with LIMIT k (top-k)")
        by = label
    if by is None and k is not None:
        raise QueryError("LIMIT needs ORDER BY <aggregate> DESC (top-k by a released value)")
    if by is not None and k is None:
        raise QueryError(f"ORDER BY {by} DESC needs LIMIT k: ranking is only supported as top-k")
    if by is not None and by not in agg_labels:
        raise QueryError(f"cannot rank by {by}")
    return k, by


def _label_of(target: exp.Expression, selects: list[exp.Expression], aggs: list[Aggregation], unit: str) -> str | None:
    """The released name an ORDER BY entry refers to (alias, or the aggregate's default label)."""
    for s in selects:
        if _unalias(s).sql() == target.sql() and _is_aggregate(_unalias(s)):
            if isinstance(s, exp.Alias):
                return s.alias
            probe: list[Aggregation] = []
            qs: dict[str, tuple[list[float], list[str | None]]] = {}
            _aggregate(_unalias(s), None, unit, probe, qs)
            if probe:
                return probe[0].label
            col, (levels, _) = next(iter(qs.items()))
            return Aggregation.quantile_set(col, levels).quantile_labels()[0]
    if isinstance(target, exp.Column) and len(target.parts) == 1:
        for a in aggs:
            if a.label == target.name:
                return a.label
    return None


def _where(node: exp.Expression, window: dict[str, Any]) -> Filter | None:
    """The WHERE predicate; top-level ``"@timestamp" >= / <`` conjuncts also set the window."""
    conj = _flatten_and(node)
    parts = []
    for c in conj:
        f = _predicate(c, window)
        if isinstance(f, Cmp) and f.column == TIMESTAMP and f.op in (">=", "<"):
            slot = "start" if f.op == ">=" else "end"
            if slot in window:
                raise QueryError(f"\"{TIMESTAMP}\" {f.op} appears twice in WHERE")
            window[slot] = f.value
        parts.append(f)
    return conjunction(parts)


def _flatten(node: exp.Expression, op: type[exp.Connector] = exp.And) -> list[exp.Expression]:
    """The operands of a chain of ``op`` (AND or OR) and parentheses, left to right; iterative,
    so a long chain (a = 1 OR a = 2 OR ...) costs no recursion depth."""
    out, todo = [], [node]
    while todo:
        n = todo.pop()
        while isinstance(n, exp.Paren):
            n = n.this
        if isinstance(n, op):
            todo += [n.expression, n.this]
        else:
            out.append(n)
    return out


def _flatten_and(node: exp.Expression) -> list[exp.Expression]:
    return _flatten(node, exp.And)


def _predicate(node: exp.Expression, window: dict[str, Any], depth: int = 0) -> Filter:
    if depth > MAX_FILTER_DEPTH:
        raise QueryError(f"the condition nests more than {MAX_FILTER_DEPTH} levels deep; simplify it")
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, (exp.And, exp.Or)):
        parts = tuple(_predicate(p, window, depth + 1) for p in _flatten(node, type(node)))
        return And(parts) if isinstance(node, exp.And) else Or(parts)
    if isinstance(node, exp.Not):
        inner = node.this
        if isinstance(inner, exp.Is):
            return IsNull(_is_column(inner), negate=True)
        return Not(_predicate(inner, window, depth + 1))
    if isinstance(node, exp.Is):
        return IsNull(_is_column(node))
    for cls, op in _CMP.items():
        if isinstance(node, cls):
            left, right = node.this, node.expression
            if isinstance(right, exp.Column) and not isinstance(left, exp.Column):
                left, right, op = right, left, _FLIP[op]
            if not isinstance(left, exp.Column):
                raise QueryError(f"comparisons must be column {op} constant: {node.sql()}")
            if isinstance(right, exp.Null):
                raise QueryError(f"{node.sql()}: use IS NULL / IS NOT NULL")
            return Cmp(column_name(left), op, _literal(right))
    if isinstance(node, exp.In):
        if node.args.get("query") is not None:
            raise QueryError("subqueries are not supported (IN (SELECT ...))")
        if not isinstance(node.this, exp.Column):
            raise QueryError(f"IN needs a column on the left: {node.sql()}")
        return In(column_name(node.this), tuple(_literal(v) for v in node.expressions))
    if isinstance(node, exp.Like):
        if not isinstance(node.this, exp.Column):
            raise QueryError(f"LIKE needs a column on the left: {node.sql()}")
        return Like(column_name(node.this), _literal(node.expression))
    if isinstance(node, exp.Between):
        col = node.this
        if not isinstance(col, exp.Column):
            raise QueryError(f"BETWEEN needs a column: {node.sql()}")
        name = column_name(col)
        return And((Cmp(name, ">=", _literal(node.args["low"])), Cmp(name, "<=", _literal(node.args["high"]))))
    raise QueryError(f"unsupported condition {node.sql()}; use = != < <= > >= IN LIKE IS NULL BETWEEN AND OR NOT")


def _is_column(node: exp.Is) -> str:
    if not isinstance(node.expression, exp.Null) or not isinstance(node.this, exp.Column):
        raise QueryError(f"unsupported IS test {node.sql()}; use col IS [NOT] NULL")
    return column_name(node.this)


def parse_where(text: str) -> Filter | None:
    """A WHERE condition given as SQL text (for the Python builder).

    >>> parse_where("event.outcome = 'failure' AND source.port > 1024").describe()
    "event.outcome = 'failure' AND source.port > 1024"
    """
    trees = _parse(text, prefix="SELECT 1 FROM logs WHERE ")
    if len(trees) != 1 or trees[0].args.get("where") is None:
        raise QueryError(f"cannot parse the condition {text!r}: give one condition")
    try:
        _refuse(trees[0])
        return _predicate(trees[0].args["where"].this, {})
    except RecursionError:
        raise QueryError("the condition nests too deeply to read") from None
