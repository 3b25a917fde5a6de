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
import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: str | bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` (text is UTF-8) to ``path`` through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:  # also a KeyboardInterrupt: no temporary file is left behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
