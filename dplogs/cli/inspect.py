"""``dplogs inspect``: what a store holds (coverage, events, quarantined lines), for its operator.

Raw data: inside the trust boundary only, never a DP release; the command says so on stderr."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
import polars as pl
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dplogs.cli.examples import examples
from dplogs.engine.sql import parse_where
from dplogs.errors import UsageError
from dplogs.escape import visible
from dplogs.ingest.inspect import coverage, quarantined, stored_events
from dplogs.ingest.store import Store
from dplogs.schema import FIELDS

_CELL_CHARS = 2000  # shown per table cell
_MAX_HEAD = 2**31 - 1  # polars' head takes no more (a larger N was an OverflowError, exit 70)
_NOTICE = ("dplogs inspect shows raw stored events and log lines: inside the trust boundary only. "
           "This is not a differentially private release; do not share its output.")


def _cell(value) -> str:
    """A value as inert text (log text is untrusted: control characters made visible), cut after
    _CELL_CHARS characters: a table folding one 10 MB line took 9 minutes and 2.3 GB."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if len(text) <= _CELL_CHARS:
        return visible(text)
    return visible(text[:_CELL_CHARS]) + f"… ({len(text) - _CELL_CHARS:,} more characters; --format json shows all)"


def _table(frame: pl.DataFrame, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name in frame.columns:
        table.add_column(Text(name), overflow="fold")
    for row in frame.iter_rows():
        table.add_row(*(Text(_cell(v)) for v in row))  # Text: never rich markup
    return table


_MIN_COLUMN = 16
"""Narrowest readable column: a wider event table is shown one event at a time, a field a line
(23 columns of a Windows event in 200 characters were 5 letters wide, a timestamp over 9 lines)."""


def _records(frame: pl.DataFrame, title: str) -> list[Table]:
    """``frame`` as one field/value table per row, leaving out the fields the row does not set."""
    tables = []
    for i, row in enumerate(frame.iter_rows(named=True), start=1):
        table = Table(title=f"{title}: {i} of {frame.height}", title_justify="left", show_header=False)
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")
        for name, value in row.items():
            if value is not None and value != []:
                table.add_row(Text(name), Text(_cell(value)))
        tables.append(table)
    return tables


def _json_rows(frame: pl.DataFrame) -> list[dict]:
    return [{k: (v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v) for k, v in row.items()}
            for row in frame.iter_rows(named=True)]


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=examples("inspect"))
@click.option("--store", "store_path", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Store directory.")
@click.option("--head", type=click.IntRange(min=1, max=_MAX_HEAD), default=None,
              help="Show the first N stored events (by time) instead of the coverage; events setting many "
                   "fields are shown one at a time, a field a line (--columns picks a few for one table).")
@click.option("--where", default=None, metavar="CONDITION",
              help="SQL condition on stored columns for --head, e.g. \"event.outcome = 'failure'\" "
                   "(= on event.category/event.type means contains).")
@click.option("--columns", default=None, metavar="A,B,...",
              help="Columns to show with --head (default: those the shown events set).")
@click.option("--quarantine", "show_quarantine", is_flag=True,
              help="Show quarantined (rejected) lines with their reasons (the first --head N, default 20).")
@click.option("--reason", default=None, help="With --quarantine: only lines of this reason.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format (json: one document on stdout).")
def inspect(store_path: Path, head, where, columns, show_quarantine, reason, fmt) -> None:
    """Show what a store holds: coverage (days, datasets, rows and quarantined lines per day and
    input), stored events (--head/--where) or rejected lines with reasons (--quarantine).

    This reads raw events and raw log lines. It is an operator's tool inside the trust boundary,
    not a differentially private release: nothing is charged, nothing is noised, and its output
    must stay where the logs themselves may be. Releases go through `dplogs query`.

    Outside dplogs, read a store with `dplogs.ingest.store.Store.open(S).scan()`, or with plain
    polars: pl.scan_parquet("S/events/**/*.parquet", schema=STORE_SCHEMA, missing_columns="insert",
    extra_columns="ignore", hive_partitioning=False) (files leave out their all-null columns and
    carry dplogs' unit code).
    """
    store = Store.open(store_path)
    click.echo(_NOTICE, err=True)
    if (where or columns) and head is None:
        raise UsageError("--where and --columns apply to stored events: add --head N")
    if reason is not None and not show_quarantine:
        raise UsageError("--reason applies to --quarantine")
    if show_quarantine and (where or columns):
        raise UsageError("--where and --columns apply to stored events, not to --quarantine")
    if show_quarantine:
        frames = {"quarantine": quarantined(store, head=head or 20, reason=reason)}
    elif head is not None:
        chosen = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        if columns is not None and not chosen:
            raise UsageError(f"--columns takes column names separated by commas, got {columns!r}")
        unknown = [c for c in chosen or [] if c not in FIELDS or c == "event.hash"]
        if unknown:
            raise UsageError(f"--columns: not store columns: {', '.join(map(repr, unknown))}")
        condition = parse_where(where).expr() if where else None
        frames = {"events": stored_events(store, where=condition, head=head, columns=chosen)}
    else:
        events, rejected = coverage(store)
        frames = {"events per day, dataset and input": events, "quarantined lines per input and reason": rejected}
    if fmt == "json":
        click.echo(json.dumps({name: _json_rows(frame) for name, frame in frames.items()}, ensure_ascii=True))
        return
    console = Console(width=max(Console().width, 160))  # wide rows fold instead of being cut
    for name, frame in frames.items():
        if name == "events" and frame.height and frame.width * _MIN_COLUMN > console.width:
            for table in _records(frame, name):
                console.print(table)
        else:
            console.print(_table(frame, f"{name} ({frame.height} rows)"))
