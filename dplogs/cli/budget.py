"""``dplogs budget``: show, history, set and verify the store's privacy-budget ledger.

The library does the work (:class:`dplogs.privacy.ledger.Ledger`); this module adapts options and
renders. Tables and JSON go to stdout, notes and warnings to stderr.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import click

from dplogs.cli.examples import examples
from dplogs.cli.numbers import NUMBER
from dplogs.escape import visible
from dplogs.errors import LedgerIOError, UsageError
from dplogs.privacy.ledger import Entry, Ledger, WindowBudget, open_store_ledger, open_store_ledger_copy

_STORE_HELP = "The store directory (made by `dplogs ingest`); its ledger is STORE/ledger.sqlite."


def _store_option(f):
    return click.option("--store", required=True, type=click.Path(file_okay=False, path_type=Path), help=_STORE_HELP)(f)


def open_ledger(store: Path, *, create: bool = False, replace_lost: bool = False) -> tuple[Ledger, str]:
    """The store's ledger and the store's budget window policy (from its manifest). With
    ``create`` (``budget set``, the administrator's command) a store made before store ids gets
    one; reading commands check the ledger against the id when there is one."""
    from dplogs.ingest.store import Store

    st = Store.open(store)
    store_id = st.assign_identity() if create else (st.manifest.store_id or None)
    try:
        return open_store_ledger(st, create=create, store_id=store_id, replace_lost=replace_lost), st.manifest.budget_window
    except LedgerIOError:
        why = None if create else "read-only" if not _writable(st.path) else "on a full disk" if _full(st.path) else None
        if why is None:
            raise
    # a read-only store (a read-only mount, a forensic copy) or a full disk: SQLite cannot open a
    # WAL ledger in place (it writes its -shm index), so reading commands read a private copy of
    # it, with every check
    click.echo(f"note: the store {st.path} is {why}: reading a private copy of its ledger", err=True)
    return open_store_ledger_copy(st, store_id=store_id), st.manifest.budget_window


def no_ledger_yet(store: Path) -> bool:
    """The store never had a ledger: none on disk and none recorded in its manifest (a recorded
    ledger gone missing is a lost ledger, refused with 74 by :func:`open_ledger`)."""
    from dplogs.ingest.store import Store

    st = Store.open(store)
    return not os.path.lexists(st.ledger_path) and not st.recorded_ledger_id()


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)  # False on a read-only mount, even for root


def _full(path: Path) -> bool:
    """Less room on ``path``'s file system than SQLite needs to open a WAL ledger (its -shm file
    grows 32 KiB at a time)."""
    fs = os.statvfs(path)
    return fs.f_bavail * fs.f_frsize < 64 << 10


def _num(x: float | None, fmt: str = ".4g") -> str:
    if x is None:
        return "-"
    return "inf" if math.isinf(x) else format(x, fmt)


def _json_num(x: float | None) -> float | None:
    return None if x is None or math.isinf(x) else x  # JSON has no infinity: null means unbounded


def _budget_json(b: WindowBudget) -> dict[str, Any]:
    return {
        "window": b.window,
        "caps": None if b.caps is None else {"epsilon": b.caps.epsilon, "delta": b.caps.delta, "rho": b.caps.rho},
        "spent": {"epsilon": _json_num(b.spent.epsilon), "delta": b.spent.delta, "rho": b.spent.rho,
                  "method": b.spent.method},
        "remaining": {"epsilon": b.remaining.epsilon, "delta": b.remaining.delta, "rho": b.remaining.rho},
        "entries": b.entries,
        "unfinished": b.unfinished,
    }


@click.group()
def budget() -> None:
    """Inspect and manage the store's privacy-budget ledger.

    Every release is charged to each budget window (day, week or month) its time range touches;
    caps bound the composed (ε, δ) of each window, and optionally its zCDP ρ.
    """


@budget.command(epilog=examples("budget show"))
@_store_option
@click.option("--window", "windows", multiple=True, metavar="KEY",
              help="Only this window (repeatable), e.g. 2026-11, 2026-W47 or 2026-11-22; default: every window with releases.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def show(store: Path, windows: tuple[str, ...], as_json: bool) -> None:
    """Spent and remaining budget per window (a ledger that fails verification is refused, 74).

    "spent ε" is the composed guarantee (pure ε adds; Gaussian ρ is converted at the δ cap; the
    tighter valid bound is shown). "left ε" / "left ρ" are the largest single further pure-ε or
    zCDP release that still fits. Entries left reserved by a crashed run count as spent.
    """
    if no_ledger_yet(store):  # a new store: nothing spent, nothing to alarm a monitor about (was 74)
        from dplogs.ingest.store import Store

        policy, caps, budgets = Store.open(store).manifest.budget_window, None, []
    else:
        with open_ledger(store)[0] as ledger:
            # sums of a tampered ledger are not the spend: refused like a release (74), not shown
            ledger.verify().raise_for_problems()
            policy, caps = ledger.window_policy, ledger.caps()
            budgets = [ledger.budget(w) for w in (windows or ledger.windows())]
    if as_json:
        click.echo(json.dumps({
            "window_policy": policy,
            "caps": None if caps is None else {"epsilon": caps.epsilon, "delta": caps.delta, "rho": caps.rho},
            "windows": [_budget_json(b) for b in budgets],
        }, indent=2))
        return
    if caps is None:
        click.echo("no budget caps set; set them with `dplogs budget set --store STORE --epsilon E --delta D`", err=True)
    else:
        click.echo(f"caps per {policy}: epsilon={_num(caps.epsilon)} delta={_num(caps.delta)} rho={_num(caps.rho)}", err=True)
    if not budgets:
        click.echo("no releases charged yet", err=True)
        return
    header = ("window", "spent ε", "spent δ", "spent ρ", "method", "left ε", "left ρ", "entries", "unfinished")
    rows = [
        (b.window, _num(b.spent.epsilon), _num(b.spent.delta), _num(b.spent.rho), b.spent.method,
         _num(b.remaining.epsilon), _num(b.remaining.rho), str(b.entries), str(b.unfinished))
        for b in budgets
    ]
    _table(header, rows)
    if any(b.unfinished for b in budgets):
        click.echo("note: unfinished entries are reserved by a running or crashed release; they count as spent", err=True)


@budget.command(epilog=examples("budget history"))
@_store_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Show at most N entries, newest first.")
@click.option("--all", "show_all", is_flag=True, help="Show every entry (overrides --limit).")
@click.option("--window", metavar="KEY", help="Only entries charged to this window, e.g. 2026-11.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (entries with their stored payloads).")
def history(store: Path, limit: int, show_all: bool, window: str | None, as_json: bool) -> None:
    """Ledger entries, newest first: loss, windows, caller, status and query."""
    with open_ledger(store)[0] as ledger:
        entries = ledger.history(limit=None if show_all else limit, window=window)
        report = ledger.verify()
    if not report.ok:  # listed for investigation, as stored
        click.echo(f"warning: the ledger fails verification ({visible('; '.join(report.problems))}): entries are "
                   "shown as stored and may have been changed; nothing can be released from it", err=True)
    if as_json:
        click.echo(json.dumps([e.to_json() for e in entries], indent=2))
        return
    if not entries:
        click.echo("no entries", err=True)
        return
    header = ("#", "created (UTC)", "status", "caller", "windows", "ε", "δ", "ρ", "key", "query")
    _table(header, [_history_row(e) for e in entries])


def _history_row(e: Entry) -> tuple[str, ...]:
    # query text may quote log values and keys come from schedulers: shown inert (escaped controls)
    query = visible((e.query or "-").replace("\n", " "))
    return (str(e.seq), e.created_at[:19].replace("T", " "), e.status, visible(e.caller), ",".join(e.windows),
            _num(e.loss.epsilon), _num(e.loss.delta), _num(e.loss.rho), visible(e.idempotency_key or "-"),
            query if len(query) <= 60 else query[:57] + "...")


@budget.command(name="set", epilog=examples("budget set"))
@_store_option
@click.option("--epsilon", type=NUMBER, help="Cap on the composed ε of every window (required the first time).")
@click.option("--delta", type=NUMBER,
              help="Cap on δ per window (default 0 the first time: then Gaussian releases and private-key "
                   "partition selection are refused; 1e-6 or smaller is typical).")
@click.option("--rho", type=NUMBER, help="Optional extra cap on the zCDP ρ of Gaussian releases per window.")
@click.option("--window-policy", type=click.Choice(["day", "week", "month"]),
              help="Budget window; must match the store's (chosen at ingest, default month).")
@click.option("--window", metavar="KEY", help="Set caps for this one window only, e.g. 2026-12.")
@click.option("--replace-lost-ledger", is_flag=True,
              help="The store's ledger file is gone: start a new one that records the loss (what was spent "
                   "before cannot be known). Refused while the store's own ledger is there.")
@click.option("--reset-head-record", is_flag=True,
              help="The ledger's head record (ledger.sqlite.head) is missing or unreadable, and you have checked "
                   "that ledger.sqlite is the store's current ledger: write a new record from it (noted in the "
                   "ledger). Refused while the record is readable.")
def set_caps(store: Path, epsilon: float | None, delta: float | None, rho: float | None,
             window_policy: str | None, window: str | None, replace_lost_ledger: bool,
             reset_head_record: bool) -> None:
    """Set the budget caps (creates the ledger if needed). Options left out keep their value.

    Also binds the store's ledger to the store (once, for stores and ledgers made before store
    ids). Lowering a cap below what a window already spent is allowed: that window simply has no
    budget left (releases into it exit 77), nothing already released is undone, and a warning
    names the window and its spend.
    """
    ledger, store_policy = open_ledger(store, create=True, replace_lost=replace_lost_ledger)
    with ledger:
        if reset_head_record:
            ledger.reset_head_record()
        ledger.bind()  # the administrator's command: an unbound ledger becomes this store's
        if window_policy is not None and window_policy != store_policy:
            raise UsageError(
                f"this store's budget window is {store_policy} (chosen at ingest with --budget-window); "
                f"pass --window-policy {store_policy} or ingest into a new store"
            )
        current = ledger.caps(window)
        if epsilon is None and current is None:
            raise UsageError("pass --epsilon: no caps are set yet")
        ledger.set_caps(
            window_policy=store_policy,
            epsilon=epsilon if epsilon is not None else current.epsilon,
            delta=delta if delta is not None else (current.delta if current else 0.0),
            rho=rho if rho is not None else (current.rho if current else None),
            window=window,
        )
        caps = ledger.caps(window)
        over = [b for b in (ledger.budget(w) for w in ([window] if window else ledger.windows())) if b.over_cap]
    where = f"window {window}" if window else f"every {store_policy} window"
    click.echo(f"caps for {where}: epsilon={_num(caps.epsilon)} delta={_num(caps.delta)} rho={_num(caps.rho)}", err=True)
    for b in over:
        click.echo(
            f"warning: window {b.window} already spent epsilon={_num(b.spent.epsilon)} delta={_num(b.spent.delta)} "
            f"rho={_num(b.spent.rho)}, more than its new cap (epsilon={_num(b.caps.epsilon)} "
            f"delta={_num(b.caps.delta)} rho={_num(b.caps.rho)}); the cap is set and that window has no budget "
            "left: releases into it are refused (exit 77) until the cap is raised. Nothing already released "
            "is undone.", err=True)


@budget.command(epilog=examples("budget verify"))
@_store_option
@click.option("--json", "as_json", is_flag=True, help="Print the verification report as JSON.")
@click.option("--pinned", "pinned", metavar="HASH", multiple=True,
              help="A head hash recorded outside the store earlier (e.g. in the SIEM after each nightly run): "
                   "also check that the ledger's chain still contains it, i.e. extends that history. Repeatable.")
def verify(store: Path, as_json: bool, pinned: tuple[str, ...]) -> None:
    """Check the ledger's hash chain, seals and entry count.

    Exits 0 when intact (entries left reserved by a crashed run are listed; they count as spent),
    74 when an entry was edited, deleted, inserted or reordered, the file is corrupt, or a --pinned
    head is not in the chain (the ledger, or the whole store, was restored from an older copy).
    Record the printed head hash elsewhere to pin the history.
    """
    for h in pinned:
        if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise UsageError(f"--pinned takes a head hash as `budget verify` prints it (64 hex digits), got {visible(h)!r}")
    with open_ledger(store)[0] as ledger:
        report = ledger.verify(pinned=pinned)
        replaced, reset = ledger.replaced_lost(), ledger.head_record_reset()
    if as_json:
        click.echo(json.dumps({
            "ok": report.ok, "entries": report.entries, "head_hash": report.head_hash,
            "problems": list(report.problems), "unfinished": [e.id for e in report.unfinished],
        }, indent=2))
    else:
        status = "ok" if report.ok else "FAILED"
        click.echo(f"{status}: {report.entries} entries, head hash {report.head_hash}")
    if replaced:
        click.echo(f"note: this ledger replaced ledger {replaced}: spend before that is not "
                   "in it", err=True)
    if reset:
        click.echo(f"note: the ledger's head record was reset by its administrator at {reset}", err=True)
    for e in report.unfinished:
        click.echo(f"note: entry #{e.seq} ({e.id}, {visible(e.caller)}, pid {e.pid}) is still reserved: in flight "
                   "or interrupted; it counts as spent", err=True)
    report.raise_for_problems()


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, *rows):
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
