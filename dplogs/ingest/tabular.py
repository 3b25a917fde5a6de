"""CSV (with a header row) and Parquet input, mapped to ECS by ``--map 'Source IP=source.ip'``
(:attr:`IngestOptions.field_map`, source column → store field).

Tables carry no ECS names, so a mapping is required. Both readers stream: CSV through Arrow's
incremental reader (every column read as text, so a stray value never fails a whole column; bytes
that are not UTF-8 become U+FFFD, as in every reader),
Parquet by record batches. A CSV row with the wrong number of fields, or a row in which no mapped
column has a value, is quarantined; CSV quarantine rows keep their line number and text. A column name
used again is numbered (``ts#2``), so ``--map 'ts#2=message'`` can name it.

>>> import io
>>> from dplogs.ingest.base import InputSource
>>> data = b"Event DateTime,Source IP,Event Name\\n2022-02-18T17:34:57Z,177.131.167.145,ListObjects\\n"
>>> src = InputSource(name="s3.csv", head=data, open=lambda: io.BytesIO(data))
>>> opts = IngestOptions(field_map={"Source IP": "source.ip", "Event Name": "event.action", "Event DateTime": "@timestamp"})
>>> (chunk,) = Csv().parse(src, opts)
>>> chunk.events.select("source.ip", "event.action").row(0)
('177.131.167.145', 'ListObjects')
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from dplogs.escape import visible
from dplogs.errors import DataError, UsageError
from dplogs.ingest import _structured as st
from dplogs.ingest.base import (
    LINES_SCHEMA,
    IngestOptions,
    InputSource,
    LogFormat,
    ParsedChunk,
    empty_quarantine,
    register,
)
from dplogs.ingest.jsonl import check_field_map, timestamp
from dplogs.ingest.reader import GZIP_FREE_BYTES
from dplogs.schema import STORE_SCHEMA, TIMESTAMP


def _check_mapping(options: IngestOptions, columns: list[str], kind: str, name: str) -> None:
    """Refuse a table without a usable --map, naming the file: a directory walk meets tables
    among the logs (a CSV export beside auth.log), and the message has to say which one."""
    if not options.field_map:
        raise UsageError(
            f"{visible(name)}: {kind} input needs a column mapping: pass --map 'COLUMN=ecs.field' (e.g. --map "
            f"'Source IP=source.ip'), or leave the file out of the paths ingested; columns here: {', '.join(columns)}"
        )
    check_field_map(options.field_map)
    missing = [c for c in options.field_map if c not in columns]
    if missing:
        raise UsageError(f"{visible(name)}: --map names columns this {kind} file lacks: {', '.join(missing)}; "
                         f"columns here: {', '.join(columns)}")


def _events(batch: pl.DataFrame, first: int, source: str, options: IngestOptions, *, module: str) -> ParsedChunk:
    """Map one batch of text columns; ``first`` numbers its records for the content hash."""
    mapped = list(options.field_map)
    frame = batch.select(
        pl.int_range(first, first + pl.len(), dtype=pl.Int64).alias("line"),
        pl.lit(None, pl.Int64).alias("offset"),
        pl.struct(pl.all().cast(pl.String)).struct.json_encode().alias("text"),
        *(pl.col(c).cast(pl.String).alias(f"src:{c}") for c in mapped),
    )
    empty = pl.all_horizontal(st.nonempty(pl.col(f"src:{c}")).is_null() for c in mapped)
    rejected = frame.filter(empty).select(LINES_SCHEMA.names()).with_columns(
        pl.lit(None, pl.Int64).alias("line"), reason=pl.lit("no mapped column has a value")
    )
    columns: dict[str, list[pl.Expr]] = {}
    for column, target in options.field_map.items():
        columns.setdefault(target, []).append(st.nonempty(pl.col(f"src:{column}")))
    exprs = {target: pl.coalesce(values) for target, values in columns.items()}
    if TIMESTAMP in exprs:
        exprs[TIMESTAMP] = timestamp(exprs[TIMESTAMP], options.tz)
    dataset = options.dataset or f"{module}.generic"
    kept = frame.filter(~empty)
    events = st.finish(kept, exprs, source=source, dataset=dataset, module=module)
    events, rejected = st.in_time_range(events, kept, rejected, options)
    return st.chunk(events, rejected, source)


MAX_COLUMNS = 10_000
"""Columns a table may have: every row's raw text is all its columns (its identity and what the
quarantine keeps), so a wide header made each row cost memory in proportion (200,000 columns:
2.8 GB and 15 s for one row)."""


def _check_width(width: int, name: str, kind: str) -> None:
    if width > MAX_COLUMNS:
        raise DataError(f"{visible(name)}: the {kind} table has {width:,} columns, more than {MAX_COLUMNS:,}; "
                        "export only the columns to map")


class _LossyUtf8(io.RawIOBase):
    """``inner`` with bytes that are not UTF-8 replaced by U+FFFD, as the line reader decodes them.
    Arrow's CSV reader fails the whole file on one such byte (its text conversion, and the text of
    a malformed row it hands to the quarantine), which made one bad byte an exit 70."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._pending:
            raw = self._inner.read(len(buffer))
            if raw.isascii() and not self._decoder.getstate()[0]:
                self._pending = memoryview(raw)  # the usual case: nothing to decode
            else:
                self._pending = memoryview(self._decoder.decode(raw, final=not raw).encode())
            if not raw:
                break
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _unique(names: list[str]) -> list[str]:
    """``names`` with the second and later uses of a name made ``name#2``, ``name#3``...: a
    table's columns become a frame's, whose names must differ (a header ``ts,ts`` or two empty
    names was an exit 70). Mapping names the first; ``--map 'ts#2=...'`` the next.

    >>> _unique(["ts", "ts", "", "", "ts#2"])
    ['ts', 'ts#2', '', '#2', 'ts#2#2']
    """
    out: list[str] = []
    for name in names:
        unique, k = name, 1
        while unique in out:
            k += 1
            unique = f"{name}#{k}"
        out.append(unique)
    return out


def _header(head: bytes, name: str) -> list[str]:
    # (Arrow skips a UTF-8 byte-order mark, as Excel's "CSV UTF-8" writes, so the names must too)
    first = head.split(b"\n", 1)[0].decode("utf-8", errors="replace").removeprefix("\ufeff").rstrip("\r")
    try:
        return next(csv.reader([first]), [])
    except csv.Error as exc:  # e.g. a bare carriage return inside an unquoted header cell
        raise DataError(f"{visible(name)}: the first line is not a CSV header row ({exc}); "
                        f"pass the right --format, or fix the header") from None


@register
class Csv(LogFormat):
    name = "csv"
    description = "CSV with a header row; map columns with --map 'COLUMN=ecs.field'"

    def sniff(self, head: bytes) -> float:
        if b"\x00" in head:
            return 0.0
        text = head.decode("utf-8", errors="replace")
        sample = text.split("\n")[:20]
        if len(sample) > 1 and not text.endswith("\n"):
            sample = sample[:-1]  # the head may cut the last line
        try:
            rows = list(csv.reader(line.rstrip("\r") for line in sample if line.strip()))
        except csv.Error:
            return 0.0
        if len(rows) < 2 or len(rows[0]) < 3 or text.lstrip().startswith(("{", "[", "#")):
            return 0.0
        width = len(rows[0])
        header_ok = all(cell.strip() and not cell.strip().replace(".", "").isdigit() for cell in rows[0])
        # A generic table: below every format with a recognisable line shape.
        regular = sum(len(r) == width for r in rows[1:]) / (len(rows) - 1)
        return 0.55 if header_ok and regular >= 0.75 else 0.0

    def parse(self, source: InputSource, options: IngestOptions) -> Iterator[ParsedChunk]:
        import pyarrow.csv as pacsv

        header = _header(source.head, source.name)
        columns = _unique(header)
        _check_width(len(columns), source.name, "CSV")
        _check_mapping(options, columns, "CSV", source.name)
        bad: list[tuple[int | None, str]] = []

        def invalid(row) -> str:  # called by Arrow only for malformed rows
            bad.append((row.number, row.text))
            return "skip"

        with source.open() as stream:
            # a row must fit in one block: rows up to --max-line-bytes are read, longer ones refused
            block = max(1 << 22, options.max_line_bytes + 1)
            reader = pacsv.open_csv(
                _LossyUtf8(stream),
                read_options=pacsv.ReadOptions(block_size=block, use_threads=False,
                                               **({} if columns == header else {"column_names": columns, "skip_rows": 1})),
                parse_options=pacsv.ParseOptions(invalid_row_handler=invalid),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in columns}, strings_can_be_null=False
                ),
            )
            try:
                yield from self._chunks(reader, bad, source.name, options)
            except pa.ArrowInvalid as exc:
                if "straddl" not in str(exc):
                    raise
                raise DataError(f"{visible(source.name)}: a CSV row is longer than {options.max_line_bytes:,} bytes; "
                                "pass --max-line-bytes N to accept longer rows") from None

    @staticmethod
    def _chunks(batches: Iterable[pa.RecordBatch], bad: list, source: str, options: IngestOptions) -> Iterator[ParsedChunk]:
        seen = 0
        for batch in batches:
            frame = pl.from_arrow(pa.Table.from_batches([batch]))
            for start in range(0, frame.height, options.chunk_lines):
                part = frame.slice(start, options.chunk_lines)
                chunk = _events(part, seen + 1, source, options, module="csv")
                seen += part.height
                yield _with_bad_rows(chunk, bad, source)
                bad.clear()
        if bad:  # malformed rows after the last good one
            yield _with_bad_rows(ParsedChunk(pl.DataFrame(schema=STORE_SCHEMA), empty_quarantine()), bad, source)


def _with_bad_rows(chunk: ParsedChunk, bad: list[tuple[int | None, str]], source: str) -> ParsedChunk:
    if not bad:
        return chunk
    rows = pl.DataFrame({"line": [n for n, _ in bad], "text": [t for _, t in bad]},
                        schema={"line": pl.Int64, "text": pl.String})
    extra = st.quarantine(rows.with_columns(reason=pl.lit("wrong number of CSV fields")), source)
    return ParsedChunk(chunk.events, pl.concat([chunk.quarantine, extra]), skipped=chunk.skipped)


@register
class Parquet(LogFormat):
    name = "parquet"
    description = "Parquet tables; map columns with --map 'COLUMN=ecs.field'"

    def sniff(self, head: bytes) -> float:
        return 1.0 if head.startswith(b"PAR1") else 0.0

    def parse(self, source: InputSource, options: IngestOptions) -> Iterator[ParsedChunk]:
        import pyarrow.parquet as pq

        with source.open() as stream:
            data = source.path if source.path is not None and not _gzipped(source.path) else io.BytesIO(stream.read())
            stored = os.path.getsize(data) if isinstance(data, str) else len(data.getbuffer())
            try:
                # byte strings stay dictionary-encoded until their size is known (:func:`_expanded_bytes`)
                table = pq.ParquetFile(data)
                table = pq.ParquetFile(data, metadata=table.metadata, read_dictionary=[
                    i for i in range(table.metadata.num_columns) if table.schema.column(i).physical_type == "BYTE_ARRAY"])
            except (pa.ArrowException, OSError) as exc:  # not Parquet, or a damaged footer
                yield _unreadable(source.name, f"not a readable Parquet file: {exc}")
                return
            columns = _unique(table.schema_arrow.names)
            _check_width(len(columns), source.name, "Parquet")
            _check_mapping(options, columns, "Parquet", source.name)
            seen = expanded = 0
            limit = max(GZIP_FREE_BYTES, options.max_gzip_ratio * stored)
            rows = max(1, min(options.chunk_lines, PARQUET_BATCH_VALUES // max(table.metadata.num_columns, 1)))
            batches = table.iter_batches(batch_size=rows)
            # Dictionary-encoded reads end a batch at each row group: small ones are gathered up
            # to ``rows`` (5,000 row groups of one row were 5,000 chunks, over a minute).
            pending: list[pa.Table] = []
            held = 0
            failure = None
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    batch = None
                except (pa.ArrowException, OSError) as exc:  # a damaged row group ends the file
                    batch, failure = None, f"unreadable Parquet data after row {seen + held}: {exc}"
                if batch is not None:
                    expanded += sum(_expanded_bytes(column) for column in batch.columns)
                    if expanded > limit:
                        raise DataError(
                            f"{visible(source.name)}: Parquet data expands more than {options.max_gzip_ratio:g}x its "
                            f"{stored:,} bytes (a decompression bomb?); refused after {expanded >> 20} MiB. Pass "
                            "--max-gzip-ratio N to accept it")
                    dense = pa.schema([f.with_type(_dense(f.type)) for f in batch.schema])
                    pending.append(pa.Table.from_batches([batch]).cast(dense).rename_columns(columns))
                    held += batch.num_rows
                    if held < rows:
                        continue
                if pending:
                    frame = _as_text(pl.from_arrow(pa.concat_tables(pending)).rechunk())
                    yield _events(frame, seen + 1, source.name, options, module="parquet")
                    seen += frame.height
                    pending, held = [], 0
                if batch is None:
                    break
            if failure is not None:
                yield _unreadable(source.name, failure)


PARQUET_BATCH_VALUES = 1 << 24
"""Values (rows x leaf columns) read from Parquet at once: a batch of a wide table stays bounded."""


def _expanded_bytes(array: pa.Array) -> int:
    """Bytes ``array`` holds once its dictionaries are expanded, found without expanding them: a
    dictionary of one long string indexed by every row is a few bytes of Parquet (a 797-byte file
    became 1 GB of strings, 4 GB of memory and a minute of CPU)."""
    if pa.types.is_dictionary(array.type):
        values = array.dictionary
        if pa.types.is_binary(values.type) or pa.types.is_string(values.type) or pa.types.is_large_binary(values.type) \
                or pa.types.is_large_string(values.type):
            sizes = pc.binary_length(values)
        else:
            sizes = pa.array([values.nbytes // max(len(values), 1)] * len(values), pa.int64())
        return int(pc.sum(pc.take(sizes, array.indices)).as_py() or 0) + array.indices.nbytes
    if pa.types.is_struct(array.type):
        return sum(_expanded_bytes(child) for child in array.flatten())
    if pa.types.is_map(array.type):
        return _expanded_bytes(array.keys) + _expanded_bytes(array.items) + len(array) * 8
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or pa.types.is_fixed_size_list(array.type):
        return _expanded_bytes(array.flatten()) + len(array) * 8
    return array.nbytes


def _dense(dtype: pa.DataType) -> pa.DataType:
    """``dtype`` with dictionaries replaced by their value type, at any depth, and maps made lists
    of key-value structs (polars' map type cannot be cast to text)."""
    if pa.types.is_dictionary(dtype):
        return dtype.value_type
    if pa.types.is_struct(dtype):
        return pa.struct([f.with_type(_dense(f.type)) for f in dtype])
    if pa.types.is_map(dtype):
        return pa.list_(pa.struct([dtype.key_field.with_type(_dense(dtype.key_type)),
                                   dtype.item_field.with_type(_dense(dtype.item_type))]))
    if pa.types.is_list(dtype):
        return pa.list_(dtype.value_field.with_type(_dense(dtype.value_type)))
    if pa.types.is_large_list(dtype):
        return pa.large_list(dtype.value_field.with_type(_dense(dtype.value_type)))
    if pa.types.is_fixed_size_list(dtype):
        return pa.list_(dtype.value_field.with_type(_dense(dtype.value_type)), dtype.list_size)
    return dtype


_JSON_LEAVES = (pl.String, pl.Boolean, pl.Null, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32,
                pl.UInt64, pl.Float32, pl.Float64)


def _json_ready(dtype: pl.DataType) -> pl.DataType:
    """``dtype`` with every leaf polars cannot write as JSON (binary, decimal, time...) made a string."""
    if isinstance(dtype, pl.Struct):
        return pl.Struct({f.name: _json_ready(f.dtype) for f in dtype.fields})
    if isinstance(dtype, (pl.List, pl.Array)):
        return pl.List(_json_ready(dtype.inner))
    return dtype if dtype.base_type() in _JSON_LEAVES else pl.String()


def _lossy_text(value: object) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _json_text(value: object) -> str:
    """``value`` as JSON written as polars writes it (compact, UTF-8), leaves it cannot hold as text."""
    return json.dumps(value, default=_lossy_text, separators=(",", ":"), ensure_ascii=False)


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column of a Parquet batch as text, as CSV's are: nested values (lists, structs) as
    their JSON, binary values as UTF-8 (invalid bytes as U+FFFD, as the line reader does). A cast
    to string fails on both, and made a table holding a list or a non-UTF-8 binary an exit 70."""
    columns = []
    for column in frame.get_columns():
        if column.dtype.is_nested():
            try:
                ready = column.cast(_json_ready(column.dtype))
            except pl.exceptions.ComputeError:  # a byte string that is not UTF-8 inside: value by value
                column = pl.Series(column.name, [None if v is None else _json_text(v) for v in column.to_list()],
                                   dtype=pl.String)
            else:  # {"v":...} around each value is cut off
                text = pl.select(pl.struct(ready.alias("v")).struct.json_encode()).to_series().str.slice(5).str.head(-1)
                column = pl.select(pl.when(ready.is_not_null()).then(text)).to_series().alias(column.name)
        elif column.dtype == pl.Date:  # polars panics on a day past its calendar's ±262,000 years
            column = pl.Series(column.name, column.to_arrow().cast(pa.string()))
        elif column.dtype == pl.Binary:
            try:
                column = column.cast(pl.String)
            except pl.exceptions.ComputeError:  # not all UTF-8 (polars has no lossy cast): value by value
                column = pl.Series(column.name, [None if b is None else _lossy_text(b) for b in column.to_list()],
                                   dtype=pl.String)
        columns.append(column)
    return pl.DataFrame(columns)


def _unreadable(source: str, reason: str) -> ParsedChunk:
    """The whole (rest of the) input as one quarantined record: nothing is lost silently."""
    bad = pl.DataFrame({"line": [None], "text": [None], "reason": [reason]},
                       schema={"line": pl.Int64, "text": pl.String, "reason": pl.String})
    return ParsedChunk(pl.DataFrame(schema=STORE_SCHEMA), st.quarantine(bad, source))


def _gzipped(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"
