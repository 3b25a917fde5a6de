"""The contract every log format implements, and the registry that auto-detection reads.

A format turns raw input into :class:`ParsedChunk` objects: events conformed to the store schema,
plus a quarantine frame holding every input record it could not parse, with the reason. The
invariant every format keeps, and tests check: ``parsed rows + quarantined rows == input records``.

Line-oriented formats (syslog, access logs, JSON lines, CEF, Zeek TSV…) subclass
:class:`LineFormat` and implement only :meth:`LineFormat.parse_lines`, a vectorised function over a
frame of lines; the shared reader (``dplogs.ingest.reader``) handles files, gzip, stdin, chunking,
line numbers and byte offsets. Whole-file formats (binary EVTX, CloudTrail ``{"Records": [...]}``,
Parquet) subclass :class:`LogFormat` and implement :meth:`LogFormat.parse` themselves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, ClassVar

import numpy as np
import polars as pl

from dplogs.schema import STORE_SCHEMA, TIMESTAMP

LINES_SCHEMA = pl.Schema({"line": pl.Int64(), "offset": pl.Int64(), "text": pl.String()})
"""Input of :meth:`LineFormat.parse_lines`: 1-based line number, byte offset of the line's start in
its (decompressed) file, and the line without its trailing ``\\n``/``\\r\\n``."""

QUARANTINE_SCHEMA = pl.Schema(
    {"source": pl.String(), "line": pl.Int64(), "reason": pl.String(), "text": pl.String()}
)
"""One row per rejected input record. ``text`` is the raw record: it stays inside the trust
boundary (the store); summaries shown to people carry only counts per reason."""


@dataclass(frozen=True)
class IngestOptions:
    """Per-run parsing options. Public: the CLI maps its flags onto these one to one."""

    year: int | None = None
    """Year for RFC 3164 timestamps, which carry none. None: the year of ingestion, minus one for
    dates that would otherwise lie more than a day in the future (the usual rollover rule)."""
    tz: str = "UTC"
    """IANA zone of year-less/zone-less timestamps (RFC 3164, IIS local time)."""
    field_map: dict[str, str] = field(default_factory=dict)
    """Source column → ECS field, for generic JSON, CSV and Parquet input."""
    dataset: str | None = None
    """Overrides ``event.dataset``."""
    chunk_lines: int = 500_000
    """Lines per chunk: bounds memory on inputs larger than RAM."""
    time_range: tuple[dt.datetime, dt.datetime] = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
                                                   dt.datetime(2100, 1, 1, tzinfo=dt.UTC))
    """Plausible event times [start, end): a record stamped outside is quarantined, not stored under
    a nonsense day such as ``day=-2024-01-01``."""
    max_line_bytes: int = 16 * 1024 * 1024
    """Longest accepted line; a longer one makes the input an error (memory stays bounded)."""
    max_gzip_ratio: float = 200
    """Gzip or Parquet input expanding more than this many times (past 1 MiB) is refused as a bomb."""
    undated_time: dt.datetime | None = None
    """The time given to records that carry none (CEF with no ``rt``/``end``/``start`` and no syslog
    header, JSON with no time field), e.g. when the feed was exported (``--undated-time``). None:
    such records are quarantined ("no timestamp"), never dated by dplogs on its own."""
    covers: tuple[dt.date, dt.date] | None = None
    """The UTC days ``[first, last]`` the operator declares the inputs cover (``--covers``), recorded
    as their coverage instead of the days of their first and last event, so coverage depends on
    no one's events (docs/privacy.md, "Public store metadata"). None: derived from the events."""

    def __post_init__(self) -> None:
        if self.chunk_lines < 1:
            raise ValueError("chunk_lines must be positive")
        if self.year is not None and not 1970 <= self.year <= 2200:
            raise ValueError(f"year {self.year} is out of range 1970..2200")
        if self.undated_time is not None and self.undated_time.tzinfo is None:
            raise ValueError("the time for undated records must carry a zone")
        if self.covers is not None and not self.covers[0] <= self.covers[1]:
            raise ValueError(f"the declared coverage {self.covers[0]}..{self.covers[1]} ends before it begins")
        start, end = self.time_range
        if start.tzinfo is None or end.tzinfo is None or not start < end:
            raise ValueError(f"time range {start}..{end} must be two zoned times, the start before the end")
        if self.max_line_bytes < 1 or not self.max_gzip_ratio >= 1:
            raise ValueError("the line and gzip-ratio limits must be >= 1")

    @property
    def time_range_reason(self) -> str:
        start, end = (t.isoformat().removesuffix("T00:00:00+00:00") for t in self.time_range)
        return f"timestamp outside {start}..{end} (--time-range)"


@dataclass(frozen=True)
class InputSource:
    """One input as the reader hands it to a format: its display name, the first ≤ 64 KiB of its
    decompressed bytes, and a function that opens the whole decompressed byte stream from the
    start (gzip already undone; for stdin the reader buffers, so ``open`` works once or more)."""

    name: str
    head: bytes
    open: Callable[[], BinaryIO]
    path: str | None = None
    """Filesystem path when the input is a regular file (native readers such as evtx need it)."""
    compressed: bool = False
    """The file at ``path`` is gzip (``open`` decompresses it)."""


@dataclass(frozen=True)
class ParsedChunk:
    """Events (exactly :data:`dplogs.schema.STORE_SCHEMA`) and quarantined records of one chunk."""

    events: pl.DataFrame
    quarantine: pl.DataFrame
    skipped: int = 0
    """Input records deliberately dropped without being errors: blank lines, ``#`` comment and
    header lines (IIS ``#Fields:``, Zeek ``#types``), syslog continuation lines. The invariant is
    ``len(events) - repeated + len(quarantine) + skipped == input records``."""
    yearless: int = 0
    """Events whose stamp had no year (RFC 3164), dated by ``IngestOptions.year`` or its guess; it
    decides the ingest's year warning (syslog, and CEF/LEEF dated by a syslog prefix's stamp)."""
    repeated: int = 0
    """Events added for records that stand for several (rsyslog's ``message repeated N times: [...]``
    is N events: N - 1 are added): ``len(events) - repeated`` records became events."""
    repeats_capped: int = 0
    """Records whose repeat count was above :data:`dplogs.ingest.auth.MAX_REPEATS` and was cut to it."""

    def __post_init__(self) -> None:
        if self.skipped < 0 or self.repeated < 0:
            raise ValueError("ParsedChunk.skipped and .repeated must be >= 0")
        if self.events.schema != STORE_SCHEMA:
            raise ValueError("ParsedChunk.events must be conformed to STORE_SCHEMA (use schema.conform)")
        if self.quarantine.schema != QUARANTINE_SCHEMA:
            raise ValueError("ParsedChunk.quarantine must have QUARANTINE_SCHEMA")


class LogFormat:
    """A log format. Subclasses set ``name``/``description`` and implement sniff and parse."""

    name: ClassVar[str]
    description: ClassVar[str]

    def sniff(self, head: bytes) -> float:
        """Confidence in [0, 1] that input starting with ``head`` (≤ 64 KiB, decompressed) is this
        format. Auto-detection picks the highest score; ties and scores below 0.5 are errors."""
        raise NotImplementedError

    def parse(self, source: InputSource, options: IngestOptions) -> Iterator[ParsedChunk]:
        """Parse a whole input, yielding chunks of bounded size. :class:`LineFormat` implements
        this through the shared line reader; whole-file formats override it."""
        raise NotImplementedError


class LineFormat(LogFormat):
    """A line-oriented format: implement :meth:`parse_lines`; the reader does the rest."""

    def parse_lines(self, lines: pl.DataFrame, source: str, options: IngestOptions) -> ParsedChunk:
        """Parse one chunk of lines (schema :data:`LINES_SCHEMA`), vectorised: no Python loop per
        line. Every input line ends in exactly one of the two outputs. ``source`` is the file name
        for ``log.file.path`` and the quarantine."""
        raise NotImplementedError

    def most_events(self, lines: pl.DataFrame) -> np.ndarray | None:
        """How many events each of ``lines`` may become at most, for formats where one line can
        stand for several (rsyslog's ``message repeated N times``); None: one each. The reader
        cuts a block of lines that could make more than ``chunk_lines`` events into smaller
        blocks, so a chunk's memory stays bounded by events, not lines."""
        return None

    def parse_block(self, lines: pl.DataFrame, raw: memoryview | None, source: str, options: IngestOptions,
                    before: object = None) -> ParsedChunk:
        """:meth:`parse_lines`, given also the bytes the lines were cut from when the reader has
        them (see ``dplogs.ingest.reader.LineBlock``) and what :meth:`carry` kept of the blocks
        before; formats with a native block reader override this to skip re-joining the lines."""
        return self.parse_lines(lines, source, options)

    def carry(self, lines: pl.DataFrame, before: object, options: IngestOptions) -> object:
        """What the next block's :meth:`parse_block` needs from this block and those before it
        (``before``), for formats whose records refer to earlier lines (sysklogd's ``last message
        repeated N times``). The reader calls it in input order on its own thread while blocks
        parse in parallel, so it must be cheap. None: blocks parse alone."""
        return None

    def parse(self, source: InputSource, options: IngestOptions) -> Iterator[ParsedChunk]:
        from dplogs.ingest.reader import bounded_blocks, iter_blocks  # the reader imports this module

        with source.open() as stream:
            blocks = iter_blocks(stream, chunk_lines=options.chunk_lines, max_line_bytes=options.max_line_bytes)
            before = None
            for block in bounded_blocks(blocks, self.most_events, options.chunk_lines):
                yield self.parse_block(block.lines, block.raw, source.name, options, before)
                before = self.carry(block.lines, before, options)


NO_TIME_REASON = "no timestamp (the event's time cannot be determined)"


def split_out_of_range(events: pl.DataFrame, rows: pl.DataFrame, options: IngestOptions) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``events`` stamped inside ``options.time_range``, and the source ``rows`` (``line``,
    ``offset``, ``text``; one per event, aligned) of the others with their ``reason``, to be
    quarantined: stamped outside the range, or not stamped at all. Every format calls this on its
    events, so a nonsense year never makes a day partition and no event is stored where no
    time-bounded query can see it.

    >>> import datetime as dt
    >>> ev = pl.DataFrame({TIMESTAMP: [dt.datetime(2024, 1, 1), dt.datetime(2150, 1, 1), None]}, schema={TIMESTAMP: pl.Datetime("us", "UTC")})
    >>> rows = pl.DataFrame({"line": [1, 2, 3], "offset": [0, 9, 18], "text": ["a", "b", "c"]})
    >>> kept, late = split_out_of_range(ev, rows, IngestOptions())
    >>> kept.height, late.get_column("reason").to_list()
    (1, ['timestamp outside 1970-01-01..2100-01-01 (--time-range)', "no timestamp (the event's time cannot be determined)"])
    """
    start, end = options.time_range
    if options.undated_time is not None:  # the operator's time for records that carry none
        events = events.with_columns(pl.col(TIMESTAMP).fill_null(pl.lit(options.undated_time).cast(events.schema[TIMESTAMP])))
    stamp = events.get_column(TIMESTAMP)
    missing = stamp.is_null()
    bad = ((stamp < start) | (stamp >= end)).fill_null(False) | missing
    if not bad.any():
        return events, rows.clear().select("line", "offset", "text").with_columns(reason=pl.lit(None, pl.String))
    late = rows.filter(bad).select("line", "offset", "text").with_columns(
        reason=pl.when(missing.filter(bad)).then(pl.lit(NO_TIME_REASON)).otherwise(pl.lit(options.time_range_reason)))
    return events.filter(~bad), late


REGISTRY: dict[str, LogFormat] = {}


def sniff_lines(head: bytes) -> list[bytes]:
    """The lines a line format's sniff scores: the head's first 200 non-blank lines, without the
    last one when the head's size limit may have cut it.

    >>> sniff_lines(b"a\\n\\n b\\nc-cut-off")
    [b'a', b' b']
    """
    lines = [ln for ln in head.splitlines()[:200] if ln.strip()]
    return lines[:-1] if len(lines) > 1 and not head.endswith(b"\n") else lines


def register(fmt: type[LogFormat]) -> type[LogFormat]:
    """Class decorator adding a format to :data:`REGISTRY` under its ``name``."""
    if fmt.name in REGISTRY:
        raise ValueError(f"format {fmt.name!r} registered twice")
    REGISTRY[fmt.name] = fmt()
    return fmt


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def event_hash(text: pl.Expr, offset: pl.Expr, *, offsets_complete: bool = False) -> pl.Expr:
    """Content hash for ``event.hash``, two u64 words (the store's ``Array(UInt64, 2)``): a seeded
    polars hash of the record's raw text, then its byte offset in the file, or for records
    without one (EVTX, CloudTrail, tables) a second, differently seeded hash of the text.

    So identical lines at different places stay distinct events, re-reading the same bytes gives
    the same hashes, and two different records collide only when their texts' 64-bit hashes do
    at the same offset. (Hashing the text alone is 4x cheaper than hashing (text, offset) twice.)

    Polars does not promise hash stability across its versions; the store records a canary and
    falls back to file fingerprints when it changes. ``offsets_complete`` (no offset is null) gives
    the same hashes without computing the second one, which the coalesce would compute for every row.

    >>> h = pl.DataFrame({"text": ["a", "a"], "offset": [0, 2]}).select(event_hash(pl.col("text"), pl.col("offset")))
    >>> h.n_unique(), h.dtypes, h.item(1, 0)[1]
    (2, [Array(UInt64, shape=(2,))], 2)
    """
    if offsets_complete:  # the caller knows no offset is null: polars would hash every text again for the coalesce
        return pl.concat_arr(text.hash(seed=0x5EED), offset.cast(pl.UInt64))
    return pl.concat_arr(text.hash(seed=0x5EED), pl.coalesce(offset.cast(pl.UInt64), text.hash(seed=0xD1CE)))


REPEAT_SHIFT = 48
"""Copy ``k`` of a record that stands for several events (rsyslog's ``message repeated N times``)
has ``k << 48`` XOR-ed into its hash's second word (the byte offset, < 2^48), so the copies are
distinct events and re-reading the record gives them the same hashes again."""


def repeat_hash(event_hash_expr: pl.Expr, copy: pl.Expr) -> pl.Expr:
    """``event.hash`` of copy ``copy`` (0: the record itself) of a record whose hash is ``event_hash_expr``."""
    shifted = copy.cast(pl.UInt64) * pl.lit(1 << REPEAT_SHIFT, pl.UInt64)
    return pl.concat_arr(event_hash_expr.arr.get(0), event_hash_expr.arr.get(1).xor(shifted))
