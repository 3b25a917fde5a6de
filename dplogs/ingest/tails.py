"""Last lines without a newline: the writer of a log may be in the middle of one when ingest
reads it.

Such a line is stored as read (a finished file may simply lack its final newline, and holding the
line back would lose it), and remembered as an *open tail* in ``STORE/open_tails.json``: where it
starts in its input (its offset and the input's prefix key, as ``event.hash`` uses:
:mod:`dplogs.ingest.streams`), its length and BLAKE3, and the event it became (day partition and
``event.hash``). When a later ingest reads a plain file holding the same bytes at the same place
(the same log grown, also renamed by rotation):

- followed by a newline, the line was whole: the record is dropped;
- followed by more text, the stored event is the torn start of a line: it is removed from its day
  partition before the whole line is written, and the record dropped.

So a line half-written at ingest time ends up stored once and whole. The removal comes first and
the input counts as ingested only once all of it is written, so a run killed in between is
completed by running it again. Records of inputs that never grow stay, the newest
:data:`MAX_OPEN_TAILS`; compressed inputs are not tracked (a gzip stream is not appended to).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import blake3
import polars as pl

from dplogs.ingest.base import InputSource, repeat_hash
from dplogs.ingest.store import Store
from dplogs.ingest.streams import StreamKeys
from dplogs.schema.ecs import HASH_DTYPE

MAX_OPEN_TAILS = 1000


@dataclass(frozen=True)
class OpenTail:
    key: int
    """The input's prefix key at ``offset`` (:meth:`StreamKeys.keys`)."""
    offset: int
    length: int
    digest: str
    """BLAKE3 (hex) of the line's bytes as they were read."""
    day: str
    event_hash: tuple[int, int]
    copies: int = 1
    """Events the line became (an rsyslog repeat line is several: :func:`dplogs.ingest.base.repeat_hash`)."""


def appendable(source: InputSource) -> bool:
    """A plain (not gzip) file: the kind a writer appends lines to."""
    return source.path is not None and not source.compressed


def remember(store: Store, keys: StreamKeys, offset: int, raw: bytes, events: pl.DataFrame) -> None:
    """Record the unterminated last line at ``offset`` (``raw``: its bytes) if it became one of
    ``events`` (keyed as stored); a quarantined one needs nothing (the quarantine is not queried)."""
    rows = events.filter(pl.col("log.offset") == offset)
    if rows.is_empty():
        return
    ((day, _),) = store.day_parts(rows.head(1))
    h0, h1 = rows.get_column("event.hash")[0]  # copy 0 (the others are derived from it)
    tail = OpenTail(key=keys.keys([offset])[0], offset=offset, length=len(raw), digest=blake3.blake3(raw).hexdigest(),
                    day=day, event_hash=(int(h0), int(h1)), copies=rows.height)
    records = [r for r in store.open_tails() if r.get("event_hash") != list(tail.event_hash)]
    store.set_open_tails([*records, {**asdict(tail), "event_hash": list(tail.event_hash)}][-MAX_OPEN_TAILS:])


def settle(store: Store, path: str, keys: StreamKeys) -> int:
    """Settle the open tails that the plain file at ``path`` (whose prefix keys are ``keys``) holds
    again: drop the records of lines it shows whole, and remove the stored torn start of lines it
    shows continued. Returns how many torn events were removed."""
    records = store.open_tails()
    if not records:
        return 0
    kept, removed = [], 0
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        for r in records:
            tail = OpenTail(**{**r, "event_hash": tuple(r["event_hash"])})
            if size <= tail.offset + tail.length or keys.keys([tail.offset])[0] != tail.key:
                kept.append(r)
                continue
            f.seek(tail.offset)
            held = f.read(tail.length + 1)
            if blake3.blake3(held[:-1]).hexdigest() != tail.digest:
                kept.append(r)
                continue
            if held[-1:] != b"\n":  # the line went on: what is stored is its torn start
                first = pl.Series("event.hash", [list(tail.event_hash)], dtype=HASH_DTYPE)
                hashes = pl.select(repeat_hash(pl.lit(first).repeat_by(tail.copies).explode(),
                                               pl.int_range(tail.copies))).to_series()
                removed += store.remove_events(tail.day, hashes.cast(HASH_DTYPE))
    if len(kept) != len(records):
        store.set_open_tails(kept)
    return removed
