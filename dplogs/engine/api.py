"""The :class:`Engine` facade that CLI commands, reports and pipelines embed.

::

    eng = Engine.open("store/")
    q = eng.sql("SELECT event.action, COUNT(*) FROM logs WHERE event.outcome = 'failure' "
                "GROUP BY event.action", epsilon=1.0, max_groups=5, max_rows_per_group=10,
                start="2026-11-01", end="2026-12-01")
    print(q.explain().text)                     # spends nothing
    rel = q.release(caller="cli")               # charged to the store's ledger
    rel.to_polars(), rel.to_arrow(), rel.privacy

Options accepted by :meth:`Engine.sql`, :meth:`Engine.query_file`, :meth:`Engine.build` (all
keyword-only; they override a query file's values): ``epsilon``, ``rho``, ``delta``, ``mechanism``,
``max_groups``, ``max_rows_per_group``, ``clamp={col: (lo, hi)}``, ``declared={col: [values]}``
(declared public key lists), ``bins={col: Bins | {lo, hi, n[, scale]}}``, ``start``, ``end``,
``bucket`` (time-bucket grain), ``time_zone`` (IANA zone whose days/hours the buckets follow),
``top_k``/``order_by``.

>>> import polars as pl
>>> from dplogs.schema import conform
>>> eng = Engine(scan=lambda: conform(pl.LazyFrame({"user.name": ["a"]})), privacy_unit="user.name",
...              budget_window="month", ledger=None)
>>> q = eng.build(Aggregation.count(), keys=["event.outcome", time_bucket("day")],
...               where="event.category = 'authentication'", epsilon=0.5,
...               max_groups=2, max_rows_per_group=10, start="2026-11-01", end="2026-11-08")
>>> print(q.explain().text.splitlines()[3])
where: event.category = 'authentication'
>>> q.plan.grid_size  # 3 outcomes x 7 days, all released (empty ones too)
21
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from dplogs.engine.coverage import check as check_coverage, latest_window
from dplogs.engine.execute import run
from dplogs.engine.explain import Explanation, explain
from dplogs.engine.plan import Aggregation, Bins, Filter, KeySpec, Query, check_column
from dplogs.engine.planner import Plan, check_defaults, plan_query
from dplogs.engine.policy import Policy
from dplogs.engine.policy import check_in_force, check_recorded
from dplogs.engine.policy import load as load_policy
from dplogs.engine.queryfile import load_query_file, parse_bins
from dplogs.engine.release import Release
from dplogs.engine.sql import parse_sql, parse_where
from dplogs.errors import NoDataInWindow, NoLogsOfKind, UsageError
from dplogs.ingest.formats import CARRY_ANY
from dplogs.privacy.bounds import Clamp, ContributionBounds
from dplogs.privacy.ledger import ANY_PROTECTION
from dplogs.schema import FIELDS, TIMESTAMP
from dplogs.schema.units import UnitRule

__all__ = ["Engine", "PreparedQuery", "time_bucket"]

DEFAULT_EPSILON = 1.0
"""ε of a query that names none (and whose store sets none): one release a day at this ε spends a
month window's typical cap of 30 in a month. Disclosed in the release when used."""
DEFAULT_DELTA = 1e-6
"""δ of partition selection when a query groups by private keys and names none."""
PRIVATE_KEY_MAX_GROUPS = 1
"""``max_groups`` of a query with private keys that names none (and whose store sets none),
instead of choosing it from the data: partition selection's threshold grows with it, and the
choice (which weighs truncation against noise, not against keys lost to selection) picked 32 for
the top URLs of a real web log, a threshold of 1,729 distinct clients that no URL reached."""


def time_bucket(grain: str, *, name: str | None = None) -> KeySpec:
    """A public time-bucket key (minute, hour, day, week) for :meth:`Engine.build`."""
    return KeySpec(TIMESTAMP, bucket=grain, name=name)


def _options(options: dict[str, Any]) -> dict[str, Any]:
    """Translate API option names into :class:`Query` fields."""
    out = dict(options)
    for name, example in (("clamp", "{col: (lo, hi)}"), ("declared", "{col: [values]}"), ("bins", "{col: {lo, hi, n}}")):
        if not isinstance(out.get(name) or {}, dict):
            raise UsageError(f"option {name} must be a mapping {example}, got {out[name]!r}")
    if "clamp" in out:
        clamps = {}
        for c, v in (out.pop("clamp") or {}).items():
            if not isinstance(v, Clamp) and not (isinstance(v, (list, tuple)) and len(v) == 2):
                raise UsageError(f"clamp for {c} must be (lo, hi), got {v!r}")
            clamps[c] = v if isinstance(v, Clamp) else Clamp(lo=v[0], hi=v[1])
        out["clamps"] = clamps
    if "declared" in out:
        out["declared"] = {c: tuple(v) if isinstance(v, (list, tuple)) else v for c, v in (out["declared"] or {}).items()}
    if "bins" in out:
        out["bins"] = {c: v if isinstance(v, Bins) else parse_bins(v, column=c) for c, v in (out.pop("bins") or {}).items()}
    allowed = {
        "epsilon", "rho", "delta", "mechanism", "max_groups", "max_rows_per_group", "clamps", "declared",
        "bins", "start", "end", "bucket", "top_k", "order_by", "name", "bound_share", "time_zone", "formats",
    }
    unknown = set(out) - allowed
    if unknown:
        raise UsageError(f"unknown query option(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return out


class PreparedQuery:
    """A validated plan bound to an engine. ``explain()`` spends nothing; ``release()`` charges
    the ledger and returns a :class:`Release`."""

    def __init__(self, engine: Engine, plan: Plan) -> None:
        self.engine = engine
        self.plan = plan

    def explain(self) -> Explanation:
        try:
            covered = self.engine.check_coverage(self.plan)
        except NoDataInWindow as exc:
            covered = {"refused": str(exc)}
        return explain(self.plan, coverage=covered)

    def release(self, *, caller: str = "api", idempotency_key: str | None = None) -> Release:
        """Release the query, charging the store's ledger. Rerun with the same ``idempotency_key``, it
        re-emits the stored release and spends nothing (:meth:`~dplogs.privacy.ledger.Ledger.charge`)."""
        covered = self.engine.check_coverage(self.plan)
        with self.engine.events_held():  # the files listed here are the ones read, by every pass
            rows, unit_values = self.engine.source()
            return run(
                self.plan, rows, backend=self.engine.backend, ledger=self.engine.ledger,
                caller=caller, idempotency_key=idempotency_key, unit_values=unit_values,
                disclose=None if covered is None else {"coverage": covered}, protection=self.engine.policy_seal(),
            )


class Engine:
    """Public: queries over one store. Use :meth:`open` for a store directory; the constructor
    takes the pieces (a scan function, the privacy-unit rule, the budget-window policy, manifest
    defaults, a ledger and a backend object or name) so tests and embedders can supply their own.
    ``privacy_unit`` is a :class:`~dplogs.schema.units.UnitRule` or its spelling (``"user.name"``,
    ``"user.name,host.name"``; rows without any field then form one shared unit)."""

    def __init__(
        self, *, scan: Callable[[], pl.LazyFrame], privacy_unit: str | UnitRule, budget_window: str,
        defaults: dict[str, Any] | None = None, ledger: Any = None, backend: Any = None,
        policy: Policy | None = None,
    ) -> None:
        self.scan = scan
        self.policy = policy or Policy()
        self.unit = UnitRule.parse(privacy_unit)
        self.privacy_unit = self.unit.label
        self.budget_window = budget_window
        self.defaults = dict(check_defaults(defaults))
        self._ledger = ledger
        self._backend = backend
        self.anomalies: dict[str, Any] | None = None  # set by over_anomalies: what the rows are, disclosed
        self._ledger_path: Path | None = None
        self._store: Any = None
        self._ledger_store: Any = None  # whose id the ledger must be bound to
        self._coded_store: Any = None  # a store whose events carry unit codes, read by the polars backend
        self._coverage_store: Any = None  # whose coverage (public metadata) the rows come from
        self._events_store: Any = None  # whose events files the rows are read from (held still by a release)
        self._opened_ledger: Any = None  # the ledger this engine opened itself (close() closes it)

    @classmethod
    def open(cls, store_path: str | os.PathLike[str], *, backend: str = "polars", spark_master: str | None = None) -> Engine:
        """An engine over the store at ``store_path`` (its manifest, events and ledger).
        ``backend="spark"`` runs the bounded aggregation on Spark (``spark_master``, default the
        active session or ``local[*]``), reading the same Parquet files; the ledger and the noise
        stay here, on the driver."""
        from dplogs.backends.base import get_backend
        from dplogs.ingest.store import Store  # the store format is owned by ingest

        chosen = get_backend(backend, master=spark_master)  # an unknown name or missing extra fails first
        store = Store.open(store_path)
        m = store.manifest
        scan = store.scan
        if chosen.name == "spark":
            from dplogs.backends.spark import read_events

            def scan() -> Any:
                return read_events(chosen.session, store.readable_event_files())  # a truncated one: named, 74

        eng = cls(scan=scan, privacy_unit=m.unit_rule, budget_window=m.budget_window, defaults=m.defaults,
                  backend=chosen, policy=load_policy(store.path))
        eng._ledger_path = store.ledger_path
        eng._store = eng._ledger_store = eng._coverage_store = eng._events_store = store
        if chosen.name == "polars" and store.unit_codes_kept:
            eng._coded_store = store
        return eng

    def source(self) -> tuple[pl.LazyFrame, pl.DataFrame | None]:
        """The rows to query and, when they carry unit codes of this engine's rule, the unit
        dictionary (the polars backend then bounds on the codes); otherwise ``(scan(), None)``."""
        store = self._coded_store
        if store is None:
            return self.scan(), None
        # files first, then the dictionary: it only grows, and a writer adds a unit to it before
        # any file refers to it, so every code in these files is in the dictionary read after
        rows = store.scan_coded()
        values = store.unit_codes(self.unit)
        return (rows, values) if values is not None else (self.scan(), None)

    def events_held(self) -> contextlib.AbstractContextManager[None]:
        """While a release lists and reads the store's events files (:meth:`Store.events_held`);
        nothing for rows that are not a store's."""
        return contextlib.nullcontext() if self._events_store is None else self._events_store.events_held()

    def coverage(self, formats: tuple[str, ...] = ()) -> list | None:
        """The store's coverage spans (public metadata), None when unknown or not a store; with
        ``formats``, of the inputs that can hold a query's logs (:meth:`Store.coverage`)."""
        if self._coverage_store is None:
            return None
        return self._coverage_store.coverage(formats or None)

    def check_coverage(self, plan: Plan) -> dict | None:
        """How much of ``plan``'s window the store covers with the logs it reads (disclosed with
        the release); :class:`NoDataInWindow` when nothing, or :class:`NoLogsOfKind` when the
        store holds logs there but none in the formats the query names. Public metadata only."""
        formats = plan.query.formats
        try:
            return check_coverage(plan.start, plan.end, self.coverage(formats))
        except NoDataInWindow:
            if not formats:
                raise
            check_coverage(plan.start, plan.end, self.coverage())  # no logs at all: say that instead
            what = f" ({plan.query.logs})" if plan.query.logs else ""
            raise NoLogsOfKind(
                f"the store holds no logs this query reads{what} in the window: none of its inputs there "
                f"was parsed as {', '.join(formats)} or as a format that may hold any events "
                f"({', '.join(sorted(CARRY_ANY))}), so a release would spend budget on pure noise; nothing was "
                "charged. Ingest such logs first (dplogs inspect --store STORE shows what the store holds)"
            ) from None

    @classmethod
    def from_spark(
        cls, frame: Any, *, privacy_unit: str | UnitRule, ledger: str | os.PathLike[str], budget_window: str = "month",
        defaults: dict[str, Any] | None = None,
    ) -> Engine:
        """An engine over a Spark DataFrame with the store's columns (a table, or the events of a
        store on a Hadoop-compatible file system: ``read_events(spark, ["s3a://bucket/soc/events"])``
        or ``spark.table("soc.events")``), bounded on Spark. The budget ledger at ``ledger`` is a
        local file on the driver, created if absent; every release over ``frame`` is charged to it.

        >>> Engine.from_spark(None, privacy_unit="user.nam", ledger="l.sqlite")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dplogs.errors.QueryError: unknown column 'user.nam'; did you mean: user.name, ...
        """
        from dplogs.backends.base import get_backend
        from dplogs.privacy.windows import check_policy

        if isinstance(privacy_unit, str):
            for name in privacy_unit.split(","):
                check_column(name.strip())
        check_policy(budget_window)
        eng = cls(scan=lambda: frame, privacy_unit=privacy_unit, budget_window=budget_window, defaults=defaults,
                  backend=get_backend("spark"))
        eng._ledger_path = Path(ledger)
        return eng

    @property
    def backend(self) -> Any:
        if self._backend is None or isinstance(self._backend, str):
            from dplogs.backends.base import get_backend

            self._backend = get_backend(self._backend or "polars")
        return self._backend

    @property
    def ledger(self) -> Any:
        if self._ledger is None:
            if self._ledger_path is None:
                raise UsageError("this engine has no budget ledger; open a store with Engine.open(path)")
            from dplogs.privacy.ledger import Ledger, open_store_ledger

            if self._ledger_store is not None:
                ledger = open_store_ledger(self._ledger_store, create=True, store_id=self._ledger_store.identity)
                try:
                    check_in_force(self.policy, ledger, self._ledger_store.path)
                except BaseException:
                    ledger.close()
                    raise
                self._ledger = ledger
            else:  # a standalone ledger file (Engine.from_spark(..., ledger=PATH))
                self._ledger = Ledger.open(self._ledger_path, create=True)
            self._opened_ledger = self._ledger
        return self._ledger

    def policy_seal(self) -> Any:
        """What the store's ledger must record at the charge for a release under :attr:`policy`:
        its (version, digest), None for no policy; anything for a ledger of no store."""
        if self._ledger_store is None:
            return ANY_PROTECTION
        return (self.policy.version, self.policy.digest) if self.policy.version else None

    def close(self) -> None:
        """Close the ledger connection this engine opened (on first use); a ledger passed in is the
        caller's to close. The engine reopens it if used again. ``with Engine.open(s) as eng:``
        closes on leaving the block, so a long-running pipeline keeps no file handle per engine."""
        if self._opened_ledger is not None:
            self._opened_ledger.close()
            if self._ledger is self._opened_ledger:
                self._ledger = None
            self._opened_ledger = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save_defaults(
        self, *, max_groups: int | None = None, max_rows_per_group: int | None = None,
        clamp: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        """Validate and store default bounds in the store manifest; queries that give no bound of
        their own use these (the ``defaults`` format is in :mod:`dplogs.engine.planner`)."""
        store = self._store
        if store is None:
            raise UsageError("defaults live in a store manifest; open the store with Engine.open(path)")
        new: dict[str, Any] = {}
        for name, value in (("max_groups", max_groups), ("max_rows_per_group", max_rows_per_group)):
            if value is not None:
                checked = ContributionBounds(**{"max_groups": 1, "max_rows_per_group": 1, name: value})
                new[name] = getattr(checked, name)  # a plain int: a numpy one failed the manifest's JSON (TypeError)
        if clamp:
            checked = {check_column(c): Clamp(lo=lo, hi=hi) for c, (lo, hi) in clamp.items()}
            new["clamp"] = {**self.defaults.get("clamp", {}), **{c: [v.lo, v.hi] for c, v in checked.items()}}
        self._store = store.update_defaults(new)
        self.defaults = dict(self._store.manifest.defaults)

    def over_anomalies(self, model_path: str | os.PathLike[str], *, threshold: float | str,
                       seed: int | None = None) -> Engine:
        """The anomaly query type: an engine over the unit-windows that the trained detector at
        ``model_path`` scores above the PUBLIC ``threshold`` (a raw score, or a percentile such as
        ``"p99"`` of the model's DP training-score histogram) — one row per anomalous unit-window
        (``@timestamp`` = window start, the unit, ``host.name`` = its busiest host, ``event.action``
        = ``dplogs.anomaly``), at most K of them per unit per budget window, K from the model card.

        Any query over it is an ordinary DP release charged to this store's ledger, e.g. anomalous
        unit-windows per day (public buckets) or per host (private key, partition selection).
        The per-unit scores themselves never leave the engine.
        """
        from dplogs.detect.anomaly_counts import anomaly_events
        from dplogs.detect.calibration import resolve_threshold
        from dplogs.detect.model import check_features, expected_features, load_model, scoring_clip_norm

        if getattr(self._backend, "name", self._backend) == "spark":
            raise UsageError("anomaly queries (--anomalies) score unit-windows in polars: run them with the polars engine")

        model, card = load_model(model_path)
        check_features(card, expected_features(card))
        peers = card.peers
        raw_threshold, threshold = threshold, resolve_threshold(threshold, card.calibration)
        if card.privacy_unit != self.unit.label:
            raise UsageError(f"the model was trained per {card.privacy_unit}, this store's unit is {self.unit.label}")
        base = self.scan

        def scan() -> pl.LazyFrame:
            return anomaly_events(
                base(), model=model, unit=self.unit, threshold=threshold,
                max_windows_per_unit=card.max_windows_per_unit, clip_norm=scoring_clip_norm(card),
                window=card.feature_window, budget_window=self.budget_window, seed=seed, peers=peers,
            )

        # the store's policy applies to the anomaly rows too, each standing for its unit-window: it
        # is unprotected only when every row its unit can have is (the plan's anomalies make
        # execute.marked read them so). A ledger this engine opened is not shared: its close()
        # would leave the new engine a closed one
        eng = Engine(scan=scan, privacy_unit=self.unit, budget_window=self.budget_window,
                     defaults={"max_groups": card.max_windows_per_unit, "max_rows_per_group": 1},
                     ledger=None if self._ledger is self._opened_ledger else self._ledger, backend=self._backend,
                     policy=self.policy)
        eng._ledger_path, eng._ledger_store = self._ledger_path, self._ledger_store
        # every release says its rows are a model's flags (a model trained on another store or
        # window is not refused: this is how a reader can tell)
        eng.anomalies = {
            "detector": card.detector, "model": Path(model_path).name, "model_ledger_entry": card.ledger_entry,
            "trained_on": list(card.budget_windows), "threshold": str(raw_threshold), "score_threshold": threshold,
        }
        # the unit-windows come from the store's rows: its coverage gives the default window and
        # refuses windows without data, as for any query
        eng._coverage_store, eng._events_store = self._coverage_store, self._events_store
        return eng

    def prepare(self, query: Query, **options: Any) -> PreparedQuery:
        """Resolve ``query`` (with option overrides) against this store. What neither the query,
        the options nor the store's defaults give falls back to a documented default (the budget
        :data:`DEFAULT_EPSILON`, δ :data:`DEFAULT_DELTA` for private keys, the window: the latest
        budget window the store's coverage reaches); every fallback is disclosed in the plan."""
        query = query.with_options(**_options(options))
        query, used = self._fallbacks(query)
        plan = plan_query(query, unit=self.unit, window_policy=self.budget_window, defaults=self.defaults)
        self._adopt_sealed_policy()
        return PreparedQuery(self, replace(plan, policy=self.policy, defaults_used=used, anomalies=self.anomalies))

    def _adopt_sealed_policy(self) -> None:
        """Take up a protection policy `dplogs protect` sealed since this engine loaded its own, so
        a long-lived engine's next query runs under it (a query prepared before is refused at its
        charge, 75). A policy on disk that the ledger did not seal is refused here (74)."""
        if self._ledger_store is None:
            return
        on_disk = load_policy(self._ledger_store.path)
        if (on_disk.version, on_disk.digest) != (self.policy.version, self.policy.digest):
            previous, self.policy = self.policy, on_disk  # set first: opening the ledger checks it
            try:
                check_recorded(on_disk, self.ledger.protection(), self._ledger_store.path)
            except BaseException:
                self.policy = previous
                raise

    def _fallbacks(self, query: Query) -> tuple[Query, dict[str, str]]:
        used: dict[str, str] = {}
        if query.epsilon is None and query.rho is None and not ({"epsilon", "rho"} & set(self.defaults)):
            query = query.with_options(epsilon=DEFAULT_EPSILON)
            used["epsilon"] = f"{DEFAULT_EPSILON:g} (dplogs' default per query)"
        private = any(k.column != TIMESTAMP and k.column not in query.declared and FIELDS[k.column].allowed is None
                      for k in query.keys)
        if private and query.delta is None and "delta" not in self.defaults:
            query = query.with_options(delta=DEFAULT_DELTA)
            used["delta"] = f"{DEFAULT_DELTA:g} (dplogs' default for private keys)"
        if private and query.max_groups is None and "max_groups" not in self.defaults:
            query = query.with_options(max_groups=PRIVATE_KEY_MAX_GROUPS)
            used["max_groups"] = (f"{PRIVATE_KEY_MAX_GROUPS} (dplogs' default for private keys: partition selection "
                                  "needs max_groups times more distinct units per key; pass --max-groups for more)")
        if query.start is None and query.end is None:
            window = latest_window(self.coverage(query.formats), self.budget_window)
            if window is not None:
                query = query.with_options(start=window[0], end=window[1])
                used["window"] = (f"{window[0].date()} to {window[1].date()}: the latest {self.budget_window} budget "
                                  "window the store's coverage reaches")
        return query, used

    def sql(self, text: str, **options: Any) -> PreparedQuery:
        return self.prepare(parse_sql(text, unit=self.unit.fields[0]), **options)

    def query_file(self, path: str | os.PathLike[str], **options: Any) -> PreparedQuery:
        return self.prepare(load_query_file(path, unit=self.unit.fields[0]), **options)

    def build(
        self, *aggregations: Aggregation, keys: list[str | KeySpec] | tuple[str | KeySpec, ...] = (),
        where: Filter | str | None = None, **options: Any,
    ) -> PreparedQuery:
        """The Python builder: aggregations (``Aggregation.count()``, ``.sum(col)``, ...), keys
        (column names or :func:`time_bucket`), an optional filter (a :class:`Filter` or SQL text)."""
        specs = tuple(k if isinstance(k, KeySpec) else KeySpec(k) for k in keys)
        flt = parse_where(where) if isinstance(where, str) else where
        return self.prepare(Query(aggregations=tuple(aggregations), keys=specs, where=flt), **options)
