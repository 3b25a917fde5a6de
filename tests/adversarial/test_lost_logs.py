"""Logs that change while one ingest reads them (round 3 of the red-team sweep): every line ends up
stored exactly once, whatever the writer did between the moment the input was opened and the
moment it was parsed and fingerprinted."""

from __future__ import annotations

from pathlib import Path

import blake3
import pytest

import dplogs.ingest.ingest as ingest_module
from dplogs.ingest.base import IngestOptions
from dplogs.ingest.ingest import ingest
from dplogs.ingest.reader import Opener
from dplogs.ingest.store import Store

REPO = Path(__file__).resolve().parents[2]
LINES = (REPO / "sample_logs" / "auth.log").read_text().splitlines(keepends=True)[:40]


def _stored(store: Path):
    return Store.open(store).scan().collect()


def _writer_between_open_and_parse(monkeypatch: pytest.MonkeyPatch, write) -> None:
    """Run ``write`` once after the inputs were opened (sniffed) and before they are parsed."""
    real, done = ingest_module.detect_format, []

    def detect(source, *args, **kwargs):
        if not done:
            done.append(True)
            write()
        return real(source, *args, **kwargs)

    monkeypatch.setattr(ingest_module, "detect_format", detect)


def test_lines_appended_while_a_small_log_is_read_are_stored_once(tmp_path, monkeypatch):
    # Found: a log shorter than 64 KiB when opened, grown before it was parsed, keyed the grown
    # part's event hashes by the sniffed head; the next run keyed them by their real prefix, so
    # those lines were stored twice (2,272 events for 2,235 lines with a writer appending during
    # 13 ingests), and a torn last line among them was never repaired.
    log, store = tmp_path / "auth.log", tmp_path / "s"
    log.write_text("".join(LINES[:10]))

    def append() -> None:
        with log.open("a") as f:
            f.write("".join(LINES[10:20]) + LINES[20][:30])  # the writer is mid-line

    _writer_between_open_and_parse(monkeypatch, append)
    ingest([log], store, options=IngestOptions(year=2024))
    monkeypatch.undo()
    with log.open("a") as f:
        f.write(LINES[20][30:] + "".join(LINES[21:]))
    ingest([log], store, options=IngestOptions(year=2024))
    events = _stored(store)
    assert events.height == len(LINES)
    assert events.get_column("log.offset").n_unique() == len(LINES)
    assert events.get_column("message").str.contains(LINES[20][35:-1].split(": ", 1)[-1], literal=True).sum() == 1


def test_an_input_is_read_as_it_was_when_opened(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("".join(LINES[:10]))
    before = log.read_bytes()
    opener = Opener(str(log))
    with log.open("a") as f:
        f.write("".join(LINES[10:]))
    with opener() as stream:
        assert stream.read() == before
    assert opener.fingerprint() == "blake3:" + blake3.blake3(before).hexdigest()
    assert not opener.changed(opener.fingerprint())


def test_an_input_rewritten_while_read_is_not_marked_ingested(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("".join(LINES[:20]))
    opener = Opener(str(log))
    fingerprint = opener.fingerprint()
    log.write_text("".join(LINES[20:25]))  # copytruncate, then the writer goes on
    with opener() as stream:
        stream.read()
    assert opener.changed(fingerprint)


def test_a_copytruncate_rotation_during_an_ingest_loses_no_line(tmp_path, monkeypatch):
    log, store = tmp_path / "auth.log", tmp_path / "s"
    log.write_text("".join(LINES[:20]))

    def rotate() -> None:  # logrotate copytruncate, then the writer appends to the emptied log
        (tmp_path / "auth.log.1").write_bytes(log.read_bytes())
        log.write_text("".join(LINES[20:25]))

    _writer_between_open_and_parse(monkeypatch, rotate)
    first = ingest([log], store, options=IngestOptions(year=2024))
    # Found: the rewritten log's records were keyed by the bytes sniffed before the rotation, so
    # the next run stored them again (44 events for 40 lines); now the input is not read this time
    assert "changed while it was read" in first.files[0].problem and not Store.open(store).fingerprints()
    monkeypatch.undo()
    with log.open("a") as f:
        f.write("".join(LINES[25:]))
    ingest([log, tmp_path / "auth.log.1"], store, options=IngestOptions(year=2024))
    ingest([log, tmp_path / "auth.log.1"], store, options=IngestOptions(year=2024))
    events = _stored(store)
    assert events.height == len(LINES)
    assert sorted(events.get_column("message").to_list()) == sorted(
        _stored_messages_of(tmp_path, "".join(LINES)))


def _stored_messages_of(tmp_path: Path, text: str) -> list[str]:
    reference = tmp_path / "reference.log"
    reference.write_text(text)
    ingest([reference], tmp_path / "reference", options=IngestOptions(year=2024))
    return _stored(tmp_path / "reference").get_column("message").to_list()


def test_gzip_members_are_all_read_and_trailing_garbage_is_reported_once(tmp_path):
    import gzip

    rotated = tmp_path / "auth.log.gz"  # two members (e.g. `gzip -c a >> x.gz; gzip -c b >> x.gz`) then junk
    rotated.write_bytes(gzip.compress("".join(LINES[:15]).encode()) + gzip.compress("".join(LINES[15:]).encode())
                        + b"GARBAGE\x00\x01")
    summary = ingest([rotated], tmp_path / "s", options=IngestOptions(year=2024))
    assert summary.parsed == len(LINES) and _stored(tmp_path / "s").height == len(LINES)
    # Found: the junk was reported twice ('... (b'GA') ...; ... (b'RB') ...'): the gzip reader was
    # asked again after the error and decoded on from the middle of the junk
    assert summary.files[0].problem.count("input ends early") == 1
    assert ingest([rotated], tmp_path / "s", options=IngestOptions(year=2024)).files[0].duplicate_file


@pytest.mark.parametrize("chunk_lines", [2, 1000])
def test_identical_rows_of_a_grown_export_are_all_kept(tmp_path, chunk_lines):
    # Found: a CSV export that grew by a row identical to earlier ones (two failures in the same
    # second) lost it: rows without offsets are identified by content, and every occurrence of a
    # stored hash was dropped (5 lines, 4 stored). Now the k-th occurrence is dropped only when
    # the store holds k.
    row = "2024-03-05T10:00:00Z,alice,1.2.3.4,failure\n"
    export, store = tmp_path / "export.csv", tmp_path / "s"
    mapping = {"time": "@timestamp", "user": "user.name", "ip": "source.ip", "outcome": "event.outcome"}
    options = IngestOptions(chunk_lines=chunk_lines, field_map=mapping)
    export.write_text("time,user,ip,outcome\n" + row * 3)
    args = dict(format="csv", options=options)
    ingest([export], store, **args)
    with export.open("a") as f:
        f.write(row + "2024-03-05T10:00:01Z,carol,1.2.3.4,failure\n")
    ingest([export], store, **args)
    users = _stored(store).get_column("user.name").value_counts()
    assert dict(users.iter_rows()) == {"alice": 4, "carol": 1}
    (tmp_path / "overlap.csv").write_text("time,user,ip,outcome\n" + row * 2)  # an overlapping export
    assert ingest([tmp_path / "overlap.csv"], store, **args).files[0].duplicate_rows == 2
    assert _stored(store).height == 5
