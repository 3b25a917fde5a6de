"""The syslog fast paths give exactly what the full regexes give.

Syslog parsing has two speed-ups, each claimed equal to a slower, simpler definition:

* the header: lines of the common shape take fixed slices, literal splits and an ISO rewrite of
  the stamp instead of the RFC 3164 regex and ``%b`` parsing (``_header_fast`` vs ``_header_slow``);
* auth categorisation: a pattern's one-pass regex runs first and its full regex only where the
  one-pass form missed (``with_auth(fast=True)`` vs ``with_auth(fast=False)``).

Both are compared here on generated lines built to hit the edges: out-of-range stamps, tags with
and without pids (also non-ASCII digits), user names holding spaces, ``from``, ``invalid user``,
brackets and non-ASCII text.
"""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dplogs.ingest import auth, syslog
from dplogs.ingest.base import IngestOptions
from tests.ingest.structured_helpers import lines_frame

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
digits2 = st.text("0123456789", min_size=2, max_size=2)
stamp = st.builds(
    lambda m, d, h, mi, s: f"{m} {d} {h}:{mi}:{s}",
    st.sampled_from(MONTHS),
    st.one_of(digits2, st.integers(0, 9).map(lambda d: f" {d}")),
    digits2, digits2, digits2,
)
word = st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), min_size=0, max_size=12)
user = st.one_of(
    st.sampled_from(["root", "bob", "invalid", "invalid user x", "a from 1.2.3.4 port 9", "x(y)", "-", "", "ünï", "a b"]),
    word,
)
ip = st.sampled_from(["10.0.0.1", "2001:db8::7", "fe80::1%eth0", "1.2.3.4.5", "host.example"])
tag = st.one_of(
    st.sampled_from(["sshd[12]", "sshd", "sudo", "su[7]", "sshd(pam_unix)[3]", "useradd[9]", "x[٣]", "cron[]", "a[1]b"]),
    # any program text (non-ASCII too), with or without a "[pid]" (ASCII or other digits) after it
    st.builds(lambda prog, pid: prog + pid, st.text(st.characters(codec="utf-8", exclude_characters="\n\r: "), min_size=1, max_size=10),
              st.sampled_from(["", "[12]", "[٣]", "[1][2]"])),
)
message = st.one_of(
    st.builds(lambda ev, u, i, p, tail: f"{ev} password for {u} from {i} port {p}{tail}",
              st.sampled_from(["Failed", "Accepted", "Postponed"]), user, ip, st.sampled_from(["22", "x"]),
              st.sampled_from(["", " ssh2", " ssh2: RSA", "  "])),
    st.builds(lambda u, i, tail: f"Invalid user {u} from {i}{tail}", user, ip, st.sampled_from(["", " port 22", " port 22 ", " port x"])),
    st.builds(lambda pre, u, err, t: f"{pre}{u} : {err}TTY=pts/0 ; PWD=/h ; USER={t} ; {'ENV=a ; ' * (len(u) % 2)}COMMAND=/bin/ls",
              st.sampled_from(["", "   "]), user, st.sampled_from(["", "user NOT in sudoers ; ", "a;b ; "]), user),
    st.builds(lambda u, by: f"pam_unix(sshd:session): session opened for user {u}{by}", user,
              st.sampled_from(["", " by (uid=0)", " by bob(uid=1000)", " by a(b)", " by ", "(uid=3)"])),
    word,
)


def _line(s: str, host: str, t: str, msg: str) -> str:
    return f"{s} {host} {t}: {msg}"


def _same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.to_dicts() == b.to_dicts()


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(stamp, st.sampled_from(["web1", "ip-10-0-0-1", "a.b-c", "h_1", "höst"]), tag, message), min_size=1, max_size=8),
       year=st.sampled_from([None, 2023, 2024]), tz=st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]))
def test_fast_header_equals_the_full_regex(rows, year, tz) -> None:
    frame = lines_frame(*(_line(*r) for r in rows))
    fast = frame.filter(pl.col("text").str.contains(syslog._FAST))
    options = IngestOptions(year=year, tz=tz)
    columns = [c for c in syslog._HEADER_COLUMNS if c != "_header"]
    _same(syslog._header_fast(fast, options).select(columns), syslog._header_slow(fast, options).select(columns))


def test_fast_header_covers_the_generated_lines() -> None:
    """The comparison above is not vacuous: typical lines take the fast path (and ASCII-only
    chunks, cut by byte positions, occur among the generated ones)."""
    frame = lines_frame("Mar  1 00:00:07 web1 sshd[12]: Failed password for bob from 10.0.0.1 port 22 ssh2",
                        "Feb 30 25:61:61 web1 su: x")
    assert frame.select(pl.col("text").str.contains(syslog._FAST).all()).item()
    header = syslog._header_fast(frame, IngestOptions(year=2024))
    assert header.get_column("_time").null_count() == 1  # Feb 30 is no date, on both paths
    assert header.get_column("_prog").to_list() == ["sshd", "su"]


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(tag, message), min_size=1, max_size=8))
def test_fast_auth_patterns_equal_the_full_regexes(rows) -> None:
    frame = pl.DataFrame({"_prog": [syslog_prog(t) for t, _ in rows], "_msg": [m for _, m in rows]},
                         schema={"_prog": pl.String, "_msg": pl.String})
    _same(auth.with_auth(frame), auth.with_auth(frame, fast=False))


def syslog_prog(tag: str) -> str:
    return tag.split("[", 1)[0]


@pytest.mark.parametrize("msg", [
    "Failed password for invalid user bob from 10.0.0.1 port 22 ssh2",
    "Failed password for a from 1.2.3.4 port 9 from 10.0.0.1 port 22 ssh2",
    "Invalid user a b from 10.0.0.1 port 22",
    "bob : user NOT in sudoers ; TTY=pts/0 ; PWD=/h ; USER=root ; COMMAND=/bin/ls",
])
def test_lines_the_fast_forms_miss_still_parse(msg: str) -> None:
    """Lines outside a fast form's shape fall back to the full regex instead of losing fields."""
    prog = "sudo" if "COMMAND" in msg else "sshd"
    frame = pl.DataFrame({"_prog": [prog], "_msg": [msg]})
    row = auth.with_auth(frame).row(0, named=True)
    assert row["_action"] is not None and row["_user"] is not None
    assert row == auth.with_auth(frame, fast=False).row(0, named=True)


def _gates_in_order(frame: pl.DataFrame) -> list:
    """The routing rule written plainly: the first pattern whose literal gates are all open."""
    out = []
    for row in frame.iter_rows(named=True):
        msg, prog = row["_msg"], (row["_prog"] or "").split("(")[0] if row["_prog"] is not None else None
        kind = None
        for i, p in enumerate(auth._PATTERNS):
            if ((not p.starts or any(msg.startswith(s) for s in p.starts)) and (not p.contains or p.contains in msg)
                    and (not p.programs or prog in p.programs)):
                kind = i
                break
        out.append(kind)
    return out


literals = st.sampled_from([s for p in auth._PATTERNS for s in p.starts] + [p.contains for p in auth._PATTERNS if p.contains]
                           + ["", " ", "x", "pam_unix(sshd:auth): "])


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(["sshd", "sudo", "su", "sshd(pam_unix)", "useradd", "cron", "CRON", "su(x)", None]),
                               st.lists(literals, max_size=4).map("".join)), min_size=1, max_size=10))
def test_routing_table_equals_the_gates_in_order(rows) -> None:
    frame = pl.DataFrame({"_prog": [p for p, _ in rows], "_msg": [m for _, m in rows]}, schema={"_prog": pl.String, "_msg": pl.String})
    routed = auth.with_routing(frame)
    assert routed.get_column("_kind").to_list() == _gates_in_order(frame)
    # the program code also says whether the program, without any "(…)", is an auth program
    assert (routed.get_column("_pcode") >= auth._AUTH_PROGRAM).to_list() == [
        p is not None and p.split("(")[0] in auth._AUTH_PROGRAMS for p, _ in rows]
