"""``dplogs ingest``: parse logs into a store and print a count-only summary to stderr."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from dplogs.cli.examples import examples
from dplogs.errors import UsageError
from dplogs.escape import visible
from dplogs.ingest.base import IngestOptions
from dplogs.ingest.formats import registered
from dplogs.ingest.ingest import IngestSummary, TooManyErrors
from dplogs.ingest.ingest import ingest as run_ingest
from dplogs.ingest.store import BUDGET_WINDOWS, Store, removed_if_nothing_stored

_FORMATS = registered()
_FORMAT_HELP = "Input format; auto-detected from content when omitted. One of: " + "; ".join(
    f"{name} ({fmt.description})" for name, fmt in sorted(_FORMATS.items())
) + "."


def _parse_map(pairs: tuple[str, ...]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        src, sep, dst = pair.partition("=")
        if not sep or not src or not dst:
            raise UsageError(f"--map {pair!r} is not SRC=ECS; write it like --map src_ip=source.ip")
        mapping[src] = dst
    return mapping


def _range(option: str, value: str, parse, example: str, unit: str = "") -> tuple:
    """``START:END`` of ``option`` as ``(parse(START), parse(END))``, else a usage error naming an example."""
    start, sep, end = value.partition(":")
    try:
        if not sep:
            raise ValueError
        return parse(start), parse(end)
    except ValueError:
        raise UsageError(f"{option} {value!r} is not START:END{unit}; write it like {option} {example}") from None


def _parse_time_range(value: str) -> tuple[dt.datetime, dt.datetime]:
    return _range("--time-range", value, lambda t: dt.datetime.fromisoformat(t).replace(tzinfo=dt.UTC),
                  "2000-01-01:2030-01-01")


def _parse_undated(value: str | None) -> dt.datetime | None:
    """``--undated-time`` as a zoned time (UTC when it names no zone)."""
    if value is None:
        return None
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--undated-time {value!r} is not an ISO 8601 time; write it like --undated-time "
                         "2024-03-12T00:00:00Z") from None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)


def _parse_covers(value: str | None) -> tuple[dt.date, dt.date] | None:
    """``--covers START:END`` (END excluded) as the days ``[START, END - 1]``."""
    if value is None:
        return None
    first, after = _range("--covers", value, dt.date.fromisoformat, "2024-03-11:2024-03-12", " (days, END excluded)")
    if not first < after:
        raise UsageError(f"--covers {value!r} covers no day: END must come after START (END is excluded)")
    return first, after - dt.timedelta(days=1)


def shown(text: str) -> str:
    """``text`` (a path, an error) safe to print through rich: markup such as ``[/]`` escaped and
    control characters made visible, since file names are not trusted."""
    return escape("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))


def summary_console() -> Console:
    """stderr, as wide as the terminal; on a pipe or file wide enough that no table is cut."""
    return Console(stderr=True, width=None if sys.stderr.isatty() else 200)


class _Bars:
    """rich progress bars per input on stderr: bytes (as stored), records, rate, ETA."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TextColumn("{task.fields[records]:,} records"), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True)
        self._task: TaskID | None = None
        self._records = 0

    def __enter__(self) -> _Bars:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def begin(self, name: str, total_bytes: int) -> None:
        self._records = 0
        self._task = self._progress.add_task(shown(name), total=total_bytes or None, records=0)

    def update(self, bytes_done: int, records: int) -> None:
        self._records += records
        if self._task is not None:
            self._progress.update(self._task, completed=bytes_done, records=self._records)

    def end(self) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None


def render_summary(summary: IngestSummary, console: Console) -> None:
    """Counts per format and per quarantine reason; never raw log lines."""
    table = Table(title=f"ingest run {summary.run_id} → {shown(summary.store)}", title_justify="left")
    for col in ("format", "files", "parsed", "written", "quarantined", "skipped", "dup rows", "dup files"):
        # headers are never cut short: a narrow terminal wraps the table instead
        table.add_column(col, justify="left" if col == "format" else "right", min_width=len(col), no_wrap=True)
    for fmt, c in sorted(summary.by_format().items()):
        table.add_row(fmt if fmt != "-" else "(unrecognised)", *(str(c.get(k, 0)) for k in ("files", "parsed")),
                      str(c.get("parsed", 0) - c.get("duplicate_rows", 0)),
                      *(str(c.get(k, 0)) for k in ("quarantined", "skipped", "duplicate_rows", "duplicate_files")))
    console.print(table)
    if summary.reasons:
        reasons = Table(title="quarantined records by reason", title_justify="left")
        reasons.add_column("reason")
        reasons.add_column("records", justify="right")
        for reason, count in summary.reasons.most_common():
            reasons.add_row(Text(visible(reason)), str(count))  # plain text: never rich markup
        console.print(reasons)
    for f in summary.files:
        if f.problem:
            console.print(f"[yellow]warning[/]: {shown(f.name)}: {shown(f.problem)}")
    for w in summary.warnings:
        console.print(f"[yellow]warning[/]: {shown(w)}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=examples("ingest"))
@click.argument("paths", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("--store", "store_path", required=True, type=click.Path(file_okay=False),
              help="Store directory; created (with its manifest) when it does not exist, and removed "
                   "again when that first run fails having stored nothing.")
@click.option("--format", "fmt", type=click.Choice(sorted(_FORMATS)), default=None, help=_FORMAT_HELP)
@click.option("--year", type=int, default=None,
              help="Year of RFC 3164 syslog timestamps, which carry none. Default: the current year, "
                   "minus one for dates more than a day in the future.")
@click.option("--tz", default="UTC", show_default=True,
              help="IANA time zone of timestamps without one (RFC 3164 syslog, IIS, CEF rt).")
@click.option("--dataset", default=None,
              help="Dataset name recorded in a new store's manifest (default: the store directory "
                   "name). Events keep their per-source event.dataset (system.auth, web.access...).")
@click.option("--privacy-unit", default=None, metavar="FIELD[,FIELD...]",
              help="Identity field(s) naming the person-like entity whose events DP protects together: "
                   "user.name (default), source.ip or host.name, or a fallback chain such as "
                   "user.name,host.name (a row's unit is the first non-null field, namespaced by "
                   "field). Fixed when the store is created.")
@click.option("--unattributed", type=click.Choice(["shared", "per-row"]), default=None,
              help="Rows with no field of the unit: 'shared' (default) makes them ONE unit, bounded "
                   "like any other; 'per-row' makes each its own unit (opt-in, disclosed: heavy "
                   "activity without identity then counts in full). Fixed when the store is created.")
@click.option("--budget-window", type=click.Choice(BUDGET_WINDOWS), default=None,
              help="Calendar window per which the privacy budget is accounted (default month). "
                   "Fixed when the store is created.")
@click.option("--map", "maps", multiple=True, metavar="SRC=ECS",
              help="Map a source column to an ECS field for generic JSON, CSV and Parquet input; repeatable.")
@click.option("--max-errors", type=click.IntRange(min=0), default=None,
              help="Exit with status 65 when more than N records are quarantined (everything is "
                   "still written first).")
@click.option("--time-range", default="1970-01-01:2100-01-01", show_default=True, metavar="START:END",
              help="Plausible event times (UTC, END excluded); records stamped outside are quarantined.")
@click.option("--undated-time", "undated_time", default=None, metavar="TIME",
              help="Store records that carry no time (CEF without rt/end/start or a syslog header, JSON without a "
                   "time field) at this ISO 8601 time, e.g. when the feed was exported; by default they are "
                   "quarantined as 'no timestamp'. Their budget window is this time's.")
@click.option("--covers", default=None, metavar="START:END",
              help="Declare the UTC days these inputs cover (END excluded), recorded as their coverage "
                   "instead of the days of their first and last event, so what is refused for lack of "
                   "logs depends on no one's events (docs/privacy.md); e.g. a nightly job's --covers "
                   "2024-03-11:2024-03-12. A declared day without events counts as covered; an input "
                   "ingested before gets the declaration too (and writes nothing).")
@click.option("--max-line-bytes", type=click.IntRange(min=1), default=16 * 1024 * 1024, show_default=True,
              help="Longest accepted line; a longer one stops the run with status 65 (bounds memory).")
@click.option("--max-gzip-ratio", type=click.FloatRange(min=1), default=200, show_default=True,
              help="Gzip or Parquet input expanding more than this many times (past 1 MiB) is refused "
                   "as a decompression bomb, status 65.")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress display (there is none anyway when stderr is not a terminal).")
def ingest(paths, store_path, fmt, year, tz, dataset, privacy_unit, unattributed, budget_window, maps, max_errors, time_range,
           undated_time, covers, max_line_bytes, max_gzip_ratio, quiet) -> None:
    """Parse log files into an ECS-normalised Parquet store.

    PATHS are files, directories (read recursively), pipes or - for stdin; gzip is detected from content.
    Lines that cannot be parsed go to the store's quarantine with a reason. Re-ingesting the same
    file, also grown, renamed or compressed, adds nothing; a killed or failed run (disk full: status
    74) is completed exactly by running it again. Symbolic links and dplogs stores inside
    directories are skipped. On a terminal, progress bars show each input's bytes, records, rate
    and time left. The summary on stderr shows counts only, never log lines; records without a
    determinable time are quarantined ("no timestamp") and counted there; "skipped" counts blank,
    comment and header lines (Zeek #fields, IIS #Fields), which are not events; "dup rows" and
    "dup files" were stored before; an rsyslog "message repeated N times: [...]" line, and a
    sysklogd/BSD "last message repeated N times" line (of the line before it), is parsed as N
    events (at most 200). See what was stored with `dplogs inspect`.
    """
    try:
        options = IngestOptions(year=year, tz=tz, field_map=_parse_map(maps), time_range=_parse_time_range(time_range),
                                undated_time=_parse_undated(undated_time), covers=_parse_covers(covers),
                                max_line_bytes=max_line_bytes,
                                max_gzip_ratio=max_gzip_ratio)
    except ValueError as exc:
        raise UsageError(f"{exc}; fix the option value") from exc
    _check_tz(tz)
    console = summary_console()
    bars = _Bars() if sys.stderr.isatty() and not quiet else None
    try:
        with removed_if_nothing_stored(store_path), bars or contextlib.nullcontext():
            store = Store.init(store_path, dataset=dataset, privacy_unit=privacy_unit, budget_window=budget_window,
                               unattributed=unattributed)
            summary = run_ingest(list(paths), store, format=fmt, options=options, max_errors=max_errors, progress=bars)
    except TooManyErrors as exc:
        render_summary(exc.summary, console)
        raise
    render_summary(summary, console)


def _check_tz(tz: str) -> None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise UsageError(f"--tz {tz!r} is not an IANA time zone; pass e.g. --tz UTC or --tz Europe/Berlin") from exc
