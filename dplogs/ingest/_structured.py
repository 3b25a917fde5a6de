"""Shared machinery of the structured formats (JSON lines, Windows, Zeek, CloudTrail, tables).

JSON lines at speed: :func:`decode_json` reads a chunk's object lines (the reader's raw block, or
the lines joined) against a schema of just the wanted key paths, cut to the keys present in the
chunk because the readers pay per schema field per row. The definition is polars' NDJSON reader
with every leaf a string: type mismatches become nulls (numbers keep their JSON text), and only
malformed JSON makes the read fail; then one validating pass (``json_path_match``, which yields
null instead of raising) splits off the malformed lines, which are quarantined. pyarrow's JSON
reader, ~40% cheaper, runs first, against the types a sample shows. It is strict, so any surprise
(a float, a type change, a duplicate key) makes it fail and the next reader runs
(``tests/ingest/test_json_readers.py`` compares them). No reader ever infers a schema from a
whole chunk: its keys are the log's, so an attacker's, and a chunk whose every line has another
key made a table of lines x keys (100,000 such lines: over 17 GB and 5 minutes). Inference sees
only a bounded sample, and lines with more than :data:`MAX_KEYS` keys are quarantined. Every format then finishes its frame with
:func:`finish`, which adds the bookkeeping columns and conforms to the store schema.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.json as pa_json

from dplogs.errors import InternalError
from dplogs.ingest.base import QUARANTINE_SCHEMA, IngestOptions, ParsedChunk, event_hash, split_out_of_range
from dplogs.schema import FIELDS, STORE_SCHEMA, Field, conform, is_list

Path = tuple[str, ...]
"""A key path into a JSON document; segments may themselves contain dots (``("user.name",)``)."""

MAX_KEYS = 10_000
"""Keys a JSON line may hold (at any depth); a line with more is quarantined (:data:`TOO_MANY_KEYS`)."""
TOO_MANY_KEYS = f"more than {MAX_KEYS:,} keys"
SAMPLE_BYTES = 256 * 1024
_LENIENT_BELOW = 32  # a failing slice this small is decoded leniently instead of bisected further


def col_name(path: Path) -> str:
    """Name of the flat column :func:`decode_json` produces for ``path``.

    >>> col_name(("Event", "System", "Computer"))
    'Event/System/Computer'
    """
    return "/".join(path)


def struct_dtype(paths: Iterable[Path]) -> pl.Struct:
    """The struct type holding exactly ``paths`` (every leaf a string), for schema-driven JSON reads."""
    tree: dict = {}
    for path in paths:
        node = tree
        for seg in path[:-1]:
            node = node.setdefault(seg, {})
            if not isinstance(node, dict):
                raise InternalError(f"JSON path {path} runs through a leaf")
        node.setdefault(path[-1], None)

    def build(node: dict) -> pl.Struct:
        return pl.Struct({k: pl.String() if v is None else build(v) for k, v in node.items()})

    return build(tree)


def flatten(paths: Sequence[Path]) -> list[pl.Expr]:
    """Expressions pulling each path out of decoded struct columns, named by :func:`col_name`."""
    out = []
    for path in paths:
        expr = pl.col(path[0])
        for seg in path[1:]:
            expr = expr.struct.field(seg)
        out.append(expr.alias(col_name(path)))
    return out


def _json_path(path: Path) -> str:
    return "$" + "".join(f"[{json.dumps(seg)}]".replace('"', "'") for seg in path)


def _schema_keys(dtype: pl.DataType | None) -> Iterator[str]:
    if isinstance(dtype, pl.Struct):
        for f in dtype.fields:
            yield f.name
            yield from _schema_keys(f.dtype)
    elif isinstance(dtype, pl.List):
        yield from _schema_keys(dtype.inner)


def _present_keys(candidates: pl.DataFrame, keys: set[str], inferred: pl.Schema | None) -> set[str]:
    """The ``keys`` that occur, at any depth, in ``candidates`` (a superset is fine, a miss is not).

    Polars' schema-driven reader pays for every schema field on every row, present or not, so the
    schema is cut to keys a sample shows (``inferred``, see :func:`_infer`) plus any other wanted
    key one literal search pass finds anywhere."""
    seen = (set(inferred) | set(_schema_keys(pl.Struct(inferred)))) & keys if inferred is not None else set()
    others = sorted(keys - seen)
    if others:
        # A key is a quoted string followed by optional JSON whitespace (never \n inside a line)
        # and a colon; matching that, not the bare quoted string, keeps values such as "logon"
        # from looking like keys. Files are usually uniform and compact: one Aho-Corasick pass
        # for '"key":' plus any quote followed by whitespace (4x cheaper than every key and
        # whitespace combination) finds the few lines (often none) worth the slower pass that
        # lists which keys they hold; overlapping, so no occurrence can hide another.
        screen = [f'"{k}":' for k in others] + ['" ', '"\t', '"\r']
        hits = candidates.filter(pl.col("text").str.contains_any(screen))
        if hits.height:
            quoted = [f'"{k}"{ws}' for k in others for ws in (":", " ", "\t", "\r")]
            found = hits.select(pl.col("text").str.extract_many(quoted, overlapping=True).explode().drop_nulls().unique())
            seen |= {k[1:k.rindex('"')] for k in found.to_series().to_list()}
    return seen


def _sample(candidates: pl.DataFrame) -> bytes:
    """The first 256 lines, joined, up to :data:`SAMPLE_BYTES`: what key screening and type
    inference look at (inference costs per key, so its input is bounded)."""
    sizes = candidates.head(256).select(pl.col("text").str.len_bytes().cum_sum()).to_series()
    n = max(1, int((sizes <= SAMPLE_BYTES).sum()))
    return (candidates.head(n).select(pl.col("text").str.join("\n")).item() or "").encode()


def _infer(sample: bytes) -> pl.Schema | None:
    """Polars' inferred schema of the sample lines (None if they do not parse)."""
    try:
        return pl.read_ndjson(sample).schema
    except pl.exceptions.PolarsError:
        return None


_ARROW_LEAVES = {pl.String(): pa.string(), pl.Null(): pa.string(), pl.Int64(): pa.int64(), pl.Boolean(): pa.bool_()}


def _arrow_schema(inferred: pl.Schema | None, schema: Mapping[str, pl.DataType]) -> pa.Schema | None:
    """pyarrow types for the leaves of ``schema`` (polars, all strings) from the types the sample
    shows: strings, integers and booleans. None when a leaf has another type there (float, list,
    object): then only polars' reader applies. Leaves the sample lacks are strings; if they hold
    numbers the strict read fails, which is safe."""
    if inferred is None:
        return None

    def convert(dtype: pl.DataType, seen: pl.DataType | None) -> pa.DataType | None:
        if isinstance(dtype, pl.Struct):
            if seen is not None and not isinstance(seen, pl.Struct):
                return None
            known = {f.name: f.dtype for f in seen.fields} if seen is not None else {}
            fields = []
            for f in dtype.fields:
                child = convert(f.dtype, known.get(f.name))
                if child is None:
                    return None
                fields.append(pa.field(f.name, child))
            return pa.struct(fields)
        return pa.string() if seen is None else _ARROW_LEAVES.get(seen)

    top = convert(pl.Struct(dict(schema)), pl.Struct(dict(inferred)))
    return None if top is None else pa.schema(list(top))


def _pyarrow_json(data: bytes, schema: pa.Schema | None = None) -> pa.Table | None:
    """``data`` (JSON lines) read by pyarrow in one block, against ``schema`` (other keys ignored)
    or with its own type inference; None when pyarrow refuses the data."""
    if len(data) >= 2**31 - 1:  # one block, and block sizes are 32-bit
        return None
    parse = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore") if schema is not None else None
    try:
        return pa_json.read_json(pa.BufferReader(data), parse_options=parse,
                                 read_options=pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _read_arrow(data: bytes, arrow: pa.Schema, schema: Mapping[str, pl.DataType]) -> pl.DataFrame | None:
    """``data`` read by pyarrow against ``arrow``, integers and booleans turned into their JSON
    text (the polars reader's strings); None when pyarrow refuses the data."""
    table = _pyarrow_json(data, arrow)
    return None if table is None else pl.from_arrow(table).cast(dict(schema))  # type: ignore[union-attr]


def decode_json(lines: pl.DataFrame, paths: Sequence[Path], *, raw: memoryview | None = None) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Decode JSON-object lines, keeping only ``paths`` (every leaf as a string: numbers keep their
    JSON text, nested objects where a leaf was expected become their JSON text). ``raw``, the
    bytes the lines were cut from (``LineBlock.raw``), saves re-joining them when every line is
    an object.

    Returns ``(decoded, rejected, skipped)``: ``decoded`` holds the input columns plus one String
    column per path (named by :func:`col_name`); ``rejected`` holds the input columns plus
    ``reason`` for lines that are not a JSON object; ``skipped`` counts blank lines. Every input
    row is in exactly one of the three.

    >>> lines = pl.DataFrame({"line": [1, 2, 3], "offset": [0, 14, 15], "text": ['{"a":{"b":1}}', '', '{"a":}']})
    >>> ok, bad, skipped = decode_json(lines, [("a", "b")])
    >>> ok["a/b"].to_list(), bad["reason"].to_list(), skipped
    (['1'], ['invalid JSON'], 1)
    """
    paths = list(dict.fromkeys(paths))
    # What is left after stripping " \t\r\n" and BOMs (Windows exports often start with one), tested
    # with anchored regexes rather than by building the stripped copy of every line.
    pad = "[ \t\r\n\ufeff]*"
    text = pl.col("text")
    is_object = text.str.contains(f"^{pad}\\{{") & text.str.contains(f"\\}}{pad}$")
    blank = text.str.contains(f"^{pad}$").fill_null(True)
    if lines.select((text.str.starts_with("{") & text.str.ends_with("}")).all()).item():
        # The usual block: objects without padding, so none is blank (one cheap pass, not three regexes)
        skipped, all_objects = 0, True
    else:
        skipped = int(lines.select(blank.sum()).item())
        object_mask = lines.select(is_object.fill_null(False)).to_series()
        all_objects = bool(object_mask.all())
    # Filtering copies the text column: skip it in the common case of a chunk of objects only.
    candidates = lines if all_objects else lines.filter(object_mask)
    not_objects = (lines.clear() if all_objects else lines.filter(~object_mask & ~blank)).with_columns(
        reason=pl.lit("not a JSON object")
    )
    # A key takes at least 5 bytes ('"":0,'), so only lines longer than that many keys are counted
    # ('"' then ':' counts every key, and more only where such text sits in a value).
    long = candidates.select(pl.col("text").str.len_bytes() > 5 * MAX_KEYS).to_series().arg_true()
    if len(long):  # rare: count the keys of those lines only
        keys = candidates[long].select(pl.col("text").str.count_matches(r'"[ \t\r]*:')).to_series()
        crowded = pl.Series(np.isin(np.arange(candidates.height), long.filter(keys > MAX_KEYS).to_numpy()))
        if crowded.any():
            not_objects = pl.concat([not_objects, candidates.filter(crowded).with_columns(reason=pl.lit(TOO_MANY_KEYS))])
            candidates = candidates.filter(~crowded)
    @functools.cache
    def narrow() -> tuple[list[Path], dict[str, pl.DataType], pa.Schema | None, list[pl.Expr]]:
        """The wanted paths present in the chunk and the schemas reading just them."""
        inferred = _infer(_sample(candidates))
        present = _present_keys(candidates, {seg for p in paths for seg in p}, inferred)
        used = [p for p in paths if all(seg in present for seg in p)]
        schema = dict(struct_dtype(used).to_schema()) if used else {"_": pl.String()}
        absent = [pl.lit(None, pl.String()).alias(col_name(p)) for p in paths if p not in used]
        return used, schema, _arrow_schema(inferred, schema) if used else None, absent

    good: list[pl.DataFrame] = []
    lenient: list[pl.DataFrame] = []

    # null, not an error, if malformed
    valid = pl.col("text").str.strip_chars_start("\ufeff").str.json_path_match("$").is_not_null()
    invalid: list[pl.DataFrame] = []

    def attempt(frame: pl.DataFrame, screened: bool) -> None:
        if frame.height == 0:
            return
        # Whole-chunk readers are several times faster than str.json_decode. read_ndjson with
        # ignore_errors turns type mismatches into nulls; only malformed JSON makes it raise.
        text = pl.col("text")
        bom = frame.select(text.str.starts_with("\ufeff").any()).item()
        if bom:
            text = text.str.strip_chars_start("\ufeff")
        if raw is not None and frame is lines and not bom:
            joined = bytes(raw)  # the same lines, each ended by its own newline (and CR: JSON whitespace)
        else:
            joined = frame.select(text.str.join("\n")).item().encode()
        used, schema, arrow, absent = narrow()
        doc = _read_arrow(joined, arrow, schema) if arrow is not None else None
        if doc is None:
            try:
                doc = pl.read_ndjson(joined, schema=schema, ignore_errors=True)
            except pl.exceptions.PolarsError:
                doc = None
        if doc is not None and doc.height == frame.height:
            columns = doc.with_columns(*flatten(used), *absent).select(col_name(p) for p in paths)
            good.append(pl.concat([frame, columns], how="horizontal"))
        elif not screened:  # one validating pass splits off the malformed lines
            invalid.append(frame.filter(~valid))
            attempt(frame.filter(valid), screened=True)
        elif frame.height <= _LENIENT_BELOW:
            lenient.append(frame)
        else:  # the two JSON parsers disagree on some line: isolate it
            half = frame.height // 2
            attempt(frame.slice(0, half), screened=True)
            attempt(frame.slice(half), screened=True)

    attempt(candidates, screened=False)
    rejected = [not_objects, *(f.with_columns(reason=pl.lit("invalid JSON")) for f in invalid)]
    if lenient:
        good.append(pl.concat(lenient).with_columns(
            pl.col("text").str.strip_chars_start("\ufeff").str.json_path_match(_json_path(p)).alias(col_name(p))
            for p in paths
        ))
    empty = lines.clear().with_columns(pl.lit(None, pl.String()).alias(col_name(p)) for p in paths)
    decoded = good[0] if len(good) == 1 else pl.concat([empty, *good], how="diagonal").select(empty.columns)
    rejected_frame = pl.concat(rejected)
    # Sorting a wide frame is costly: only needed when it was assembled from several pieces.
    return (
        decoded.sort("line") if len(good) > 1 else decoded,
        rejected_frame.sort("line") if len(rejected) > 1 else rejected_frame,
        skipped,
    )


def parse_timestamp(expr: pl.Expr, tz: str = "UTC") -> pl.Expr:
    """ISO-8601 / RFC 3339 text (``T`` or space, optional fraction, ``Z``/``+hh:mm``/``+hhmm``) to
    UTC; text without a zone is read in ``tz``. Unparseable text gives null.

    >>> pl.select(parse_timestamp(pl.lit("2020-10-22T08:29:48.785+02:00"))).item().isoformat()
    '2020-10-22T06:29:48.785000+00:00'
    """
    text = expr.str.strip_chars().str.replace(" ", "T")
    naive = text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us")
    local = naive.dt.replace_time_zone(tz, ambiguous="null", non_existent="null")
    return pl.coalesce(zoned_timestamp(expr), local.dt.convert_time_zone("UTC"))


_ZULU_SHAPE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3}|\.[0-9]{6}|\.[0-9]{9})?Z$"
_ZULU_FORMATS = {20: "%Y-%m-%dT%H:%M:%SZ", 24: "%Y-%m-%dT%H:%M:%S.%3fZ", 27: "%Y-%m-%dT%H:%M:%S.%6fZ",
                 30: "%Y-%m-%dT%H:%M:%S.%9fZ"}
"""The usual UTC stamps by length. Polars parses these fixed layouts ~7x faster than the general
``%.f%#z`` format, which it hands to chrono row by row; both read them the same
(``tests/ingest/test_timestamps.py``)."""


def zoned_timestamp(expr: pl.Expr) -> pl.Expr:
    """The zoned part of :func:`parse_timestamp`: null unless the text carries a zone.

    >>> pl.select(zoned_timestamp(pl.lit("2020-10-22 08:29:48"))).item() is None
    True
    """
    text = expr.str.strip_chars().str.replace(" ", "T")
    return text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z", time_zone="UTC", strict=False, time_unit="us")


def with_zoned_timestamp(frame: pl.DataFrame, text: str, out: str) -> pl.DataFrame:
    """``frame`` plus ``out`` = :func:`zoned_timestamp` of column ``text``, computed faster: the
    usual ``YYYY-MM-DDThh:mm:ss[.fff|.ffffff|.fffffffff]Z`` stamps take polars' fixed-layout
    parser (~7x faster than the general format, which polars hands to chrono row by row).

    >>> f = pl.DataFrame({"t": ["2020-10-22T08:29:48.785Z", " 2020-10-22 08:29:48+02:00", "x"]})
    >>> [v and v.isoformat() for v in with_zoned_timestamp(f, "t", "ts")["ts"]]
    ['2020-10-22T08:29:48.785000+00:00', '2020-10-22T06:29:48+00:00', None]
    """
    col = pl.col(text)
    frame = frame.with_columns(pl.when(col.str.contains(_ZULU_SHAPE)).then(col.str.len_bytes()).alias("_dplogs:zulu"))
    shape = pl.col("_dplogs:zulu")
    fast = pl.coalesce([
        pl.when(shape == n).then(col).str.strptime(pl.Datetime("us"), fmt, strict=False) for n, fmt in _ZULU_FORMATS.items()
    ]).dt.replace_time_zone("UTC")
    general = zoned_timestamp(pl.when(shape.is_null()).then(col))
    return frame.with_columns(pl.coalesce(fast, general).alias(out)).drop("_dplogs:zulu")


def epoch_seconds(expr: pl.Expr) -> pl.Expr:
    """Epoch seconds (Zeek ``ts``, possibly fractional) as text or number to a UTC timestamp.

    >>> pl.select(epoch_seconds(pl.lit("1521911721.255387"))).item().isoformat()
    '2018-03-24T17:15:21.255387+00:00'
    """
    micros = (expr.cast(pl.Float64, strict=False) * 1_000_000).round(0).cast(pl.Int64, strict=False)
    return micros.cast(pl.Datetime("us", "UTC"))


def nonempty(expr: pl.Expr, *nulls: str) -> pl.Expr:
    """``expr`` with empty strings (and any of ``nulls``, e.g. Zeek's ``-``) turned into null."""
    bad = expr.str.strip_chars().is_in(["", *nulls])
    return pl.when(bad).then(None).otherwise(expr)


def quarantine(rejected: pl.DataFrame, source: str) -> pl.DataFrame:
    """Rejected rows (``line``, ``text``, ``reason``) in :data:`QUARANTINE_SCHEMA`."""
    return rejected.select(
        pl.lit(source, pl.String()).alias("source"),
        pl.col("line").cast(pl.Int64),
        pl.col("reason").cast(pl.String),
        pl.col("text").cast(pl.String),
    )


def finish(
    events: pl.DataFrame,
    columns: Mapping[str, pl.Expr],
    *,
    source: str,
    dataset: str | pl.Expr,
    module: str | pl.Expr,
    text: pl.Expr | None = None,
) -> pl.DataFrame:
    """Evaluate the ECS ``columns`` over ``events`` and add the bookkeeping every format sets:
    ``event.dataset``/``event.module``/``event.kind``, ``log.file.path``, ``log.offset`` (from the
    ``offset`` column when there is one) and ``event.hash`` (of ``text`` and the offset, default
    the raw line).
    Returns the frame conformed to the store schema; a value outside a public field's ECS domain
    (``event.outcome``, ``network.transport``…) becomes null, so public key domains hold."""
    unknown = set(columns) - set(STORE_SCHEMA.names())
    if unknown:
        raise InternalError(f"not store columns: {sorted(unknown)}")
    base = {
        "event.dataset": pl.lit(dataset) if isinstance(dataset, str) else dataset,
        "event.module": pl.lit(module) if isinstance(module, str) else module,
        "event.kind": pl.lit("event"),
        "log.file.path": pl.lit(source),
        "log.offset": pl.col("offset") if "offset" in events.columns else pl.lit(None, pl.Int64),
        "event.hash": event_hash(pl.col("text") if text is None else text, pl.col("offset"),
                                 offsets_complete="offset" in events.columns and not events.get_column("offset").has_nulls()),
    }
    return within_domains(conform(events.select(e.alias(name) for name, e in (base | dict(columns)).items())))


def within_domains(out: pl.DataFrame) -> pl.DataFrame:
    """``out`` with :func:`in_domain` applied to every public field, skipping the columns where it
    would change nothing: all null (most enumerated fields of a format), or arrays that are all
    non-empty and allowed (a per-row list evaluation cost ~30 ms per 1M events)."""
    checks = []
    for f in FIELDS.values():
        if f.allowed is None:
            continue
        column = out.get_column(f.name)
        if column.null_count() == column.len():
            continue
        if is_list(f.name):
            # the values of the non-null arrays, read in place (drop_nulls + explode copied them first: 2x the cost)
            values = column.list.explode(keep_nulls=False, empty_as_null=False)
            if column.list.len().min() > 0 and values.null_count() == 0 and values.is_in(f.allowed).all():
                continue
        checks.append(in_domain(f))
    return out.with_columns(checks) if checks else out


def in_domain(f: Field) -> pl.Expr:
    """Column ``f`` with values outside its ECS domain nulled (for an array: dropped from it, and an
    array left empty is null)."""
    allowed = pl.lit(pl.Series(f.allowed, dtype=pl.String)).implode()
    if is_list(f.name):
        kept = pl.col(f.name).list.eval(pl.element().filter(pl.element().is_in(allowed)))
        return pl.when(kept.list.len() > 0).then(kept).alias(f.name)
    return pl.when(pl.col(f.name).is_in(allowed)).then(pl.col(f.name)).alias(f.name)


def in_time_range(events: pl.DataFrame, rows: pl.DataFrame, rejected: pl.DataFrame,
                  options: IngestOptions) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``events`` stamped inside ``options.time_range``, and ``rejected`` plus the source ``rows``
    (aligned with ``events``) of the others (``base.split_out_of_range``)."""
    events, late = split_out_of_range(events, rows, options)
    if not late.height:
        return events, rejected
    return events, pl.concat([rejected.select("line", "offset", "text", "reason"), late]).sort("line")


def chunk(events: pl.DataFrame, rejected: pl.DataFrame, source: str, skipped: int = 0) -> ParsedChunk:
    """Package a parsed chunk; the quarantine keeps only the rejected rows' line, text and reason."""
    return ParsedChunk(events, quarantine(rejected, source), skipped=skipped)


def sample_objects(head: bytes, limit: int = 20) -> list[dict | None]:
    """The first ``limit`` complete lines of ``head`` decoded as JSON (None for a line that is not a
    JSON object). Sniffers only: this is a Python loop over at most ``limit`` lines.

    >>> sample_objects(b'{"a": 1}\\nnope\\n{"b"')
    [{'a': 1}, None]
    """
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = [ln for ln in text.split("\n")[:-1] if ln.strip()] if "\n" in text else [text]
    out: list[dict | None] = []
    for line in lines[:limit]:
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
            doc = None
        out.append(doc if isinstance(doc, dict) else None)
    return out


def share(docs: list[dict | None], test) -> float:
    """Fraction of sampled ``docs`` that are objects passing ``test`` (0 when none were sampled)."""
    return sum(1 for d in docs if d is not None and test(d)) / len(docs) if docs else 0.0
