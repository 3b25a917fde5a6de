"""CEF and LEEF: escapes, syslog wrapping, LEEF 2.0 delimiters, and the Elastic CEF samples."""

from __future__ import annotations

import gzip

import datetime as dt
from pathlib import Path

import polars as pl

from dplogs.ingest.base import NO_TIME_REASON, IngestOptions
from dplogs.ingest.cef import Cef, Leef
from tests.ingest.structured_helpers import detected, lines_frame, parse

UTC = dt.UTC


def _cef(*lines: str, options: IngestOptions = IngestOptions(year=2024)):
    return Cef().parse_lines(lines_frame(*lines), "cef.log", options)


def test_escapes_in_header_and_extension() -> None:
    chunk = _cef(
        r"CEF:0|Sec\|Corp|Gate\\way|1.0|4\|2|Login \| failed|High|suser=j\=doe msg=line1\nline2 path\\n cs1=x\\ act=blocked rt=1705481530000"
    )
    row = chunk.events.row(0, named=True)
    assert row["event.provider"] == r"Sec|Corp Gate\way"
    assert row["event.code"] == "4|2"
    assert row["user.name"] == "j=doe"
    assert row["message"] == "line1\nline2 path\\n"  # \n is a newline, \\n a backslash and n
    assert row["event.action"] == "blocked"
    assert row["event.severity"] == 8


def test_extension_values_with_spaces_and_trailing_blanks() -> None:
    chunk = _cef("CEF:0|V|P|1|9|Name|3|msg=hello big world   src=192.0.2.1 spt=1234 dst=198.51.100.2 dpt=443 in=10 out=2000 proto=6 rt=1705481530000   ")
    row = chunk.events.row(0, named=True)
    assert row["message"] == "hello big world"
    assert (row["source.ip"], row["source.port"], row["destination.ip"], row["destination.port"]) == ("192.0.2.1", 1234, "198.51.100.2", 443)
    assert (row["source.bytes"], row["destination.bytes"], row["network.transport"]) == (10, 2000, "tcp")
    assert row["@timestamp"] == dt.datetime(2024, 1, 17, 8, 52, 10, tzinfo=UTC)


def test_syslog_wrapped_cef_uses_header_host_and_time() -> None:
    chunk = _cef("<134>Jan 17 08:52:10 fw01 CEF:0|V|P|1|9|Deny|5|src=10.0.0.1 suser=eve duser=root act=deny")
    row = chunk.events.row(0, named=True)
    assert (row["host.name"], row["user.name"], row["user.target.name"]) == ("fw01", "eve", "root")
    assert row["@timestamp"] == dt.datetime(2024, 1, 17, 8, 52, 10, tzinfo=UTC)
    assert row["message"] == "Deny"  # no msg=: the CEF Name


def test_cef_quarantine() -> None:
    chunk = _cef("not cef at all", "CEF:0|V|P|1|9|N|5|rt=Foo 99 2020 99:99:99 src=1.2.3.4", "")
    assert chunk.quarantine.select("line", "reason").rows() == [(1, "no CEF header"), (2, "bad timestamp")]
    assert chunk.skipped == 1


def test_leef_1_and_2_delimiters() -> None:
    frame = lines_frame(
        "LEEF:1.0|Microsoft|MSExchange|4.0 SP1|15345|src=192.0.2.0\tdst=172.50.123.1\tsev=5\tcat=anomaly\tsrcPort=81\tdstPort=21\tusrName=joe.black",
        "LEEF:2.0|Lancope|StealthWatch|1.0|41|^|src=10.0.1.8^dst=10.0.0.5^sev=5^srcPort=41234^usrName=ann^devTime=Jan 17 2020 08:52:10",
        "LEEF:2.0|Vendor|Product|1.0|7|x09|src=10.1.1.1\tusrName=zed\tproto=17",
        "Jan 17 08:52:10 qradar01 LEEF:2.0|V|P|1.0|8|0x7C|src=10.2.2.2|usrName=kim",
        "LEEF:9.0|bad|version|1|2|x=y",
    )
    chunk = Leef().parse_lines(frame, "leef.log", IngestOptions(year=2020))
    ev = chunk.events
    # lines 1 and 3 carry no devTime and no syslog header: no time, so quarantined (issue 16)
    assert ev.get_column("user.name").to_list() == ["ann", "kim"]
    assert ev.get_column("source.ip").to_list() == ["10.0.1.8", "10.2.2.2"]
    assert ev.get_column("source.port").to_list() == [41234, None]
    assert ev.get_column("@timestamp").to_list() == [dt.datetime(2020, 1, 17, 8, 52, 10, tzinfo=UTC)] * 2
    assert ev.get_column("host.name").to_list()[1] == "qradar01"
    assert chunk.quarantine.select("line", "reason").rows() == [(1, NO_TIME_REASON), (3, NO_TIME_REASON), (5, "no LEEF header")]
    stamped = Leef().parse_lines(frame.with_columns(pl.col("text") + "\tdevTime=1579251130000"), "leef.log", IngestOptions(year=2020))
    assert stamped.events.get_column("user.name").to_list()[:3] == ["joe.black", "ann", "zed"]
    assert stamped.events.get_column("network.transport").to_list()[2] == "udp"


def test_elastic_cef_samples(datasets_dir: Path) -> None:
    """The expected parse stated in datasets/README.md for Elastic's CEF test files."""
    fp = datasets_dir / "cef/fp-ngfw-smc.log"
    assert detected(fp) == "cef"
    events, quarantine, skipped = parse("cef", fp)
    assert quarantine.is_empty() and (events.height, skipped) == (10, 3)
    first = events.row(0, named=True)
    assert first["@timestamp"] == dt.datetime(2020, 1, 17, 8, 52, 10, tzinfo=UTC)
    assert first["host.name"] == "10.1.1.40"  # dvchost (dvc is the same address here)
    frag = events.filter(pl.col("message").str.contains("frag", literal=True)).get_column("message").to_list()
    assert frag == ["Referred connection: 10.1.1.40 -> 10.37.133.35 frag=0x4000 TCP 47413->3020"]
    users = events.filter(pl.col("user.name").is_not_null())
    assert users.height > 0 and set(users.get_column("user.name")) <= {"alice", "bob"}
    assert events.filter(pl.col("source.ip").is_not_null()).height >= 6

    vapor = datasets_dir / "cef/cef_elastic_vaporware.log"
    events, quarantine, _ = parse("cef", vapor)
    # no rt/end/start and no syslog header: the time is unknown, so every record is quarantined
    assert events.is_empty() and quarantine.get_column("reason").to_list() == [NO_TIME_REASON] * 4
    # the same records with a receipt time map as before
    lines = gzip.open(vapor, "rt").read().splitlines() if vapor.suffix == ".gz" else vapor.read_text().splitlines()
    rows = _cef(*(line.rstrip() + " rt=1579251130000" for line in lines)).events.to_dicts()
    assert (rows[0]["source.ip"], rows[0]["source.port"], rows[0]["destination.port"]) == ("1.128.3.4", 33876, 443)
    assert (rows[0]["http.request.method"], rows[0]["url.original"]) == ("POST", "https://www.example.com/cart")
    assert (rows[1]["user.name"], rows[1]["user.target.name"], rows[1]["destination.ip"]) == ("bob", "alice", "81.2.69.143")
    # "message=" is not a CEF key: the message is the CEF Name; trailing blanks do not leak into values
    assert (rows[3]["message"], rows[3]["source.ip"], rows[3]["destination.ip"]) == ("Authentication", "192.168.3.4", "192.168.1.2")


def test_records_without_a_time_are_stored_at_the_operators_undated_time(tmp_path: Path) -> None:
    # The classic CEF example carries no rt/end/start and no syslog header: quarantined, and a feed
    # of such lines looked unreadable. --undated-time stores them at a time the operator gives;
    # records with their own time keep it; without the option they stay quarantined, with a hint.
    from click.testing import CliRunner

    from dplogs.cli import cli
    from dplogs.ingest.store import Store

    feed = tmp_path / "feed.cef"
    feed.write_text("CEF:0|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232\n"
                    "CEF:0|Sec|tm|1.0|101|login failed|5|suser=bob src=10.0.0.2 rt=1710237600000\n")
    plain = CliRunner().invoke(cli, ["ingest", str(feed), "--store", str(tmp_path / "plain")])
    assert plain.exit_code == 0 and "ingest the inputs into a new store with --undated-time TIME" in plain.stderr
    assert Store.open(tmp_path / "plain").scan_quarantine().collect().get_column("reason").to_list() == [NO_TIME_REASON]
    dated = CliRunner().invoke(cli, ["ingest", str(feed), "--store", str(tmp_path / "dated"),
                                     "--undated-time", "2024-03-12T09:00:00+01:00"])
    assert dated.exit_code == 0 and "undated-time" not in dated.stderr
    stamps = Store.open(tmp_path / "dated").scan().select("@timestamp").collect().to_series().sort().to_list()
    assert stamps == [dt.datetime(2024, 3, 12, 8, 0, tzinfo=UTC), dt.datetime(2024, 3, 12, 10, 0, tzinfo=UTC)]
    assert Store.open(tmp_path / "dated").scan_quarantine().collect().is_empty()
    bad = CliRunner().invoke(cli, ["ingest", str(feed), "--store", str(tmp_path / "bad"), "--undated-time", "yesterday"])
    assert bad.exit_code == 64 and "--undated-time 'yesterday'" in bad.stderr and not (tmp_path / "bad").exists()
