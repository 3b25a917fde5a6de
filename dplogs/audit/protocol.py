"""Ledger-protocol watcher: every noise draw must happen under a durably reserved ledger entry.

:func:`watch_draws` instruments the two gates every draw in :mod:`dplogs.privacy` passes —
:meth:`Charge.consume` (accounting) and the OpenDP measurement factories named ``_measurement``
(the sampling itself) — and records, for each sample drawn, which charge was consumed last and
what a fresh read of the ledger file says about that charge's entry at that instant. A release
path keeps the protocol iff every draw is :attr:`Draw.ok`: its charge has a ledger entry whose
status is ``reserved``. Noise drawn before the reservation (or under an unledgered
:meth:`Charge.for_audit`, or straight from a sampler) shows up as a draw that is not ``ok``.

>>> import pathlib, tempfile
>>> with watch_draws(pathlib.Path(tempfile.mkdtemp()) / "ledger.sqlite") as draws:
...     pass
>>> draws
[]
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dplogs.privacy.charge import Charge

# module -> (attribute, kind): a "factory" returns a measurement whose call draws; a "sampler" draws
_GATES = {
    "dplogs.privacy.mechanisms": (("_measurement", "factory"),),
    "dplogs.privacy.dpsgd": (("_measurement", "factory"),),
    "dplogs.privacy.selection": (("_measurement", "factory"),),
    "dplogs.privacy.sampler": (("discrete_laplace", "sampler"), ("discrete_gaussian", "sampler")),
}


@dataclass(frozen=True)
class Draw:
    """Public: one call of an OpenDP sampler, with the ledger state of the charge behind it."""

    sampler: str
    entry_id: str | None
    status: str | None

    @property
    def ok(self) -> bool:
        return self.entry_id is not None and self.status == "reserved"


def _status(ledger_path: Path, entry_id: str | None) -> str | None:
    if entry_id is None or not ledger_path.exists():
        return None
    from dplogs.privacy.ledger import Ledger  # a fresh connection: what is durable right now

    ledger = Ledger.open(ledger_path)
    try:
        for e in ledger.history():
            if e.id == entry_id:
                return e.status
        return None
    finally:
        ledger.close()


class _Watched:
    def __init__(self, inner: Any, name: str, on_draw) -> None:
        self._inner, self._name, self._on_draw = inner, name, on_draw

    def __call__(self, arg: Any) -> Any:
        self._on_draw(self._name)
        return self._inner(arg)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)


@contextmanager
def watch_draws(ledger_path: str | Path) -> Iterator[list[Draw]]:
    """Record every noise draw made inside the block (see the module docstring)."""
    path = Path(ledger_path)
    draws: list[Draw] = []
    last: list[Charge | None] = [None]
    original_consume = Charge.consume

    def consume(self: Charge, loss: Any) -> None:
        original_consume(self, loss)
        last[0] = self

    def on_draw(name: str) -> None:
        charge = last[0]
        entry = None if charge is None else charge.entry_id
        draws.append(Draw(sampler=name, entry_id=entry, status=_status(path, entry)))

    patched: list[tuple[Any, str, Any]] = []
    for modname, gates in _GATES.items():
        mod = sys.modules.get(modname) or _try_import(modname)
        for attr, kind in gates:
            original = getattr(mod, attr, None) if mod is not None else None
            if original is None:
                continue
            name = f"{modname}.{attr}"
            if kind == "factory":
                def wrapped(*args: Any, _f=original, _n=name, **kw: Any) -> _Watched:
                    return _Watched(_f(*args, **kw), _n, on_draw)
            else:
                def wrapped(*args: Any, _f=original, _n=name, **kw: Any) -> Any:
                    on_draw(_n)
                    return _f(*args, **kw)
            patched.append((mod, attr, original))
            setattr(mod, attr, wrapped)
    Charge.consume = consume  # type: ignore[method-assign]
    try:
        yield draws
    finally:
        Charge.consume = original_consume  # type: ignore[method-assign]
        for mod, attr, original in patched:
            setattr(mod, attr, original)


def _try_import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
