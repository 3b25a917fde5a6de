"""Logs crafted to exhaust memory or time, or to crash the parser (round 3 of the red-team sweep):
each is read in bounded memory or quarantined with a reason, never exit 70."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.ingest._structured import MAX_KEYS, TOO_MANY_KEYS
from dplogs.ingest.ingest import ingest
from dplogs.ingest.store import Store

EVENT = {"@timestamp": "2024-03-05T10:00:00Z", "event": {"outcome": "failure"}, "user": {"name": "alice"}}

# pyarrow's pool peak and the wall time of one ingest, measured in a fresh process (the peak is a
# high-water mark that cannot be reset)
MEASURE = r"""
import sys, time
import pyarrow as pa
from dplogs.ingest.ingest import ingest
start = time.perf_counter()
summary = ingest([sys.argv[1]], sys.argv[2])
print(pa.default_memory_pool().max_memory(), time.perf_counter() - start, summary.parsed, summary.quarantined)
"""


def _measure(log: Path, store: Path) -> tuple[int, float, int, int]:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(log), str(store)], capture_output=True, text=True,
                          timeout=300, check=True)
    peak, seconds, parsed, quarantined = done.stdout.split()
    return int(peak), float(seconds), int(parsed), int(quarantined)


def test_a_new_key_on_every_line_is_read_in_bounded_memory(tmp_path):
    # Found: pyarrow inferred one schema over the whole chunk, so every distinct key became a
    # column of every line: 100,000 lines each with its own key took over 17 GB and 5 minutes
    # (killed); 8,000 took 748 MiB of pyarrow memory.
    log = tmp_path / "keys.json"
    log.write_text("".join(json.dumps({**EVENT, f"k{i}": 1}) + "\n" for i in range(8000)))
    peak, seconds, parsed, quarantined = _measure(log, tmp_path / "s")
    assert (parsed, quarantined) == (8000, 0)
    assert peak < 64 << 20, f"pyarrow peak {peak >> 20} MiB"


def test_a_line_with_too_many_keys_is_quarantined(tmp_path):
    # Found: one 3.6 MB line with 300,000 keys took 21 s and 1.7 GB (a million would not fit)
    log = tmp_path / "wide.json"
    wide = json.dumps({**EVENT, **{f"k{i}": 1 for i in range(MAX_KEYS + 1)}})
    just = json.dumps({**EVENT, **{f"k{i}": 1 for i in range(MAX_KEYS - 10)}})
    log.write_text(json.dumps(EVENT) + "\n" + wide + "\n" + just + "\n")
    summary = ingest([log], tmp_path / "s")
    assert (summary.parsed, summary.quarantined, dict(summary.reasons)) == (2, 1, {TOO_MANY_KEYS: 1})
    quarantine = Store.open(tmp_path / "s").scan_quarantine().collect()
    assert quarantine.get_column("line").to_list() == [2]


def test_json_nested_deeper_than_pythons_stack_is_not_a_crash(tmp_path):
    # Found: a first line nested 100,000 deep made format detection raise RecursionError: exit 70
    log = tmp_path / "deep.json"
    log.write_text('{"a":' + "[" * 100_000 + "]" * 100_000 + "}\n" + json.dumps(EVENT) + "\n")
    res = CliRunner().invoke(cli, ["ingest", str(log), "--store", str(tmp_path / "s")])
    assert res.exit_code != 70 and "bug in dplogs" not in res.output, res.output
    res = CliRunner().invoke(cli, ["ingest", str(log), "--store", str(tmp_path / "s"), "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    assert Store.open(tmp_path / "s").scan().collect().height == 1


def test_a_huge_cloudtrail_document_is_refused_like_a_long_line(tmp_path):
    # Found: a {"Records": [...]} file was read and parsed whole, at ~20x its size in memory (a
    # 100 MB document took 2.0 GB; a gzip of a 1 GB one, 5 MB at the allowed ratio, would not
    # fit); it is now bounded by --max-line-bytes (65), which accepts larger ones on request
    record = json.dumps({"eventTime": "2024-03-05T10:00:00Z", "eventName": "ConsoleLogin", "eventSource": "signin.amazonaws.com",
                         "awsRegion": "us-east-1", "userIdentity": {"userName": "a"}, "sourceIPAddress": "1.2.3.4"})
    doc = tmp_path / "trail.json"
    doc.write_text('{"Records": [' + ",".join([record] * 300) + "]}")
    size = doc.stat().st_size
    res = CliRunner().invoke(cli, ["ingest", str(doc), "--store", str(tmp_path / "s"), "--max-line-bytes", str(size - 1)])
    assert res.exit_code == 65 and "--max-line-bytes" in res.output, res.output
    res = CliRunner().invoke(cli, ["ingest", str(doc), "--store", str(tmp_path / "s"), "--max-line-bytes", str(size)])
    assert res.exit_code == 0, res.output
    assert Store.open(tmp_path / "s").scan().collect().height == 300


CSV_MAP = ["--format", "csv", "--map", "time=@timestamp", "--map", "user=user.name"]


def test_a_long_csv_row_is_read_up_to_max_line_bytes_and_refused_beyond(tmp_path):
    # Found: a row longer than pyarrow's 4 MiB block after others made it raise ArrowInvalid
    # ('straddling object'): exit 70. Rows up to --max-line-bytes are now read; longer ones are 65.
    table = tmp_path / "t.csv"
    small = "".join(f"2024-03-05T10:00:00Z,u{i},m\n" for i in range(20_000))
    table.write_text("time,user,msg\n" + small + "2024-03-05T10:00:01Z,long," + "x" * (9 << 20) + "\n")
    res = CliRunner().invoke(cli, ["ingest", str(table), "--store", str(tmp_path / "s"), *CSV_MAP])
    assert res.exit_code == 0, res.output
    assert Store.open(tmp_path / "s").scan().collect().height == 20_001
    res = CliRunner().invoke(cli, ["ingest", str(table), "--store", str(tmp_path / "s2"), *CSV_MAP, "--max-line-bytes", "1000000"])
    assert res.exit_code == 65 and "--max-line-bytes" in res.output, res.output


def test_a_table_with_too_many_columns_is_refused(tmp_path):
    # Found: a 200,000-column CSV header took 2.8 GB and 15 s for one row (each row's raw text is
    # all its columns); more than 10,000 columns are refused (65)
    from dplogs.ingest.tabular import MAX_COLUMNS

    wide = tmp_path / "wide.csv"
    wide.write_text("time,user," + ",".join(f"c{i}" for i in range(MAX_COLUMNS)) + "\n"
                    + "2024-03-05T10:00:00Z,a," + ",".join("1" * MAX_COLUMNS) + "\n")
    res = CliRunner().invoke(cli, ["ingest", str(wide), "--store", str(tmp_path / "s"), *CSV_MAP])
    assert res.exit_code == 65 and "columns" in res.output, res.output


def _ingest_text(tmp_path, name: str, text: str, fmt: str):
    log = tmp_path / name
    log.write_text(text)
    return ingest([log], tmp_path / f"s-{name}", format=fmt)


def test_iis_header_layouts_are_bounded(tmp_path):
    # Found: a #Fields line naming 200,000 fields made a column per name (killed by the OOM killer
    # at 24 GB after 100 s), and 20,000 distinct #Fields lines made a 20,000-branch expression
    # (over 120 s). Now 0.7 s / 164 MB and 2.5 s / 440 MB: the lines under such headers are
    # quarantined; a header repeated at every restart is still one layout.
    row = "2024-03-05 10:00:00 1.2.3.4 alice"
    wide = "#Fields: date time c-ip cs-username " + " ".join(f"c{i}" for i in range(1000)) + "\n" + row + " x" * 1000 + "\n"
    summary = _ingest_text(tmp_path, "wide.log", wide, "iis")
    assert (summary.parsed, summary.quarantined) == (0, 1) and "#Fields line" in next(iter(summary.reasons))
    many = "".join(f"#Fields: date time c-ip cs-username x{i}\n{row} x\n" for i in range(100))
    summary = _ingest_text(tmp_path, "many.log", many, "iis")
    assert (summary.parsed, summary.quarantined) == (64, 36)
    same = "".join(f"#Fields: date time c-ip cs-username\n{row}\n" for _ in range(100))
    assert _ingest_text(tmp_path, "same.log", same, "iis").parsed == 100


def test_zeek_header_layouts_are_bounded(tmp_path):
    # Found: each #fields header block cost ~1 ms, so a header before every record made 5,000
    # records take 5.5 s (0.6 s now); concatenated rotations with one header stay one layout
    head = "#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p{extra}\n"
    rec = "1709632800.{i}\tC{i}\t1.2.3.4\t1\t5.6.7.8\t22{value}\n"
    many = "".join(head.format(extra=f"\tx{i}") + rec.format(i=i, value="\tv") for i in range(100))
    summary = _ingest_text(tmp_path, "many.log", many, "zeek")
    assert (summary.parsed, summary.quarantined) == (64, 36)
    same = "".join(head.format(extra="") + rec.format(i=i, value="") for i in range(100))
    assert _ingest_text(tmp_path, "same.log", same, "zeek").parsed == 100
