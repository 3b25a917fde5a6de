"""Shared plumbing of the text formats (syslog, access, cef): turn a frame of lines plus
vectorised parse columns into a :class:`ParsedChunk`, keeping every line accounted for."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from dplogs.ingest.base import QUARANTINE_SCHEMA, IngestOptions, ParsedChunk, event_hash, split_out_of_range
from dplogs.schema import conform


def run(query: pl.LazyFrame) -> pl.DataFrame:
    """Execute a chain of steps over one block as a single query, planned the way polars plans an
    eager call (in memory, no optimiser passes). One query per chain instead of one per step
    saves ~0.1 ms each; the default lazy collect (optimiser, streaming engine) would cost more
    than it saves on blocks of this size."""
    return query.collect(engine="in-memory", optimizations=pl.QueryOptFlags.none())


def blank() -> pl.Expr:
    """Lines holding only whitespace: skipped, not errors."""
    return pl.col("text").str.strip_chars().str.len_bytes() == 0


def finish(
    frame: pl.DataFrame,
    *,
    source: str,
    options: IngestOptions,
    reason: pl.Expr,
    fields: Iterable[pl.Expr],
    dataset: pl.Expr | str,
    module: pl.Expr | str,
    skip: pl.Expr | None = None,
    blank_lines: bool = True,
) -> ParsedChunk:
    """Split ``frame`` (LINES_SCHEMA plus parse columns) into events and quarantine.

    ``reason`` is null for a parsed line and the quarantine reason otherwise; ``skip`` marks lines
    dropped without error, and so are blank lines (``blank_lines=False``: the caller knows there
    are none). ``fields`` are ECS columns, aliased to their ECS names, computed on the parsed
    lines only.
    """
    skip_expr = pl.lit(False) if skip is None else skip.fill_null(False)
    if blank_lines:
        skip_expr = blank() | skip_expr
    frame = frame.with_columns(_skip=skip_expr, _reason=reason)
    quarantine = frame.lazy().filter(~pl.col("_skip") & pl.col("_reason").is_not_null()).select(
        source=pl.lit(source, pl.String),
        line=pl.col("line"),
        reason=pl.col("_reason"),
        text=pl.col("text"),
    ).cast(QUARANTINE_SCHEMA).pipe(run)
    # Usually every line parses: then filtering (a copy of every column) is skipped.
    clean = quarantine.is_empty() and not frame.get_column("_skip").any()
    ok = frame if clean else frame.filter(~pl.col("_skip") & pl.col("_reason").is_null())
    dataset_expr = pl.lit(options.dataset) if options.dataset else (pl.lit(dataset) if isinstance(dataset, str) else dataset)
    events = conform(ok.lazy().select(
        *fields,
        (pl.lit(module) if isinstance(module, str) else module).alias("event.module"),
        dataset_expr.alias("event.dataset"),
        pl.lit(source).alias("log.file.path"),
        pl.col("offset").alias("log.offset"),
        event_hash(pl.col("text"), pl.col("offset"), offsets_complete=not ok.get_column("offset").has_nulls()).alias("event.hash"),
    )).pipe(run)
    skipped = frame.height - ok.height - quarantine.height
    events, late = split_out_of_range(events, ok, options)
    if late.height:
        quarantine = pl.concat([quarantine, late.select(source=pl.lit(source, pl.String), line="line", reason="reason",
                                                        text="text")]).sort("line")
    return ParsedChunk(events=events, quarantine=quarantine, skipped=skipped)


def localize(naive: pl.Expr, tz: str) -> pl.Expr:
    """A zone-less datetime read as local time in ``tz``, converted to UTC (ambiguous or
    non-existent local times at DST changes become the earliest valid instant / null)."""
    return naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")


def nonempty(expr: pl.Expr) -> pl.Expr:
    """Null for empty strings and the conventional ``-`` placeholder."""
    return expr.replace(["", "-"], None)  # one reference: under when/then ``expr`` ran twice
