"""Outputs a reader may open at any moment (query --output, train's model, score's table) are
written whole or not at all. The fault is real: the file-size limit (RLIMIT_FSIZE, SIGXFSZ
ignored) makes a write fail part-way with EFBIG, as a full disk does. Before, ``query -o
out.csv`` truncated the old file and left its first bytes under the final name, beside the
previous release's FILE.privacy.json; the model and the score table the same."""

from __future__ import annotations

import contextlib
import json
import resource
import signal

import pytest

from dplogs.engine import write_release
from dplogs.engine.api import Engine

LIMIT = 64  # bytes: every output below is longer


@contextlib.contextmanager
def file_size_limit(limit: int):
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


@pytest.fixture(scope="module")
def release(store):
    return Engine.open(store).sql(
        "SELECT event.outcome, COUNT(*) FROM logs GROUP BY event.outcome", epsilon=0.1, max_groups=1,
        max_rows_per_group=1, start="2024-03-01", end="2024-04-01").release(caller="test")


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson", "table", "parquet"])
def test_a_write_that_fails_part_way_leaves_the_old_file_whole(release, tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    old = b"the previous release, whole\n" * 10
    out.write_bytes(old)
    sidecar = tmp_path / f"out.{fmt}.privacy.json"
    sidecar.write_text('{"ledger_entry": "the previous release"}')
    with file_size_limit(LIMIT), pytest.raises(OSError):
        write_release(release, fmt, out)
    assert out.read_bytes() == old
    # a CSV is never left beside another release's metadata: the old sidecar went first
    assert not sidecar.exists() if fmt == "csv" else sidecar.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({out.name} | ({sidecar.name} if fmt != "csv" else set()))


def test_a_whole_write_replaces_the_file_and_its_sidecar(release, tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("old")
    write_release(release, "csv", out)
    assert out.read_text().startswith('"event.outcome","aggregate"')
    assert json.loads((tmp_path / "out.csv.privacy.json").read_text())["ledger_entry"] == release.privacy["ledger_entry"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.csv.privacy.json"]


def test_a_model_that_cannot_be_written_whole_leaves_the_old_one(tmp_path):
    from dplogs.detect.model import save_model

    out = tmp_path / "model.json"
    out.write_text('{"old": "model"}')
    with file_size_limit(LIMIT), pytest.raises(OSError):
        save_model({"weights": list(range(100))}, out)
    assert out.read_text() == '{"old": "model"}'
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]


def test_scores_that_cannot_be_written_whole_leave_the_old_table(store, tmp_path):
    from dplogs.detect.train import score_store
    from dplogs.errors import OutputWriteError
    from tests.adversarial.conftest import invoke

    model = tmp_path / "model.json"
    res = invoke("train", "--store", store, "--detector", "kmeans", "--epsilon", "1", "--delta", "1e-6",
                 "--start", "2024-03-01", "--end", "2024-04-01", "--output", model)
    assert res.exit_code == 0, res.output[-500:]
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"old table")
    with file_size_limit(LIMIT), pytest.raises(OutputWriteError):
        score_store(store, model, output=out)
    assert out.read_bytes() == b"old table"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "scores.parquet"]


def test_a_stream_or_a_link_as_the_output_is_written_through_not_replaced(tmp_path):
    # with rename-over, `-o /dev/stdout` (as root) replaced /dev/stdout with a regular file
    import os
    import threading

    from dplogs.files import write_atomic

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_atomic(fifo, "through the pipe\n")
    reader.join(10)
    assert got == [b"through the pipe\n"] and fifo.is_fifo()

    target, link = tmp_path / "real.csv", tmp_path / "latest.csv"
    target.write_text("old")
    link.symlink_to(target)
    write_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    import os
    import stat

    from dplogs.files import write_atomic

    scores = tmp_path / "scores.parquet"
    scores.write_bytes(b"old")
    os.chmod(scores, 0o600)  # raw per-unit data, kept private by the operator
    write_atomic(scores, b"new")
    assert stat.S_IMODE(scores.stat().st_mode) == 0o600 and scores.read_bytes() == b"new"
