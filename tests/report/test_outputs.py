"""Outputs for unattended runs: atomic files, latest pointers, and the published JSON Schema."""

from __future__ import annotations

import datetime as dt
import json
import os

import jsonschema
import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.errors import StoreWriteError
from dplogs.report import load_report_spec, render, run_report
from dplogs.report.outputs import write_atomic, write_outputs
from dplogs.report.render import SCHEMA_PATH
from tests.report.conftest import NIGHTLY

SCHEMA = json.loads(SCHEMA_PATH.read_text())


def _validate(doc):
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(doc)


def test_schema_is_valid_and_shipped_as_package_data():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA_PATH.parent.name == "report" and SCHEMA_PATH.is_file()


def test_report_json_validates_including_a_partial_and_a_zoned_report(new_store):
    store = new_store(epsilon=1.2)  # two sections fit, two do not
    spec = load_report_spec(NIGHTLY)
    partial = json.loads(render(run_report(spec, store, day=dt.date(2024, 3, 12)), "json"))
    _validate(partial)
    assert [("error" in s) for s in partial["sections"]] == [False, False, True, True]
    assert partial["summary"]["not_released"] and partial["summary"]["budget_windows"][0]["left"]["epsilon"] == pytest.approx(0.2)
    zoned = json.loads(render(run_report(spec.with_tz("Asia/Kolkata"), new_store(name="k"), day=dt.date(2024, 3, 12)), "json"))
    _validate(zoned)
    broken = dict(partial, summary={**partial["summary"], "coverage": {"state": "maybe", "note": ""}})
    with pytest.raises(jsonschema.ValidationError):
        _validate(broken)
    with pytest.raises(jsonschema.ValidationError):
        _validate({k: v for k, v in partial.items() if k != "summary"})


def test_out_dir_writes_three_files_and_latest_links(new_store, tmp_path):
    store, out = new_store(), tmp_path / "out"
    res = CliRunner().invoke(cli, ["report", str(NIGHTLY), "--store", str(store), "--date", "2024-03-12",
                                   "--out-dir", str(out)])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [".dplogs-ledger-pin.json"] + [  # the ledger's head, checked by the next run
        f"nightly-soc-{x}" for x in ("2024-03-12.html", "2024-03-12.json", "2024-03-12.md", "latest.html",
                                     "latest.json", "latest.md")]
    assert os.readlink(out / "nightly-soc-latest.json") == "nightly-soc-2024-03-12.json"
    _validate(json.loads((out / "nightly-soc-latest.json").read_text()))
    # an older period written later (a backfill) leaves latest on the newest one
    CliRunner().invoke(cli, ["report", str(NIGHTLY), "--store", str(store), "--date", "2024-03-11", "--out-dir", str(out)])
    assert os.readlink(out / "nightly-soc-latest.html") == "nightly-soc-2024-03-12.html"
    assert (out / "nightly-soc-2024-03-11.html").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".dplogs-ledger-pin.json"]  # no temporary files


def test_latest_links_move_under_the_directory_lock(new_store, tmp_path):
    """Two runs at once must not each read the old link and rename theirs over it in either order
    (the older period could win): a run moves the links only while it holds the directory's lock."""
    import threading
    import time

    from dplogs.files import directory_locked

    store, out = new_store(), tmp_path / "out"
    out.mkdir()
    run = run_report(load_report_spec(NIGHTLY), store, day=dt.date(2024, 3, 12))
    writer = threading.Thread(target=write_outputs, args=(run, out))
    with directory_locked(out):
        writer.start()
        deadline = time.monotonic() + 60
        while not all((out / f"nightly-soc-2024-03-12.{fmt}").is_file() for fmt in ("html", "md", "json")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # the period's files are written; the links wait for the lock
        assert not [p for p in out.iterdir() if "latest" in p.name]
    writer.join(timeout=30)
    assert os.readlink(out / "nightly-soc-latest.md") == "nightly-soc-2024-03-12.md"


def test_a_failed_write_leaves_the_old_file_whole_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    write_atomic(target, "old report")

    def fail(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(StoreWriteError, match="No space left"):
        write_atomic(target, "new report " * 1000)
    assert target.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_a_reader_never_sees_a_partial_file(new_store, tmp_path):
    """Every file a concurrent reader opens is a complete report: the rename swaps whole files."""
    store, out = new_store(), tmp_path / "out"
    out.mkdir()
    run = run_report(load_report_spec(NIGHTLY), store, day=dt.date(2024, 3, 12))
    write_outputs(run, out)
    seen = []
    real_replace = os.replace

    def replace_and_look(src, dst):  # what is at the target just before and after each swap
        for p in out.glob("nightly-soc-2024-*"):
            seen.append(p.read_text())
        real_replace(src, dst)
        for p in out.glob("nightly-soc-2024-*"):
            seen.append(p.read_text())

    os.replace = replace_and_look
    try:
        write_outputs(run, out)
    finally:
        os.replace = real_replace
    assert seen and all(t.endswith("</html>\n") or t.endswith("}\n") or t.rstrip().endswith("|") or t.endswith("_") or t.endswith("\n") for t in seen)
    assert all(t in {render(run, f) for f in ("html", "md", "json")} for t in seen)


def test_charts_draw_cells_without_enough_data_as_gaps():
    """A ratio too noisy to read is null: the chart leaves a gap (never a 0 or 1 spike), also
    when no cell has data, and says so."""
    import datetime as dt

    import polars as pl

    from dplogs.report.render import _svg

    hours = [dt.datetime(2024, 3, 12, h, tzinfo=dt.timezone.utc) for h in range(4)]
    def frame(values):
        return pl.DataFrame({"hour": hours, "aggregate": ["r"] * 4, "value": values,
                             "ci_low": [None if v is None else v - 0.1 for v in values],
                             "ci_high": [None if v is None else v + 0.1 for v in values]},
                            schema_overrides={"value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64})
    some = _svg(frame([0.5, None, None, 0.4]), "hour", "line", "r", "UTC")
    assert some.count("<polyline") == 2 and "gaps: not enough data" in some  # two stretches, not one line through 0
    none = _svg(frame([None] * 4), "hour", "line", "r", "UTC")
    assert "<polyline" not in none and "gaps: not enough data" in none
