"""When two records are the same record: the input identity behind ``event.hash`` and the
quarantine's ``hash``.

A format hashes a record's raw text with its byte offset (``base.event_hash``). On its own that
would make an identical line at the same offset of two unrelated files one event, and drop the
second one. The ingest therefore keys each record's hash with the bytes of its input *before*
it::

    key(offset) = BLAKE3(input[:min(offset, PREFIX_BYTES)])   (first 8 bytes, XOR-ed into the hash)

The rule: two records are the same iff their texts and offsets are equal and their inputs hold
the same bytes before them (up to the first 64 KiB). So

* re-reading an input, also after it grew (appended lines), was renamed (rotation) or compressed,
  gives its old records their old hashes: a no-op;
* two different inputs differ from their first differing byte on, and every record from there
  is kept in both, in one run or in two (which run reads what first does not matter).

Records without a byte offset (EVTX records, CloudTrail documents, CSV/Parquet rows) carry their
own identity (record and event ids, every column): identical ones are the same record wherever
they come from, as many times as one input holds them (``ingest._drop_known``), and their hash is
left as the format made it.

The key depends on the decompressed head only, which the reader has in hand before parsing
(``InputSource.head``), so no state is kept between runs.
"""

from __future__ import annotations

import blake3
import numpy as np
import polars as pl

from dplogs.ingest.base import event_hash

PREFIX_BYTES = 64 * 1024
"""Bytes of an input that key its records' hashes; the reader's sniffed head is at least this long
(or the whole input)."""

_REASON_SEED = 0x0BAD


class StreamKeys:
    """Hash keys of one input, from its first :data:`PREFIX_BYTES` decompressed bytes.

    >>> grown, other = StreamKeys(b"a\\nb\\nc\\n"), StreamKeys(b"x\\nb\\n")
    >>> StreamKeys(b"a\\nb\\n").keys([0, 2]) == grown.keys([0, 2]), grown.keys([2]) == other.keys([2])
    (True, False)
    """

    def __init__(self, head: bytes) -> None:
        self._head = head[:PREFIX_BYTES]
        self.tail = self.keys([len(self._head)])[0]
        """The key of every offset at or past the end of the head."""

    def keys(self, offsets: list[int]) -> list[int]:
        """``key(offset)`` of each offset, hashing the head once over the sorted offsets."""
        order = sorted(range(len(offsets)), key=offsets.__getitem__)
        out = [0] * len(offsets)
        digest, done = blake3.blake3(), 0
        for i in order:
            end = min(offsets[i], len(self._head))
            digest.update(self._head[done:end])
            done = max(done, end)
            out[i] = int.from_bytes(digest.digest(8), "little")
        return out

    def _key_of(self, offsets: pl.Series) -> pl.Expr:
        """Expression giving the key of each row's ``offsets`` value (the tail key for null)."""
        near = offsets.filter(offsets < len(self._head)).unique()  # only an input's first chunk has any
        if near.is_empty():
            return pl.lit(self.tail, pl.UInt64)
        return pl.lit(offsets).replace_strict(near, self.keys(near.to_list()), default=self.tail, return_dtype=pl.UInt64)

    def key_events(self, events: pl.DataFrame) -> pl.DataFrame:
        """``events`` with ``event.hash`` keyed by position (rows with a ``log.offset``)."""
        offsets = events.get_column("log.offset")
        if offsets.null_count() == len(offsets):
            return events
        h = pl.col("event.hash")
        keyed = pl.concat_arr(h.arr.get(0).xor(self._key_of(offsets)), h.arr.get(1))
        if offsets.null_count():
            keyed = pl.when(pl.col("log.offset").is_null()).then(h).otherwise(keyed)
        return events.with_columns(keyed.alias("event.hash"))

    def hash_quarantine(self, quarantine: pl.DataFrame) -> pl.DataFrame:
        """``quarantine`` with a ``hash`` column: ``event_hash`` of the raw text and line number,
        keyed by the offset where that line starts (records without a line number: by content) and
        by the reason, so another format rejecting the same line is another row."""
        starts = np.concatenate([[0], np.flatnonzero(np.frombuffer(self._head, np.uint8) == 0x0A) + 1])
        lines = quarantine.get_column("line")
        index = lines.fill_null(0).to_numpy() - 1
        known = (index >= 0) & (index < len(starts))
        offsets = pl.Series(np.where(known, starts[np.clip(index, 0, len(starts) - 1)], len(self._head)), dtype=pl.Int64)
        h = event_hash(pl.col("text"), pl.col("line"))
        position = pl.when(pl.col("line").is_null()).then(pl.lit(0, pl.UInt64)).otherwise(self._key_of(offsets))
        key = position.xor(pl.col("reason").hash(seed=_REASON_SEED))
        return quarantine.with_columns(pl.concat_arr(h.arr.get(0).xor(key), h.arr.get(1)).alias("hash"))
