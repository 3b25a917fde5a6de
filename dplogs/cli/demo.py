"""``dplogs demo``: the first five minutes — ingest sample_logs, set a demo budget, release a first
private result and a report. Each step is one library call; rerunning spends nothing."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from dplogs.engine.api import Engine
from dplogs.engine.policy import load as load_policy
from dplogs.engine.policy import read_roster
from dplogs.engine.policy import save as save_policy
from dplogs.engine.release import write_release
from dplogs.ingest.base import IngestOptions
from dplogs.ingest.ingest import ingest
from dplogs.ingest.store import Store
from dplogs.privacy.ledger import open_store_ledger
from dplogs.escape import visible
from dplogs.report import load_report_spec
from dplogs.report.outputs import check_out_dir, write_outputs
from dplogs.report.run import catch_up
from dplogs.report.summary import cell_label, summarize

DEMO_EPSILON, DEMO_DELTA = 12.0, 1e-5
DEMO_NETWORKS = ("10.0.0.0/8", "192.168.0.0/16")  # the sample logs' internal ranges
DEMO_ROSTER = Path(".organisation") / "people.txt"  # written by sample_logs/generate.py beside the logs


@click.command()
@click.option("--logs", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("sample_logs"),
              show_default=True, help="Folder of logs to ingest (the repository's generated samples).")
@click.option("--store", type=click.Path(file_okay=False, path_type=Path), default=Path(".dplogs-demo"),
              show_default=True, help="Store to create or reuse.")
@click.option("--queries", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("queries"),
              show_default=True, help="Folder of the shipped query files and reports/.")
def demo(logs: Path, store: Path, queries: Path) -> None:
    """Ingest LOGS into STORE, set a demo budget (ε=12, δ=1e-5 per month, only if the store has no
    caps yet), print the number of distinct accounts failing to log in per day as a DP release
    (the password spray of 2024-03-12 stands out), then catch up the nightly report over the spray
    week (2024-03-11 to 2024-03-14, ε=2 a night) into STORE/reports/ as a scheduler would, and print
    the spray night's summary of what stands out; finally declare who the people are (dplogs
    protect: the sample company's roster LOGS/.organisation/people.txt and its internal networks)
    and show the brute force from outside and the account names it guessed, counted exactly, while
    the people's own rows keep their noise.

    Releases are keyed for idempotency, so running the demo again re-emits the stored results and
    spends no budget.
    """
    summary = ingest([logs], store, options=IngestOptions(year=2024))
    again = sum(f.duplicate_file for f in summary.files)  # a rerun: '0 events parsed' read like a failure
    click.echo(f"1. ingested {logs}: {summary.parsed} events parsed, {summary.quarantined} quarantined "
               f"→ {store}" + (f" ({again} file(s) already in the store, not read again)" if again else ""), err=True)

    st = Store.open(store)
    ledger = open_store_ledger(st, create=True, store_id=st.assign_identity())
    ledger.bind()  # the demo administers its own store
    if ledger.caps() is None:
        ledger.set_caps(window_policy="month", epsilon=DEMO_EPSILON, delta=DEMO_DELTA)
        click.echo(f"2. budget caps set: ε={DEMO_EPSILON:g}, δ={DEMO_DELTA:g} per user.name per month", err=True)
    else:
        click.echo("2. budget caps already set; keeping them", err=True)

    query = Engine.open(store).query_file(queries / "failing_accounts_per_day.toml")
    click.echo("3. plan (spends nothing):\n" + query.explain().text, err=True)
    release = query.release(caller="demo", idempotency_key="demo:failing_accounts_per_day")
    spent = "replayed from the ledger, nothing spent" if release.privacy.get("replayed") else f"ε={release.privacy['epsilon']:g} charged"
    click.echo(f"4. released ({spent}):", err=True)
    write_release(release, "table", sys.stdout, title="Distinct accounts with a failed login, per day (DP)")

    out_dir = check_out_dir(store / "reports")
    spec = load_report_spec(queries / "reports" / "nightly.toml")
    result = catch_up(spec, store, today=dt.date(2024, 3, 15), since=dt.date(2024, 3, 11),
                      on_run=lambda run: write_outputs(run, out_dir))
    click.echo(f"5. caught up {len(result.runs)} nights of {spec.name} (`dplogs report --catch-up`) → {out_dir}/",
               err=True)
    for run in result.runs:
        click.echo(f"   {run.start}: {len(summarize(run).standouts)} cell(s) stand out", err=True)
    if result.error is not None:
        raise result.error
    spray = next(r for r in result.runs if r.start == dt.date(2024, 3, 12))
    click.echo(f"6. what stands out on 2024-03-12 (top of {out_dir / 'nightly-soc-2024-03-12.html'}):", err=True)
    for x in summarize(spray).standouts:
        click.echo(f"   - {visible(cell_label(x.cell, spray.tz))} in {visible(x.section)}: {x.aggregate} {x.value:g} "
                   f"(joint 95% interval from {x.low:.3g}, baseline {x.baseline:g})", err=True)

    # attackers are not the people the budget protects: declare the sample's people and networks,
    # then the brute force from outside and the names it guessed show exactly while the employees'
    # own failures keep their noise
    roster = logs / DEMO_ROSTER
    if load_policy(store).protects_everything:
        save_policy(store, users=read_roster(roster) if roster.is_file() else None, networks=DEMO_NETWORKS)
    policy = load_policy(store)
    declared = (f"--users {roster} " if policy.users else "") + f"--networks {','.join(policy.networks)}"
    brute = Engine.open(store).query_file(queries / "failed_logins_by_source_hour.toml", epsilon=0.5)
    rel = brute.release(caller="demo", idempotency_key="demo:failed_logins_by_source_hour")
    top = rel.data.sort("value", descending=True).head(3)
    click.echo(f"7. with `dplogs protect {visible(declared)}`, failures from outside against accounts that are no one's are counted exactly "
               f"(the top {top.height} of {rel.data.height} released source/hour cells):", err=True)
    for row in top.iter_rows(named=True):
        click.echo(f"   - {row['hour']:%Y-%m-%d %H:00} {visible(str(row['source.ip']))}: "
                   f"{_parts(row['value'], row['exact'], 'unprotected', 'protected')}", err=True)
    if not policy.users:
        return
    names = Engine.open(store).query_file(queries / "top_attacked_accounts.toml", epsilon=1.0)
    rel = names.release(caller="demo", idempotency_key="demo:top_attacked_accounts")
    click.echo("8. most-attacked account names (top_attacked_accounts): a name is released only where it occurs in "
               "unprotected rows, i.e. it is no one's (not on the roster); the people's accounts (the spray's victims) "
               "keep their noise, also for failures from outside the networks:", err=True)
    for row in rel.data.sort("value", descending=True).iter_rows(named=True):
        click.echo(f"   - {visible(str(row['user.name']))}: {_parts(row['value'], row['exact'], 'unprotected', 'protected')}",
                   err=True)


def _parts(value: float, exact: float, exact_label: str, noisy_label: str) -> str:
    """A released total as its exact part plus the noisy rest, which may be negative: noise on the
    protected rows is unbiased, so a total can read below its exact part."""
    rest = value - exact
    noisy = "noisy: their count plus noise, which took it below 0" if rest < 0 else "noisy"
    return (f"{value:g} failures = {exact:g} {exact_label} (exact) {'-' if rest < 0 else '+'} {abs(rest):g} "
            f"{noisy_label} ({noisy})")
