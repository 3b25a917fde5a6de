"""The ingest pipeline: inputs → format → parsed chunks → store, with a count-only summary.

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     log = pathlib.Path(d, "auth.log")
...     _ = log.write_text("Feb 21 21:54:44 web1 sshd[3402]: Failed password for root from 10.0.0.9 port 22 ssh2\\nnot syslog\\n")
...     s = ingest([log], d + "/store", format="syslog", options=IngestOptions(year=2024))
...     (s.parsed, s.quarantined, dict(s.reasons))
(1, 1, {'no syslog header': 1})
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from dplogs.errors import DataError, UsageError
from dplogs.escape import visible
from dplogs.ingest import tails
from dplogs.ingest.auth import MAX_REPEATS
from dplogs.ingest.base import NO_TIME_REASON, IngestOptions, InputSource, LineFormat, LogFormat, ParsedChunk
from dplogs.ingest.reader import bounded_blocks, check_format_name, detect_format, iter_blocks, open_sources
from dplogs.ingest.store import DayWriter, Store, hash_canary, new_run_id, removed_if_nothing_stored
from dplogs.ingest.streams import StreamKeys
from dplogs.schema.units import SHARED, UnitRule


@dataclass(frozen=True)
class FileResult:
    """Counts for one input. Public; holds no raw log text."""

    name: str
    format: str | None
    parsed: int = 0
    quarantined: int = 0
    skipped: int = 0
    duplicate_rows: int = 0
    """Parsed rows already present in the store (same ``event.hash``), not written again."""
    duplicate_file: bool = False
    """The same bytes were ingested before: the file was not parsed again."""
    problem: str | None = None
    """A read problem such as a truncated gzip stream (the readable part was ingested)."""
    reasons: tuple[tuple[str, int], ...] = ()
    span: tuple[str, str] | None = None
    """Coverage: the UTC days of the input's first and last event (ISO dates, both included)."""
    unattributed: int = 0
    """Written rows carrying none of the store's privacy-unit fields."""
    yearless: int = 0
    """Parsed rows whose stamp had no year (:attr:`ParsedChunk.yearless`)."""
    repeated: int = 0
    """Parsed rows added for rsyslog's ``message repeated N times`` lines (:attr:`ParsedChunk.repeated`)."""
    repeats_capped: int = 0
    """Such lines whose count was cut to :data:`dplogs.ingest.auth.MAX_REPEATS`."""


@dataclass(frozen=True)
class IngestSummary:
    """What one ``ingest`` run did, as counts only (safe to show outside the trust boundary
    operators work in: no raw lines). Public."""

    run_id: str
    store: str
    files: tuple[FileResult, ...]
    warnings: tuple[str, ...] = ()

    @property
    def parsed(self) -> int:
        return sum(f.parsed for f in self.files)

    @property
    def written(self) -> int:
        return sum(f.parsed - f.duplicate_rows for f in self.files)

    @property
    def quarantined(self) -> int:
        return sum(f.quarantined for f in self.files)

    @property
    def unattributed(self) -> int:
        return sum(f.unattributed for f in self.files)

    @property
    def reasons(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for f in self.files:
            total.update(dict(f.reasons))
        return total

    def by_format(self) -> dict[str, dict[str, int]]:
        """Per format: files, parsed, quarantined, skipped, duplicates."""
        out: dict[str, dict[str, int]] = {}
        for f in self.files:
            row = out.setdefault(f.format or "-", Counter())
            row.update(files=1, parsed=f.parsed, quarantined=f.quarantined, skipped=f.skipped,
                       duplicate_rows=f.duplicate_rows, duplicate_files=int(f.duplicate_file))
        return {k: dict(v) for k, v in out.items()}


def unattributed_note(summary: IngestSummary, rule: UnitRule) -> str | None:
    """A warning when most rows this run wrote have no field of the store's privacy unit and so
    all fall into the ONE shared unit: bounded like a single person, they leave every answer about
    them mostly noise (web or Zeek logs in a store whose unit is user.name). Counts only."""
    if rule.unattributed != SHARED or summary.unattributed * 2 <= summary.written:
        return None
    return (f"{summary.unattributed:,} of {summary.written:,} events written carry no {' or '.join(rule.fields)} "
            f"(the store's privacy unit): they form ONE shared unit, bounded like a single person, so answers "
            "about them will be mostly noise. For logs without accounts, ingest into a new store made with "
            "--privacy-unit source.ip (web, firewall, Zeek) or a chain such as user.name,source.ip or "
            "user.name,host.name (system logs); see docs/privacy.md")


def capped_repeats_note(summary: IngestSummary) -> str | None:
    """A note when rsyslog repeat counts were cut: those events are not all in the store."""
    capped = sum(f.repeats_capped for f in summary.files)
    if not capped:
        return None
    return (f"{capped:,} 'message repeated N times' lines counted more than {MAX_REPEATS} repeats; each was stored as "
            f"{MAX_REPEATS} events (the line's message keeps its count)")


def undated_note(summary: IngestSummary) -> str | None:
    """A note when records were quarantined for carrying no time: they can be stored at a time the
    operator gives (a CEF feed without ``rt`` quarantined whole looked unreadable)."""
    undated = sum(n for f in summary.files for reason, n in f.reasons if reason == NO_TIME_REASON)
    if not undated:
        return None
    return (f"{undated:,} records carry no time and were quarantined; if you know when they were logged (e.g. the "
            "feed's export time), ingest the inputs into a new store with --undated-time TIME")


def guessed_year_note(summary: IngestSummary, options: IngestOptions) -> str | None:
    """A note when year-less stamps were read without ``--year``: dated in this year, a year-old
    auth.log is stored (and queried) a year late, and nothing else says so."""
    yearless = sum(f.yearless for f in summary.files)
    if options.year is not None or not yearless:
        return None
    now = dt.datetime.now(dt.timezone.utc)
    return (f"{yearless:,} events with a year-less syslog stamp (RFC 3164, e.g. auth.log) were dated in {now.year} "
            f"({now.year - 1} where that put them more than a day in the future); if the logs are older, ingest "
            "them into a new store with --year YYYY")


class TooManyErrors(DataError):
    """More records were quarantined than ``max_errors`` allows. Everything, including the
    quarantine, was written first; :attr:`summary` holds the run's counts."""

    def __init__(self, message: str, summary: IngestSummary) -> None:
        super().__init__(message)
        self.summary = summary


CHANGED_WHILE_READ = ("changed while it was read (truncated or rewritten, e.g. by logrotate copytruncate); "
                      "run ingest again to read it whole")


class _KnownHashes:
    """Hashes stored per partition (a day of events, or the quarantine) as of before the current
    input: a partition is read when first needed, and the files earlier inputs of this run wrote to
    it are added when it is next needed. So each input is checked against exactly what a run of
    its own would see, and a run of two inputs stores what two runs do."""

    def __init__(self, load: Callable[[str, list[Path] | None], pl.Series]) -> None:
        self._load = load
        self._hashes: dict[str, pl.Series] = {}
        self._pending: dict[str, list[Path]] = {}

    def get(self, part: str) -> pl.Series:
        if part not in self._hashes:
            self._hashes[part] = self._load(part, None)
        elif part in self._pending:
            self._hashes[part] = pl.concat([self._hashes[part], self._load(part, self._pending.pop(part))])
        return self._hashes[part]

    def written(self, files: dict[str, list[Path]]) -> None:
        """Files an input wrote (per partition), now part of what later inputs are checked against."""
        for part, paths in files.items():
            if part in self._hashes:
                self._pending.setdefault(part, []).extend(paths)


def _registry_key(fingerprint: Future[str], fmt: LogFormat) -> str:
    """``ingested.json`` key: the same bytes read with the same format."""
    return f"{fingerprint.result()}:{fmt.name}"


def _is_new(seen: dict[str, dict], fingerprint: Future[str], fmt: LogFormat) -> bool:
    return _registry_key(fingerprint, fmt) not in seen


class Progress(Protocol):
    """Where an ingest reports how far it got (the CLI's progress bars); counts only."""

    def begin(self, name: str, total_bytes: int) -> None:
        """A new input of ``total_bytes`` (as stored: compressed for gzip) starts."""

    def update(self, bytes_done: int, records: int) -> None:
        """The input was read up to ``bytes_done``; ``records`` more records were parsed."""

    def end(self) -> None:
        """The input is done (or skipped)."""


def ingest(
    paths: Sequence[str | os.PathLike[str]],
    store: Store | str | os.PathLike[str],
    *,
    format: str | None = None,  # noqa: A002  (mirrors --format)
    options: IngestOptions = IngestOptions(),
    max_errors: int | None = None,
    progress: Progress | None = None,
) -> IngestSummary:
    """Parse ``paths`` (files, directories, ``-`` for stdin) into ``store`` and return counts.

    Inputs whose exact bytes were ingested before with the same format are skipped, and parsed events whose
    ``event.hash`` is already in their day partition (quarantined records whose ``hash`` is already
    quarantined) are not written again, so re-ingesting is idempotent, also after a run was killed
    or failed half-way: an input counts as ingested only once all its rows are written. With
    ``max_errors``, :class:`TooManyErrors` (exit 65) is raised after everything was written when
    more records than that were quarantined. ``progress`` hears of every input and chunk.
    """
    if max_errors is not None and max_errors < 0:
        raise UsageError("--max-errors must be >= 0")
    forced = check_format_name(format) if format is not None else None
    if not isinstance(store, Store):
        with removed_if_nothing_stored(store):
            return ingest(paths, Store.init(store), format=format, options=options, max_errors=max_errors,
                          progress=progress)
    run_id = new_run_id()
    warnings: list[str] = []
    dedup_hashes = store.manifest.hash_canary == hash_canary()
    if not dedup_hashes:
        warnings.append("event hashes of this dplogs/polars version differ from the store's; only identical files are "
                        "deduplicated (ingest into a new store to deduplicate rows again)")
    results: list[FileResult] = []
    known = (_KnownHashes(store.day_hashes), _KnownHashes(lambda _, files: store.quarantine_hashes(files))) if dedup_hashes else None
    with store.writer_lock(), open_sources(paths, max_gzip_ratio=options.max_gzip_ratio, notes=warnings) as sources, \
            ThreadPoolExecutor(max_workers=1) as hasher:
        store.remove_stray_files()  # a killed run's temporary files; its whole files are deduplicated below
        seen = store.fingerprints()  # read under the lock: another ingest may just have added files
        for n, (source, opener) in enumerate(sources):
            try:
                fmt = forced or detect_format(source)
            except DataError:
                if opener.explicit:
                    raise
                results.append(FileResult(name=source.name, format=None, problem="not ingested: format not recognised (name the file itself and pass --format to force one)"))
                continue
            # Same bytes read the same way: nothing new. Re-reading them with another --format
            # (e.g. after a bad guess) is allowed; event.hash dedup keeps rows parsed both times once.
            # The file is hashed while its first chunks are parsed; nothing is written before the
            # hash is known.
            fingerprint = hasher.submit(opener.fingerprint)
            if progress is not None:
                progress.begin(source.name, opener.size)
            try:
                result = _ingest_one(store, fmt, source, options, run_id=run_id, stem=f"{run_id}-{n:05d}", known=known,
                                     is_new=functools.partial(_is_new, seen, fingerprint, fmt),
                                     as_sniffed=functools.partial(opener.read_as_sniffed, source.head),
                                     on_chunk=None if progress is None else
                                     lambda records, o=opener: progress.update(o.position(), records))
            finally:
                if progress is not None:
                    progress.end()
            if result.duplicate_file:
                if options.covers is not None:
                    _declare_again(store, seen, _registry_key(fingerprint, fmt), options.covers)
                results.append(result)
                continue
            changed = result.problem == CHANGED_WHILE_READ or opener.changed(fingerprint.result())
            problems = [*opener.errors, *([CHANGED_WHILE_READ] if changed else [])]
            if problems:
                result = replace(result, problem="; ".join(problems))
            results.append(result)
            if changed:  # the bytes the fingerprint names were not all parsed: the next run reads the file again
                continue
            key = _registry_key(fingerprint, fmt)
            seen[key] = {"name": source.name, "format": fmt.name, "run_id": run_id, "rows": result.parsed,
                         **_coverage_record(result.span, options.covers)}
            store.add_fingerprint(key, seen[key])
    summary = IngestSummary(run_id=run_id, store=str(store.path), files=tuple(results), warnings=tuple(warnings))
    for note in (unattributed_note(summary, store.manifest.unit_rule), guessed_year_note(summary, options),
                 capped_repeats_note(summary), undated_note(summary)):
        if note is not None:
            summary = replace(summary, warnings=(*summary.warnings, note))
    if max_errors is not None and summary.quarantined > max_errors:
        raise TooManyErrors(
            f"{summary.quarantined} records were quarantined, more than --max-errors {max_errors}; "
            f"everything was written, inspect {store.quarantine_path} or pass --format/--map to fix parsing",
            summary,
        )
    return summary


def _ingest_one(
    store: Store,
    fmt: LogFormat,
    source: InputSource,
    options: IngestOptions,
    *,
    run_id: str,
    stem: str,
    known: tuple[_KnownHashes, _KnownHashes] | None,
    is_new: Callable[[], bool],
    as_sniffed: Callable[[], bool] = lambda: True,
    on_chunk: Callable[[int], None] | None = None,
) -> FileResult:
    """Parse and store one input. ``is_new`` is asked before anything is written: when it says
    the same bytes were ingested before, parsing stops and nothing is stored; so it does when
    ``as_sniffed`` says the input no longer begins as it did when opened. ``known`` (events,
    quarantine) holds what is stored already; None turns row deduplication off."""
    parsed = quarantined = skipped = duplicates = unattributed = yearless = repeated = repeats_capped = 0
    unit_fields = store.manifest.unit_rule.fields
    first = last = None
    reasons: Counter[str] = Counter()
    chunk: ParsedChunk
    unterminated: list[tuple[int, bytes]] = []  # the input's last line, when it has no newline
    chunks = _parsed_chunks(fmt, source, options, on_unterminated=lambda offset, raw: unterminated.append((offset, raw)))
    writer = DayWriter(store, stem)
    keys = StreamKeys(source.head)
    appendable = tails.appendable(source)
    last_events = None
    repeats: dict[str, pl.DataFrame] = {}  # identical rows without offsets seen so far (_drop_known)
    quarantine_files: list[Path] = []
    checked = False
    try:
        for i, chunk in enumerate(chunks):
            if not checked:
                checked = True
                if not is_new():
                    chunks.close()
                    return FileResult(name=source.name, format=fmt.name, duplicate_file=True)
                if not as_sniffed():
                    chunks.close()
                    return FileResult(name=source.name, format=fmt.name, problem=CHANGED_WHILE_READ)
                if appendable:  # a line torn by an earlier read is removed before it is written whole
                    tails.settle(store, source.path, keys)
            events = keys.key_events(chunk.events) if chunk.events.height else chunk.events
            last_events = events
            if known is not None and events.height:
                events, dropped = _drop_known(events, known[0], repeats)
                duplicates += dropped
            if events.height:
                writer.add(events)
                unattributed += events.select(pl.all_horizontal(pl.col(f).is_null() for f in unit_fields).sum()).item()
            if chunk.quarantine.height:
                reasons.update(dict(chunk.quarantine.get_column("reason").value_counts().iter_rows()))
                rejected = keys.hash_quarantine(chunk.quarantine)
                if known is not None:
                    rejected = rejected.filter(~pl.col("hash").is_in(known[1].get("").implode(), nulls_equal=False))
                if rejected.height:
                    quarantine_files.append(store.write_quarantine(rejected, run_id=run_id, stem=f"{stem}-{i:05d}"))
            if chunk.events.height:
                stamps = chunk.events.get_column("@timestamp")
                lo, hi = stamps.min(), stamps.max()
                if lo is not None:
                    first = lo if first is None else min(first, lo)
                    last = hi if last is None else max(last, hi)
            parsed += chunk.events.height
            quarantined += chunk.quarantine.height
            skipped += chunk.skipped
            yearless += chunk.yearless
            repeated += chunk.repeated
            repeats_capped += chunk.repeats_capped
            if on_chunk is not None:
                on_chunk(chunk.events.height - chunk.repeated + chunk.quarantine.height + chunk.skipped)
    except DataError as exc:  # the reader's limits (line length, gzip ratio) do not know the input's name
        message = str(exc)
        shown = visible(source.name)  # a file name may hold newlines or escapes: shown inert
        raise DataError(message if message.startswith(shown) else f"{shown}: {message}") from exc
    if not checked and not is_new():
        return FileResult(name=source.name, format=fmt.name, duplicate_file=True)
    writer.close()
    if unterminated and appendable and last_events is not None:
        tails.remember(store, keys, *unterminated[0], last_events)
    if known is not None:
        known[0].written(writer.files)
        known[1].written({"": quarantine_files})
    return FileResult(
        name=source.name, format=fmt.name, parsed=parsed, quarantined=quarantined, skipped=skipped,
        duplicate_rows=duplicates, reasons=tuple(sorted(reasons.items())), unattributed=unattributed, yearless=yearless,
        repeated=repeated, repeats_capped=repeats_capped,
        span=(first.date().isoformat(), last.date().isoformat()) if first is not None else None,
    )


PARSE_THREADS = 2
"""Chunks parsed concurrently: polars releases the GIL, and a single string column is processed
on one core. One more chunk than that is queued, so both parsers stay busy while the main thread
writes the previous chunk (~5% less wall time than two in flight at 1M lines, same CPU)."""


def _parsed_chunks(fmt: LogFormat, source: InputSource, options: IngestOptions, *,
                   on_unterminated: Callable[[int, bytes], None] | None = None) -> Iterator[ParsedChunk]:
    """``fmt.parse`` in input order, parsing up to :data:`PARSE_THREADS` line blocks at once when
    the format is a stateless line format (one that does not override ``parse``; only these report
    an unterminated last line to ``on_unterminated``)."""
    if not isinstance(fmt, LineFormat) or type(fmt).parse is not LineFormat.parse:
        yield from fmt.parse(source, options)
        return
    with source.open() as stream, ThreadPoolExecutor(max_workers=PARSE_THREADS) as pool:
        pending: deque[Future[ParsedChunk]] = deque()
        blocks = iter_blocks(stream, chunk_lines=options.chunk_lines, max_line_bytes=options.max_line_bytes,
                             on_unterminated=on_unterminated)
        before = None
        for block in bounded_blocks(blocks, fmt.most_events, options.chunk_lines):
            pending.append(pool.submit(fmt.parse_block, block.lines, block.raw, source.name, options, before))
            before = fmt.carry(block.lines, before, options)
            if len(pending) > PARSE_THREADS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


_WORDS = ("h0", "h1")
_HASH_WORDS = [pl.col("event.hash").arr.get(0).alias("h0"), pl.col("event.hash").arr.get(1).alias("h1")]


def _drop_known(events: pl.DataFrame, stored: _KnownHashes, repeats: dict[str, pl.DataFrame]) -> tuple[pl.DataFrame, int]:
    """Remove events whose hash is already stored in their day (as of before this input).

    A record with a byte offset is one place of one input, so its hash is stored at most once. A
    record without one (CSV and Parquet rows, CloudTrail documents, EVTX records) is identified by
    its content alone, and identical rows are real (two failures in the same second): the k-th
    occurrence in an input is dropped only when the store holds k of them, so an export that grew
    by a row identical to earlier ones keeps it. ``repeats`` carries the counts across the
    input's chunks."""
    # Format the distinct dates only: strftime on every row cost more than the rest of this check.
    days = events.get_column("@timestamp").dt.date().unique().dt.strftime("%Y-%m-%d").to_list()
    known = pl.concat([stored.get(d) for d in days])
    if known.is_empty():
        return events, 0
    is_known = events.get_column("event.hash").is_in(known.implode(), nulls_equal=False)
    by_content = is_known & events.get_column("log.offset").is_null()
    drop = is_known & ~by_content
    if by_content.any():
        drop |= _stored_as_often(events, by_content, known, repeats)
    kept = events.filter(~drop)
    return kept, events.height - kept.height


def _stored_as_often(events: pl.DataFrame, rows: pl.Series, known: pl.Series, repeats: dict[str, pl.DataFrame]) -> pl.Series:
    """Of the ``rows`` (known hashes without offsets): those whose occurrence in the input so far is
    below the number of times the store holds their hash."""
    seen = repeats.get("seen", pl.DataFrame(schema={"h0": pl.UInt64, "h1": pl.UInt64, "n": pl.UInt32}))
    mine = events.select(_HASH_WORDS).with_row_index("i").filter(rows)
    if seen.is_empty() and not mine.get_column("h0").is_duplicated().any():  # h0 alone: a superset of repeats
        # the usual re-read: every such hash once so far, so each is an occurrence the store holds
        repeats["seen"] = mine.select(*_WORDS, n=pl.lit(1, pl.UInt32))
        return rows
    held = (known.to_frame("event.hash").select(_HASH_WORDS).join(mine.select(_WORDS).unique(), on=_WORDS, how="semi")
            .group_by(_WORDS).len("held"))
    occurrence = (pl.int_range(pl.len(), dtype=pl.UInt32).over(_WORDS) + pl.col("n").fill_null(0)).alias("k")
    mine = mine.join(seen, on=_WORDS, how="left").join(held, on=_WORDS, how="left").with_columns(occurrence)
    repeats["seen"] = (pl.concat([seen, mine.group_by(_WORDS).len("n")]).group_by(_WORDS).agg(pl.col("n").sum()))
    dropped = mine.filter(pl.col("k") < pl.col("held")).get_column("i")
    return pl.Series(np.isin(np.arange(events.height), dropped.to_numpy()))


def _declare_again(store: Store, seen: dict[str, dict], key: str, covers: tuple[dt.date, dt.date]) -> None:
    """``--covers`` for bytes ingested before (``seen[key]``): it replaces coverage derived from
    their events (a declaration wins), and adds to earlier declarations, kept as records of their
    own: an empty file is the same bytes every quiet night, and each night's declaration must stay."""
    record, declared = seen.get(key), _coverage_record(None, covers)
    if record is None:
        return
    if record.get("declared") is not True:
        seen[key] = {**record, **declared}
        store.add_fingerprint(key, seen[key])
        return
    extra = f"{key}@{declared['first_day']}:{declared['last_day']}"
    if (record["first_day"], record["last_day"]) != (declared["first_day"], declared["last_day"]) and extra not in seen:
        seen[extra] = {"name": record.get("name"), "format": record.get("format"), "rows": 0, **declared}
        store.add_fingerprint(extra, seen[extra])


def _coverage_record(span: tuple[str, str] | None, covers: tuple[dt.date, dt.date] | None) -> dict[str, Any]:
    """An input's coverage in its registry record: the days the operator declared (``--covers``;
    such an input covers them even with no events: a quiet night is covered, not missing), else
    the days of its first and last event."""
    if covers is not None:
        return {"first_day": covers[0].isoformat(), "last_day": covers[1].isoformat(), "declared": True}
    return {"first_day": span[0], "last_day": span[1]} if span else {}
