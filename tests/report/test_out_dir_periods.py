"""An --out-dir's period files belong to one period in one zone: a run of the same report for a
period with the same first day in another zone (or of another length) is refused before anything
is charged, instead of silently replacing that report's files with other releases."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.privacy.ledger import Ledger
from dplogs.report import load_report_spec
from dplogs.errors import UsageError
from dplogs.report.outputs import check_same_periods, written
from tests.report.conftest import NIGHTLY


def _report(store: Path, out: Path, *args: str):
    return CliRunner().invoke(cli, ["report", str(NIGHTLY), "--store", str(store), "--out-dir", str(out), *args])


def _digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}


def _entries(store: Path) -> int:
    return len(Ledger.open(store / "ledger.sqlite").history())


def test_a_rerun_of_a_period_in_another_zone_does_not_replace_its_files(new_store, tmp_path):
    """Was: exit 0, the UTC day's three files rewritten with the Berlin day's releases (charged)."""
    store, out = new_store(epsilon=30), tmp_path / "out"
    assert _report(store, out, "--date", "2024-03-11").exit_code == 0
    files, charged = _digests(out), _entries(store)

    berlin = _report(store, out, "--date", "2024-03-11", "--tz", "Europe/Berlin")
    assert berlin.exit_code == 64, berlin.output
    assert "2024-03-11 to 2024-03-12 in time zone UTC" in berlin.stderr and "another --out-dir" in berlin.stderr
    assert _digests(out) == files and _entries(store) == charged  # nothing replaced, nothing charged
    # a catch-up over that day is refused before its first period too
    catch_up = _report(store, out, "--tz", "Europe/Berlin", "--catch-up", "--since", "2024-03-10", "--until", "2024-03-12")
    assert catch_up.exit_code == 64, catch_up.output
    assert _digests(out) == files and _entries(store) == charged
    # the same run of the same zone replays into the same files; another zone has a directory of its own
    assert _report(store, out, "--date", "2024-03-11").exit_code == 0 and _entries(store) == charged
    assert _report(store, tmp_path / "berlin", "--date", "2024-03-11", "--tz", "Europe/Berlin").exit_code == 0


def test_files_of_another_zone_are_not_counted_as_this_periods(new_store, tmp_path):
    """A catch-up rewrites a period whose files were never written; another zone's files of that
    name are not them."""
    store, out = new_store(epsilon=30), tmp_path / "out"
    assert _report(store, out, "--date", "2024-03-11", "--tz", "Europe/Berlin").exit_code == 0
    spec = load_report_spec(NIGHTLY)
    assert written(spec.with_tz("Europe/Berlin"), dt.date(2024, 3, 11), out)
    assert not written(spec, dt.date(2024, 3, 11), out)
    assert not written(spec.with_tz("Europe/Berlin"), dt.date(2024, 3, 12), out)
    # a week of the same name starting that Monday would replace the day's files too
    week = dataclasses.replace(spec, period="week", tz="Europe/Berlin")
    with pytest.raises(UsageError, match="2024-03-11 to 2024-03-12 in time zone Europe/Berlin"):
        check_same_periods(week, [dt.date(2024, 3, 11)], out)
    check_same_periods(spec.with_tz("Europe/Berlin"), [dt.date(2024, 3, 11), dt.date(2024, 3, 12)], out)


def test_a_json_file_that_is_no_report_of_ours_is_replaced_as_before(tmp_path):
    """The directory may be others' to write: a file at the JSON's name that is not a report (nested
    100,000 deep: a RecursionError, exit 70; not JSON; no zone) tells no zone, so it neither refuses nor crashes."""
    spec = load_report_spec(NIGHTLY)
    for text in ("[" * 100_000, "not json", '{"period": 3}'):
        (tmp_path / "nightly-soc-2024-03-11.json").write_text(text)
        check_same_periods(spec, [dt.date(2024, 3, 11)], tmp_path)


def test_another_spec_of_the_same_name_does_not_replace_a_periods_files(new_store, tmp_path):
    """Was: exit 0, the nightly report's four sections replaced by another spec's one (both named
    nightly-soc). Now refused, charging nothing; this spec with a section added at the end still
    rewrites the day (its old sections replay), and the nightly catch-up of an edited spec goes on
    with the next day instead of stopping at the one it can no longer rewrite."""
    store, out = new_store(epsilon=30), tmp_path / "out"
    assert _report(store, out, "--date", "2024-03-11").exit_code == 0
    files, charged = _digests(out), _entries(store)
    spec = NIGHTLY.read_text()
    head, *sections = spec.split("[[section]]")
    assert len(sections) >= 3

    def variant(name: str, chosen: list[str]) -> Path:
        path = tmp_path / f"{name}.toml"
        text = head + "".join(f"[[section]]{s}" for s in chosen)
        path.write_text(text.replace('query = "../', f'query = "{NIGHTLY.parent.parent}/'))
        return path

    other, extended = variant("other", [sections[1]]), variant("extended", [*sections, sections[0]])
    edited = variant("edited", [*sections[:-1], sections[0]])  # the last section swapped for another
    # the nightly catch-up of an edited spec goes on with the next day, leaving the written one
    res = CliRunner().invoke(cli, ["report", str(edited), "--store", str(store), "--out-dir", str(out), "--catch-up",
                                   "--until", "2024-03-12"])
    assert res.exit_code == 0, res.output
    day = lambda digests: {k: v for k, v in digests.items() if "2024-03-11" in k}  # noqa: E731
    assert len(day(files)) == 3 and day(_digests(out)) == day(files)
    assert (out / "nightly-soc-2024-03-12.json").is_file()
    files, charged = _digests(out), _entries(store)
    res = CliRunner().invoke(cli, ["report", str(other), "--store", str(store), "--out-dir", str(out), "--date", "2024-03-11"])
    assert res.exit_code == 64, res.output
    assert "with other sections (0:failed_logins_per_hour, 1:" in res.stderr and "another --out-dir" in res.stderr
    assert _digests(out) == files and _entries(store) == charged
    for since in (["--since", "2024-03-11"], []):  # the other spec released nothing: its catch-up wants that day
        res = CliRunner().invoke(cli, ["report", str(other), "--store", str(store), "--out-dir", str(out), "--catch-up",
                                       *since, "--until", "2024-03-11"])
        assert res.exit_code == 64, res.output
        assert _digests(out) == files and _entries(store) == charged
    res = CliRunner().invoke(cli, ["report", str(extended), "--store", str(store), "--out-dir", str(out), "--date", "2024-03-11"])
    assert res.exit_code == 0, res.output
    assert _entries(store) == charged + 1  # only the added section is charged
