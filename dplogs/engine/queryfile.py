"""Query files: one named query per TOML file (the shipped ones live in ``queries/``).

Layout (only ``name`` and ``sql`` are required; command-line options override the rest)::

    name = "failed_logins_per_hour"
    description = "Failed authentication events per hour."
    logs = "authentication logs: auth.log/secure (sshd, sudo), Windows Security"   # shown with answers
    formats = ["syslog", "windows", "evtx"]   # inputs that can hold them (JSON, CSV, CEF... always count):
                                              # a window with none is refused before the charge
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
from dplogs.ingest.formats import check_format_names
from dplogs.privacy.bounds import Clamp
from dplogs.privacy.limits import MAX_SPEC_BYTES
from dplogs.schema import DEFAULT_PRIVACY_UNIT

_TOP = {"name", "description", "logs", "formats", "sql", "privacy", "clamp", "keys", "bins", "window"}
_PRIVACY = {"mechanism", "epsilon", "rho", "delta", "max_groups", "max_rows_per_group"}
_BINS = {"edges", "lo", "hi", "n", "scale"}


def parse_bins(spec: Any, *, column: str) -> Bins:
    """Bins from ``{edges = [...]}`` or ``{lo, hi, n, scale}`` (also used for ``--bins``)."""
    if not isinstance(spec, dict) or set(spec) - _BINS:
        raise QueryError(f"bins for {column} must be a table: {{lo, hi, n[, scale]}} or {{edges = [...]}}, got {spec!r}")
    if "edges" in spec:
        if set(spec) != {"edges"}:
            raise QueryError(f"bins for {column}: give either edges or lo, hi, n (and scale), not both")
        return Bins(spec["edges"])
    try:
        return Bins.spaced(spec["lo"], spec["hi"], spec["n"], scale=spec.get("scale", "log"))
    except KeyError as exc:
        raise QueryError(f"bins for {column} lack {exc.args[0]!r}; give lo, hi and n (or edges)") from None


def read_toml(path: Path, *, what: str, hint: str = "") -> dict[str, Any]:
    """The TOML document at ``path``; a missing file is InputNotFound; a file over
    :data:`~dplogs.privacy.limits.MAX_SPEC_BYTES`, bad TOML or nesting too deep for the parser is
    a QueryError."""
    if not path.is_file():
        raise InputNotFound(f"{what} {path} not found{hint}")
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise QueryError(f"{what} {path} has {size:,} bytes, more than the limit of {MAX_SPEC_BYTES:,}")
    try:
        return tomllib.loads(path.read_text())
    except ValueError as exc:  # TOMLDecodeError, UnicodeDecodeError, an integer of thousands of digits
        raise QueryError(f"{what} {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise QueryError(f"{what} {path} nests arrays or tables too deeply to read") from None
    except OSError as exc:
        raise InputNotFound(f"{what} {path} cannot be read: {exc.strerror}") from None


def table(doc: dict[str, Any], name: str, *, where: str) -> dict[str, Any]:
    """Entry ``name`` of ``doc`` (a table, empty when absent), or a QueryError saying it is not one."""
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise QueryError(f"{where}: [{name}] must be a table, got {value!r}")
    return value


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
    if not isinstance(doc.get("logs", ""), str):
        raise QueryError(f"{path}: `logs` must be a string saying which logs the query reads")
    privacy = table(doc, "privacy", where=str(path))
    bad = set(privacy) - _PRIVACY
    if bad:
        raise QueryError(f"{path}: unknown [privacy] entries {sorted(bad)}; allowed: {', '.join(sorted(_PRIVACY))}")
    window = table(doc, "window", where=str(path))
    bad = set(window) - {"start", "end"}
    if bad:
        raise QueryError(f"{path}: unknown [window] entries {sorted(bad)}; allowed: start, end")
    try:
        clamps = {}
        for c, v in table(doc, "clamp", where=str(path)).items():
            if not isinstance(v, list) or len(v) != 2:
                raise QueryError(f"[clamp] entries must be [lo, hi] pairs, got {c} = {v!r}")
            clamps[c] = Clamp(lo=v[0], hi=v[1])
        declared = {}
        for c, v in table(doc, "keys", where=str(path)).items():
            if not isinstance(v, list):
                raise QueryError(f"[keys] entries must be lists of values, got {c} = {v!r}")
            declared[c] = tuple(v)
        bins = {c: parse_bins(v, column=c) for c, v in table(doc, "bins", where=str(path)).items()}
        formats = check_format_names(doc["formats"]) if "formats" in doc else ()
        query = parse_sql(doc["sql"], unit=unit)
        return query.with_options(
            name=doc["name"], text=doc["sql"].strip(), logs=doc.get("logs", "").strip(), formats=formats, clamps=clamps,
            declared=declared, bins=bins,
            start=window.get("start"), end=window.get("end"), **privacy,
        )
    except QueryError as exc:  # PrivacyParameterError too: both name the file
        raise type(exc)(f"{path}: {exc}") from None
