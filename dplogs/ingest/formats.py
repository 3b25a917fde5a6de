"""Imports every format module so that :data:`dplogs.ingest.base.REGISTRY` is complete.

Modules are listed by name; one not present in this installation is left out (formats are added
module by module), but a present module that fails to import is an error, never hidden.
"""

from __future__ import annotations

import importlib
import importlib.util

from dplogs.ingest.base import REGISTRY, LogFormat

FORMAT_MODULES = ("syslog", "access", "cef", "jsonl", "windows", "zeek", "cloudtrail", "tabular", "sentinel")

for _module in FORMAT_MODULES:
    if importlib.util.find_spec(f"dplogs.ingest.{_module}") is not None:
        importlib.import_module(f"dplogs.ingest.{_module}")


def registered() -> dict[str, LogFormat]:
    """The registry after every format module was imported.

    >>> "syslog" in registered()
    True
    """
    return REGISTRY
