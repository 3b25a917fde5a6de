"""``dplogs protect``: set or show the store's protected-population policy."""

from __future__ import annotations

import click

from dplogs.cli.examples import examples
from dplogs.engine.policy import Policy, check_recorded, load, read_roster, save
from dplogs.errors import StoreError, UsageError
from dplogs.ingest.store import Store
from dplogs.privacy.ledger import open_store_ledger


@click.command(epilog=examples("protect"))
@click.option("--store", "store_path", required=True, type=click.Path(file_okay=False), help="The store.")
@click.option("--users", "users_file", type=click.Path(dir_okay=False),
              help="File of the accounts that are people, one per line (e.g. a directory export).")
@click.option("--networks", help="The organisation's address ranges, comma-separated CIDRs (e.g. 10.0.0.0/8,192.168.0.0/16).")
@click.option("--show", is_flag=True, help="Print the policy in force (never the roster's names).")
@click.option("--clear", is_flag=True, help="Go back to protecting every row (a new policy version).")
def protect(store_path: str, users_file: str | None, networks: str | None, show: bool, clear: bool) -> None:
    """Say whose activity the store's releases protect.

    By default every row is protected. With a roster (--users), rows whose privacy unit is an
    account (user.name; with a unit chain, rows whose unit came from user.name) not on it (root,
    service accounts, names an attacker guessed) are not a person's; a unit from another field
    (a host) and the shared unit of rows without identity stay protected;
    with --networks, rows whose source.ip lies outside every range (internet scanners,
    brute-force sources) are not an employee's, unless their account is on the roster. Such rows
    are aggregated exactly and added to the noisy, bounded part of the protected rows; their keys
    need no partition selection. Every other row stays protected (when in doubt, protect): a
    person on the roster logging in from outside the networks (from home, a hotel) stays
    protected there too. Roster lines may be written as a directory exports them (CORP\\Alice,
    alice@corp.example): they are matched as ingest names accounts, case-insensitively.

    The policy is operator input: never build the roster from the store itself, since a roster
    derived from the data would leak it. Each change is a new version; releases record the
    version they ran under, and past releases keep their accounting. Spends no budget.
    """
    store = Store.open(store_path)
    if show:
        if users_file or networks or clear:
            raise UsageError("--show takes no other option")
        p = load(store.path)
        click.echo(f"protection policy version {p.version}")
        click.echo(f"privacy unit: {store.manifest.unit_rule.describe()}")
        if p.protects_everything:
            click.echo("every row is protected")
        if p.users is not None:
            click.echo(f"roster: {len(p.users)} accounts are people (rows of other accounts are unprotected)")
        if p.networks is not None:
            click.echo(f"networks: {', '.join(p.networks)} (rows from other source addresses are unprotected)")
        # a policy changed by hand is shown, then refused as releases refuse it; so is a missing
        # ledger (faults4 saw exit 0 where every release was refused), and a policy no ledger recorded
        if not store.ledger_path.exists() and not store.recorded_ledger_id():
            check_recorded(p, None, store.path)
            return
        ledger = open_store_ledger(store, create=False, store_id=store.identity)
        try:
            check_recorded(p, ledger.protection(), store.path)
        finally:
            ledger.close()
        return
    try:
        before: Policy | None = load(store.path)  # to say what the new version stops protecting
    except StoreError:
        before = None  # unreadable: `protect` is how it is put right; nothing to compare with
    if clear:
        if users_file or networks:
            raise UsageError("--clear takes no other option")
        p = save(store.path, users=None, networks=None)
    else:
        if not users_file and not networks:
            raise UsageError("give --users FILE and/or --networks CIDR,..., or --show / --clear")
        users = read_roster(users_file) if users_file else None
        nets = tuple(n.strip() for n in networks.split(",") if n.strip()) if networks else None
        if networks is not None and not nets:
            raise UsageError("--networks needs at least one CIDR")
        p = save(store.path, users=users, networks=nets)
    click.echo(f"protection policy version {p.version} in force for {store.path}")
    if before is None:
        return
    if before.networks is not None and p.networks is None and p.users is not None:
        click.echo(f"note: the networks rule of version {before.version} ({', '.join(before.networks)}) is dropped; pass "
                   "--networks again to keep it", err=True)
    loosened = p.loosened_from(before)
    for note in loosened:
        click.echo(f"warning: {note}", err=True)
    if loosened:
        click.echo(f"warning: releases from now on count those rows exactly, also in budget windows whose earlier "
                   f"releases protected them under version {before.version} (docs/privacy.md)", err=True)
