"""Test-only switches. Nothing in the package calls these; tests and the auditor do.

:func:`exact_mode` turns noise off so tests can compare the pre-noise semantics of a release with
a reference engine's ``GROUP BY``. The loss is still charged, so the ledger protocol is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dplogs.privacy import mechanisms


@contextmanager
def exact_mode() -> Iterator[None]:
    token = mechanisms._EXACT_MODE.set(True)
    try:
        yield
    finally:
        mechanisms._EXACT_MODE.reset(token)


def in_exact_mode() -> bool:
    """Whether noise is off (test-only): post-processing that reacts to noise (suppressing a
    ratio too noisy to read) then stands aside, so exact tests see the pre-noise semantics."""
    return mechanisms._EXACT_MODE.get()
