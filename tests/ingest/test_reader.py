"""The shared reader: line splitting, offsets, encodings, gzip, stdin, directories, detection."""

from __future__ import annotations

import gzip
import io
import os
import sys
import threading
from pathlib import Path

import polars as pl
import pytest

from dplogs.errors import DataError, InputNotFound, UsageError
from dplogs.ingest.base import LogFormat
from dplogs.ingest.reader import detect_format, iter_lines, open_sources


def _reference(data: bytes) -> list[tuple[int, int, str]]:
    """Line numbers, byte offsets and texts computed the slow, obvious way."""
    out, offset = [], 0
    pieces = data.split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()
    for i, raw in enumerate(pieces, start=1):
        text = raw[:-1] if raw.endswith(b"\r") else raw
        out.append((i, offset, text.decode("utf-8", "replace")))
        offset += len(raw) + 1
    return out


def _read(data: bytes, **kw) -> list[tuple[int, int, str]]:
    frames = list(iter_lines(io.BytesIO(data), **{"chunk_lines": 1000, **kw}))
    return pl.concat(frames).rows() if frames else []


@pytest.mark.parametrize("block", [1, 3, 7, 64, 1 << 20])
def test_lines_offsets_across_block_boundaries(block: int) -> None:
    data = b"first\r\nsecond line\n\n  indented\nno newline at end"
    assert _read(data, block_bytes=block) == _reference(data)


def test_chunks_are_bounded_and_numbered_continuously() -> None:
    data = b"".join(b"line %d\n" % i for i in range(1, 1001))
    frames = list(iter_lines(io.BytesIO(data), chunk_lines=64, block_bytes=500))
    assert max(f.height for f in frames) <= 64
    assert pl.concat(frames).get_column("line").to_list() == list(range(1, 1001))


def test_invalid_utf8_is_decoded_lossily_on_its_line_only() -> None:
    data = "ok é\n".encode() + b"bad \xff\xfe here\nfine\n"
    rows = _read(data)
    assert rows == [(1, 0, "ok é"), (2, 6, "bad \ufffd\ufffd here"), (3, 18, "fine")]


def test_gzip_detected_by_content_and_offsets_are_decompressed(tmp_path: Path) -> None:
    plain = b"a\nbb\nccc\n"
    path = tmp_path / "renamed.log"  # no .gz suffix: detection is by magic bytes
    path.write_bytes(gzip.compress(plain))
    with open_sources([path]) as sources:
        ((source, opener),) = sources
        assert opener.gzipped and source.head == plain
        with source.open() as stream:
            assert pl.concat(iter_lines(stream, chunk_lines=10)).rows() == _reference(plain)


def test_truncated_gzip_parses_the_readable_part_and_reports(tmp_path: Path) -> None:
    plain = b"".join(b"Mar  1 10:00:%02d h sshd[1]: line %d\n" % (i % 60, i) for i in range(5000))
    packed = gzip.compress(plain)
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    with open_sources([path]) as sources:
        ((source, opener),) = sources
        with source.open() as stream:
            rows = pl.concat(iter_lines(stream, chunk_lines=100_000)).rows()
    assert 0 < len(rows) < 5000
    assert rows[:-1] == _reference(plain)[: len(rows) - 1]  # the last line may be cut mid-way
    assert opener.errors and "ends early" in opener.errors[0]


def test_stdin_is_spooled_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(b"x\ny\n"))))
    with open_sources(["-"]) as sources:
        ((source, opener),) = sources
        spooled = Path(opener.path)
        assert source.name == "<stdin>" and source.head == b"x\ny\n" and spooled.exists()
        with source.open() as s1, source.open() as s2:  # reopenable
            assert s1.read() == s2.read() == b"x\ny\n"
    assert not spooled.exists()


def test_stdin_on_a_full_temporary_directory_is_an_io_error_not_a_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `yes | dplogs ingest -` with TMPDIR on a small file system: ENOSPC while spooling was exit 70
    import errno
    import tempfile

    from click.testing import CliRunner

    from dplogs.cli import cli

    def full(source, target, length=0):
        target.write(source.read(10))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("dplogs.ingest.reader.shutil.copyfileobj", full)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    res = CliRunner().invoke(cli, ["ingest", "-", "--store", str(tmp_path / "st"), "--year", "2024"],
                             input=b"Mar  4 10:00:00 h sshd[1]: Failed password for root from 203.0.113.9 port 1 ssh2\n" * 50)
    assert res.exit_code == 74, res.output
    assert "cannot spool <stdin>" in res.stderr and "No space left on device" in res.stderr and "TMPDIR" in res.stderr
    assert list((tmp_path / "tmp").iterdir()) == []  # the partial spool is removed


def test_a_named_pipe_is_spooled_and_read_once(tmp_path: Path) -> None:
    # `dplogs ingest <(zcat log.gz)` names a pipe: it was opened once per read (sniff, parse,
    # fingerprint), so the second open waited for a writer that had gone: ingest hung for ever
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(gzip.compress(b"x\ny\n"),), daemon=True)
    writer.start()
    got: list[tuple[str, bytes, bytes]] = []

    def read() -> None:
        with open_sources([fifo]) as sources:
            ((source, _),) = sources
            with source.open() as s1, source.open() as s2:
                got.append((source.name, s1.read(), s2.read()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert got == [(str(fifo), b"x\ny\n", b"x\ny\n")]


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_is_refused_not_read_for_ever(tmp_path: Path) -> None:
    # /dev/zero was read for ever by the fingerprint (ingest never ended, even after the line
    # limit refused the input); inside a directory such files are left out with a note
    with pytest.raises(UsageError, match="not a regular file"):
        with open_sources(["/dev/zero"]):
            pass
    os.mkfifo(tmp_path / "pipe.log")
    (tmp_path / "one.log").write_text("x\n")
    notes: list[str] = []
    with open_sources([tmp_path], notes=notes) as sources:
        assert [Path(s.name).name for s, _ in sources] == ["one.log"]
    assert len(notes) == 1 and "pipe.log: not a regular file" in notes[0]


def test_directories_recursive_hidden_and_sources_skipped(tmp_path: Path) -> None:
    (tmp_path / "a/b").mkdir(parents=True)
    for name in ("a/one.log", "a/b/two.log", "a/.hidden.log", "a/README.md", "a/gen.py"):
        (tmp_path / name).write_text("x\n")
    with open_sources([tmp_path]) as sources:
        names = [Path(s.name).relative_to(tmp_path).as_posix() for s, _ in sources]
        assert all(not o.explicit for _, o in sources)
    assert names == ["a/b/two.log", "a/one.log"]
    with pytest.raises(InputNotFound):
        with open_sources([tmp_path / "missing.log"]):
            pass


class _Fixed(LogFormat):
    def __init__(self, name: str, score: float) -> None:
        self.name, self.description, self._score = name, name, score

    def sniff(self, head: bytes) -> float:
        return self._score


def test_detection_picks_the_best_and_refuses_weak_or_tied(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("whatever\n")
    with open_sources([path]) as sources:
        ((source, _),) = sources
        assert detect_format(source, {"a": _Fixed("a", 0.6), "b": _Fixed("b", 0.9)}).name == "b"
        with pytest.raises(DataError, match="pass --format"):
            detect_format(source, {"a": _Fixed("a", 0.4)})
        with pytest.raises(DataError, match="could be any of a, b"):
            detect_format(source, {"a": _Fixed("a", 0.7), "b": _Fixed("b", 0.7)})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("auth_logs/elastic_examples_suspicious_login_auth.log.gz", "syslog"),
        ("web_access/apache_logs_elastic_examples.log.gz", "access"),
        ("evtx_attack_samples/Tunna_rdp_tunnel_IIS.log", "iis"),
        ("evtx_attack_samples/web_attack_and_isp_webshell_localhost_access_log.txt", "access"),
        ("cef/fp-ngfw-smc.log", "cef"),
        ("loghub/Linux/Linux_2k.log", "syslog"),
        # macOS multi-line messages: 115 of the first 200 lines (18 of 21) are indented continuations
        ("parser_oracles/elastic_beats_filebeat_2019/system/syslog/darwin-syslog.log", "syslog"),
        ("parser_oracles/elastic_beats_filebeat_2019/system/syslog/darwin-syslog-sample.log", "syslog"),
    ],
)
def test_detection_on_real_logs(name: str, expected: str, datasets_dir: Path) -> None:
    with open_sources([datasets_dir / name]) as sources:
        ((source, _),) = sources
        assert detect_format(source).name == expected


@pytest.mark.parametrize(
    "data",
    [
        b'"quoted, with comma"\n#not a comment\n\n  \nplain',  # views, short and long lines
        b"unit\x1fseparator inside\nnext line longer than twelve\n",
        b"cr\r\nlf\n\r\n\r\r\nlonger line with cr at the end\r\n",  # views strip one CR
        b"\xff bad utf-8\r\nok\n",  # invalid UTF-8: lossy fallback, CR stripped there too
    ],
)
def test_lines_keep_their_exact_text_whichever_splitter_runs(data: bytes) -> None:
    assert _read(data) == _reference(data)


def test_plain_text_is_split_without_the_lossy_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The zero-copy views are really what ordinary logs get (their offsets included)."""
    from dplogs.ingest import reader

    def fail(*_args: object) -> None:
        raise AssertionError("fell back to the lossy decoder")

    monkeypatch.setattr(reader, "_decode", fail)
    data = b'a "b", c\n\n  x\nthe last line, longer than twelve bytes'
    assert _read(data) == _reference(data)


@pytest.mark.parametrize("final_newline", [True, False])
def test_short_lines_at_the_end_of_a_block_are_read_exactly(final_newline: bool) -> None:
    """A view holds up to 12 bytes read from the line's start: lines within 12 bytes of the block's
    end read them from a padded tail, every other line from the block itself."""
    for last in range(14):
        lines = [b"x" * n for n in (13, 12, 11, 1, 0, 5)] + [b"\xc3\xa9" * (last // 2) + b"z" * (last % 2)]
        data = b"\n".join(lines) + (b"\n" if final_newline else b"")
        assert _read(data) == _reference(data), last


def test_reading_lines_does_not_load_pyarrow_compute(tmp_path: Path) -> None:
    """The lines reach polars through the Arrow C data interface: ``pl.from_arrow`` imported
    ``pyarrow.compute`` (~35 ms of CPU in every ingest) for a cast the reader never needs."""
    import subprocess

    log = tmp_path / "a.log"
    log.write_bytes(b"short\nand a line longer than twelve bytes\n")
    code = ("import io, sys; from dplogs.ingest.reader import iter_lines; "
            f"print(sum(f.height for f in iter_lines(open({str(log)!r}, 'rb'), chunk_lines=10)), "
            "'pyarrow.compute' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["2", "False"]


@pytest.mark.parametrize("compress", [False, True])
def test_a_first_line_longer_than_the_sniff_window_is_still_recognised(tmp_path, compress):
    # an ECS event with a 100 KB message first: the 64 KiB head held no whole line, so every
    # sniffer scored 0 and ingest asked for --format
    import json

    lines = [json.dumps({"@timestamp": "2026-11-01T00:00:00Z", "user": {"name": "a"}, "message": "x" * 100_000})]
    lines += [json.dumps({"@timestamp": f"2026-11-01T00:00:0{i}Z", "message": "hi"}) for i in range(5)]
    data = ("\n".join(lines) + "\n").encode()
    path = tmp_path / ("big.json.gz" if compress else "big.json")
    path.write_bytes(gzip.compress(data) if compress else data)
    with open_sources([path]) as sources:
        (source, _), = sources
        assert detect_format(source).name == "jsonl"


def test_a_gzipped_evtx_on_a_full_temporary_directory_is_an_io_error_not_a_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the EVTX reader unpacks a gzipped .evtx to a temporary file (the native reader seeks): ENOSPC there was exit 70
    import errno

    from click.testing import CliRunner

    from dplogs.cli import cli
    from dplogs.ingest.windows import EVTX_MAGIC

    def full(source, target, length=0):
        raise OSError(errno.ENOSPC, "No space left on device")

    log = tmp_path / "security.evtx.gz"
    log.write_bytes(gzip.compress(EVTX_MAGIC + b"\0" * 4096))
    monkeypatch.setattr("dplogs.ingest.windows.shutil.copyfileobj", full)
    res = CliRunner().invoke(cli, ["ingest", str(log), "--store", str(tmp_path / "st")])
    assert res.exit_code == 74, res.output
    assert "cannot unpack" in res.stderr and "No space left on device" in res.stderr and "TMPDIR" in res.stderr
