"""``dplogs train`` and ``dplogs score``: the DP anomaly detector."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import click

from dplogs.cli.examples import examples
from dplogs.cli.numbers import NUMBER
from dplogs.detect.features import WINDOWS
from dplogs.detect.model import DETECTORS
from dplogs.errors import UsageError
from dplogs.detect.train import TrainRequest, score_store, train_from_store

_CTX = {"help_option_names": ["-h", "--help"]}


@click.command(context_settings=_CTX, epilog=examples("train"))
@click.option("--store", "store_path", required=True, type=click.Path(file_okay=False), help="Store directory.")
@click.option("--detector", type=click.Choice(DETECTORS), required=True,
              help="kmeans: DP Lloyd iterations (zCDP); autoencoder: DP-SGD (PLD accountant).")
@click.option("--epsilon", type=NUMBER, required=True, help="Privacy loss ε of the training release, per unit per budget window.")
@click.option("--delta", type=NUMBER, required=True, help="δ of the training release (e.g. 1e-6).")
@click.option("--start", default=None, help="Start of the training time range (ISO 8601, included). Default (with "
              "--end): the latest budget window the store's coverage reaches, as for queries.")
@click.option("--end", default=None, help="End of the training time range (ISO 8601, excluded). Every budget window it touches is charged.")
@click.option("--max-windows", "max_windows", type=click.IntRange(min=1), default=None,
              help="K: feature rows (unit-windows) kept per unit per budget window, chosen at random. Default: a "
                   "public rule per --window (day 7, hour 24, 15min 32, 5min 48; never more than one budget window "
                   "holds: 1 day window on a store with daily budget windows). Noise grows with K.")
@click.option("--clip-norm", type=NUMBER, default=1.0, show_default=True, help="C: L2 clip of each training feature row (scoring does not clip).")
@click.option("--window", type=click.Choice(list(WINDOWS)), default="day", show_default=True,
              help="Feature window (5min/15min for short recordings).")
@click.option("--k", type=click.IntRange(min=1), default=8, show_default=True, help="kmeans: clusters.")
@click.option("--iterations", type=click.IntRange(min=1), default=5, show_default=True, help="kmeans: Lloyd iterations.")
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True, help="autoencoder: DP-SGD steps.")
@click.option("--sampling-rate", type=NUMBER, default=None,
              help="autoencoder: Poisson sampling rate of units per step. Default: about 256 units per step, "
                   "from a DP count of the training units (5% of ε, same ledger entry, in the model card).")
@click.option("--expected-batch-size", type=NUMBER, default=None,
              help="autoencoder: PUBLIC constant the noisy gradient sum is divided by, about sampling-rate × "
                   "number of units. Default: from the same DP count of units; give both settings to skip it.")
@click.option("--gradient-clip", type=NUMBER, default=0.05, show_default=True,
              help="autoencoder: L2 clip of one unit's gradient per step (noise std = σ × this).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="Model file to write (JSON).")
@click.option("--idempotency-key", default=None, help="Re-running with the same key re-emits the stored model and spends nothing.")
@click.option("--engine", "backend", type=click.Choice(["polars", "spark"]), default="polars", show_default=True,
              help="Where the feature rows and each iteration's clipped sums are computed: the embedded polars engine, "
                   "or Apache Spark (needs the spark extra, pip install 'dplogs[spark]', and Java 17+). The ledger "
                   "and the noise stay on this machine either way.")
@click.option("--spark-master", metavar="URL", help="With --engine spark: the Spark master (default: the active "
              "session, else local[*], this machine's cores), e.g. spark://host:7077 or yarn.")
def train(store_path, detector, epsilon, delta, start, end, max_windows, clip_norm, window, k, iterations,
          steps, sampling_rate, expected_batch_size, gradient_clip, output, idempotency_key, backend,
          spark_master) -> None:
    """Train a DP anomaly detector on a store; the training is a release charged to the store's
    budget ledger (reserved before any noise). The model file carries its model card (ε, δ,
    accountant, bounds, features, windows); the model card is also printed to stdout as JSON."""
    from dplogs.cli.query import refuse_store_file
    from dplogs.detect.train import default_max_windows

    refuse_store_file(Path(output), Path(store_path), "--output")
    start, end = _training_range(store_path, start, end)
    if max_windows is None:
        from dplogs.ingest.store import Store

        max_windows = default_max_windows(window, Store.open(store_path).manifest.budget_window)
        click.echo(f"--max-windows defaults to K = {max_windows} {window} windows per unit per budget window "
                   "(a public rule; each unit's noise scales with K, so lower it if units are rarely active)", err=True)
    request = TrainRequest(
        detector=detector, epsilon=epsilon, delta=delta, start=start, end=end, max_windows_per_unit=max_windows,
        clip_norm=clip_norm, window=window, k=k, iterations=iterations, steps=steps, sampling_rate=sampling_rate,
        expected_batch_size=expected_batch_size, gradient_clip=gradient_clip,
    )
    _refuse_uncovered_range(store_path, start, end)
    path, card = train_from_store(store_path, request, output=output, idempotency_key=idempotency_key,
                                  backend=backend, spark_master=spark_master)
    h = card.hyperparameters
    if "units_estimate" in h:
        click.echo(f"batch settings from a DP count of about {h['units_estimate']['noisy_units']:.0f} training units "
                   f"(ε {h['units_estimate']['epsilon']:.3g} of the total): sampling rate {h['sampling_rate']:g}, "
                   f"expected batch {h['expected_batch_size']:.4g} units per step", err=True)
    for warning in h.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"model written to {path}; {card.guarantee}", err=True)
    # the peer baseline's noisy tables (~80 KB, 4,000 lines at indent 1) stay in the model file
    shown = {k: ("(in the model file)" if k == "peer_baseline" and v else v) for k, v in card.__dict__.items()}
    click.echo(json.dumps({"model": str(path), "model_card": shown}, default=list, indent=1))


def _training_range(store_path, start: str | None, end: str | None) -> tuple[str, str]:
    """--start/--end as given, or both defaulted to the latest budget window the store's coverage
    (public metadata) reaches, said on stderr; one without the other is refused."""
    if start is not None and end is not None:
        return start, end
    if start is not None or end is not None:
        raise UsageError("give both --start and --end, or neither (then the latest budget window the store covers "
                         "is used); nothing was charged")
    from dplogs.engine.coverage import latest_window
    from dplogs.ingest.store import Store

    store = Store.open(store_path)
    window = latest_window(store.coverage(), store.manifest.budget_window)
    if window is None:
        raise UsageError("pass --start and --end: the store cannot tell which days it covers (or holds no logs), so "
                         "there is no default training window; nothing was charged")
    click.echo(f"training window defaults to {window[0].date()} to {window[1].date()}: the latest "
               f"{store.manifest.budget_window} budget window the store's coverage reaches", err=True)
    return window[0].isoformat(), window[1].isoformat()


def _refuse_uncovered_range(store_path, start: str, end: str) -> None:
    """Refuse, before anything is charged, a training range that holds no ingested data (the model
    would be pure noise), as queries do: the store's coverage is public metadata. Done here because
    the coverage rule lives in the engine, which the detector does not import; times train cannot
    read are left to its own messages."""
    from dplogs.engine.coverage import check as check_coverage
    from dplogs.engine.plan import parse_time
    from dplogs.errors import DplogsError
    from dplogs.ingest.store import Store

    try:
        lo, hi = parse_time(start, what="--start"), parse_time(end, what="--end")
    except DplogsError:
        return
    if lo < hi:
        check_coverage(lo, hi, Store.open(store_path).coverage())


_TOP_LABEL = ("RAW PER-UNIT DATA, NOT DIFFERENTIALLY PRIVATE: keep it inside the trust boundary "
              "(do not paste it into tickets, reports or chats that leave it)")


def _printable(text: object) -> str:
    """Log-derived text (unit names, hosts) with control and non-ASCII characters escaped, so a
    crafted name cannot rewrite the analyst's terminal."""
    return str(text).encode("unicode_escape").decode("ascii")


@click.command(context_settings=_CTX, epilog=examples("score"))
@click.option("--store", "store_path", required=True, type=click.Path(file_okay=False), help="Store directory.")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False), help="Model file from `dplogs train`.")
@click.option("--output", "-o", default=None, type=click.Path(dir_okay=False),
              help="Parquet file for the scores (default: STORE/scores/<model>.parquet).")
@click.option("--top", type=click.IntRange(min=1), default=None,
              help="Also print the N most anomalous unit-windows with their percentile and the features that "
                   "drove each score: raw per-unit data for an analyst inside the trust boundary.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Format of the --top listing.")
def score(store_path, model_path, output, top, fmt) -> None:
    """Score every (unit, window) of the store with a trained detector.

    The per unit-window scores are NOT differentially private: they stay inside the trust boundary.
    They are written to a Parquet file inside the store (with each score's percentile among the
    training scores, from the model's DP histogram); release aggregates of them (counts of anomalous
    unit-windows, `dplogs query --anomalies MODEL --threshold p99`) through a DP query instead.
    `--top N` prints the N most anomalous unit-windows for triage, labelled as raw per-unit data."""
    from dplogs.cli.query import refuse_store_file
    from dplogs.detect.train import top_windows

    if output is not None:
        refuse_store_file(Path(output), Path(store_path), "--output")
    path, n = score_store(store_path, model_path, output=output)
    click.echo(f"{n} unit-window scores written to {path} (not DP: keep them inside the trust boundary)", err=True)
    if top is None:
        return
    rows = top_windows(store_path, model_path, n=top)
    if fmt == "json":
        click.echo(json.dumps({"label": _TOP_LABEL, "differentially_private": False, "windows": rows}, indent=1))
        return
    click.echo(f"# {_TOP_LABEL}")
    for r in rows:
        unit = next(v for k, v in r.items() if k not in ("rank", "window_start", "host", "score", "percentile", "drivers"))
        pct = "n/a" if r["percentile"] is None else f"p{r['percentile']:.1f}"
        drivers = ", ".join(f"{d['feature']}={d['value']:g} ({d['share_of_score']:.0%})" for d in r["drivers"])
        click.echo(f"{r['rank']:>3}. {_printable(unit)} {r['window_start']} host={_printable(r['host'])} "
                   f"score={r['score']:.4g} {pct}  drivers: {drivers}")


def _check_series_plan(plan) -> None:
    """Refuse, BEFORE anything is charged, a query whose release cannot be scored as a series: it
    needs one time-bucket key and one directly noised count or sum."""
    from dplogs.engine.plan import AggKind

    keys, aggs = plan.keys, plan.query.aggregations
    if len(keys) != 1 or keys[0].bucket is None:
        raise UsageError(f"time-series scores need ONE time-bucket key (GROUP BY date_trunc('day', \"@timestamp\") "
                         f"or --bucket day), got keys {[k.name for k in keys] or 'none'}; nothing was charged")
    if len(aggs) != 1 or aggs[0].kind not in (AggKind.COUNT, AggKind.UNITS, AggKind.SUM):
        raise UsageError("time-series scores need exactly one COUNT(*), COUNT(DISTINCT unit) or SUM per bucket; "
                         "nothing was charged")


def _buckets_covered(release, prepared) -> list[bool]:
    """Per released bucket, in time order: whether the store's coverage (public metadata; the
    coverage the release disclosed, else the store's current one for a replayed release) reaches it."""
    from dplogs.engine.coverage import buckets_covered
    from dplogs.engine.plan import bucket_width

    disclosed = release.privacy.get("coverage")
    if disclosed is not None:
        spans = [(dt.date.fromisoformat(a), dt.date.fromisoformat(b)) for a, b in disclosed["store_spans"]]
    else:
        spans = prepared.engine.coverage(prepared.plan.query.formats)
    key = prepared.plan.keys[0]
    starts = release.data.sort(key.name)[key.name].to_list()
    return buckets_covered(starts, bucket_width(key.bucket), spans)


def _timeseries_options(f):
    from dplogs.cli.query import _common

    return _common(f)


@click.command(context_settings=_CTX, epilog=examples("timeseries"))
@_timeseries_options
@click.option("--history", type=click.IntRange(min=2), default=7, show_default=True,
              help="Previous buckets the baseline is computed from.")
@click.option("--z", "z_threshold", type=NUMBER, default=3.0, show_default=True, help="Flag buckets with z above this.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one line per bucket; json: buckets, z and the release's privacy metadata.")
@click.option("--idempotency-key", default=None, help="Re-running with the same key re-emits the stored release and spends nothing.")
def timeseries(queryfile, sql_text, store, history, z_threshold, fmt, idempotency_key, **opts) -> None:
    """DP time-series anomaly scores: release ONE noised aggregate per time bucket (QUERYFILE or
    --sql with a single time-bucket key, charged like `dplogs query`), then score each bucket's
    noisy value against the mean and spread of the previous --history noisy buckets. z = (value −
    baseline) / √(max(spread², σ²)·(1 + 1/history)), σ the release's own noise std, so the noise
    of the bucket and of its baseline are both in the denominator; scoring is post-processing and
    costs nothing more. With --anomalies MODEL --threshold p99 the series is the DP count of
    anomalous unit-windows per bucket."""
    from dplogs.cli.query import _prepare
    from dplogs.detect.timeseries import score_release
    from dplogs.engine.release import shown_number

    if not math.isfinite(z_threshold):  # nan or ±inf flags nothing or everything: refused before the charge
        raise UsageError(f"--z must be a finite number, got {z_threshold}; nothing was charged")
    prepared = _prepare(queryfile, sql_text, store, opts)
    _check_series_plan(prepared.plan)
    release = prepared.release(caller="timeseries", idempotency_key=idempotency_key)
    covered = _buckets_covered(release, prepared)
    scored = score_release(release.data, history=history, threshold=z_threshold, covered=covered)
    p = release.privacy
    loss = ", ".join(f"{k}={p[k]:.6g}" for k in ("epsilon", "delta", "rho") if p.get(k))
    click.echo(f"released {scored.height} buckets: {loss} per {p['privacy_unit']} charged to "
               f"{', '.join(p['budget_windows'])}; z scores are post-processing", err=True)
    if not all(covered):
        click.echo(f"{covered.count(False)} buckets lie outside the store's coverage (no logs ingested for them; "
                   "public metadata): their values are pure noise, so they are not scored and stay out of "
                   "the baselines", err=True)
    if fmt == "json":
        rows = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
                for r in scored.iter_rows(named=True)]
        click.echo(json.dumps({"history": history, "z_threshold": z_threshold, "buckets": rows, "privacy": p},
                              default=str, indent=1))
        return
    key = scored.columns[0]
    click.echo(f"{key:<26} {'value':>10} {'baseline':>10} {'z':>7}")
    for r in scored.iter_rows(named=True):
        z = "" if r["z"] != r["z"] else f"{r['z']:.2f}"
        base = "" if r["baseline"] != r["baseline"] else f"{r['baseline']:.1f}"
        flag = "  ANOMALOUS" if r["anomalous"] else "" if r["covered"] else "  (no logs ingested)"
        click.echo(f"{str(r[key]):<26} {shown_number(r['value']):>10} {base:>10} {z:>7}{flag}")
