"""The protected population: whose activity a store's releases protect.

An operator (never dplogs: a roster derived from the store would itself leak) may say which
accounts are people (``--users FILE``, e.g. a directory export) and which address ranges are the
organisation's (``--networks CIDR,...``). A row is **protected** unless a given condition says it
is not a person's:

- the roster decides for rows whose privacy unit came from the account field (``user.name``; with
  a unit chain such as ``user.name,host.name``, the rows where ``user.name`` is the first non-null
  field): an account not on the roster (``root``, a service account, a name an attacker guessed)
  is not a person. A unit taken from another field (a host) or the shared unattributed unit is
  not an account, so the roster leaves those rows protected;
- the networks decide for rows that carry ``source.ip``: an address outside every range (an
  internet scanner, a brute-force source) is not an employee's, unless the row's account is on
  the roster: a person logging in from outside (from home, a hotel) is still that person, and
  their rows stay protected whatever the unit;
- a row no given condition applies to stays protected, and so does an address that does not parse.

Protection is a function of the row alone. Protected rows are bounded and noised as before;
unprotected rows are aggregated exactly and added to the noisy part. Removing one unit's
protected rows in one budget window (the neighbouring relation restricted to the protected
population) therefore leaves the exact part unchanged, so every release is (ε, δ)-DP for the
protected rows of every unit: personalised DP with ε = ∞ for what the policy leaves out
(docs/privacy.md). The default policy (no file) protects everything.

Policies are versioned in ``STORE/policy/``: ``vN.json`` files are never rewritten, ``current``
names the one in force, and every release records the version and digest it ran under. The
store's budget ledger seals the version and digest ``dplogs protect`` last wrote
(:func:`check_recorded`): a policy file edited, replaced or rolled back by hand, even into a
well-formed policy that unprotects more rows, releases nothing.

>>> p = Policy(version=1, users=frozenset({"anna"}), networks=("10.0.0.0/8",))
>>> p.address_protected("10.1.2.3"), p.address_protected("24.151.103.17"), p.address_protected("not an ip")
(True, False, True)
>>> p.address_protected("::ffff:10.1.2.3"), p.address_protected("::ffff:24.151.103.17")
(True, False)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import ipaddress
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from dplogs.errors import ConcurrentRun, DataError, InputNotFound, StoreDamaged, StoreError, StoreWriteError, UsageError
from dplogs.files import directory_locked, read_regular, replace_whole
from dplogs.ingest.accounts import account_columns
from dplogs.schema.units import UnitRule

ACCOUNT = "user.name"  # the identity field the roster's accounts are values of

PROTECTED = "__protected__"
_POLICY_DIR = "policy"
_CURRENT = "current"
MAX_ROSTER = 10_000_000


@dataclass(frozen=True)
class Policy:
    """Public: one version of a store's protected-population policy."""

    version: int = 0
    users: frozenset[str] | None = None
    networks: tuple[str, ...] | None = None
    created: str = ""
    _nets: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.networks is not None:
            object.__setattr__(self, "_nets", tuple(parse_network(n) for n in self.networks))

    @property
    def protects_everything(self) -> bool:
        return self.users is None and self.networks is None

    @functools.cached_property
    def digest(self) -> str:
        # cached, as roster_keys: each sorts the roster, and a release read both twice (a 3M-account
        # roster spent ~10 s of every query on them: faults4)
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "users": sorted(self.users) if self.users is not None else None,
            "networks": list(self.networks) if self.networks is not None else None,
            "created": self.created,
        }

    def describe(self, unit: str | UnitRule, *, unit_rows: bool = False) -> dict[str, Any]:
        """What a release discloses about the policy it ran under (never the roster itself);
        ``unit_rows``: over rows that stand for a unit (:meth:`mark`)."""
        if self.protects_everything:
            return {"version": self.version, "rule": "every row is protected"}
        rule = UnitRule.parse(unit)
        addresses = self.networks is not None and (not unit_rows or self.addresses_decide_units(rule))
        if self.networks is not None and not addresses and ACCOUNT not in rule.fields:  # over unit_rows
            return {"version": self.version, "digest": self.digest,
                    "rule": "every row is protected: each stands for a unit-window, and an address's may hold a roster "
                            "person's rows, so the networks do not unprotect it"}
        parts = []
        if self.users is not None:
            if ACCOUNT not in rule.fields:
                parts.append("the roster only keeps its people's rows protected (the unit is not an account)")
            elif len(rule.fields) == 1:
                parts.append(f"rows whose {ACCOUNT} is an account not on the operator's roster of {len(self.users)} people")
            else:
                parts.append(f"rows whose unit came from {ACCOUNT} and is an account not on the operator's roster of "
                             f"{len(self.users)} people (units from other fields and the shared unit stay protected)")
        if addresses:
            parts.append(f"rows whose source.ip lies outside {', '.join(self.networks)}"
                         + (" and whose account is not on the roster" if self.users is not None else ""))
        return {"version": self.version, "digest": self.digest,
                "rule": "unprotected (aggregated exactly, no noise on their part): " + "; ".join(parts)}

    def loosened_from(self, old: Policy) -> list[str]:
        """What this version leaves unprotected that ``old`` protected, in words for the operator
        who just changed it: a roster dropped (every row from outside the networks, people's too),
        accounts taken off the roster, network ranges taken out. Rules added on purpose (a first
        roster, networks named for the first time) are not listed: they are what was asked. From
        this version on, releases count those rows exactly, also in budget windows whose earlier
        releases protected them (redteam5).

        >>> old = Policy(version=1, users=frozenset({"anna", "omar"}), networks=("10.0.0.0/8",))
        >>> Policy(version=2, users=frozenset({"anna"}), networks=("10.1.0.0/16",)).loosened_from(old)
        ['1 account left the roster: its rows are no longer protected', 'addresses in 10.0.0.0/8 outside 10.1.0.0/16 are now outside the networks: their rows are no longer protected unless their account is on the roster']
        >>> Policy(version=2, networks=("10.0.0.0/8",)).loosened_from(old)
        ["the roster of 2 people is dropped: rows from outside 10.0.0.0/8 are no longer protected, people's too (pass --users again to keep it)"]
        """
        if old.protects_everything or self.protects_everything:
            return []
        notes = []
        if old.users is not None and self.users is None and self.networks is not None:
            notes.append(f"the roster of {len(old.users):,} people is dropped: rows from outside {', '.join(self.networks)} "
                         "are no longer protected, people's too (pass --users again to keep it)")
        elif old.users is not None and self.users is not None:
            left = len(set(old.roster_keys()) - set(self.roster_keys()))
            if left:
                notes.append(f"{left:,} account{'s' if left != 1 else ''} left the roster: "
                             f"{'their' if left != 1 else 'its'} rows are no longer protected")
        if old.networks is not None and self.networks is not None:
            for net in old._nets:
                if not any(net.version == n.version and net.subnet_of(n) for n in self._nets):
                    notes.append(f"addresses in {net} outside {', '.join(self.networks)} are now outside the networks: "
                                 "their rows are no longer protected unless their account is on the roster")
        return notes

    def roster_keys(self) -> list[str]:
        """The roster's accounts as ingest names them, lower-cased: a directory export's
        ``CORP\\Alice.Smith`` or ``alice.smith@corp.example`` is the ``user.name`` ingest stores
        (``alice.smith`` from Windows, whose names it lower-cases; Unix names keep their case).
        Rows are matched on their lower-cased ``user.name``, so ``Bob`` and ``bob`` are both on a
        roster naming either: matching more rows only protects more."""
        return list(self._roster_keys)

    @functools.cached_property
    def _roster_keys(self) -> tuple[str, ...]:
        frame = pl.DataFrame({"u": sorted(self.users or ())}, schema={"u": pl.String})
        return tuple(frame.select(account_columns(pl.col("u"), case_insensitive=True)["user.name"]).to_series().unique())

    def address_protected(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.strip())
        except ValueError:
            return True  # when in doubt, protect
        # an IPv4 host seen by a dual-stack server as ::ffff:10.0.0.5 is the IPv4 host
        mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
        return any(a.version == n.version and a in n for a in (addr, mapped) if a is not None for n in self._nets)

    def mark(self, lf: pl.LazyFrame, unit: str | UnitRule, *, unit_rows: bool = False) -> pl.LazyFrame:
        """``lf`` with the boolean column :data:`PROTECTED`. The network test runs once per distinct
        address (a function of each row's own address, so of the row alone).

        ``unit_rows``: each row of ``lf`` stands for many rows of its unit (an anomaly query's
        unit-windows, scored from all of the unit's rows in its budget window), so it may be
        unprotected only when *every* row its unit can have is: otherwise removing a unit's
        protected rows would change an exactly counted row. The roster's condition is one per
        unit already (an account's rows are all that account's); the networks' is one per row
        (a row from an outside address is a person's when it carries a roster account), so it
        applies only where no row of a unit from ``source.ip`` can carry an account
        (:meth:`addresses_decide_units`)."""
        rule = UnitRule.parse(unit)
        protected, person = pl.lit(True), pl.lit(False)
        if self.users is not None:
            keys = pl.Series(self.roster_keys(), dtype=pl.String)
            person = pl.col(ACCOUNT).str.to_lowercase().is_in(keys.implode()).fill_null(False)
            if ACCOUNT in rule.fields:
                protected &= ~rule.source(ACCOUNT) | person
        if self.networks is not None and (not unit_rows or self.addresses_decide_units(rule)):
            ips = lf.select(pl.col("source.ip").drop_nulls().unique()).collect().to_series()
            inside = [ip for ip in ips.to_list() if self.address_protected(ip)]
            protected &= pl.col("source.ip").is_null() | pl.col("source.ip").is_in(pl.Series(inside, dtype=pl.String).implode())
        # a roster account's row is a person's wherever it came from (found by redteam3: a person
        # logging in from outside the networks had those rows released exactly)
        return lf.with_columns((protected | person).alias(PROTECTED))

    def addresses_decide_units(self, unit: str | UnitRule) -> bool:
        """Whether an outside address leaves every row of its unit unprotected, so that a row
        standing for a whole unit from ``source.ip`` may be unprotected too: without a roster no
        row is kept protected by its account, and with ``user.name`` before ``source.ip`` in the
        chain the rows whose unit is an address carry no account. On a ``source.ip`` store with a
        roster, an address a person signed in from holds protected rows (found by redteam4: an
        anomaly query counted a person's home address-days exactly).

        >>> p = Policy(version=1, users=frozenset({"anna"}), networks=("10.0.0.0/8",))
        >>> p.addresses_decide_units("source.ip"), p.addresses_decide_units("user.name,source.ip")
        (False, True)
        >>> Policy(version=1, networks=("10.0.0.0/8",)).addresses_decide_units("source.ip")
        True
        """
        fields = UnitRule.parse(unit).fields
        if self.users is None or "source.ip" not in fields:
            return True
        return ACCOUNT in fields and fields.index(ACCOUNT) < fields.index("source.ip")

    def mark_spark(self, sdf: Any, unit: str | UnitRule) -> Any:
        """:meth:`mark` for a Spark DataFrame, on the executors: the roster is joined as a table
        (it is the operator's input, not data), and the network test runs once per distinct
        address in ``mapInArrow`` (``ipaddress`` has no Spark SQL twin), joined back; no address
        reaches the driver. The roster unprotects only rows whose unit came from ``user.name``,
        and keeps every row of its accounts protected."""
        from pyspark.sql import functions as F

        from dplogs.backends.spark import col

        rule = UnitRule.parse(unit)
        protected, person = F.lit(True), F.lit(False)
        if self.users is not None:
            roster = sdf.sparkSession.createDataFrame(
                pa.table({"__roster": pa.array(self.roster_keys(), pa.string())}))
            # lower-cased by polars, as :meth:`mark` does, once per distinct name: Spark's lower()
            # is Java's, whose default locale (Turkish: I -> dotless ı) and Unicode version differ,
            # and a roster name it missed was released exactly
            names = sdf.select(col(ACCOUNT).alias("__name")).where(F.col("__name").isNotNull()).distinct()
            lowered = names.mapInArrow(_lowered, "__name string, __lower string")
            sdf = sdf.join(lowered, col(ACCOUNT) == F.col("__name"), "left") \
                .join(roster.withColumn("__on_roster", F.lit(True)), F.col("__lower") == F.col("__roster"), "left")
            person = F.coalesce(F.col("__on_roster"), F.lit(False))
            if ACCOUNT in rule.fields:
                came = col(ACCOUNT).isNotNull()
                for earlier in rule.fields[:rule.fields.index(ACCOUNT)]:
                    came = came & col(earlier).isNull()
                protected = protected & (~came | person)
        if self.networks is not None:
            ips = sdf.select(col("source.ip").alias("__ip")).where(F.col("__ip").isNotNull()).distinct()
            # the executors get the networks only, never the roster
            tested = ips.mapInArrow(_inside(Policy(networks=self.networks)), "__ip string, __inside boolean")
            sdf = sdf.join(tested, col("source.ip") == F.col("__ip"), "left")
            protected = protected & (col("source.ip").isNull() | F.coalesce(F.col("__inside"), F.lit(False)))
        return sdf.withColumn(PROTECTED, protected | person).drop("__name", "__lower", "__roster", "__on_roster", "__ip",
                                                                  "__inside")


def _lowered(batches: Any) -> Any:
    """The per-partition function of :meth:`Policy.mark_spark`: each distinct account name with its
    polars lower case (the function :meth:`Policy.mark` matches the roster with)."""
    for b in batches:
        names = pl.from_arrow(b.column("__name")).cast(pl.String)
        yield pa.RecordBatch.from_arrays([names.to_arrow(), names.str.to_lowercase().to_arrow()], ["__name", "__lower"])


def _inside(policy: Policy) -> Any:
    """The per-partition function of :meth:`Policy.mark_spark`: each distinct address with
    whether it lies in the policy's networks."""

    def run(batches: Any) -> Any:
        for b in batches:
            ips = b.column("__ip").to_pylist()
            yield pa.RecordBatch.from_arrays(
                [pa.array(ips, pa.string()), pa.array([policy.address_protected(ip) for ip in ips], pa.bool_())],
                ["__ip", "__inside"])

    return run


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(str(text).strip(), strict=False)
    except ValueError:
        raise UsageError(f"{text!r} is not a network in CIDR form (e.g. 10.0.0.0/8, 2001:db8::/32)") from None


def read_roster(path: str | os.PathLike[str]) -> frozenset[str]:
    """Accounts that are people, one per line (blank lines and ``#`` comments skipped)."""
    p = Path(path)
    if not p.is_file():
        raise InputNotFound(f"roster file {p} does not exist (or is not a file)")
    try:
        text = p.read_text(encoding="utf-8-sig")  # a BOM (Windows exports write one) is not part of the first name
    except UnicodeDecodeError as exc:
        raise DataError(f"roster file {p} is not UTF-8 text (byte {exc.start}); export it as UTF-8, one account per line") from None
    users = {line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")}
    if not users:
        raise DataError(f"roster file {p} names no account; give one account per line")
    if len(users) > MAX_ROSTER:
        raise DataError(f"roster file {p} names {len(users):,} accounts, more than {MAX_ROSTER:,}")
    return frozenset(users)


def load(store_path: str | os.PathLike[str]) -> Policy:
    """The policy in force for the store (the default protects everything)."""
    folder = Path(store_path) / _POLICY_DIR
    current = folder / _CURRENT
    if not current.exists() and not current.is_symlink():
        return Policy()
    try:  # read_regular: a FIFO or a link to /dev/zero at a policy file's name hung or exhausted memory (faults4)
        with directory_locked(folder, shared=True):  # `dplogs protect` writes under the exclusive lock: never half of it
            version = int((read_regular(current, limit=64) or b"").strip())
            newest = _newest_version(folder)
            data = json.loads(read_regular(folder / f"v{version}.json") or b"") if version == newest else None
        if version != newest:  # dplogs protect makes each new version current as it writes it
            raise ValueError(f"'current' names version {version}, not the newest, v{newest}.json (a policy put back by hand?)")
        if not isinstance(data, dict) or data.get("version") != version:
            raise ValueError(f"v{version}.json is not version {version} of a policy")
        users, networks = (_strings(data, key) for key in ("users", "networks"))
        created = data.get("created", "")
        policy = Policy(version=version, users=frozenset(users) if users is not None else None,
                        networks=tuple(networks) if networks is not None else None,
                        created=created if isinstance(created, str) else "")
    except (OSError, ValueError, KeyError, TypeError, UsageError) as exc:
        raise StoreError(f"the store's protection policy in {folder} is unreadable ({exc}); set it again with "
                         "dplogs protect") from None
    return policy


def _newest_version(folder: Path) -> int:
    return max((int(f.stem[1:]) for f in folder.glob("v*.json") if f.stem[1:].isdigit()), default=0)


def _strings(data: dict[str, Any], key: str) -> list[str] | None:
    """``data[key]``: null or a list of strings. A policy edited by hand into another shape is
    refused, never read loosely: ``"users": "anna"`` was a roster of the letters a and n, which
    left anna's rows unprotected."""
    value = data[key]
    if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"{key!r} must be a list of strings or null")
    return value


def check_recorded(policy: Policy, recorded: tuple[int, str] | None, store_path: str | os.PathLike[str]) -> None:
    """Refuse to release under ``policy`` unless it is the one ``dplogs protect`` recorded in the
    store's budget ledger (``recorded``: (version, digest), None when it recorded none): the
    policy decides which rows are aggregated exactly, so a file changed by hand must not decide
    it. A store with no policy and none recorded protects everything."""
    if _sealed(policy, recorded):
        return
    said = "none" if recorded is None else f"version {recorded[0]} (digest {recorded[1]})"
    raise StoreDamaged(
        f"the protection policy in {Path(store_path) / _POLICY_DIR} (version {policy.version}, digest "
        f"{policy.digest}) is not the one `dplogs protect` recorded in the store's budget ledger ({said}): it "
        "was edited, replaced or rolled back outside `dplogs protect`, written by a `dplogs protect` interrupted "
        "before it sealed it, or set by a dplogs that did not record policies. Nothing was released or charged. "
        f"Check who changed it, then set the policy you mean with `dplogs protect --store {store_path}`"
    )


def check_in_force(policy: Policy, ledger: Any, store_path: str | os.PathLike[str]) -> None:
    """:func:`check_recorded` for an engine that loaded ``policy`` a while ago: when the ledger
    records another one, a ``dplogs protect`` that finished since is told apart from a policy
    changed by hand (the files on disk against the record, read under the folder's shared lock):
    the first is a run to repeat (ConcurrentRun, 75), the second damage (StoreDamaged, 74)."""
    if _sealed(policy, ledger.protection()):
        return
    with contextlib.ExitStack() as stack:  # both read while no protect is half done
        with contextlib.suppress(OSError):  # no folder: no policy, none being set
            stack.enter_context(directory_locked(Path(store_path) / _POLICY_DIR, shared=True))
        on_disk, recorded = load(store_path), ledger.protection()
    check_recorded(on_disk, recorded, store_path)
    raise ConcurrentRun(f"`dplogs protect` set protection policy version {on_disk.version} while this ran under "
                        f"version {policy.version}; nothing was released or charged: run it again to release "
                        "under the policy now in force")


def _sealed(policy: Policy, recorded: tuple[int, str] | None) -> bool:
    return recorded == (policy.version, policy.digest) if recorded is not None else policy.version == 0


def save(store_path: str | os.PathLike[str], *, users: frozenset[str] | None, networks: tuple[str, ...] | None) -> Policy:
    """Write a new policy version, make it current (older versions stay for the record) and seal
    it in the store's budget ledger (:func:`check_recorded`). The ledger is opened and checked
    first, so a refused ledger changes nothing; a crash between the files and the seal leaves a
    policy that releases nothing until ``dplogs protect`` runs again."""
    from dplogs.ingest.store import Store  # the store format is owned by ingest
    from dplogs.privacy.ledger import open_store_ledger

    for n in networks or ():
        parse_network(n)
    store = Store.open(store_path)
    ledger = open_store_ledger(store, create=True, store_id=store.identity)
    try:
        ledger.verify().raise_for_problems()  # a ledger that would refuse the seal gets no new version either
        with _folder_locked(store.path / _POLICY_DIR):  # two protects at once took the same version (faults4)
            policy = _write(store.path, users=users, networks=networks)
            ledger.record_protection(policy.version, policy.digest)
    finally:
        ledger.close()
    return policy


@contextlib.contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    """Create ``folder`` if needed and hold an exclusive ``flock`` on it (the kernel frees it when a
    run dies): one new version is written and sealed at a time."""
    with contextlib.ExitStack() as stack:
        try:
            folder.mkdir(exist_ok=True)
            stack.enter_context(directory_locked(folder))
        except OSError as exc:
            raise StoreWriteError(f"cannot open {folder} ({exc.strerror}); make the store writable and rerun") from None
        yield


def _write(store_path: Path, *, users: frozenset[str] | None, networks: tuple[str, ...] | None) -> Policy:
    folder = store_path / _POLICY_DIR
    folder.mkdir(exist_ok=True)  # made by save's lock; a direct call (tests) makes it here
    for stale in folder.glob(".*.tmp"):  # a killed protect's half-written file (the lock says none is live)
        with contextlib.suppress(OSError):
            stale.unlink()
    # after the newest version on disk, not the one in force: a damaged policy is replaced this way
    version = 1 + _newest_version(folder)
    policy = Policy(version=version, users=users, networks=networks,
                    created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    for name, text in ((f"v{version}.json", json.dumps(policy.to_json(), indent=1)), (_CURRENT, str(version))):
        try:
            replace_whole(folder / name, text)
        except OSError as exc:  # a full disk or a read-only store is no bug (found by faults4: exit 70)
            raise StoreWriteError(f"cannot write the protection policy {folder / name} ({exc.strerror}); free space or "
                                  "make the store writable, then rerun the same dplogs protect") from None
    return policy
