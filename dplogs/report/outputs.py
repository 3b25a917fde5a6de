"""Report files for unattended runs: written whole or not at all, plus ``latest`` pointers.

``--out-dir DIR`` gets ``NAME-PERIOD.html``, ``.md`` and ``.json`` for each period (PERIOD is its
first local day). Each file is written to a hidden temporary file in DIR, flushed to disk and
renamed over the target (``os.replace`` is atomic within a directory), so a reader sees the old
file or the new one, never half of one. ``NAME-latest.html`` (``.md``, ``.json``) are symbolic
links to the newest period written, swapped the same way (a new link renamed over the old one).
Whatever else lies at a period file's name (a link, a FIFO: the directory may be a share others
write) is replaced, never written through. A period's files are those of one period in one time
zone: a run whose period (its zone, or its length) differs from the one a directory's files of
that name hold is refused before anything is charged (:func:`check_same_periods`), never written
over them.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_atomic(d / "a.txt", "hello")
>>> (d / "a.txt").read_text(), sorted(p.name for p in d.iterdir())
('hello', ['a.txt'])
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import Path

from dplogs import files
from dplogs.errors import StoreWriteError, UsageError
from dplogs.escape import visible
from dplogs.report.render import FORMATS, render
from dplogs.report.run import ReportRun
from dplogs.report.spec import ReportSpec

_JSON_LIMIT = 256 << 20  # a period's JSON report is kilobytes; past this it is not one of ours


def check_out_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` if needed and check it is a writable directory, before anything is
    released (a bad --out-dir charges nothing)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out-dir {out_dir} ({exc.strerror})") from None
    if not out_dir.is_dir() or not os.access(out_dir, os.W_OK | os.X_OK):
        raise UsageError(f"--out-dir {out_dir} is not a writable directory")
    return out_dir


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (:func:`dplogs.files.write_atomic`)."""
    try:
        files.write_atomic(path, text)
    except OSError as exc:
        raise StoreWriteError(f"cannot write {path} ({exc.strerror}); the releases are in the ledger: "
                              "rerun the same command to write the report again (it spends nothing)") from None


def _link_atomic(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def period_stem(run: ReportRun) -> str:
    return f"{run.spec.name}-{run.start.isoformat()}"


def written(spec: ReportSpec, start: dt.date, out_dir: Path) -> bool:
    """Whether every file of ``spec``'s period starting ``start`` is in ``out_dir``, for this
    period (in the spec's zone) and not another one of the same first day."""
    return (all((out_dir / f"{spec.name}-{start.isoformat()}.{fmt}").is_file() for fmt in FORMATS)
            and _other_period(spec, start, _held(spec, start, out_dir)) is None)


_Held = tuple[str, str, list[str]]


def _held(spec: ReportSpec, start: dt.date, out_dir: Path) -> _Held | None:
    """The period end, zone and section ids (``INDEX:QUERY``, as in each section's idempotency
    key) of the JSON file of ``spec``'s period starting ``start`` in ``out_dir``; None when there
    is none or no readable one (a run killed while writing it: the run replaces it)."""
    try:
        doc = json.loads(files.read_regular(out_dir / f"{spec.name}-{start.isoformat()}.json", limit=_JSON_LIMIT) or b"null")
        return (str(doc["period"]["end"]), str(doc["period"]["tz"]),
                [f"{i}:{section['query']}" for i, section in enumerate(doc["sections"])])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):  # the directory may be others' to write
        return None


def _other_period(spec: ReportSpec, start: dt.date, held: _Held | None) -> str | None:
    """The period (end and zone) ``held`` (:func:`_held`) names when it is another one than
    ``spec``'s starting ``start``, in words; None when it is the same or unknown."""
    if held is None or held[:2] == (spec.period_bounds(start)[1].isoformat(), spec.tz):
        return None
    return f"{start} to {held[0]} in time zone {held[1]}"


def _other_sections(spec: ReportSpec, held: _Held | None) -> list[str]:
    """The sections ``held`` names that a run of ``spec`` would not write back: another spec of
    the same name wrote them, or this one before a section was removed or moved. Sections added
    at the end replace nothing."""
    ours = [spec.section_id(i) for i in range(len(spec.sections))]
    return [] if held is None or held[2] == ours[: len(held[2])] else held[2]


def other_sections(spec: ReportSpec, start: dt.date, out_dir: Path) -> list[str]:
    """:func:`_other_sections` of the files of ``spec``'s period starting ``start`` in ``out_dir``."""
    return _other_sections(spec, _held(spec, start, out_dir))


def check_same_periods(spec: ReportSpec, starts: Sequence[dt.date], out_dir: Path) -> None:
    """Refuse, before anything is charged, to write a period whose files in ``out_dir`` hold
    another period of the same name (the same first day in another time zone: ``--tz`` changed;
    or a week where this is a day), or the same period with sections this run would not write
    (another report spec of the same name). Writing would replace that report with different
    releases. (A catch-up without ``--since`` skips the periods already written.)"""
    for start in starts:
        held = _held(spec, start, out_dir)
        other = _other_period(spec, start, held)
        end = spec.period_bounds(start)[1]
        if other is None and (sections := _other_sections(spec, held)):
            other = f"{start} to {end} in time zone {spec.tz} with other sections ({', '.join(sections)})"
        if other is not None:
            raise UsageError(
                f"{visible(str(out_dir))} holds report {spec.name!r} for {visible(other)}; this run's period is {start} to {end} in "
                f"time zone {spec.tz} and its files have the same names ({spec.name}-{start}.*), so writing them "
                "would replace that report with other releases. Nothing was released or charged: write this "
                "report to another --out-dir")


def write_outputs(run: ReportRun, out_dir: Path, *, update_latest: bool = True) -> list[Path]:
    """Write the run in every format to ``out_dir``; point ``NAME-latest.*`` at it unless a newer
    period is already there (a catch-up of old periods never moves ``latest`` back)."""
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{period_stem(run)}.{fmt}"
        try:  # the directory may be others' to write: a link or FIFO at the name is replaced, never followed
            files.replace_whole(path, render(run, fmt))
        except OSError as exc:
            raise StoreWriteError(f"cannot write {path} ({exc.strerror}); the releases are in the ledger: "
                                  "rerun the same command to write the report again (it spends nothing)") from None
        paths.append(path)
    if update_latest and run.complete:  # a reader of latest gets a whole report
        try:  # locked: two runs at once could each read the old link, the older period renamed last
            with files.directory_locked(out_dir, follow_link=True):
                for path, fmt in zip(paths, FORMATS):
                    link = out_dir / f"{run.spec.name}-latest.{fmt}"
                    current = os.readlink(link) if link.is_symlink() else ""
                    if current <= path.name:  # names differ only in the ISO date: text order is time order
                        _link_atomic(link, path.name)
        except OSError as exc:
            raise StoreWriteError(f"cannot update the {run.spec.name}-latest links in {out_dir} ({exc.strerror})") from None
    return paths
