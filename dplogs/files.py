"""Files written whole or not at all: a release, a model or a score table that a reader (a SIEM
import, a cron job) may open at any moment, and that a killed run or a full disk must never leave
half-written under its final name.

The bytes go to a hidden temporary file in the target's directory, are flushed to disk, and the
file is renamed over the target (``os.replace`` is atomic within a directory). A failure removes
the temporary file and raises the ``OSError``; the target keeps its old content (or stays absent).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_atomic(d / "a.csv", "x,y\\n")
>>> (d / "a.csv").read_text(), sorted(p.name for p in d.iterdir())
('x,y\\n', ['a.csv'])
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` (text is UTF-8) to ``path`` through a temporary file and a rename. A path that
    is not a regular file (``/dev/stdout``, a pipe, ``/dev/null``) is a stream and is written
    through: renaming over it would replace the device or the link (as root, ``-o /dev/stdout``
    replaced /dev/stdout with a file). A symbolic link to a file is followed: its target is replaced.
    A replaced file keeps its permissions (a score table kept at 0600 must not become readable by
    all); a new one gets what ``open()`` would give it (0666 less the umask)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        with open(path, "wb") as stream:
            stream.write(raw)
        return
    path = Path(os.path.realpath(path))
    replace_whole(path, raw, mode=stat.S_IMODE(os.stat(path).st_mode) if path.exists() else None)


def replace_whole(path: str | os.PathLike[str], data: str | bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``: whatever is
    at that name (a link, a FIFO someone put there) is replaced, never written through. For a
    program's own files in a directory others may write (a store, a report directory). ``mode``
    defaults to what ``open()`` would give a new file."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path = Path(path)
    mode = 0o666 & ~_umask() if mode is None else mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:  # also a KeyboardInterrupt: no temporary file is left behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class NotAFile(ValueError):
    """What :func:`read_regular` found at a name instead of a small regular file (never its bytes)."""


def read_regular(path: str | os.PathLike[str], *, limit: int | None = None) -> bytes | None:
    """The bytes of the regular file at ``path``, None when there is nothing there. Opened without
    following a link or blocking on a FIFO: an :class:`OSError` (``ELOOP`` for a link) when it
    cannot be opened, :class:`NotAFile` when it is not a regular file or holds more than
    ``limit`` bytes. For a program's own small files in a directory others may write (found by
    faults4: a FIFO put at the name of a store's ``ingested.json`` or a report's ledger pin hung every
    release before anything was charged)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotAFile("not a regular file")
        if limit is not None and info.st_size > limit:
            raise NotAFile(f"{info.st_size:,} bytes, more than {limit:,}")
        data = f.read() if limit is None else f.read(limit + 1)
    if limit is not None and len(data) > limit:  # grown since fstat
        raise NotAFile(f"more than {limit:,} bytes")
    return data


@contextlib.contextmanager
def directory_locked(path: str | os.PathLike[str], *, follow_link: bool = False, shared: bool = False) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the directory ``path`` (freed by the kernel when the process
    dies), for a read-modify-replace of files in it that concurrent runs must not interleave;
    ``shared`` for a reader that must not see such a change half made. A link at ``path`` is
    followed only with ``follow_link`` (a directory the operator named may be one; a program's own
    folder in a store is not). Raises the ``OSError`` of opening it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if follow_link else os.O_NOFOLLOW))
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def lock_file(directory: Path, name: str, *, wait: float = 0.0) -> int:
    """An open descriptor of ``directory/name`` holding its exclusive ``flock`` (the kernel frees it
    when the holder dies; close the descriptor to release it). The directory (0700) and the file
    (0600) are made when missing; neither is followed if it is a symbolic link (``OSError`` ELOOP
    or ENOTDIR). Waits up to ``wait`` seconds for another holder, then raises ``TimeoutError``."""
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    if not stat.S_ISDIR(os.lstat(directory).st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory (a symbolic link?)", str(directory))
    fd = os.open(directory / name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise TimeoutError(f"{directory / name} is held by another run") from None
            time.sleep(0.05)


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask
