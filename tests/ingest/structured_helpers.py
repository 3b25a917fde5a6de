"""Helpers for the structured-format tests: build line frames, parse and sniff real files."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from dplogs.ingest.base import LINES_SCHEMA, QUARANTINE_SCHEMA, IngestOptions
from dplogs.ingest.reader import detect_format, iter_lines, open_sources
from dplogs.schema import STORE_SCHEMA
from dplogs.ingest.formats import registered


def lines_frame(*texts: str) -> pl.DataFrame:
    """The reader's LINES_SCHEMA frame for these lines (joined by newlines)."""
    data = "".join(t + "\n" for t in texts).encode()
    frames = list(iter_lines(io.BytesIO(data), chunk_lines=1 << 30))
    return frames[0] if frames else pl.DataFrame(schema=LINES_SCHEMA)


def parse(fmt: str, path: str | Path, options: IngestOptions = IngestOptions()):
    """(events, quarantine, skipped) of one input parsed end to end through the reader."""
    with open_sources([path]) as sources:
        ((source, _),) = sources
        chunks = list(registered()[fmt].parse(source, options))
    return (
        pl.concat([pl.DataFrame(schema=STORE_SCHEMA), *(c.events for c in chunks)]),
        pl.concat([pl.DataFrame(schema=QUARANTINE_SCHEMA), *(c.quarantine for c in chunks)]),
        sum(c.skipped for c in chunks),
    )


def detected(path: str | Path) -> str:
    """Name of the format auto-detection picks for ``path``."""
    with open_sources([path]) as sources:
        ((source, _),) = sources
        return detect_format(source).name


def count_lines(path: str | Path) -> int:
    """Number of records (newline-terminated or final) in a possibly gzipped text file."""
    import gzip

    raw = Path(path).read_bytes()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
