"""Where each log format lives: naming a format imports its module only, and :func:`registered`
imports them all so that :data:`dplogs.ingest.base.REGISTRY` is complete (auto-detection, the CLI).

Modules are listed by name; one not present in this installation is left out (formats are added
module by module), but a present module that fails to import is an error, never hidden.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import reprlib

from dplogs.errors import QueryError
from dplogs.ingest.base import REGISTRY, LogFormat

MODULE_OF = {
    "syslog": "syslog", "auditd": "auditd", "access": "access", "iis": "access", "cef": "cef", "leef": "cef", "jsonl": "jsonl",
    "windows": "windows", "evtx": "windows", "zeek": "zeek", "cloudtrail": "cloudtrail", "csv": "tabular",
    "parquet": "tabular", "sentinel": "sentinel", "weberror": "weberror",
}
"""Format name -> the module registering it (``tests/ingest/test_formats.py`` checks it against the
registry). An ingest with ``--format`` imports just that one: importing every format was ~25 ms
of CPU in each run."""


CARRY_ANY = frozenset({"jsonl", "csv", "parquet", "sentinel", "cef", "leef"})
"""Formats whose inputs may hold events of any kind (ECS JSON, tables, SIEM exports, CEF/LEEF from
any vendor): coverage for a query that names the formats it reads always counts them."""


def check_format_names(names: object) -> tuple[str, ...]:
    """``names`` as a tuple of known format names (a query file's ``formats``), else a
    :class:`~dplogs.errors.QueryError` naming the known ones."""
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise QueryError(f"`formats` must be a non-empty list of format names, got {reprlib.repr(names)}")
    unknown = sorted(set(names) - set(MODULE_OF))
    if unknown:  # a few named, not a huge list repeated (found by faults4: 200,000 names, 3 MB of message)
        more = f" and {len(unknown) - 5:,} more ({len(unknown):,} in all)" if len(unknown) > 5 else ""
        raise QueryError(f"unknown format(s) {', '.join(map(reprlib.repr, unknown[:5]))}{more} in `formats`; known: "
                         f"{', '.join(sorted(MODULE_OF))}")
    return tuple(dict.fromkeys(names))


def _load(module: str) -> None:
    if importlib.util.find_spec(f"dplogs.ingest.{module}") is not None:
        importlib.import_module(f"dplogs.ingest.{module}")


def named(name: str) -> LogFormat | None:
    """The format called ``name`` (importing its module), or None when there is none."""
    if name not in REGISTRY and name in MODULE_OF:
        _load(MODULE_OF[name])
    return REGISTRY.get(name)


@functools.cache
def registered() -> dict[str, LogFormat]:
    """The registry after every format module was imported.

    >>> "syslog" in registered()
    True
    """
    for module in dict.fromkeys(MODULE_OF.values()):
        _load(module)
    return REGISTRY
