"""``dplogs audit``: empirical lower bound on the ε of a query (on its store) or of the detector
training loop. Spends no budget and releases nothing: every draw is audit-only. A query audit
reads the store's raw events and its figures are not DP, so it runs only when the operator states
that it runs inside the trust boundary (``--inside-trust-boundary``); it never names a unit. The
detector audits train on synthetic canaries and need no flag. The result goes to stdout; it exits
70 when the lower bound exceeds the claim."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from dplogs.cli.examples import examples
from dplogs.cli.numbers import NUMBER
from dplogs.cli.query import _common, _prepare
from dplogs.errors import UsageError
from dplogs.escape import visible

VIOLATION_EXIT = 70


def _emit(result: Any, fmt: str) -> None:
    click.echo(json.dumps(result.to_dict(), indent=2) if fmt == "json" else visible(result.summary()))
    if result.violated:
        click.echo("error: the empirical lower bound exceeds the claimed ε: a privacy bug in dplogs; "
                   "do not release with this query or model until it is fixed", err=True)
        raise click.exceptions.Exit(VIOLATION_EXIT)


@click.command(epilog=examples("audit"))
@_common
@click.option("--trials", type=click.IntRange(min=100), default=4000, show_default=True, help="Runs of the release path on each neighbour.")
@click.option("--unit", "victim", metavar="VALUE", help="Privacy unit to remove for the neighbour (default: the heaviest contributor). The output never names it.")
@click.option("--inside-trust-boundary", "inside", is_flag=True, help="Required to audit a query on a store: states that this runs inside the trust boundary, where the raw events may be read. The audit's figures are computed from raw data, are NOT differentially private and spend no budget; keep them there.")
@click.option("--audit-delta", type=NUMBER, default=1e-5, show_default=True, help="δ at which a zCDP claim is converted to ε (and the DP-SGD δ).")
@click.option("--detector", type=click.Choice(["kmeans", "dpsgd"]), help="Audit a detector training loop (one-run canary audit) instead of a query.")
@click.option("--canaries", type=click.IntRange(min=10), default=2000, show_default=True, help="Canaries for --detector.")
@click.option("--guesses", type=click.IntRange(min=2), help="Membership guesses for --detector (default: canaries/5).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="One summary line, or the full result as JSON (counts, bounds, threshold, verdict).")
def audit(queryfile: Path | None, sql_text: str | None, store: Path | None, trials: int, victim: str | None,
          inside: bool, audit_delta: float, detector: str | None, canaries: int, guesses: int | None, fmt: str,
          **opts: Any) -> None:
    """Audit QUERYFILE or --sql on --store: run the full release path (bounding included) --trials
    times on the store and on the store without one unit, and report the best distinguishing
    test's ε lower bound (95% Clopper–Pearson) against the claimed ε. This reads raw events and
    its figures (bound, threshold, rates) are not DP and are not charged to the ledger, so it is
    refused unless --inside-trust-boundary says it runs where the raw logs may be seen; the output
    names the removed unit only as "the heaviest contributor" or "the given unit".

    With --detector kmeans|dpsgd (no --store needed): a one-run canary audit of DP k-means at
    --rho (default 0.25), or of the DP-SGD step at --epsilon (default 2) and --audit-delta.

    Exit codes: 0 bound below the claim, 70 bound above the claim (a bug), 64 bad options,
    66 missing store or query file.
    """
    if detector is not None:
        from dplogs.audit.detector import dpsgd_canary_audit, kmeans_canary_audit

        if queryfile is not None or sql_text is not None:
            raise UsageError("--detector audits the training loop: drop QUERYFILE/--sql")
        click.echo(f"training {detector} once with {canaries} canaries ...", err=True)
        if detector == "kmeans":
            rho = opts["rho"] if opts["rho"] is not None else 0.25
            result = kmeans_canary_audit(canaries=canaries, rho=rho, delta=audit_delta, guesses=guesses)
        else:
            eps = opts["epsilon"] if opts["epsilon"] is not None else 2.0
            result = dpsgd_canary_audit(canaries=canaries, epsilon=eps, delta=audit_delta, guesses=guesses)
    else:
        from dplogs.audit.engine import audit_prepared

        if store is None:
            raise UsageError("auditing a query needs --store DIR (the store it runs on)")
        if not inside:
            raise UsageError(
                "auditing a query reads the store's raw events, and its figures are not differentially "
                "private and spend no budget: run it only inside the trust boundary (where the raw logs "
                "may be seen) and say so with --inside-trust-boundary (nothing was read)"
            )
        prepared = _prepare(queryfile, sql_text, store, opts)
        click.echo(f"running the release path {trials} times on each neighbour (no budget spent) ...", err=True)
        try:
            result = audit_prepared(prepared, trials=trials, unit=victim, delta=audit_delta)
        except ValueError as exc:
            raise UsageError(f"cannot audit this query: {exc}") from None
    _emit(result, fmt)


# the query options are shared with `dplogs query`, where --store is required; here only a query
# audit needs one (the detector audit trains on canaries)
for _param in audit.params:
    if _param.name == "store":
        _param.required = False
