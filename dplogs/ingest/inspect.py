"""What a store holds, for the operator who runs it: coverage, stored events, quarantined lines.

These read raw events and raw rejected lines, which stay inside the trust boundary (the store is as
sensitive as the logs it came from). They are operator tools, never releases: nothing here is
differentially private, and their output must not leave the trust boundary.
"""

from __future__ import annotations

import polars as pl

from dplogs.ingest.store import Store
from dplogs.schema import TIMESTAMP


def coverage(store: Store) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events per day, dataset and input (``day``, ``event.dataset``, ``log.file.path``, ``rows``),
    and quarantined lines per input and reason (``source``, ``reason``, ``lines``). Quarantined
    lines have no day: many were rejected because their time could not be read."""
    events = store.scan().group_by(
        pl.col(TIMESTAMP).dt.date().alias("day"), "event.dataset", "log.file.path",
    ).agg(rows=pl.len()).sort("day", "event.dataset", "log.file.path").collect()
    rejected = store.scan_quarantine().group_by("source", "reason").agg(lines=pl.len()) \
        .sort("source", "lines", "reason", descending=[False, True, False]).collect()
    return events, rejected


def stored_events(store: Store, *, where: pl.Expr | None = None, head: int = 20,
                  columns: list[str] | None = None) -> pl.DataFrame:
    """The first ``head`` events (by time) matching ``where``, with ``columns`` (default: the
    columns any of them sets, so the table shows what was parsed)."""
    frame = store.scan()
    if where is not None:
        frame = frame.filter(where)
    rows = frame.sort(TIMESTAMP).head(head).collect().drop("event.hash")
    if columns:
        return rows.select(columns)
    return rows.select(c for c in rows.columns if rows.get_column(c).null_count() < rows.height) if rows.height else rows


def quarantined(store: Store, *, head: int = 20, reason: str | None = None) -> pl.DataFrame:
    """The first ``head`` quarantined lines (``source``, ``line``, ``reason``, ``text``), optionally of
    one reason."""
    frame = store.scan_quarantine()
    if reason is not None:
        frame = frame.filter(pl.col("reason") == reason)
    return frame.select("source", "line", "reason", "text").sort("source", "line").head(head).collect()
