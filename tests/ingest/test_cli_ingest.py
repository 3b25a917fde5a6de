"""`dplogs ingest` end to end through click: help, summary on stderr only, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.ingest.store import Store
from dplogs.ingest.formats import registered

SAMPLES = Path(__file__).resolve().parents[2] / "sample_logs"


def _run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_help_explains_every_option_and_lists_formats() -> None:
    result = _run("ingest", "--help")
    assert result.exit_code == 0
    for option in ("--store", "--format", "--year", "--tz", "--dataset", "--privacy-unit",
                   "--budget-window", "--map", "--max-errors"):
        assert option in result.output
    for name in registered():
        assert name in result.output
    assert "ingest" in _run("--help").output
    # the summary's columns are explained (Zeek's 288 "skipped" header lines were a mystery)
    assert "\"skipped\" counts blank, comment and header lines" in " ".join(result.output.split())


def test_ingest_samples_summary_goes_to_stderr(tmp_path: Path) -> None:
    result = _run("ingest", str(SAMPLES), "--store", str(tmp_path / "s"), "--year", "2024",
                  "--privacy-unit", "user.name", "--budget-window", "week", "--dataset", "demo")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    for fmt in ("syslog", "access", "windows"):
        assert fmt in result.stderr
    store = Store.open(tmp_path / "s")
    assert store.manifest.budget_window == "week" and store.manifest.dataset == "demo"
    n_lines = sum(len(p.read_text().splitlines()) for p in SAMPLES.glob("*.log")) + len(
        (SAMPLES / "windows_security.json").read_text().splitlines()
    )
    assert store.scan().collect().height == n_lines
    again = _run("ingest", str(SAMPLES), "--store", str(tmp_path / "s"), "--year", "2024")
    assert again.exit_code == 0 and store.scan().collect().height == n_lines


def test_quarantined_text_never_reaches_the_terminal(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    secret = "s3cr3t-password-typed-as-username"
    log.write_text(f"Mar  1 10:00:00 h sshd[1]: Failed password for root from 10.0.0.9 port 22 ssh2\n{secret}\n")
    result = _run("ingest", str(log), "--store", str(tmp_path / "s"), "--format", "syslog", "--year", "2024")
    assert result.exit_code == 0
    assert secret not in result.stderr + result.stdout
    assert "no syslog header" in result.stderr  # the reason and its count are shown


def test_max_errors_exit_65_after_writing(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("Mar  1 10:00:00 h sshd[1]: ok\nbad\nworse\n")
    result = _run("ingest", str(log), "--store", str(tmp_path / "s"), "--format", "syslog",
                  "--year", "2024", "--max-errors", "1")
    assert result.exit_code == 65
    assert "--max-errors 1" in result.stderr and "no syslog header" in result.stderr
    store = Store.open(tmp_path / "s")
    assert store.scan().collect().height == 1 and store.scan_quarantine().collect().height == 2


def test_stdin_input(tmp_path: Path) -> None:
    data = b'10.0.0.1 - - [01/Mar/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 5\n'
    result = _run("ingest", "-", "--store", str(tmp_path / "s"), input=data)
    assert result.exit_code == 0, result.stderr
    assert Store.open(tmp_path / "s").scan().collect().get_column("source.ip").to_list() == ["10.0.0.1"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--map", "nonsense"], 64, "SRC=ECS"),
        (["--tz", "Mars/Olympus"], 64, "IANA"),
        (["--privacy-unit", "nope"], 64, "--privacy-unit"),
        (["--year", "1066"], 64, "out of range"),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    log = tmp_path / "a.log"
    log.write_text("Mar  1 10:00:00 h sshd[1]: ok\n")
    result = _run("ingest", str(log), "--store", str(tmp_path / "s"), *args)
    assert result.exit_code == code and message in result.stderr


def test_missing_input_exit_66_and_unknown_format_65(tmp_path: Path) -> None:
    assert _run("ingest", str(tmp_path / "nope.log"), "--store", str(tmp_path / "s")).exit_code == 66
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x00\x01\x02 binary junk\n")
    result = _run("ingest", str(odd), "--store", str(tmp_path / "s"))
    assert result.exit_code == 65 and "--format" in result.stderr
    # an application's own log (loghub's HDFS): passing a --format from the list only quarantined
    # every line, and nothing said that such logs are not read at all or what to do instead
    own = tmp_path / "hdfs.log"
    own.write_text("081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38 terminating\n")
    result = _run("ingest", str(own), "--store", str(tmp_path / "s"))
    text = " ".join(result.stderr.split())
    assert result.exit_code == 65 and "are not read" in text and "--format jsonl|csv --map SRC=ecs.field" in text


def test_a_failed_first_ingest_leaves_no_store_to_trip_the_rerun(tmp_path: Path) -> None:
    # An unrecognised file failed the run (65) but left a store with the default privacy unit, so
    # the rerun with the right options was refused: "already has privacy-unit 'user.name'".
    odd = tmp_path / "odd.log"
    odd.write_text("081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating\n")
    store, empty = tmp_path / "s", tmp_path / "made-by-hand"
    empty.mkdir()
    for target in (store, empty):
        assert _run("ingest", str(odd), "--store", str(target)).exit_code == 65
    assert not store.exists() and empty.is_dir() and not any(empty.iterdir())  # a directory made by hand stays
    sshd = tmp_path / "auth.log"
    sshd.write_text("Mar 31 10:00:00 h sshd[1]: Failed password for bob from 10.0.0.1 port 22 ssh2\n")
    result = _run("ingest", str(sshd), "--store", str(store), "--privacy-unit", "source.ip", "--year", "2024")
    assert result.exit_code == 0, result.stderr
    assert Store.open(store).manifest.privacy_unit == "source.ip"
    # a store that holds data is never removed by a later failed run
    assert _run("ingest", str(odd), "--store", str(store)).exit_code == 65
    assert Store.open(store).scan().collect().height == 1
    # the Python API's ingest, given a path, does the same
    from dplogs.errors import DataError
    from dplogs.ingest.ingest import ingest

    with pytest.raises(DataError):
        ingest([odd], tmp_path / "api")
    assert not (tmp_path / "api").exists()


def test_warns_when_most_rows_fall_into_the_shared_unit(tmp_path: Path) -> None:
    """Access logs carry no user.name: in a user.name store every request is the ONE shared unit,
    so every answer about them is noise; the ingest says so and names the option that helps."""
    access = tmp_path / "access.log"
    access.write_text("".join(f'203.0.113.{i % 200} - - [17/May/2015:10:{i % 60:02d}:00 +0000] "GET /p{i} HTTP/1.1" '
                              f'200 {i} "-" "curl/8"\n' for i in range(1200)))
    shared = _run("ingest", str(access), "--store", str(tmp_path / "by_user"))
    assert shared.exit_code == 0, shared.stderr
    assert "1,200 of 1,200 events written carry no user.name" in " ".join(shared.stderr.split())
    assert "--privacy-unit source.ip" in " ".join(shared.stderr.split())
    for args in (["--privacy-unit", "source.ip"], ["--privacy-unit", "user.name", "--unattributed", "per-row"]):
        own = _run("ingest", str(access), "--store", str(tmp_path / args[-1]), *args)
        assert own.exit_code == 0 and "shared unit" not in own.stderr, own.stderr
    auth = _run("ingest", str(SAMPLES / "auth.log"), "--store", str(tmp_path / "auth"), "--year", "2024")
    assert auth.exit_code == 0 and "shared unit" not in auth.stderr, auth.stderr


def test_yearless_syslog_without_year_says_which_year_it_used(tmp_path: Path) -> None:
    """A real auth.log from years ago was stored in the current year without a word."""
    import datetime as dt

    plain = _run("ingest", str(SAMPLES / "auth.log"), "--store", str(tmp_path / "guessed"))
    assert plain.exit_code == 0, plain.stderr
    text = " ".join(plain.stderr.split())
    assert f"were dated in {dt.datetime.now(dt.timezone.utc).year}" in text and "--year YYYY" in text
    given = _run("ingest", str(SAMPLES / "auth.log"), "--store", str(tmp_path / "given"), "--year", "2024")
    assert given.exit_code == 0 and "were dated in" not in given.stderr
    web = _run("ingest", str(SAMPLES / "access.log"), "--store", str(tmp_path / "web"))
    assert web.exit_code == 0 and "were dated in" not in web.stderr
    cef = tmp_path / "fw.cef"
    cef.write_text("CEF:0|Forcepoint|NGFW|6.6|70018|Connection_Allowed|0|rt=Jan 17 2020 08:52:10 src=10.0.0.1\n")
    dated = _run("ingest", str(cef), "--store", str(tmp_path / "cef"))
    assert dated.exit_code == 0 and "were dated in" not in dated.stderr, dated.stderr
    # syslog whose stamps carry their year (ISO, RFC 5424, a network device's Mmm dd yyyy) guesses nothing
    stamped = tmp_path / "stamped.log"
    stamped.write_text("2024-03-12T10:00:00+01:00 web01 sshd[1]: Failed password for root from 203.0.113.9 port 5 ssh2\n"
                       "Oct 10 2018 12:34:56 fw01 CiscoASA[999]: %ASA-6-302013: Built outbound TCP connection 1\n")
    own_year = _run("ingest", str(stamped), "--store", str(tmp_path / "stamped"))
    assert own_year.exit_code == 0 and "were dated in" not in own_year.stderr, own_year.stderr
    # CEF dated by its syslog prefix's year-less stamp (no rt) is dated by the guess: said
    prefixed = tmp_path / "prefixed.cef"
    prefixed.write_text("Jan 17 08:52:10 fw1 CEF:0|Forcepoint|NGFW|6.6|70018|Connection_Allowed|0|src=10.0.0.1\n")
    guessed = _run("ingest", str(prefixed), "--store", str(tmp_path / "prefixed"))
    assert guessed.exit_code == 0 and "were dated in" in " ".join(guessed.stderr.split()), guessed.stderr
