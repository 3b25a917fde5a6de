"""Opening inputs, detecting their format, and streaming their lines in bounded chunks.

Inputs are paths, directories (walked recursively; hidden files, symbolic links, pipes, devices and
dplogs stores inside them skipped) or ``-`` for stdin (spooled to a temporary file so formats may
reopen it; a named pipe is spooled too). A device is refused: it may never end.
Gzip is recognised by its magic bytes, not by the file name. A truncated or corrupt gzip stream
ends the input early instead of raising: the readable part is parsed and the problem is recorded
on the source's :class:`Opener` for the summary. Memory stays bounded on hostile input: a line
longer than ``max_line_bytes`` and gzip data expanding more than ``max_gzip_ratio`` times are
refused (:class:`DataError`) as soon as they are seen.

Lines are split without a Python loop per line: bytes are read in blocks, newline positions are
found with numpy, and the block becomes one Arrow string-view array pointing into the block's
bytes (no copy of the text).
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import blake3
import numpy as np
import polars as pl
import pyarrow as pa

from dplogs.errors import DataError, InputNotFound, StoreWriteError, UsageError
from dplogs.escape import visible
from dplogs.ingest.base import LINES_SCHEMA, InputSource, LogFormat

SNIFF_BYTES = 64 * 1024
SNIFF_MAX_BYTES = 4 * 1024 * 1024
"""A first line longer than SNIFF_BYTES (an event with a long message) is read on up to this, so
the sniffers see at least one whole line."""
BLOCK_BYTES = 8 * 1024 * 1024
FIRST_BLOCK_BYTES = 4 * 1024 * 1024
MIN_SNIFF_SCORE = 0.5
_GZIP_MAGIC = b"\x1f\x8b"
MAX_GZIP_RATIO = 200
"""Default limit of decompressed / compressed bytes. Logs compress 5-30x; deflate cannot exceed
~1030x, which is what a bomb of zeros or of one repeated line reaches."""
GZIP_FREE_BYTES = 1024 * 1024
"""Decompressed bytes allowed at any ratio: small, very repetitive files always pass."""


class _GuardedStream(io.RawIOBase):
    """A read-only stream that turns decompression errors into end-of-input and remembers them.
    With ``compressed`` (the file under a gzip stream), it refuses output past the ratio limit."""

    def __init__(self, inner: BinaryIO, errors: list[str], *, name: str = "", compressed: BinaryIO | None = None,
                 max_ratio: float = MAX_GZIP_RATIO) -> None:
        self._inner = inner
        self._errors = errors
        self._name, self._compressed, self._max_ratio = name, compressed, max_ratio
        self._out = 0
        self._ended = False
        self.prefix = bytearray()
        """The first :data:`SNIFF_BYTES` bytes read (:meth:`Opener.read_as_sniffed`)."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._ended:  # a stream that failed once stays ended (a reader may ask again after 0)
            return 0
        try:
            # readinto1: one underlying read, so data decoded before a corrupt tail is not lost; a
            # plain file reads straight into ``buffer`` (no intermediate bytes object to allocate,
            # fault in and copy)
            got = self._inner.readinto1(buffer)
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
            self._errors.append(f"input ends early ({type(exc).__name__}: {exc}); the readable part was ingested")
            self._ended = True
            return 0
        if len(self.prefix) < SNIFF_BYTES:
            self.prefix += memoryview(buffer).cast("B")[:min(got, SNIFF_BYTES - len(self.prefix))]
        if self._compressed is not None:
            self._out += got
            if self._out > GZIP_FREE_BYTES and self._out > self._max_ratio * max(self._compressed.tell(), 1):
                raise DataError(
                    f"{visible(self._name)}: gzip data expands more than {self._max_ratio:g}x (a decompression bomb?); "
                    f"refused after {self._out >> 20} MiB. Pass --max-gzip-ratio N to accept it"
                )
        return got

    def close(self) -> None:
        self._inner.close()
        if self._compressed is not None:
            self._compressed.close()
        super().close()


class _Snapshot(io.RawIOBase):
    """The first ``limit`` bytes of an open file (all of it when ``limit`` is None), hashed as
    they are read. A log may grow, or be truncated and rewritten (copytruncate), while it is read:
    reading only the bytes it had when it was first opened keeps every run's view of it one
    prefix of the file, whose fingerprint (:meth:`Opener.fingerprint`) names exactly what was
    parsed."""

    def __init__(self, file: BinaryIO, limit: int | None) -> None:
        self._file, self._limit = file, limit
        self._done = 0
        self._digest = blake3.blake3()
        self.digest: str | None = None
        """``blake3:HEX`` of the ``limit`` bytes once all were read."""
        self.shrunk = False
        """The file ended before ``limit``: it was truncated while being read."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._limit is not None:
            view = view[:self._limit - self._done]
        if not len(view):
            return 0
        got = self._file.readinto(view) or 0
        self._digest.update(view[:got])
        self._done += got
        if self._limit is not None:
            if got == 0:
                self.shrunk = True
            elif self._done == self._limit:
                self.digest = "blake3:" + self._digest.hexdigest()
        return got

    readinto1 = readinto

    def tell(self) -> int:
        return self._done

    def close(self) -> None:
        self._file.close()
        super().close()


class Opener:
    """``InputSource.open`` for one file: opens the decompressed byte stream from the start and
    collects read problems (truncated gzip) in :attr:`errors`. ``explicit`` is False for files
    found by walking a directory, whose unrecognised formats are skipped rather than errors.

    A regular file is read as it was when the opener was made (its first :attr:`limit` bytes),
    however it grows meanwhile: its records' hash keys (``dplogs.ingest.streams``) and the
    fingerprint that marks it ingested then cover exactly the bytes parsed, and what was
    appended is read by the next run."""

    def __init__(self, path: str, *, explicit: bool = True, name: str | None = None,
                 max_gzip_ratio: float = MAX_GZIP_RATIO) -> None:
        self.path = path
        self.explicit = explicit
        self.name = name or path
        self.max_gzip_ratio = max_gzip_ratio
        self.errors: list[str] = []
        self._raw: _Snapshot | None = None
        self._stream: _GuardedStream | None = None
        with open(path, "rb") as f:
            self.gzipped = f.read(2) == _GZIP_MAGIC
            info = os.fstat(f.fileno())
        self.limit = info.st_size if stat.S_ISREG(info.st_mode) else None

    @property
    def size(self) -> int:
        """Bytes of the file as stored (compressed when gzipped)."""
        return self.limit if self.limit is not None else os.path.getsize(self.path)

    def position(self) -> int:
        """How far into the stored file the last opened stream has read (for progress displays)."""
        return self._raw.tell() if self._raw is not None else 0

    def fingerprint(self) -> str:
        """BLAKE3 of the bytes this opener reads. Cryptographic on purpose: a file whose fingerprint
        collides with an ingested one is skipped, so a forgeable hash would let an attacker
        suppress logs."""
        with open(self.path, "rb") as f:
            snapshot = _Snapshot(f, self.limit)
            digest = blake3.blake3()
            while block := snapshot.read(1 << 22):
                digest.update(block)
        return "blake3:" + digest.hexdigest()

    def changed(self, fingerprint: str) -> bool:
        """Whether the file's bytes changed under the last stream read to its end (truncated or
        rewritten while it was read): then what was parsed is not what ``fingerprint`` names."""
        raw = self._raw
        return raw is not None and (raw.shrunk or (raw.digest is not None and raw.digest != fingerprint))

    def read_as_sniffed(self, head: bytes) -> bool:
        """Whether the last opened stream began, as far as it was read, with ``head`` (the bytes
        sniffed when the input was opened): not so when the file was truncated and rewritten in
        between (logrotate copytruncate), and then the records' hash keys, made from ``head``,
        would not be theirs."""
        read = bytes(self._stream.prefix) if self._stream is not None else b""
        n = min(len(read), len(head))
        return read[:n] == head[:n]

    def __call__(self) -> BinaryIO:
        file = _Snapshot(open(self.path, "rb"), self.limit)  # noqa: SIM115  (closed with the stream)
        self._raw = file
        if not self.gzipped:
            stream = _GuardedStream(file, self.errors)  # type: ignore[arg-type]
        else:
            stream = _GuardedStream(gzip.GzipFile(fileobj=file, mode="rb"), self.errors, name=self.name,
                                    compressed=file, max_ratio=self.max_gzip_ratio)  # type: ignore[arg-type]
        self._stream = stream
        return io.BufferedReader(stream, buffer_size=1 << 20)  # type: ignore[return-value]


_NOT_LOGS = (".py", ".md", ".rst")


def _is_pipe(path: Path) -> bool:
    """A FIFO, such as ``<(zcat log.gz)`` (``/dev/fd/63``) or a named pipe."""
    try:
        return stat.S_ISFIFO(path.stat().st_mode)
    except OSError:
        return False


def _is_store(path: Path) -> bool:
    return (path / "manifest.json").is_file() and (path / "events").is_dir()


def _walk(path: Path, notes: list[str]) -> Iterator[Path]:
    """Files under the directory ``path``. Hidden files, READMEs and source files are not logs;
    symbolic links are not followed (one could lead out of the tree, or round in a loop) and dplogs
    stores (the target store may lie inside the input directory) are not read as input."""
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_symlink():
            notes.append(f"{child}: symbolic link not followed inside an input directory (name its target to ingest it)")
        elif child.is_dir():
            if _is_store(child):
                notes.append(f"{child}: a dplogs store, not read as input")
            else:
                yield from _walk(child, notes)
        elif not child.is_file():
            notes.append(f"{child}: not a regular file (a pipe, device or socket), not read inside an input directory")
        elif child.suffix not in _NOT_LOGS:
            yield child


@contextmanager
def open_sources(
    paths: Sequence[str | os.PathLike[str]], *, max_gzip_ratio: float = MAX_GZIP_RATIO, notes: list[str] | None = None,
) -> Iterator[list[tuple[InputSource, Opener]]]:
    """Expand ``paths`` into input sources (with their openers); ``-`` spools stdin to a temporary
    file removed on exit. Raises :class:`InputNotFound` for a missing path. What a directory walk
    skipped (links, stores) is appended to ``notes``.

    >>> with open_sources([]) as sources:
    ...     sources
    []
    """
    tmpdir: str | None = None
    notes = [] if notes is None else notes
    try:
        found: list[tuple[InputSource, Opener]] = []
        for raw in paths:
            path = Path(raw)
            if str(raw) == "-" or _is_pipe(path):
                # a pipe can be read once only, and the formats read an input up to three times
                # (sniff, parse, fingerprint): its bytes are spooled, as stdin's are
                name = "<stdin>" if str(raw) == "-" else str(raw)
                try:
                    tmpdir = tmpdir or tempfile.mkdtemp(prefix="dplogs-stdin-")
                    spooled = os.path.join(tmpdir, f"stdin-{len(found)}")
                    with open(spooled, "wb") as out, (nullcontext(sys.stdin.buffer) if str(raw) == "-" else open(path, "rb")) as pipe:
                        shutil.copyfileobj(pipe, out, BLOCK_BYTES)
                except OSError as exc:  # a full temporary directory was an exit 70
                    raise StoreWriteError(
                        f"cannot spool {visible(name)} to a temporary file in {visible(tmpdir or tempfile.gettempdir())} "
                        f"({exc.strerror or exc}): point TMPDIR at a directory with room for the input, or ingest a file; "
                        "nothing was written to the store") from None
                found.append(_source(spooled, name=name, explicit=True, max_gzip_ratio=max_gzip_ratio))
                continue
            if not path.exists():
                raise InputNotFound(f"input {str(raw)!r} does not exist; check the path")
            if not (path.is_dir() or path.is_file()):
                # a device (/dev/zero, /dev/urandom) or socket never ends or cannot be read: the
                # reader and the fingerprint would read it forever
                raise UsageError(f"input {visible(str(raw))} is not a regular file, directory or pipe (a device or "
                                 "socket); copy what it holds to a file and ingest that")
            if path.is_dir():
                if _is_store(path):
                    raise UsageError(f"{visible(str(path))} is a dplogs store, not an input; name the log files or directories")
                files = list(_walk(path, notes))
            else:
                files = [path]
            found.extend(_source(str(p), name=str(p), explicit=not path.is_dir(), max_gzip_ratio=max_gzip_ratio) for p in files)
        yield found
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _source(path: str, *, name: str, explicit: bool, max_gzip_ratio: float) -> tuple[InputSource, Opener]:
    opener = Opener(path, explicit=explicit, name=name, max_gzip_ratio=max_gzip_ratio)
    with opener() as stream:
        parts = [stream.read(SNIFF_BYTES)]
        while b"\n" not in parts[-1] and sum(map(len, parts)) < SNIFF_MAX_BYTES:
            more = stream.read(SNIFF_BYTES)
            if not more:
                break
            parts.append(more)
        head = b"".join(parts)
    opener.errors.clear()  # a truncated stream is reported once, when it is parsed
    return InputSource(name=name, head=head, open=opener, path=path, compressed=opener.gzipped), opener


def detect_format(source: InputSource, registry: dict[str, LogFormat] | None = None) -> LogFormat:
    """The registered format with the highest ``sniff`` score on ``source.head``.

    Raises :class:`DataError` when no score reaches 0.5 or the best score is tied, naming the
    candidates so the user can pass ``--format``.
    """
    if registry is None:
        from dplogs.ingest.formats import registered  # (imports every format; they import this module)

        registry = registered()
    scores = sorted(((fmt.sniff(source.head), name) for name, fmt in registry.items()), reverse=True)
    if not scores or scores[0][0] < MIN_SNIFF_SCORE:
        raise DataError(
            f"cannot recognise the format of {visible(source.name)}: its first lines fit none of dplogs' readers. If it is "
            f"one of {', '.join(sorted(registry))}, pass --format NAME; other logs (an application's own format, "
            "a BlueGene or HDFS log) are not read: export them as JSON lines or CSV and map their fields with "
            "--format jsonl|csv --map SRC=ecs.field"
        )
    if len(scores) > 1 and scores[1][0] == scores[0][0]:
        tied = sorted(name for score, name in scores if score == scores[0][0])
        raise DataError(f"{visible(source.name)} could be any of {', '.join(tied)}; pass --format X to choose")
    return registry[scores[0][1]]


def _decode(block: memoryview, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """One string per line: ``block[starts[i]:ends[i]]`` without a final ``\r``. The newline and
    ``\r`` bytes are dropped with one numpy mask, so Arrow gets contiguous line texts directly.
    Invalid UTF-8 is decoded lossily (U+FFFD), only for the lines that need it."""
    raw = np.frombuffer(block, dtype=np.uint8)
    last = ends - 1
    has_cr = (ends > starts) & (raw[np.maximum(last, 0)] == 0x0D)
    lengths = ends - starts - has_cr
    keep = np.ones(len(raw), dtype=bool)
    keep[ends[ends < len(raw)]] = False  # the newlines
    keep[last[has_cr]] = False
    data = raw[keep]
    offsets = np.zeros(len(ends) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    arr = pa.Array.from_buffers(pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    try:
        return arr.cast(pa.large_string())
    except pa.ArrowInvalid:
        bad_lines = np.unique(np.searchsorted(offsets, np.flatnonzero(data >= 0x80), side="right") - 1)
        texts = arr.to_pylist()
        for i in bad_lines:  # only lines holding non-ASCII bytes
            texts[i] = texts[i].decode("utf-8", errors="replace").encode()
        return pa.array(texts, pa.large_binary()).cast(pa.large_string())


_VIEW_BYTES = np.arange(12)


def _bytes_at(raw: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``raw[s:s + width]`` for each of the sorted ``starts``, one row each, zero past the end of
    ``raw``. Only the few rows that reach past the end read from a padded copy of the tail
    (padding a copy of the whole block cost a copy of every block)."""
    inside = int(np.searchsorted(starts, len(raw) - width, side="right"))
    out = np.empty((len(starts), width), dtype=np.uint8)
    out[:inside] = raw[starts[:inside, None] + _VIEW_BYTES[:width]]
    if inside < len(starts):
        first = starts[inside]
        tail = np.concatenate([raw[first:], np.zeros(width, np.uint8)])
        out[inside:] = tail[starts[inside:, None] - first + _VIEW_BYTES[:width]]
    return out


class _ArrowArray:
    """An Arrow array handed to polars through the Arrow C data interface only: ``pl.from_arrow``
    would import ``pyarrow.compute`` (~35 ms of CPU in every ingest) for a cast this never needs."""

    def __init__(self, array: pa.Array) -> None:
        self._array = array

    def __arrow_c_array__(self, requested_schema: object | None = None) -> object:
        return self._array.__arrow_c_array__(requested_schema)


def _views(block: memoryview, starts: np.ndarray, lengths: np.ndarray) -> pl.Series | None:
    """The lines as an Arrow string-view array over ``block`` itself: one 16-byte view per line
    (length, then the line inline when it fits in 12 bytes, else its first 4 bytes and its offset
    in the block). Polars' strings are views, so the lines are never copied (copying them was
    most of the reader's time on long JSON lines). None when a line is not valid UTF-8 or the block
    is too large for 32-bit offsets."""
    n = len(starts)
    if len(block) >= 2**31:
        return None
    raw = np.frombuffer(block, dtype=np.uint8)
    views = np.zeros((n, 4), dtype=np.int32)
    views[:, 0] = lengths
    views[:, 3] = starts  # buffer 0 (views[:, 2]) at this offset
    as_bytes = views.view(np.uint8)
    as_bytes[:, 4:8] = _bytes_at(raw, starts, 4)  # the prefix
    short = lengths <= 12
    if short.any():  # inline: the whole line, zero-padded
        inline = _bytes_at(raw, starts[short], 12)
        inline[_VIEW_BYTES[None, :] >= lengths[short, None]] = 0
        as_bytes[short, 4:16] = inline
    array = pa.Array.from_buffers(pa.binary_view(), n, [None, pa.py_buffer(views), pa.py_buffer(block)])
    try:  # polars validates the UTF-8 (pyarrow's cast would too, after a ~20 ms first-call set-up)
        return pl.Series(_ArrowArray(array)).cast(pl.String)
    except pl.exceptions.PolarsError:
        return None


def _split(block: memoryview) -> tuple[pl.Series, np.ndarray, bool]:
    """The lines of ``block``, their start offsets in it, and whether they are its exact bytes.
    Each line ends at ``\n`` (or the end of the block) and loses one ``\r`` before it. Lines are
    views into the block (:func:`_views`); a block with invalid UTF-8 is decoded lossily by
    :func:`_decode` (not exact)."""
    raw = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(raw == 0x0A)
    if raw[-1] != 0x0A:
        ends = np.append(ends, len(block))  # last line has no newline
    starts = np.zeros(len(ends), dtype=np.int64)
    starts[1:] = ends[:-1] + 1
    has_cr = (ends > starts) & (raw[np.maximum(ends - 1, 0)] == 0x0D)
    texts = _views(block, starts, ends - starts - has_cr)
    if texts is None:
        return pl.Series(_ArrowArray(_decode(block, starts, ends))), starts, False
    return texts, starts, True


@dataclass(frozen=True)
class LineBlock:
    """Lines cut from one block of input, with the block's bytes when the frame holds all of its
    lines unaltered (``raw`` is then exactly the lines, each followed by ``\n`` except perhaps the
    last, with their ``\r``; None after a lossy UTF-8 repair). Formats that hand whole blocks to
    a native reader use ``raw`` instead of joining the lines again."""

    lines: pl.DataFrame
    raw: memoryview | None


MAX_LINE_BYTES = 16 * 1024 * 1024
"""Default longest line: a longer one (one giant line of a bomb) is refused, so a line never holds
more than this much memory."""


def iter_blocks(stream: BinaryIO, *, chunk_lines: int, block_bytes: int = BLOCK_BYTES,
                max_line_bytes: int = MAX_LINE_BYTES,
                on_unterminated: Callable[[int, bytes], None] | None = None) -> Iterator[LineBlock]:
    """:class:`LineBlock` objects (at most ``chunk_lines`` rows each) from a byte stream; see
    :func:`iter_lines`. Each block is read into its own buffer, which the line views keep alive.
    A line longer than ``max_line_bytes`` raises :class:`DataError`. When the stream's last line
    has no newline, ``on_unterminated(offset, raw bytes)`` hears of it (before it is yielded): a
    writer may still be in the middle of it (``dplogs.ingest.tails``)."""
    carry = b""
    base = 0  # stream offset of carry[0]
    line_no = 1
    # The first block is smaller (FIRST_BLOCK_BYTES) so that parsing starts, on other threads,
    # while the reader is still getting going; every later one is block_bytes.
    size_next = min(block_bytes, FIRST_BLOCK_BYTES)
    while True:
        buffer = bytearray(len(carry) + size_next)
        size_next = block_bytes
        buffer[: len(carry)] = carry
        view = memoryview(buffer)
        got = stream.readinto(view[len(carry):])  # type: ignore[attr-defined]
        size = len(carry) + (got or 0)
        if not size:
            return
        eof = not got
        used = size if eof else buffer.rfind(b"\n", 0, size) + 1
        if not used:  # no newline yet: a line longer than the block, read on
            if size > max_line_bytes:
                raise DataError(f"line {line_no} is longer than {max_line_bytes} bytes; pass --max-line-bytes N "
                                f"to accept longer lines")
            carry = bytes(view[:size])
            continue
        carry = bytes(view[used:size])
        block = view[:used]
        texts, starts, exact = _split(block)
        if eof and on_unterminated is not None and block[used - 1] != 0x0A:
            on_unterminated(base + int(starts[-1]), bytes(block[int(starts[-1]):]))
        if used > max_line_bytes and (np.diff(starts, append=used) > max_line_bytes + 1).any():  # + 1: the newline
            too_long = line_no + int(np.argmax(np.diff(starts, append=used) > max_line_bytes + 1))
            raise DataError(f"line {too_long} is longer than {max_line_bytes} bytes; pass --max-line-bytes N "
                            f"to accept longer lines")
        frame = pl.DataFrame(
            {"line": np.arange(line_no, line_no + len(starts), dtype=np.int64), "offset": starts + base, "text": texts},
            schema=LINES_SCHEMA,
        )
        line_no += len(starts)
        base += used
        if frame.height <= chunk_lines:
            yield LineBlock(frame, block if exact else None)
        else:
            for i in range(0, frame.height, chunk_lines):
                yield LineBlock(frame.slice(i, chunk_lines), None)
        if eof:
            return


def bounded_blocks(blocks: Iterable[LineBlock], most_events: Callable[[pl.DataFrame], np.ndarray | None],
                   max_events: int) -> Iterator[LineBlock]:
    """``blocks``, each cut into consecutive blocks whose lines make at most about ``max_events``
    events by ``most_events`` (a line that stands for N events counts N). rsyslog's repeat lines
    become up to 200 events each: 500,000 of them in one block were 100 million rows at once
    (20,000 made 4 million and 1.6 GB)."""
    for block in blocks:
        counts = most_events(block.lines)
        if counts is None or int(counts.sum()) <= max_events:
            yield block
            continue
        piece = (np.cumsum(counts) - 1) // max_events  # which cut each line falls in
        starts = np.flatnonzero(np.diff(piece, prepend=-1))
        for start, end in zip(starts, [*starts[1:], block.lines.height]):
            yield LineBlock(block.lines.slice(int(start), int(end - start)), None)


def iter_lines(stream: BinaryIO, *, chunk_lines: int, block_bytes: int = BLOCK_BYTES,
               max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[pl.DataFrame]:
    """Frames of :data:`LINES_SCHEMA` (at most ``chunk_lines`` rows each) from a byte stream.

    Line numbers are 1-based, offsets are byte offsets of line starts, ``\\n`` and one ``\\r``
    before it are stripped, and a final line without a newline is kept.

    >>> pl.concat(iter_lines(io.BytesIO(b"a\\r\\nbb\\n\\nc"), chunk_lines=10)).rows()
    [(1, 0, 'a'), (2, 3, 'bb'), (3, 6, ''), (4, 7, 'c')]
    """
    for block in iter_blocks(stream, chunk_lines=chunk_lines, block_bytes=block_bytes, max_line_bytes=max_line_bytes):
        yield block.lines


def check_format_name(name: str) -> LogFormat:
    """The registered format called ``name``, or a :class:`UsageError` listing the valid names."""
    from dplogs.ingest.formats import named, registered  # (they import this module)

    fmt = named(name)
    if fmt is None:
        raise UsageError(f"unknown format {name!r}; pass --format with one of: {', '.join(sorted(registered()))}")
    return fmt
