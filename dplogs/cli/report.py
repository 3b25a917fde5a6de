"""``dplogs report``: release a report spec for one period and render it."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from dplogs.cli.query import ENGINE_OPTIONS
from dplogs.escape import visible
from dplogs.report import FORMATS, load_report_spec, render, run_report
from dplogs.report.run import DEFAULT_WAIT_S


def _engine_options(f):
    for option in reversed(ENGINE_OPTIONS):
        f = option(f)
    return f


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--store", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The store directory (made by `dplogs ingest`).")
@click.option("--date", "day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="A day inside the period to report on (default: yesterday, UTC — what a nightly "
                   "job wants).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True,
              help="html (inline SVG charts), md (Markdown) or json (cells + privacy metadata).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of stdout.")
@click.option("--wait", type=click.FloatRange(min=0), default=DEFAULT_WAIT_S, show_default=True, metavar="SECONDS",
              help="How long to wait while another run of the same report and period is going; then "
                   "exit 75 (retryable).")
@_engine_options
def report(spec: Path, store: Path, day: dt.datetime | None, fmt: str, output: Path | None, wait: float,
           backend: str, spark_master: str | None) -> None:
    """Release every query of report SPEC (TOML, e.g. queries/reports/nightly.toml) for one period
    and render the result.

    Each section is charged to the store's ledger under the idempotency key
    report:NAME:PERIOD_START:SECTION, so rerunning the same report for the same period re-emits the
    stored releases and spends nothing (safe for cron/systemd/Airflow retries). A section that
    cannot be released (e.g. budget exhausted) is shown as such; the report is still written and
    the command then exits with that section's error code (77 budget exhausted, 64 bad query).
    A second run of the same report and period waits for the first (--wait), then replays its
    releases; past the wait it exits 75 (EX_TEMPFAIL: retry later), having charged nothing.
    """
    when = day.date() if day else dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    run = run_report(load_report_spec(spec), store, day=when, wait=wait, backend=backend, spark_master=spark_master)
    text = render(run, fmt)
    if output:
        output.write_text(text)
        click.echo(f"wrote {output} ({run.spec.name}, {run.start} to {run.end})", err=True)
    else:
        sys.stdout.write(text)
    for s in run.sections:
        status = "replayed (nothing spent)" if s.release and s.release.privacy.get("replayed") else (
            "released" if s.release else f"NOT released: {s.error}")
        click.echo(f"  {visible(s.section.title)}: {visible(status)}", err=True)
    if run.first_error is not None:
        sys.exit(run.first_error.exit_code)
