"""``dplogs query`` and ``dplogs explain``: parse options, call the engine, render.

The library does the work (:class:`dplogs.engine.Engine`); this module only adapts options.
Data goes to stdout (or ``--output``), notes go to stderr.
"""

from __future__ import annotations

import datetime as dt

import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dplogs.cli.examples import examples
from dplogs.cli.numbers import NUMBER
from dplogs.errors import OutputWriteError, UsageError
from dplogs.escape import for_terminal, visible

_FORMATS = ("table", "json", "ndjson", "csv", "parquet")
_METADATA_NOTE = (
    "Privacy metadata: json has {data, privacy}; ndjson's first line is {\"privacy\": ...}; csv is "
    "plain CSV with the metadata in a sidecar FILE.privacy.json (with --output) or, with "
    "--csv-metadata, a first line '# privacy: {...}'; parquet keeps it under 'dplogs.privacy' in the schema "
    "metadata; table prints it to stderr. Log text is shown inert: the table prints control "
    "characters as escapes and never interprets rich markup; csv prefixes text cells that start with "
    "= + - @ TAB or CR with ' so spreadsheets do not run them as formulas (--csv-raw turns that off)."
)


def _pairs(values: tuple[str, ...], option: str, example: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        col, sep, rest = v.partition("=")
        if not sep or not col or not rest:
            raise UsageError(f"{option} takes {example}, got {v!r}")
        out.append((col.strip(), rest.strip()))
    return out


def _float(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a number") from None


def _clamps(values: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    out = {}
    for col, rng in _pairs(values, "--clamp", "COL=LO:HI, e.g. source.bytes=0:1000000"):
        lo, sep, hi = rng.partition(":")
        if not sep:
            raise UsageError(f"--clamp takes COL=LO:HI, got {col}={rng}")
        out[col] = (_float(lo, "--clamp"), _float(hi, "--clamp"))
    return out


def _keys(values: tuple[str, ...]) -> dict[str, list[str]]:
    return {
        col: [x.strip() for x in vals.split(",") if x.strip()]
        for col, vals in _pairs(values, "--keys", "COL=a,b,c, e.g. host.name=web-1,web-2")
    }


def _bins(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    out = {}
    for col, spec in _pairs(values, "--bins", "COL=LO:HI:N[:log|linear]"):
        parts = spec.split(":")
        if len(parts) not in (3, 4) or not (parts[2].isascii() and parts[2].isdigit()):
            raise UsageError(f"--bins takes COL=LO:HI:N[:log|linear], got {col}={spec}")
        if len(parts[2]) > 9:  # more than any bin limit; int() of thousands of digits would fail
            raise UsageError(f"--bins {col}: {parts[2][:20]}... bins are far too many")
        out[col] = {"lo": _float(parts[0], "--bins"), "hi": _float(parts[1], "--bins"), "n": int(parts[2]),
                    "scale": parts[3] if len(parts) == 4 else "log"}
    return out


ENGINE_OPTIONS = [
    click.option("--engine", "backend", type=click.Choice(["polars", "spark"]), default="polars", show_default=True,
                 help="Where the bounded aggregation runs: the embedded polars engine, or Apache Spark (needs the spark extra, "
                      "pip install 'dplogs[spark]', and Java 17+). The ledger and the noise stay on this machine either way."),
    click.option("--spark-master", metavar="URL", help="With --engine spark: the Spark master (default: the active session, "
                 "else local[*], this machine's cores), e.g. spark://host:7077 or yarn."),
]
"""The options selecting the execution backend, shared by query, explain and report."""


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("queryfile", required=False, type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--sql", "sql_text", metavar="TEXT", help="A SQL query instead of QUERYFILE, e.g. \"SELECT event.action, COUNT(*) FROM logs GROUP BY event.action\"."),
        click.option("--store", required=True, type=click.Path(file_okay=False, path_type=Path), help="The store directory (made by `dplogs ingest`)."),
        click.option("--epsilon", type=NUMBER, help="Total privacy budget ε of the query (Laplace mechanism), split equally over its noised columns (default: the query file's or store's, else 1)."),
        click.option("--rho", type=NUMBER, help="Total zCDP budget ρ (Gaussian mechanism) instead of --epsilon."),
        click.option("--delta", type=NUMBER, help="δ for DP partition selection when grouping by a private key (IP, user, host...); default: the query file's or store's, else 1e-6."),
        click.option("--mechanism", type=click.Choice(["laplace", "gaussian"]), help="Noise mechanism (default: laplace with --epsilon, gaussian with --rho)."),
        click.option("--max-groups", type=int, help="L0 bound: groups one privacy unit may contribute to (default: the query file's or store's, else 1 with a private key, else chosen from the data with DP)."),
        click.option("--max-rows-per-group", type=int, help="L∞ bound: rows one privacy unit may contribute to each group (default: the query file's or store's, else chosen from the data with DP)."),
        click.option("--clamp", multiple=True, metavar="COL=LO:HI", help="Clamp a summed/averaged/binned column into [LO, HI]; repeatable."),
        click.option("--keys", "declared", multiple=True, metavar="COL=a,b,c", help="Declare the public values of a key column (no partition selection needed; other values are dropped); repeatable."),
        click.option("--bins", multiple=True, metavar="COL=LO:HI:N[:log|linear]", help="Public histogram/quantile bins of a column; repeatable (default: from --clamp, log-spaced)."),
        click.option("--start", metavar="TIME", help="Window start, ISO 8601 (inclusive); sets public time buckets and the budget windows charged."),
        click.option("--end", metavar="TIME", help="Window end, ISO 8601 (exclusive)."),
        click.option("--last", metavar="SPAN", help="Window shortcut: the last 24h, 7d, 30d... up to now (UTC; instead of --start/--end)."),
        click.option("--day", metavar="YYYY-MM-DD", help="Window shortcut: that UTC day (instead of --start/--end)."),
        click.option("--bucket", type=click.Choice(["minute", "hour", "day", "week"]), help="Time-bucket grain (replaces the query's, or adds a time key)."),
        click.option("--anomalies", "model", type=click.Path(dir_okay=False, path_type=Path), help="Query the unit-windows this trained detector (`dplogs train`) flags instead of the raw events: one row per anomalous unit-window (@timestamp = window start, host.name, event.action = dplogs.anomaly); needs --threshold."),
        click.option("--threshold", help="With --anomalies: a percentile of the model's DP training-score histogram (p99: the top 1%), or a raw score; unit-windows above it count as anomalous."),
        *ENGINE_OPTIONS,
    ]
    for option in reversed(options):
        f = option(f)
    return f


_SPAN = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _window(opts: dict[str, Any]) -> dict[str, Any]:
    """--start/--end, or the --last / --day shortcut for them (at most one way)."""
    from dplogs.privacy.limits import EARLIEST_TIME, LATEST_TIME  # dplogs.privacy loads OpenDP: not for --help

    given = [n for n in ("last", "day") if opts[n]] + (["start/end"] if opts["start"] or opts["end"] else [])
    if len(given) > 1:
        raise UsageError(f"give one window: {' or '.join('--' + g for g in given)}, not several")
    if opts["last"]:
        text = opts["last"].strip().lower()
        digits = text[:-1]
        if len(text) < 2 or text[-1] not in _SPAN or not (digits.isascii() and digits.isdigit()) or int(digits) < 1:
            raise UsageError(f"--last takes a span like 24h, 7d or 30d, got {opts['last']!r}")
        end = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        try:  # a span reaching before year 1 overflows; the engine refuses any start before EARLIEST_TIME
            start = end - dt.timedelta(**{_SPAN[text[-1]]: int(digits)})
        except OverflowError:
            raise UsageError(f"--last {opts['last']} reaches outside the supported range "
                             f"{EARLIEST_TIME.date()} .. {LATEST_TIME.date()}") from None
        return {"start": start.isoformat(), "end": end.isoformat()}
    if opts["day"]:
        try:
            day = dt.date.fromisoformat(opts["day"])
        except ValueError:
            raise UsageError(f"--day takes a date like 2026-11-22, got {opts['day']!r}") from None
        if day >= LATEST_TIME.date():  # 9999-12-31 has no next day to end on
            raise UsageError(f"--day {day} is outside the supported range {EARLIEST_TIME.date()} .. {LATEST_TIME.date()}")
        return {"start": day.isoformat(), "end": (day + dt.timedelta(days=1)).isoformat()}
    return {"start": opts["start"], "end": opts["end"]}


def _prepare(queryfile: Path | None, sql_text: str | None, store: Path, opts: dict[str, Any]) -> Any:
    from dplogs.engine import Engine

    if (queryfile is None) == (sql_text is None):
        raise UsageError("give either a QUERYFILE or --sql TEXT (exactly one)")
    engine = Engine.open(store, backend=opts["backend"], spark_master=opts["spark_master"])
    if opts["model"] is not None:
        if opts["threshold"] is None:
            raise UsageError("--anomalies needs --threshold, e.g. p99 (a percentile of the model's training scores) or a raw score")
        engine = engine.over_anomalies(opts["model"], threshold=opts["threshold"])
    elif opts["threshold"] is not None:
        raise UsageError("--threshold only applies with --anomalies MODEL")
    options = {
        "epsilon": opts["epsilon"], "rho": opts["rho"], "delta": opts["delta"], "mechanism": opts["mechanism"],
        "max_groups": opts["max_groups"], "max_rows_per_group": opts["max_rows_per_group"],
        "clamp": _clamps(opts["clamp"]), "declared": _keys(opts["declared"]), "bins": _bins(opts["bins"]),
        "bucket": opts["bucket"], **_window(opts),
    }
    if queryfile is not None:
        return engine.query_file(queryfile, **options)
    return engine.sql(sql_text, **options)


@click.command(epilog=examples("query", _METADATA_NOTE))
@_common
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="table", show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write the release to FILE instead of stdout.")
@click.option("--idempotency-key", metavar="KEY", help="Rerunning with the same key re-emits the stored release and spends nothing.")
@click.option("--csv-raw", is_flag=True, help="csv: write text cells exactly as released, even those a spreadsheet would run as a formula (default: such cells get a leading ').")
@click.option("--csv-metadata", is_flag=True, help="csv: put the privacy metadata on a first line '# privacy: {...}' (default: plain CSV; with --output the metadata goes to FILE.privacy.json).")
def query(queryfile: Path | None, sql_text: str | None, store: Path, fmt: str, output: Path | None,
          idempotency_key: str | None, csv_raw: bool, csv_metadata: bool, **opts: Any) -> None:
    """Release a differentially private answer to QUERYFILE (TOML, see queries/) or --sql.

    The release is charged to the store's budget ledger before any noise is drawn. Exit codes:
    64 bad query or privacy parameter, or beyond a limit of docs/privacy.md, or a window without
    ingested data (nothing charged), 65 corrupt --anomalies model, 66 missing store or query file,
    74 ledger problem (failing verification, another store's ledger, or I/O trouble; nothing
    released), 75 retry later (same idempotency key in flight), 77 budget exhausted (nothing charged).
    """
    from dplogs.engine import write_release

    if (csv_raw or csv_metadata) and fmt != "csv":
        raise UsageError("--csv-raw and --csv-metadata only apply with --format csv")
    if output is not None:
        check_output(output, store)
    elif fmt == "parquet" and sys.stdout.isatty():  # raw bytes of released keys: a terminal would obey them
        raise UsageError("--format parquet is binary: pass --output FILE or redirect stdout; nothing was charged")
    prepared = _prepare(queryfile, sql_text, store, opts)
    release = prepared.release(caller="cli", idempotency_key=idempotency_key)
    p = release.privacy
    replay = " (replayed from the ledger; nothing spent now)" if p.get("replayed") else ""
    loss = ", ".join(f"{k}={p[k]:.6g}" for k in ("epsilon", "delta", "rho") if p.get(k))
    click.echo(
        f"released {release.data.height} cells of {visible(p['query'])}: {loss} per {p['privacy_unit']} charged to "
        f"{', '.join(p['budget_windows'])} (ledger entry {p.get('ledger_entry')}){replay}",
        err=True,
    )
    # which time the answer covers and what the command left to defaults: a one-line --sql picks
    # its window itself, and without this only the JSON metadata said which
    click.echo(f"window: {p['window']['start']} to {p['window']['end']} (end exclusive)", err=True)
    for name, why in (p.get("defaults_used") or {}).items():
        click.echo(f"default used: {name} = {why}", err=True)
    if p.get("logs"):
        click.echo(f"logs it reads: {p['logs']} (on a store without them every value is noise)", err=True)
    if fmt == "table":
        click.echo(f"bias: {p['bias_note']}", err=True)
    if (hint := nothing_selected_hint(release)) is not None:
        click.echo(f"note: {hint}", err=True)
    try:
        if output is not None:
            write_release(release, fmt, output, title=p["query"], csv_safe=not csv_raw, csv_metadata=csv_metadata)
        elif fmt == "parquet":
            write_release(release, fmt, sys.stdout.buffer)
        else:
            if hasattr(sys.stdout, "reconfigure"):  # a non-UTF-8 terminal must not fail on a key's text
                sys.stdout.reconfigure(errors="backslashreplace")
            buf = io.StringIO()
            write_release(release, fmt, buf, title=p["query"], csv_safe=not csv_raw, csv_metadata=csv_metadata)
            text = buf.getvalue()
            if fmt == "csv" and sys.stdout.isatty():  # CSV cells are raw text: a terminal must not obey them
                text = for_terminal(text)
            sys.stdout.write(text)
            sys.stdout.flush()
    except OSError as exc:  # disk full, a closed pipe: the release is charged and stored, not lost
        again = (f"rerun with --idempotency-key {idempotency_key} to write it again without spending"
                 if idempotency_key else "it cannot be re-emitted without spending (pass --idempotency-key next time)")
        raise OutputWriteError(
            f"the release was charged (ledger entry {p.get('ledger_entry')}) and is stored with it, but writing the "
            f"output failed: {exc.strerror or exc}; {again}"
        ) from None


def nothing_selected_hint(release: Any) -> str | None:
    """What to do when partition selection kept no private key (a released value: the row count
    is post-processing). Names the keys and, from the query and the store's unit rule alone, when
    no key can pass: a key on the unit's own field is one unit's data."""
    p = release.privacy
    selection = p.get("selection")
    if release.data.height or not selection:
        return None
    private = [k["column"] for k in p["keys"] if str(k.get("handling", "")).startswith("private")]
    if not private:
        return None
    unit = p["unit_rule"]["fields"][0]
    text = (f"no value of {', '.join(private)} passed partition selection (a value is released once about "
            f"{selection['threshold']} distinct {unit} share it). Declare the values you want with --keys "
            f"{private[0]}=a,b,c: declared keys are public and come back complete, with noise")
    if unit in private:
        text += (f". Here every {unit} value is one {unit}'s own data, so none can pass; only rows that "
                 "`dplogs protect` leaves unprotected (accounts off the roster, sources outside the networks) "
                 "are shown, counted exactly")
    elif p.get("protection", {}).get("rule") == "every row is protected" and {"source.ip", "user.name"} & set(private):
        text += (". Attackers' addresses and guessed account names are shown, counted exactly, once you declare "
                 "your networks and people: `dplogs protect --networks CIDR,... --users FILE`")
    return text


def check_output(path: Path, store: Path) -> None:
    """Refuse, before anything is charged, an --output that cannot be written (click has already
    refused a directory) or that would overwrite the store's own data (``-o STORE/ledger.sqlite``
    erased the recorded spend; a Parquet file under STORE/events would be read as events)."""
    refuse_store_file(path, store, "--output")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"--output {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"--output {path} is not writable")


def refuse_store_file(path: Path, store: Path, option: str) -> None:
    """A usage error when ``path`` is one of the store's own files (see ``Store.holds``)."""
    from dplogs.ingest.store import Store

    if (store / "manifest.json").is_file() and Store.open(store).holds(path):
        raise UsageError(f"{option} {path} would overwrite the store's own data (ledger, manifest, events...); "
                         "write it outside those files")


@click.command(epilog=examples("explain"))
@_common
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Explain as text or JSON.")
def explain(queryfile: Path | None, sql_text: str | None, store: Path, fmt: str, **opts: Any) -> None:
    """Explain QUERYFILE or --sql without spending anything: key handling, bounds, sensitivities,
    mechanisms, noise scales, selection thresholds, expected 95% CI half-widths, budget split, and
    what the budget windows it would be charged to have left now (or that no caps are set).

    Exit codes: 64 bad query or privacy parameter, 66 missing store or query file.
    """
    prepared = _prepare(queryfile, sql_text, store, opts)
    e = prepared.explain()
    budget = budget_now(store, prepared.plan.budget_windows)
    click.echo(json.dumps({**e.data, "budget_now": budget}, indent=2) if fmt == "json" else e.text + "\n" + budget)


def budget_now(store: Path, windows: tuple[str, ...]) -> str:
    """What the windows a release would be charged to have left now, read from the store's ledger
    (nothing is written): the cost alone did not say whether the release would fit or be refused (77)."""
    from dplogs.cli.budget import no_ledger_yet, open_ledger
    from dplogs.errors import LedgerError

    caps = None
    if not no_ledger_yet(store):  # a new store's first release makes it, then finds no caps
        try:
            with open_ledger(store)[0] as ledger:
                caps, budgets = ledger.caps(), [ledger.budget(w) for w in windows]
        except LedgerError as exc:  # the release would be refused (74); explaining it still works
            return f"budget now: the ledger cannot be read, so a release would be refused: {exc}"
    if caps is None:
        return f"budget now: no caps set: a release is refused (64) until `dplogs budget set --store {store} --epsilon E --delta D`"
    return "budget now (left for one more release): " + "; ".join(
        f"{b.window}: epsilon={b.remaining.epsilon:.6g} (pure), rho={b.remaining.rho:.6g} (zCDP), "
        f"delta={b.remaining.delta:.3g} of caps epsilon={b.caps.epsilon:g}, delta={b.caps.delta:g}" for b in budgets)
