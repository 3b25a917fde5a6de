"""Logs that are still being written while they are ingested."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from dplogs.ingest.base import IngestOptions
from dplogs.ingest.ingest import ingest
from dplogs.ingest.store import Store

REPO = Path(__file__).resolve().parents[2]


def test_a_line_half_written_at_ingest_time_is_stored_once_and_whole(tmp_path):
    lines = (REPO / "sample_logs" / "auth.log").read_text().splitlines()[:20]
    log = tmp_path / "auth.log"
    log.write_text("\n".join(lines[:10]) + "\n" + lines[10][:40])  # the writer is mid-line
    ingest([log], tmp_path / "s", options=IngestOptions(year=2024), format="syslog")
    with log.open("a") as f:  # it finishes the line and writes more
        f.write(lines[10][40:] + "\n" + "\n".join(lines[11:]) + "\n")
    ingest([log], tmp_path / "s", options=IngestOptions(year=2024), format="syslog")
    events = Store.open(tmp_path / "s").scan().collect()
    assert events.height == 20  # was 21: the torn line 11 was kept beside the whole one
    assert lines[10][40:] in " ".join(events.get_column("message").drop_nulls())
    assert events.get_column("log.offset").n_unique() == 20


def _lines() -> list[str]:
    return (REPO / "sample_logs" / "auth.log").read_text().splitlines()[:20]


def _ingest(log: Path, store: Path):
    return ingest([log], store, options=IngestOptions(year=2024), format="syslog")


def test_a_last_line_that_was_whole_stays_and_its_record_is_dropped(tmp_path):
    lines, log, store = _lines(), tmp_path / "auth.log", tmp_path / "s"
    log.write_text("\n".join(lines[:11]))  # no final newline, but the line is complete
    _ingest(log, store)
    assert len(Store.open(store).open_tails()) == 1
    with log.open("a") as f:
        f.write("\n" + "\n".join(lines[11:]) + "\n")
    _ingest(log, store)
    events = Store.open(store).scan().collect()
    assert events.height == 20 and events.get_column("log.offset").n_unique() == 20
    assert Store.open(store).open_tails() == []


def test_a_static_file_without_a_final_newline_keeps_every_line(tmp_path):
    lines, log, store = _lines(), tmp_path / "auth.log", tmp_path / "s"
    log.write_text("\n".join(lines))
    assert _ingest(log, store).parsed == 20
    log2 = tmp_path / "copy.log"
    log2.write_bytes(log.read_bytes())  # the same bytes again: nothing new, nothing removed
    _ingest(log2, store)
    assert Store.open(store).scan().collect().height == 20


def test_a_torn_line_is_repaired_after_the_log_was_rotated(tmp_path):
    lines, log, store = _lines(), tmp_path / "auth.log", tmp_path / "s"
    log.write_text("\n".join(lines[:10]) + "\n" + lines[10][:25])
    _ingest(log, store)
    with log.open("a") as f:
        f.write(lines[10][25:] + "\n")
    log.rename(tmp_path / "auth.log.1")
    _ingest(tmp_path / "auth.log.1", store)
    events = Store.open(store).scan().collect()
    assert events.height == 11 and lines[10][-30:] in " ".join(events.get_column("message").drop_nulls())


def test_a_run_killed_after_the_torn_event_was_removed_is_completed_by_the_next(tmp_path, monkeypatch):
    lines, log, store = _lines(), tmp_path / "auth.log", tmp_path / "s"
    log.write_text("\n".join(lines[:10]) + "\n" + lines[10][:40])
    _ingest(log, store)
    with log.open("a") as f:
        f.write(lines[10][40:] + "\n")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # dies after the removal, before writing

    monkeypatch.setattr(Store, "write_day", killed)
    with pytest.raises(KeyboardInterrupt):
        _ingest(log, store)
    monkeypatch.undo()
    assert Store.open(store).scan().collect().height == 10  # the torn event is gone, the whole one not yet written
    _ingest(log, store)
    events = Store.open(store).scan().collect()
    assert events.height == 11 and events.get_column("log.offset").n_unique() == 11


def test_a_torn_json_line_is_quarantined_then_stored_whole(tmp_path):
    docs = [json.dumps({"@timestamp": f"2024-03-01T00:00:{i:02d}Z", "user": {"name": f"u{i}"},
                        "event": {"action": "x"}}) for i in range(5)]
    log, store = tmp_path / "ev.json", tmp_path / "s"
    log.write_text("\n".join(docs[:4]) + "\n" + docs[4][:20])
    first = ingest([log], store, format="jsonl")
    assert (first.parsed, first.quarantined) == (4, 1)
    with log.open("a") as f:
        f.write(docs[4][20:] + "\n")
    ingest([log], store, format="jsonl")
    assert sorted(Store.open(store).scan().collect().get_column("user.name")) == [f"u{i}" for i in range(5)]


def test_compressed_inputs_are_not_tracked(tmp_path):
    lines, store = _lines(), tmp_path / "s"
    log = tmp_path / "auth.log.gz"
    log.write_bytes(gzip.compress("\n".join(lines).encode()))
    assert _ingest(log, store).parsed == 20
    assert Store.open(store).open_tails() == []


def test_a_torn_repeat_line_is_replaced_by_the_whole_line_with_all_its_copies(tmp_path):
    """An rsyslog repeat line is several events; a torn start that already parses as one (its
    message ends in "]") is removed with every copy once the line is read whole."""
    head = "Mar 29 23:18:30 h sshd[6402]: Failed password for root from 10.0.0.1 port 1 ssh2\n"
    torn = "Mar 29 23:18:33 h sshd[6402]: message repeated 3 times: [ Failed password for root from 10.0.0.1 port 1]"
    log = tmp_path / "auth.log"
    log.write_text(head + torn)
    assert _ingest(log, tmp_path / "s").parsed == 1 + 3
    with log.open("a") as f:
        f.write(" ssh2]\n")
    _ingest(log, tmp_path / "s")
    events = Store.open(tmp_path / "s").scan().collect()
    assert events.height == 1 + 3  # was 1 + 3 + 3: the torn start's copies stayed beside the whole line's
    assert events.filter(events["log.offset"] > 0)["message"].str.ends_with("ssh2]").all()
