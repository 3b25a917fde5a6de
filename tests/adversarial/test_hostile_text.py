"""Text an attacker controls, shown by dplogs (round 3 of the red-team sweep): file names."""

from __future__ import annotations

import gzip

import pytest

from tests.adversarial.conftest import invoke as run

NAME = "evil\x1b]8;;http:x\x07[bold]B[\\bold]\nerror: forged line\u202e.log"


@pytest.mark.parametrize("content, args, expected", [
    (b"hello\nworld\n", (), "cannot recognise the format of"),
    (gzip.compress(b"a" * (8 << 20)), (), "decompression bomb"),
    (b"x" * 200 + b"\n", ("--format", "syslog", "--max-line-bytes", "100"), "--max-line-bytes"),
])
def test_an_input_name_in_an_error_is_one_inert_line(tmp_path, content, args, expected):
    # Found: the name's newline reached the terminal raw in these errors, so a file name could
    # forge a line of dplogs' output ('error: forged line'); escapes were already made visible
    log = tmp_path / NAME
    log.write_bytes(content)
    res = run("ingest", log, "--store", tmp_path / "s", *args)
    assert res.exit_code == 65, res.output
    message = [line for line in res.output.splitlines() if expected in line]
    assert message and "\\nerror: forged line\\u202e.log" in message[0] and "\x1b" not in res.output
    assert not any(line.startswith("error: forged") for line in res.output.splitlines())
