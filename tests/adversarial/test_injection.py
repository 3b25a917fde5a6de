"""Log text cannot attack its reader: hostile released keys through every output format.

A store whose events carry hostile host names, each shared by enough users to pass DP partition
selection, is queried through the real CLI in every format and rendered as every report format.
Each run must exit 0 after its charge, and show the hostile text inert: escaped in the terminal
table, formula-neutralised in CSV, escaped in Markdown and HTML, and intact in JSON and Parquet.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from dplogs.cli import cli
from dplogs.escape import csv_text, visible
from tests.adversarial.conftest import ledger_state

HOSTILE = [
    "[/]", "[link=https://evil]x[/link]", "[bold red]x", "\x1b[31mred\x1b[0m", "\x1b]8;;https://evil\x07x",
    "=cmd|' /C calc'!A0", "+1", "-1+1", "@SUM(1)", "\tx", "\rx", "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>", "a|b", "line\nbreak", "\u202e",
]
# characters a terminal or viewer would obey rather than show
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
USERS_PER_HOST = 60  # noisy distinct-user count vs selection threshold 28 (scale 2): always kept

QUERY = """name = "hosts"
sql = '''SELECT host.name, COUNT(*) FROM logs GROUP BY host.name'''

[privacy]
epsilon = 1.0
delta = 1e-6
max_groups = 1
max_rows_per_group = 1

[window]
start = "2024-03-01"
end = "2024-04-01"
"""


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, Path]:
    """(store, query file): every hostile host name is logged by 60 distinct users."""
    root = tmp_path_factory.mktemp("inject")
    events = root / "events.jsonl"
    with events.open("w") as f:
        for i, host in enumerate(HOSTILE):
            for u in range(USERS_PER_HOST):
                f.write(json.dumps({"@timestamp": "2024-03-05T10:00:00Z", "user": {"name": f"u{i}-{u}"},
                                    "host": {"name": host}, "event": {"outcome": "failure"}}) + "\n")
    store = root / "store"
    res = invoke("ingest", "--store", store, events)
    assert res.exit_code == 0, res.output
    assert invoke("budget", "set", "--store", store, "--epsilon", "1000", "--delta", "1e-2").exit_code == 0
    query = root / "hosts.toml"
    query.write_text(QUERY)
    return store, query


def _query(store: Path, query: Path, *extra):
    """Run `dplogs query`; check it exited 0 and committed exactly one new ledger entry."""
    before = ledger_state(store)
    res = invoke("query", "--store", store, query, *extra)
    assert res.exit_code == 0, res.output
    after = ledger_state(store)
    new = after[: len(after) - len(before)]  # history is newest first
    assert len(new) == 1 and new[0]["status"] == "committed", new
    return res


def test_table_shows_hostile_keys_escaped(hostile):
    res = _query(*hostile, "--format", "table")
    out = res.stdout
    assert not RAW_CONTROLS.search(out) and "\r" not in out and "\t" not in out
    for name in HOSTILE:
        assert visible(name) in out, name
    assert "[/]" in out and "[link=https://evil]x[/link]" in out and "\\x1b]8;;https://evil\\x07x" in out
    assert "\\u202e" in out and "line\\nbreak" in out


def test_csv_neutralises_formulas_and_csv_raw_keeps_them(hostile, tmp_path):
    res = _query(*hostile, "--format", "csv")
    safe = pl.read_csv(io.StringIO(res.stdout), comment_prefix="#")
    # control characters as visible escapes, also in a file (`cat` of it drove the terminal)
    assert sorted(safe["host.name"]) == sorted(csv_text(visible(n)) for n in HOSTILE)
    assert not any(ch in res.stdout for ch in ("\x1b", "\x07", "\u202e"))
    for formula in ("=cmd|' /C calc'!A0", "+1", "-1+1", "@SUM(1)"):
        assert "'" + formula in safe["host.name"].to_list()
    assert "\\tx" in safe["host.name"].to_list() and "\\rx" in safe["host.name"].to_list()  # inert once escaped
    assert safe["value"].dtype == pl.Int64  # numbers untouched by the neutralising (whole counts as integers)
    out = tmp_path / "raw.csv"
    _query(*hostile, "--format", "csv", "--csv-raw", "-o", out)
    raw = pl.read_csv(out, comment_prefix="#")
    assert sorted(raw["host.name"]) == sorted(HOSTILE)


def test_csv_raw_is_refused_with_other_formats_before_any_charge(hostile):
    store, query = hostile
    before = ledger_state(store)
    res = invoke("query", "--store", store, query, "--format", "json", "--csv-raw")
    assert res.exit_code == 64 and "only apply with --format csv" in res.stderr
    assert ledger_state(store) == before


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_json_parses_back_to_the_same_strings(hostile, fmt):
    out = _query(*hostile, "--format", fmt).stdout
    assert out.isascii() and not RAW_CONTROLS.search(out)
    rows = json.loads(out)["data"] if fmt == "json" else [json.loads(line) for line in out.splitlines()[1:]]
    assert sorted(r["host.name"] for r in rows) == sorted(HOSTILE)


def test_parquet_keeps_the_strings(hostile, tmp_path):
    out = tmp_path / "r.parquet"
    _query(*hostile, "--format", "parquet", "-o", out)
    assert sorted(pq.read_table(out).column("host.name").to_pylist()) == sorted(HOSTILE)


def test_replayed_release_renders_the_same(hostile):
    """The release stays re-emittable by its key: the replay renders identically, spending nothing."""
    store, query = hostile
    first = _query(store, query, "--format", "table", "--idempotency-key", "inject-replay")
    before = ledger_state(store)
    again = invoke("query", "--store", store, query, "--format", "table", "--idempotency-key", "inject-replay")
    assert again.exit_code == 0 and "replayed" in again.stderr
    assert again.stdout == first.stdout and ledger_state(store) == before


def test_unwritable_output_is_refused_before_the_charge(hostile, tmp_path):
    store, query = hostile
    before = ledger_state(store)
    res = invoke("query", "--store", store, query, "--format", "csv", "-o", tmp_path / "missing" / "x.csv")
    assert res.exit_code == 64 and "does not exist" in res.stderr, res.output
    res = invoke("query", "--store", store, query, "--format", "csv", "-o", tmp_path)
    assert res.exit_code == 2 and "is a directory" in res.stderr, res.output
    assert ledger_state(store) == before


def _report(store: Path, query: Path, fmt: str) -> str:
    spec = query.parent / f"report-{fmt}.toml"
    spec.write_text(f'name = "inject-{fmt}"\ntitle = "Hosts"\nperiod = "day"\n[[section]]\nquery = "{query.name}"\n'
                    'title = "Hosts"\nchart = "bar"\nepsilon = 1.0\ndelta = 1e-6\n')
    res = invoke("report", spec, "--store", store, "--date", "2024-03-05", "--format", fmt)
    assert res.exit_code == 0, res.output
    return res.stdout


def test_markdown_report_escapes_html_markdown_and_pipes(hostile):
    md = _report(*hostile, "md")
    assert "<script" not in md and "<img" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    assert "\\[link=https://evil\\]x\\[/link\\]" in md and "a\\|b" in md and "line\\\\nbreak" in md
    assert not RAW_CONTROLS.search(md) and "\t" not in md
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    header = rows[0]
    cells = len(re.findall(r"(?<!\\)\|", header))
    assert len(rows) == 1 + len(HOSTILE)  # "line\nbreak" did not split its row
    assert all(len(re.findall(r"(?<!\\)\|", r)) == cells for r in rows), "an unescaped | split a cell"


def test_html_report_escapes_hostile_keys(hostile):
    page = _report(*hostile, "html")
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert not RAW_CONTROLS.search(page) and "\\x1b[31mred\\x1b[0m" in page


def test_json_report_keeps_the_strings(hostile):
    doc = json.loads(_report(*hostile, "json"))
    assert sorted(r["host.name"] for r in doc["sections"][0]["data"]) == sorted(HOSTILE)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_csv_on_a_terminal_shows_control_characters_escaped(hostile):
    """CSV to a file keeps its text; CSV printed on a terminal must not drive the terminal."""
    store, query = hostile
    leader, follower = os.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "from dplogs.cli import main; main()", "query", "--store", str(store), str(query), "--format", "csv"],
            stdout=follower, stderr=subprocess.PIPE, timeout=120, cwd=Path(__file__).resolve().parents[2],
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    assert proc.returncode == 0, proc.stderr
    out = b"".join(chunks).decode().replace("\r\n", "\n")  # the pty turns \n into \r\n
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out and "\r" not in out
    assert "\\x1b[31mred\\x1b[0m" in out and "'=cmd|' /C calc'!A0" in out


def _release(keys: list[str], values: list[float]):
    from dplogs.engine.release import Release

    n = len(keys)
    return Release(data=pl.DataFrame({
        "host.name": keys, "aggregate": ["count"] * n, "value": values, "mechanism": ["discrete laplace"] * n,
        "scale": [2.0] * n, "ci_low": [v - 6 for v in values], "ci_high": [v + 6 for v in values],
    }), privacy={"query": "hosts", "epsilon": 1.0})


def _render(release, fmt: str, **kw) -> str:
    from dplogs.engine.release import write_release

    buf = io.StringIO()
    write_release(release, fmt, buf, title="t", **kw)
    return buf.getvalue()


def test_csv_never_mangles_numbers():
    """Negative noisy counts start with "-" but are numbers: only text cells are neutralised."""
    out = _render(_release(["-1", "=x", "ok"], [-3.0, -0.5, 2.0]), "csv")
    back = pl.read_csv(io.StringIO(out), comment_prefix="#", schema_overrides={"host.name": pl.String})
    assert back["value"].to_list() == [-3.0, -0.5, 2.0] and back["ci_low"].to_list() == [-9.0, -6.5, -4.0]
    assert back["host.name"].to_list() == ["'-1", "'=x", "ok"]
    assert "\n-3.0" not in out and ",-3.0," in out


def test_csv_key_starting_with_hash_is_not_read_as_a_comment():
    out = _render(_release(["#hidden", "x"], [1.0, 2.0]), "csv")
    assert pl.read_csv(io.StringIO(out), comment_prefix="#")["host.name"].to_list() == ["#hidden", "x"]


keys = st.lists(st.text(min_size=1), min_size=1, max_size=6, unique=True)


@settings(max_examples=60, deadline=None)
@given(keys, st.data())
def test_rendering_cannot_fail_on_any_key(names, data):
    """Whatever text the logs put in a released key, every format renders it (the charge is
    already made when rendering runs), and the text reads back or shows escaped."""
    values = data.draw(st.lists(st.floats(-1e6, 1e6), min_size=len(names), max_size=len(names)))
    release = _release(names, values)
    table = _render(release, "table")
    assert all(ch.isprintable() or ch == "\n" or unicodedata.category(ch) == "Zs" for ch in table)
    assert [r["host.name"] for r in json.loads(_render(release, "json"))["data"]] == names
    assert [json.loads(line)["host.name"] for line in _render(release, "ndjson").splitlines()[1:]] == names
    for safe in (True, False):
        back = pl.read_csv(io.StringIO(_render(release, "csv", csv_safe=safe)), comment_prefix="#",
                           schema_overrides={"host.name": pl.String})
        assert back["host.name"].to_list() == [csv_text(visible(n)) if safe else n for n in names]
        assert back["value"].to_list() == values


def test_ingest_summary_shows_quarantine_reasons_as_text():
    from rich.console import Console

    from dplogs.cli.ingest import render_summary
    from dplogs.ingest.ingest import FileResult, IngestSummary

    reasons = (("[/] [link=https://evil]x[/link] \x1b[2J", 2), ("bad \u202e stamp", 1))
    summary = IngestSummary(run_id="r", store="s", files=(FileResult(name="f", format="jsonl", quarantined=3, reasons=reasons),))
    buf = io.StringIO()
    render_summary(summary, Console(file=buf, width=200, force_terminal=False))
    out = buf.getvalue()
    assert "[/] [link=https://evil]x[/link] \\x1b[2J" in out and "bad \\u202e stamp" in out
    assert not RAW_CONTROLS.search(out)


def test_error_messages_show_control_characters_escaped(hostile, tmp_path):
    """An error message may quote a file name or log text: the terminal must not obey it."""
    store, _ = hostile
    res = invoke("query", "--store", store, tmp_path / "q\x1b[31mred\x07.toml")
    assert res.exit_code == 66, res.output
    assert "\x1b" not in res.stderr and "\x07" not in res.stderr and "q\\x1b[31mred\\x07.toml" in res.stderr
