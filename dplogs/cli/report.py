"""``dplogs report``: release a report spec for one period (or catch up on missed ones) and render it."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from dplogs.cli.examples import examples
from dplogs.cli.query import ENGINE_OPTIONS, check_output
from dplogs.engine import Engine
from dplogs.errors import BudgetExhausted, NoLogsOfKind, UsageError
from dplogs.escape import visible
from dplogs.privacy import ledger_pin
from dplogs.privacy.limits import EARLIEST_TIME, LATEST_TIME
from dplogs.report import FORMATS, load_report_spec, render, run_report
from dplogs.report.outputs import check_out_dir, check_same_periods, other_sections, write_atomic, write_outputs, written
from dplogs.report.run import DEFAULT_WAIT_S, ReportRun, catch_up

_DATE = click.DateTime(formats=["%Y-%m-%d"])


def _engine_options(f):
    for option in reversed(ENGINE_OPTIONS):
        f = option(f)
    return f


@click.command(epilog=examples("report"))
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--store", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The store directory (made by `dplogs ingest`).")
@click.option("--date", "day", type=_DATE, default=None,
              help="A day inside the period to report on (default: yesterday in the report's time "
                   "zone — what a nightly job wants).")
@click.option("--tz", default=None, metavar="ZONE",
              help="IANA time zone whose days and hours the report uses (e.g. Europe/Berlin); "
                   "overrides the spec's `tz` (default UTC). Budget windows stay UTC.")
@click.option("--catch-up", "catch_up_", is_flag=True,
              help="Release every period since the last one this report released, up to the last "
                   "period that has ended (yesterday for a daily report), oldest first; needs --out-dir. "
                   "Stops at the first period the budget cannot pay for (exit 77, periods left named).")
@click.option("--since", type=_DATE, default=None,
              help="With --catch-up: start at the period containing this day (a backfill), instead "
                   "of after the last period released.")
@click.option("--until", type=_DATE, default=None,
              help="With --catch-up: release no period that starts after this day.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write NAME-PERIOD.html, .md and .json here atomically, and point NAME-latest.* "
                   "(symbolic links) at the newest period. The ledger's head is pinned here too "
                   "(.dplogs-ledger-pin.json): a store restored from an older backup is refused (74). A period "
                   "whose files there hold another zone's or length's period is refused (64).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Without --out-dir: html (inline SVG charts), md (Markdown) or json (cells + "
                   "privacy metadata; schema dplogs/report/report.schema.json). Default: from the "
                   "--output suffix (.md, .json, .html), else html.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Without --out-dir: write to this file (atomically) instead of stdout.")
@click.option("--wait", type=click.FloatRange(min=0), default=DEFAULT_WAIT_S, show_default=True, metavar="SECONDS",
              help="How long to wait while another run of the same report and period is going; then "
                   "exit 75 (retryable).")
@_engine_options
def report(spec: Path, store: Path, day: dt.datetime | None, tz: str | None, catch_up_: bool,
           since: dt.datetime | None, until: dt.datetime | None, out_dir: Path | None, fmt: str | None,
           output: Path | None, wait: float, backend: str, spark_master: str | None) -> None:
    """Release every query of report SPEC (TOML, e.g. queries/reports/nightly.toml) for one period
    and render it, opening with what stands out.

    Each section is charged to the store's ledger under the idempotency key
    report:NAME:PERIOD:SECTION, so rerunning the same report for the same period re-emits the
    stored releases and spends nothing (safe for cron/systemd/Airflow retries). A section that
    cannot be released (e.g. budget exhausted) is shown as such; the report is still written and
    the command then exits with that section's error code (77 budget exhausted). A bad spec or
    option exits 64 before anything is charged. A second run of the same report and period waits
    for the first (--wait), then replays its releases; past the wait it exits 75 (EX_TEMPFAIL:
    retry later), having charged nothing. Scheduling recipes: docs/scheduling.md.
    """
    if catch_up_ and day is not None:
        raise UsageError("--date names one period; --catch-up finds its periods itself (bound it with --since/--until)")
    if not catch_up_ and (since or until):
        raise UsageError("--since/--until bound a --catch-up; pass --catch-up too (or --date for one period)")
    if out_dir is not None and output is not None:
        raise UsageError("--out-dir writes every format itself; drop --output")
    if output is not None:
        check_output(output, store)
    if catch_up_ and out_dir is None:
        raise UsageError("--catch-up writes one report per period: pass --out-dir DIR")
    for name, value in (("--date", day), ("--since", since), ("--until", until)):
        # a period must fit the queries' time range (found by faults4: --date 9999-12-31 overflowed, exit 70)
        if value is not None and not EARLIEST_TIME.date() <= value.date() < LATEST_TIME.date() - dt.timedelta(days=31):
            raise UsageError(f"{name} {value.date()} is outside the supported range {EARLIEST_TIME.date()} .. "
                             f"{LATEST_TIME.date() - dt.timedelta(days=31)}")
    if since and until and until < since:
        raise UsageError(f"--until {until.date()} is before --since {since.date()}")
    parsed = load_report_spec(spec).with_tz(tz)
    if out_dir is not None:
        check_out_dir(out_dir)
        with Engine.open(store) as engine:  # a whole store restored from a backup since the last run
            ledger_pin.check(engine.ledger, out_dir)
    today = dt.datetime.now(ZoneInfo(parsed.tz)).date()

    if catch_up_:
        assert out_dir is not None
        result = catch_up(parsed, store, today=today, since=since.date() if since else None,
                          until=until.date() if until else None, wait=wait, backend=backend, spark_master=spark_master,
                          written=lambda start: written(parsed, start, out_dir),
                          check=lambda periods: check_same_periods(parsed, periods, out_dir),
                          other_sections=lambda start: bool(other_sections(parsed, start, out_dir)),
                          on_run=lambda run: _done(run, _write_pinned(run, store, out_dir)))
        if result.error is None and result.runs and all(r.inapplicable for r in result.runs):
            raise NoLogsOfKind(  # a misfit, not a gap: as for one period (found by faults4: it exited 0 every night)
                f"none of report {parsed.name!r}'s sections applies to the store's logs in any of the "
                f"{len(result.runs)} periods caught up, so it released nothing and spent nothing: "
                f"{result.runs[-1].first_error}")
        if not result.runs and result.error is None:
            click.echo(f"{parsed.name}: nothing to catch up (every period up to "
                       f"{parsed.last_complete_period(today)} is released)", err=True)
        if result.error is not None:
            left = ", ".join(d.isoformat() for d in result.left)
            click.echo(f"stopped; periods left: {left} — rerun the same command once the cause is fixed "
                       "(released periods replay and spend nothing)", err=True)
            if isinstance(result.error, BudgetExhausted):
                raise BudgetExhausted(f"{result.error} — periods left: {left}")
            raise result.error
        return

    when = day.date() if day else today - dt.timedelta(days=1)
    if out_dir is not None:
        check_same_periods(parsed, [parsed.period_bounds(when)[0]], out_dir)
    run = run_report(parsed, store, day=when, wait=wait, backend=backend, spark_master=spark_master)
    if out_dir is not None:
        _done(run, _write_pinned(run, store, out_dir))
    else:
        text = render(run, fmt or _format_of(output))
        if output:
            write_atomic(output, text)
            _done(run, [output])
        else:
            sys.stdout.write(text)
            _done(run, [])
    if run.first_error is not None:
        sys.exit(run.first_error.exit_code)


def _write_pinned(run: ReportRun, store: Path, out_dir: Path) -> list[Path]:
    """Write the period's files, then pin the ledger's head beside them for the next run to check."""
    paths = write_outputs(run, out_dir)
    with Engine.open(store) as engine:
        ledger_pin.write(engine.ledger, out_dir)
    return paths


def _done(run: ReportRun, paths: list[Path]) -> None:
    where = f" → {', '.join(visible(str(p)) for p in paths)}" if paths else ""
    click.echo(f"{run.spec.name} {run.start} to {run.end} ({run.tz}){where}", err=True)
    for s in run.sections:
        status = "replayed (nothing spent)" if s.release and s.release.privacy.get("replayed") else (
            "released" if s.release else "not applicable: the store holds none of the logs it reads for this period "
            "(nothing spent)" if s.not_applicable
            else f"NOT released: {s.error}")
        click.echo(f"  {visible(s.section.title)}: {visible(status)}", err=True)


def _format_of(output: Path | None) -> str:
    """The format an --output file's suffix names (``-o nightly.md`` writes Markdown), else html."""
    suffix = output.suffix.lower().lstrip(".") if output else ""
    return {"markdown": "md", "htm": "html"}.get(suffix, suffix) if suffix in (*FORMATS, "markdown", "htm") else "html"
