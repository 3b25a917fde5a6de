"""The ``dplogs`` command line. Each command lives in its own module and only parses options, calls
one library function and renders the result; nothing imports ``dplogs.cli``.

Commands are loaded lazily, so ``dplogs --help`` stays fast and a command's heavy imports
(OpenDP, the detector) are paid only when it runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import traceback

import click

from dplogs import __version__
from dplogs.errors import EXIT_CODES, DplogsError, EngineFailure, InternalError, StoreDamaged
from dplogs.escape import for_terminal

# command name -> ("module:attribute" relative to dplogs.cli, the line `dplogs --help` shows for it):
# the lines are here so that listing the commands imports none of them (it took 1.8 s, the
# detector's imports); a loaded command takes its line from here too, so they cannot drift apart
_COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("ingest:ingest", "Parse log files into the store (auto-detected formats)."),
    "query": ("query:query", "Release a DP answer to a query file or --sql (charged)."),
    "explain": ("query:explain", "Show a query's plan, bounds and cost; spends nothing."),
    "budget": ("budget:budget", "Set caps, show spending and verify the privacy-budget ledger."),
    "train": ("detect:train", "Train a DP anomaly detector (charged once)."),
    "score": ("detect:score", "Score unit-windows with a model (raw data: trust boundary)."),
    "timeseries": ("detect:timeseries", "DP anomaly scores of one aggregate over time (charged)."),
    "audit": ("audit:audit", "Measure a query's ε lower bound on the store (trust boundary)."),
    "demo": ("demo:demo", "Try it: ingest sample logs, query, write nightly reports."),
    "report": ("report:report", "Release a report spec for a period (nightly, catch-up)."),
    "protect": ("protect:protect", "Say whose activity the store's releases protect."),
    "inspect": ("inspect:inspect", "Show what a store holds (raw data: trust boundary)."),
}

_EPILOG = "Exit codes: 0 ok, 2 bad command line, " + ", ".join(
    f"{code} {name}" for name, code in sorted(EXIT_CODES.items(), key=lambda kv: kv[1]) if code != 1
) + ", 1 other error."


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(
            name for name, (target, _) in _COMMANDS.items()
            if importlib.util.find_spec(f"dplogs.cli.{target.split(':')[0]}") is not None
        )

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS or cmd_name not in self.list_commands(ctx):
            return None
        target, line = _COMMANDS[cmd_name]
        module, attr = target.split(":")
        command = getattr(importlib.import_module(f"dplogs.cli.{module}"), attr)
        command.short_help = line
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):  # one place turns errors into a message + exit code
        try:
            return super().invoke(ctx)
        except DplogsError as exc:
            click.echo(f"error: {for_terminal(str(exc))}", err=True)  # messages may quote log text
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # anything else is a bug: say so, keep the traceback on request
            if os.environ.get("DPLOGS_DEBUG"):
                traceback.print_exc()
            known = None
            if _unreadable_parquet(exc):  # a damaged store file, not a bug
                known = StoreDamaged(f"a Parquet file could not be read ({type(exc).__name__}; DPLOGS_DEBUG=1 shows the "
                                     "reader's message, which may quote the file's bytes): a file of the store (or a "
                                     "Parquet input) is damaged; nothing was released from it")
            elif _raised_in_spark(exc) and (unreadable := _file_spark_could_not_read(exc)) is not None:
                # a read failure inside Spark (pages damaged under an intact footer, a file gone or
                # unreadable) is the store's, not the cluster's: say so, as polars' path does
                known = StoreDamaged(f"Spark could not read {unreadable} ({type(exc).__name__}; DPLOGS_DEBUG=1 shows "
                                     "the traceback, inside the trust boundary): a file of the store is damaged or "
                                     "unreadable; nothing was released from it")
            elif _raised_in_spark(exc):
                # the type only: a Spark error's text may quote a row's values, which a message must not
                known = EngineFailure(
                    f"the Spark job failed ({type(exc).__name__}; DPLOGS_DEBUG=1 shows the traceback, inside the trust "
                    "boundary). Nothing was released; a charge taken before the failure stays spent (`dplogs budget "
                    "history` shows it). Check the Spark session or cluster and rerun (with --idempotency-key, a "
                    "recorded release is re-emitted for free)")
            if known is not None:
                click.echo(f"error: {for_terminal(str(known))}", err=True)
                ctx.exit(known.exit_code)
            bug = InternalError(f"unexpected {type(exc).__name__}: {exc}")
            click.echo(f"error: {for_terminal(str(bug))} — rerun with DPLOGS_DEBUG=1 for the traceback", err=True)
            ctx.exit(bug.exit_code)


def _unreadable_parquet(exc: Exception) -> bool:
    """A read error polars or pyarrow raise for a Parquet file that is not what it should be."""
    text = str(exc).lower()
    return type(exc).__module__.split(".")[0] in ("polars", "pyarrow") and "parquet" in text and any(
        w in text for w in ("out of specification", "magic", "corrupt", "invalid", "decompress", "thrift",
                            "eof", "unexpected end", "couldn't deserialize"))


_SPARK_READ_FAILED = re.compile(r"\[FAILED_READ_FILE[.\w]*\] Encountered error while reading file (\S+?)\.?\s")


def _file_spark_could_not_read(exc: BaseException) -> str | None:
    """The file a Spark job failed to read (Spark's ``FAILED_READ_FILE`` error class names it; a
    path, never a row's values), or None when the job failed otherwise."""
    found = _SPARK_READ_FAILED.search(str(exc))
    return None if found is None else found.group(1).removeprefix("file://")


def _raised_in_spark(exc: BaseException) -> bool:
    """An exception pyspark or py4j raised (or that surfaced from inside them), not dplogs' own."""
    if type(exc).__module__.split(".")[0] in ("pyspark", "py4j"):
        return True
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and any(f"{os.sep}{m}{os.sep}" in last for m in ("pyspark", "py4j"))


@click.group(cls=_LazyGroup, epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dplogs")
def cli() -> None:
    """dplogs: differentially private analytics over security logs.

    Ingest logs into a local store, then ask aggregate questions whose answers are differentially
    private: every release adds calibrated noise and is charged to the store's privacy-budget
    ledger, per privacy unit (e.g. user.name) per budget window.
    """


def main() -> None:
    cli(prog_name="dplogs")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
