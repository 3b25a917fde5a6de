"""Query files: one named query per TOML file (the shipped ones live in ``queries/``).

Layout (only ``name`` and ``sql`` are required; command-line options override the rest)::

    name = "failed_logins_per_hour"
    description = "Failed authentication events per hour."
    sql = '''SELECT date_trunc('hour', "@timestamp") AS hour, COUNT(*) AS failures
             FROM logs WHERE event.category = 'authentication' AND event.outcome = 'failure'
             GROUP BY 1'''

    [privacy]            # mechanism, epsilon | rho, delta, max_groups, max_rows_per_group
    epsilon = 0.5
    max_groups = 24
    max_rows_per_group = 20

    [clamp]              # value ranges of summed / averaged / binned columns
    "source.bytes" = [0, 1_000_000]

    [keys]               # declared (public) key lists
    "host.name" = ["web-1", "web-2"]

    [bins]               # public histogram bins: {lo, hi, n, scale = "log" | "linear"} or {edges = [...]}
    "source.bytes" = { lo = 0, hi = 1_000_000, n = 32 }

    [window]             # optional default window; --start/--end override
    start = "2026-11-01"
    end = "2026-12-01"

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "q.toml"
>>> _ = p.write_text('name = "n"\\nsql = "SELECT COUNT(*) FROM logs"\\n[privacy]\\nepsilon = 0.5\\n')
>>> q = load_query_file(p)
>>> q.name, q.epsilon, q.aggregations[0].label
('n', 0.5, 'count')
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from dplogs.engine.plan import Bins, Query
from dplogs.engine.sql import parse_sql
from dplogs.errors import InputNotFound, QueryError
from dplogs.privacy.bounds import Clamp
from dplogs.schema import DEFAULT_PRIVACY_UNIT

_TOP = {"name", "description", "sql", "privacy", "clamp", "keys", "bins", "window"}
_PRIVACY = {"mechanism", "epsilon", "rho", "delta", "max_groups", "max_rows_per_group"}


def parse_bins(spec: Any, *, column: str) -> Bins:
    """Bins from ``{edges = [...]}`` or ``{lo, hi, n, scale}`` (also used for ``--bins``)."""
    if not isinstance(spec, dict):
        raise QueryError(f"bins for {column} must be a table: {{lo, hi, n[, scale]}} or {{edges = [...]}}")
    if "edges" in spec:
        return Bins(tuple(spec["edges"]))
    try:
        return Bins.spaced(spec["lo"], spec["hi"], spec["n"], scale=spec.get("scale", "log"))
    except KeyError as exc:
        raise QueryError(f"bins for {column} lack {exc.args[0]!r}; give lo, hi and n (or edges)") from None


def read_toml(path: Path, *, what: str, hint: str = "") -> dict[str, Any]:
    """The TOML document at ``path``; a missing file is InputNotFound, bad TOML a QueryError."""
    if not path.is_file():
        raise InputNotFound(f"{what} {path} not found{hint}")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise QueryError(f"{what} {path} is not valid TOML: {exc}") from None


def load_query_file(path: str | os.PathLike[str], *, unit: str = DEFAULT_PRIVACY_UNIT) -> Query:
    """Parse one query file into a :class:`Query`."""
    path = Path(path)
    doc = read_toml(path, what="query file", hint="; the shipped queries are in queries/*.toml")
    unknown = set(doc) - _TOP
    if unknown:
        raise QueryError(f"{path}: unknown entries {sorted(unknown)}; allowed: {', '.join(sorted(_TOP))}")
    for required in ("name", "sql"):
        if not isinstance(doc.get(required), str) or not doc[required].strip():
            raise QueryError(f"{path}: `{required}` must be a non-empty string")
    privacy = doc.get("privacy", {})
    bad = set(privacy) - _PRIVACY
    if bad:
        raise QueryError(f"{path}: unknown [privacy] entries {sorted(bad)}; allowed: {', '.join(sorted(_PRIVACY))}")
    try:
        clamps = {c: Clamp(lo=v[0], hi=v[1]) for c, v in doc.get("clamp", {}).items()}
    except (TypeError, IndexError, KeyError):
        raise QueryError(f"{path}: [clamp] entries must be [lo, hi] pairs") from None
    declared = {c: tuple(v) for c, v in doc.get("keys", {}).items()}
    bins = {c: parse_bins(v, column=c) for c, v in doc.get("bins", {}).items()}
    window = doc.get("window", {})
    query = parse_sql(doc["sql"], unit=unit)
    try:
        return query.with_options(
            name=doc["name"], text=doc["sql"].strip(), clamps=clamps, declared=declared, bins=bins,
            start=window.get("start"), end=window.get("end"), **privacy,
        )
    except QueryError as exc:
        raise QueryError(f"{path}: {exc}") from None
