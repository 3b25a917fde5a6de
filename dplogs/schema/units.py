"""The privacy-unit rule: which identity field names a row's unit (the one place it is defined).

A store's unit is a **fallback chain** of identity fields chosen at ingest
(``--privacy-unit user.name,host.name``): a row's unit is the FIRST non-null field of the chain,
namespaced by that field, so ``x`` as a user and ``x`` as a host are two units. Rows with no
identity at all are **unattributed**; by default they form ONE shared unit, bounded like any other
(``shared``). Each such row being its own unit (``per-row``) is an explicit, disclosed opt-in:
it counts unbounded heavy activity without identity (89% of Windows events have no user name)
in full, which the shared unit does not.

Representation (:meth:`UnitRule.expr`): a single-field ``per-row`` rule is the plain column (null:
each row its own unit, the backends' rule for null units). A single-field ``shared`` rule is the
column as Binary with the shared unit :data:`SHARED_UNIT` = ``b"\\xff"``: a String is valid UTF-8
and can never be that byte, so no value merges with it, and the backends keep their fast path
(grouping on the column's 64-bit codes costs the same as on the plain column). A chain is a Struct
``{field: UInt8, value: String}``: ``field`` is the chain index of the field the value came from,
and the shared unit is ``{len(fields), ""}``, an index no field has; a ``per-row`` chain leaves rows
without identity null. Lives in ``schema`` because ingest
(the manifest), the engine, the backends' callers, the auditor and the detector all apply it.

>>> import polars as pl
>>> rule = UnitRule.parse("user.name,host.name")
>>> lf = pl.LazyFrame({"user.name": ["x", None, None], "host.name": ["h", "x", None]})
>>> lf.select(rule.expr().alias("u")).collect()["u"].to_list()
[{'field': 0, 'value': 'x'}, {'field': 1, 'value': 'x'}, {'field': 2, 'value': ''}]
>>> lf.select(UnitRule.parse("user.name").expr().alias("u")).collect()["u"].to_list()
[b'x', b'\\xff', b'\\xff']
>>> rule.describe()
'the first non-null of user.name, host.name (namespaced by field); rows with none of them form one shared unit'
>>> UnitRule.parse("user.name,user.name")
Traceback (most recent call last):
...
dplogs.errors.UsageError: --privacy-unit names user.name twice; give each identity field once, e.g. user.name,host.name
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from dplogs.errors import UsageError
from dplogs.schema.ecs import DEFAULT_PRIVACY_UNIT, IDENTITY_FIELDS

SHARED = "shared"
PER_ROW = "per-row"
UNATTRIBUTED = (SHARED, PER_ROW)
UNIT_DTYPE = pl.Struct({"field": pl.UInt8, "value": pl.String})
"""The unit value of a chain (two or more fields)."""
SHARED_UNIT = b"\xff"
"""The shared unattributed unit of a single-field rule (never valid UTF-8, so never a value)."""


@dataclass(frozen=True)
class UnitRule:
    """Public: a store's privacy-unit rule, ``fields`` in fallback order and what rows without any
    of them are (``shared``: one unit; ``per-row``: each its own unit)."""

    fields: tuple[str, ...] = (DEFAULT_PRIVACY_UNIT,)
    unattributed: str = SHARED

    def __post_init__(self) -> None:
        fields = tuple(self.fields)
        object.__setattr__(self, "fields", fields)
        if not fields:
            raise UsageError(f"--privacy-unit is empty; give identity fields in fallback order, from: {', '.join(IDENTITY_FIELDS)}")
        for f in fields:
            if f not in IDENTITY_FIELDS:
                raise UsageError(
                    f"privacy unit {f!r} is not a person-like store column; pass --privacy-unit with one or more "
                    f"(comma-separated, in fallback order) of: {', '.join(sorted(IDENTITY_FIELDS))}"
                )
            if fields.count(f) > 1:
                raise UsageError(f"--privacy-unit names {f} twice; give each identity field once, e.g. user.name,host.name")
        if self.unattributed not in UNATTRIBUTED:
            raise UsageError(f"--unattributed must be shared or per-row, got {self.unattributed!r}")

    @classmethod
    def parse(cls, text: str | Sequence[str] | UnitRule, unattributed: str = SHARED) -> UnitRule:
        """A rule from the CLI / manifest spelling ``a,b`` (or a sequence of fields)."""
        if isinstance(text, UnitRule):
            return text
        if not isinstance(text, str) and not (isinstance(text, Sequence) and all(isinstance(f, str) for f in text)):
            raise UsageError(f"--privacy-unit must be comma-separated field names, got {text!r}")
        fields = [f.strip() for f in text.split(",")] if isinstance(text, str) else list(text)
        if any(not f for f in fields):
            raise UsageError(f"--privacy-unit {text!r} has an empty field; give e.g. user.name,host.name")
        return cls(tuple(fields), unattributed)

    @property
    def label(self) -> str:
        """The CLI and manifest spelling, e.g. ``user.name,host.name``."""
        return ",".join(self.fields)

    def __str__(self) -> str:
        return self.label

    @property
    def plain(self) -> bool:
        """Whether the unit is the bare column (single field, rows without it each their own unit)."""
        return len(self.fields) == 1 and self.unattributed == PER_ROW

    def expr(self) -> pl.Expr:
        """The unit of each row (see the module docstring). A function of the row alone."""
        if self.plain:
            return pl.col(self.fields[0])
        if len(self.fields) == 1:
            return pl.col(self.fields[0]).cast(pl.Binary).fill_null(pl.lit(SHARED_UNIT, pl.Binary))
        index = pl.lit(len(self.fields), pl.UInt8)  # no field: the shared unit's index
        for i in reversed(range(len(self.fields))):
            index = pl.when(pl.col(self.fields[i]).is_not_null()).then(pl.lit(i, pl.UInt8)).otherwise(index)
        value = pl.coalesce(*(pl.col(f) for f in self.fields))
        unit = pl.struct(index.alias("field"), value.fill_null("").alias("value"))
        if self.unattributed == PER_ROW:
            return pl.when(value.is_not_null()).then(unit)
        return unit

    def source(self, field: str) -> pl.Expr:
        """True on rows whose unit came from ``field`` (false when it is not in the chain)."""
        if field not in self.fields:
            return pl.lit(False)
        i = self.fields.index(field)
        came = pl.col(field).is_not_null()
        for earlier in self.fields[:i]:
            came &= pl.col(earlier).is_null()
        return came

    def value(self, field: str, text: str) -> Any:
        """The unit value of ``text`` taken from ``field`` (for the auditor's ``--unit``)."""
        if field not in self.fields:
            raise UsageError(f"{field} is not in this store's privacy-unit chain {self.label}")
        if self.plain:
            return text
        return text.encode() if len(self.fields) == 1 else {"field": self.fields.index(field), "value": text}

    @property
    def shared_value(self) -> Any:
        """The shared unattributed unit's value (None under ``per-row``: no such unit)."""
        if self.unattributed == PER_ROW:
            return None
        return SHARED_UNIT if len(self.fields) == 1 else {"field": len(self.fields), "value": ""}

    def matches(self, value: Any) -> pl.Expr:
        """True on the rows whose unit is ``value`` (never on a null unit)."""
        if self.plain:
            return (pl.col(self.fields[0]) == pl.lit(value)).fill_null(False)
        dtype = pl.Binary if len(self.fields) == 1 else UNIT_DTYPE
        return (self.expr() == pl.lit(value, dtype=dtype)).fill_null(False)

    def text(self, value: Any) -> str | None:
        """A unit value as text for people inside the trust boundary (``host.name=x``; the shared
        unit as ``(no identity: shared unit)``); escape it before showing it, as any log text."""
        if isinstance(value, bytes):
            return "(no identity: shared unit)" if value == SHARED_UNIT else value.decode()
        if not isinstance(value, dict):
            return value
        i = value.get("field")
        if isinstance(i, int) and i < len(self.fields):
            return value.get("value") if len(self.fields) == 1 else f"{self.fields[i]}={value.get('value')}"
        return "(no identity: shared unit)" if i == len(self.fields) else "(no identity: one row)"

    def describe(self) -> str:
        """The rule in words (manifest, ``explain``, releases, reports)."""
        if len(self.fields) == 1:
            what = self.fields[0]
        else:
            what = f"the first non-null of {', '.join(self.fields)} (namespaced by field)"
        rest = ("rows with none of them form one shared unit" if len(self.fields) > 1 else f"rows without {what} form one shared unit") \
            if self.unattributed == SHARED else \
            ("each row with none of them is its own unit (per-row, opted in at ingest)" if len(self.fields) > 1
             else f"each row without {what} is its own unit (per-row, opted in at ingest)")
        return f"{what}; {rest}"

    def to_json(self) -> dict[str, Any]:
        return {"fields": list(self.fields), "unattributed": self.unattributed, "rule": self.describe()}
