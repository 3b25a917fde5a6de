"""``dplogs ingest --covers START:END``: the operator declares the days the inputs cover, and that,
not the days of their first and last event, is their coverage: what is refused for lack of logs,
the disclosed coverage and the default window then depend on no one's events (docs/privacy.md,
"Public store metadata"; the side-channel tests check it on neighbouring stores)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.ingest.base import IngestOptions
from dplogs.ingest.store import Store

LINE = "Mar {d:2d} 10:00:00 h sshd[1]: Failed password for root from 198.51.100.7 port 22 ssh2\n"


def _ingest(store, path, *extra):
    return CliRunner().invoke(cli, ["ingest", str(path), "--store", str(store), "--year", "2024", "-q", *extra])


def test_the_declared_days_are_the_coverage_whatever_the_events(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text(LINE.format(d=5) + LINE.format(d=6) + LINE.format(d=28))  # the 28th: a stray record
    assert _ingest(tmp_path / "derived", log).exit_code == 0
    assert Store.open(tmp_path / "derived").coverage() == [(dt.date(2024, 3, 5), dt.date(2024, 3, 28))]
    res = _ingest(tmp_path / "declared", log, "--covers", "2024-03-01:2024-03-08")
    assert res.exit_code == 0, res.output
    assert Store.open(tmp_path / "declared").coverage() == [(dt.date(2024, 3, 1), dt.date(2024, 3, 7))]  # END excluded
    registry = json.loads((tmp_path / "declared" / "ingested.json").read_text())
    assert [r["declared"] for r in registry.values()] == [True]


def test_a_declared_quiet_input_covers_its_days(tmp_path):
    """An input without events (a quiet night) covers the days it declares: a query there is
    answered (noise around 0), not refused as 'no logs'; without --covers it covers nothing."""
    quiet = tmp_path / "quiet.log"
    quiet.write_text("\n\n")
    store = tmp_path / "s"
    log = tmp_path / "auth.log"
    log.write_text(LINE.format(d=5))
    assert _ingest(store, log).exit_code == 0
    assert CliRunner().invoke(cli, ["budget", "set", "--store", str(store), "--epsilon", "5"]).exit_code == 0
    query = ["query", "--store", str(store), "--sql", "SELECT COUNT(*) FROM logs", "--epsilon", "0.5",
             "--max-groups", "1", "--max-rows-per-group", "1", "--day", "2024-03-10"]
    assert CliRunner().invoke(cli, query).exit_code == 64
    assert _ingest(store, quiet, "--format", "syslog", "--covers", "2024-03-10:2024-03-11").exit_code == 0
    res = CliRunner().invoke(cli, query)
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("value", ["2024-03-05", "2024-03-05:2024-03-05", "2024-03-06:2024-03-05", "yesterday:today"])
def test_a_bad_declaration_is_refused_before_anything_is_written(tmp_path, value):
    log = tmp_path / "auth.log"
    log.write_text(LINE.format(d=5))
    res = _ingest(tmp_path / "s", log, "--covers", value)
    assert res.exit_code == 64 and "--covers" in res.output
    assert not (tmp_path / "s").exists()


def test_the_api_refuses_a_declaration_that_ends_before_it_begins():
    with pytest.raises(ValueError, match="ends before it begins"):
        IngestOptions(covers=(dt.date(2024, 3, 2), dt.date(2024, 3, 1)))


def test_a_declaration_made_when_the_same_log_comes_again_is_recorded(tmp_path):
    """The log was ingested without --covers (coverage derived from its events); ingesting the same
    bytes again with --covers writes no row but records the declaration, which a nightly job
    adding --covers to its command line expects (it was dropped with the duplicate)."""
    log = tmp_path / "auth.log"
    log.write_text(LINE.format(d=5) + LINE.format(d=6))
    store = tmp_path / "s"
    assert _ingest(store, log).exit_code == 0
    assert Store.open(store).coverage() == [(dt.date(2024, 3, 5), dt.date(2024, 3, 6))]
    res = _ingest(store, log, "--covers", "2024-03-01:2024-03-08")
    assert res.exit_code == 0, res.output
    assert Store.open(store).coverage() == [(dt.date(2024, 3, 1), dt.date(2024, 3, 7))]
    registry = json.loads((store / "ingested.json").read_text())
    assert [(r["rows"], r["declared"]) for r in registry.values()] == [(2, True)]  # still one input, its rows kept
    assert Store.open(store).scan().collect().height == 2


def test_every_quiet_night_keeps_its_declaration(tmp_path):
    """A nightly job that finds nothing ingests an empty file with --covers: the same bytes every
    quiet night. Each night's declaration adds to the coverage; none replaces another's."""
    store = tmp_path / "s"
    log = tmp_path / "auth.log"
    log.write_text(LINE.format(d=5))
    assert _ingest(store, log, "--covers", "2024-03-05:2024-03-06").exit_code == 0
    for night in ("2024-03-06:2024-03-07", "2024-03-09:2024-03-10", "2024-03-06:2024-03-07"):
        quiet = tmp_path / f"quiet-{night[:10]}.log"
        quiet.write_text("")
        assert _ingest(store, quiet, "--format", "syslog", "--covers", night).exit_code == 0
    assert Store.open(store).coverage() == [(dt.date(2024, 3, 5), dt.date(2024, 3, 6)), (dt.date(2024, 3, 9), dt.date(2024, 3, 9))]
    assert len(json.loads((store / "ingested.json").read_text())) == 3  # the log, and two nights of the empty file
