"""Categorisation of auth.log messages (sshd, sudo, su, pam_unix, useradd & co.), after Elastic
Filebeat's ``system/auth`` ingest pipeline: its grok patterns define which values are extracted
(``user.name``, ``source.ip``, ``source.port``) and its event fields the names used here
(``event.action`` ``ssh_login``, ``event.category`` authentication / iam / session / process).

Every pattern is an anchored regex behind cheap literal gates (start literal, program, a literal
the message contains). A line goes to the first pattern whose gates are open, and only that
pattern's regex runs on it, over all such lines at once; a pattern's one-pass form, when it has
one, runs first and the full regex only where it missed.

>>> df = pl.DataFrame({"_prog": ["sshd", "sudo"], "_msg": [
...     "Failed password for invalid user admin from 10.0.0.1 port 22 ssh2",
...     "  bob : TTY=pts/0 ; PWD=/home/bob ; USER=root ; COMMAND=/bin/ls"]})
>>> with_auth(df).select("_user", "_ip", "_action", "_outcome").rows()  # Elastic gives sudo no outcome
[('admin', '10.0.0.1', 'ssh_login', 'failure'), ('bob', None, 'sudo', None)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from dplogs.ingest._text import run
from dplogs.ingest.base import ParsedChunk, repeat_hash

_IP = r"(?P<ip>[0-9A-Fa-f:.]+(?:%\w+)?)"
_IP_END = r"(?P<ip>[0-9A-Fa-f:.]*[0-9A-Fa-f])"
"""An address followed by ``:`` ("Received disconnect from 10.0.2.2: 11: ..."), which :data:`_IP` would take in."""


@dataclass(frozen=True)
class _Pattern:
    """One message pattern; the named groups user/ip/port/target/error are extracted."""

    regex: str
    action: str | None
    category: str | None
    type: str | None
    outcome: str | None
    programs: tuple[str, ...] = ()
    """Process names the pattern applies to (empty: any)."""
    failure_if_error: bool = False
    starts: tuple[str, ...] = ()
    contains: str | None = None
    """Cheap literal gate: the regex runs only on messages starting with one of ``starts`` (or
    containing ``contains``), so each line pays for at most one capturing regex."""
    auth: bool = True
    """The line belongs to the auth log (``system.auth``); False for system messages Elastic's
    system/syslog pipeline categorises (systemd services)."""
    fast: str | None = None
    """Optional one-pass form of ``regex`` for the common shape of the line (user names without
    spaces…). Rust's regex extracts groups from an anchored one-pass regex with its one-pass DFA,
    2-3x faster than ``regex``'s backtracking. It must match only lines ``regex`` matches, with the
    same groups; lines it misses run ``regex``. ``tests/ingest/test_auth_fast.py`` checks this on
    hostile generated messages."""


def _not_before(word: str) -> str:
    """A regex matching any text that does not start with ``word`` (Rust's regex has no lookahead)."""
    return "(?:" + "|".join(re.escape(word[:i]) + f"[^{re.escape(word[i])}]" for i in range(len(word))) + ")"


_OTHER_PAM_MODULES = ("pam_sss(", "pam_sss_gss(", "pam_krb5(", "pam_ldap(", "pam_winbind(")
"""PAM modules besides pam_unix that log "authentication failure; … user=" for a refused password
(the start literals routing those lines to the pattern)."""

_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(r"^(?P<ev>Accepted) (?P<method>\S+) for (?:invalid user )?(?P<user>.*?) from " + _IP + r" port (?P<port>\d+)",
             "ssh_login", "authentication,session", "info", "success", ("sshd",), starts=("Accepted ",),
             fast=r"^Accepted \S+ for (?P<user>\S+) from " + _IP + r" port (?P<port>\d+)"),
    _Pattern(r"^(?P<ev>Failed|Postponed) (?P<method>\S+) for (?:invalid user )?(?P<user>.*?) from " + _IP + r" port (?P<port>\d+)",
             "ssh_login", "authentication", "info", "failure", ("sshd",), starts=("Failed ", "Postponed "),
             fast=r"^(?:Failed|Postponed) \S+ for (?P<user>\S+) from " + _IP + r" port (?P<port>\d+)"),
    _Pattern(r"^(?:Invalid|Illegal) user (?P<user>.*?) from " + _IP + r"(?: port (?P<port>\d+))?\s*$",
             "ssh_login", "authentication", "info", "failure", ("sshd",), starts=("Invalid user ", "Illegal user "),
             fast=r"^(?:Invalid|Illegal) user (?P<user>\S+) from " + _IP + r"(?: port (?P<port>\d+))?$"),
    _Pattern(r"^Did not receive identification string from " + _IP + r"(?: port (?P<port>\d+))?",
             "ssh_dropped_connection", "network", "connection", "failure", ("sshd",), starts=("Did not receive ",)),
    # sshd's connection-level lines, which Elastic leaves unparsed: the source (and account) of a
    # brute force's connections, with no outcome (the attempts inside were logged, and counted, each)
    _Pattern(r"^(?:Connection closed by|Connection reset by|Disconnected from|Received disconnect from) "
             r"(?:(?:invalid|authenticating) user (?P<user>.*?) )?" + _IP_END + r"(?: port (?P<port>\d+))?(?::| |$)",
             "ssh_disconnected", "network", "connection,end", None, ("sshd",),
             starts=("Connection closed by ", "Connection reset by ", "Disconnected from ", "Received disconnect from "),
             fast=r"^(?:Connection closed by|Connection reset by|Disconnected from|Received disconnect from) "
                  + _IP_END + r"(?: port (?P<port>\d+))?(?::| |$)"),
    _Pattern(r"^error: maximum authentication attempts exceeded for (?:invalid user )?(?P<user>.*?) from " + _IP
             + r" port (?P<port>\d+)",
             "ssh_max_auth_attempts", "authentication", "info", None, ("sshd",), starts=("error: maximum authentication ",)),
    _Pattern(r"^input_userauth_request: invalid user (?P<user>.*?) \[preauth\]$",
             "ssh_invalid_user", "authentication", "info", None, ("sshd",), starts=("input_userauth_request: ",)),
    # PAM refusing an account sshd does not know: its name and source only, as Elastic reads it (the
    # attempt itself is counted from sshd's "Invalid user"/"Failed password" lines)
    _Pattern(r"^error: PAM: User not known to the underlying authentication module for illegal user (?P<user>.*?) from (?P<ip>\S+)$",
             None, None, None, None, ("sshd",), starts=("error: PAM: User not known ",)),
    # sudo: the person is user.name, the account whose rights are used (USER=) user.effective.name.
    # TTY= is absent when sudo runs without a terminal (cron, scripts).
    _Pattern(r"^\s*(?P<user>\S+) : (?:(?P<error>[^;=]*?) ; )?(?:TTY=.*?; )?PWD=.*?; USER=(?P<effective>\S+) ; (?:\S+=\S* ; )*COMMAND=",
             "sudo", "process", "start", None, ("sudo",), failure_if_error=True, contains="COMMAND=",
             fast=r"^\s*(?P<user>\S+) : TTY=[^;]*; PWD=[^;]*; USER=(?P<effective>\S+) ; (?:[^C\s]\S*=\S* ; )*COMMAND="),
    # any PAM module's failure (SSSD on directory-joined hosts, Kerberos, LDAP, winbind) in any phase
    # (pam_unix(passwd:chauthtok): a wrong current password), as Elastic reads "authentication failure"
    _Pattern(r"^(?:pam_[\w-]+\([\w-]+:\w+\): )?authentication failure;.*?(?:rhost=(?P<rhost>\S*))?\s*(?:user=(?P<user>\S+))?\s*$",
             "authentication_failure", "authentication", "info", "failure",
             starts=("pam_unix(", *_OTHER_PAM_MODULES, "authentication failure;"), contains="authentication failure;"),
    _Pattern(r"^PAM \d+ more authentication failures?;.*?(?:rhost=(?P<rhost>\S*))?\s*(?:user=(?P<user>\S+))?\s*$",
             "authentication_failure", "authentication", "info", "failure", starts=("PAM ",)),
    _Pattern(r"^pam_faillock\([\w-]+:\w+\):.*?for user (?P<user>[\w.-]+)",
             "account-locked", "authentication", "info", "failure", starts=("pam_faillock(",)),
    _Pattern(r"^password check failed for user \(?(?P<user>[\w.-]+)\)?",
             "authentication_failure", "authentication", "info", "failure", starts=("password check failed ",)),
    # PAM sessions: "for user X by Y" is Y acting as X (user.name Y, user.effective.name X).
    _Pattern(r"^pam_unix\([\w-]+:session\): session opened for user (?P<effective>[^\s(]+)(?:\(uid=\d+\))?(?: by (?P<user>\S*?)(?:\(uid=\d+\))?)?\s*$",
             "logged-on", "session", "start", "success", starts=("pam_unix(",), contains="): session opened for user ",
             fast=r"^pam_unix\([\w-]+:session\): session opened for user (?P<effective>[^\s(]+)(?:\(uid=\d+\))?(?: by (?P<user>[^\s(]*)(?:\(uid=\d+\))?)?$"),
    _Pattern(r"^pam_unix\([\w-]+:session\): session closed for user (?P<effective>\S+)",
             "logged-off", "session", "end", "success", starts=("pam_unix(",), contains="): session closed for user "),
    _Pattern(r"^(?:Successful su|\+ \S+) (?:for (?P<effective>\S+) by (?P<user>\S+)|(?P<user2>[^:\s]+):(?P<effective2>\S+))",
             "su", "authentication", "start", "success", ("su",), starts=("Successful su", "+ ")),
    _Pattern(r"^(?:FAILED su|- \S+) (?:for (?P<effective>\S+) by (?P<user>\S+)|(?P<user2>[^:\s]+):(?P<effective2>\S+))",
             "su", "authentication", "start", "failure", ("su",), starts=("FAILED su", "- ")),
    _Pattern(r"^new user: name=(?P<target>[^,]+), UID=", "user-created", "iam", "user,creation", "success", starts=("new user: ",)),
    _Pattern(r"^new group: name=(?P<group>[^,]+), GID=", "group-created", "iam", "group,creation", "success", starts=("new group: ",)),
    _Pattern(r"^group added to /etc/\w+: name=(?P<group>[^,\s]+)", "group-created", "iam", "group,creation", "success",
             starts=("group added to ",)),
    _Pattern(r"^delete user '(?P<target>[^']+)'", "user-deleted", "iam", "user,deletion", "success", starts=("delete user '",)),
    _Pattern(r"^(?:group '(?P<group>[^']+)' removed|removed group '(?P<group2>[^']+)')(?: owned by '(?P<owner>[^']+)')?", "group-deleted", "iam",
             "group,deletion", "success", starts=("group '", "removed group '")),
    _Pattern(r"^delete '(?P<target>[^']+)' from (?:shadow )?group '(?P<group>[^']+)'", "group-member-removed", "iam",
             "user,deletion", "success", starts=("delete '",)),
    _Pattern(r"^add '(?P<target>[^']+)' to (?:shadow )?group '(?P<group>[^']+)'", "group-member-added", "iam", "user,change",
             "success", starts=("add '",)),
    # "removed by … from group" turns the action into group-user-removed (_with_removals)
    _Pattern(r"^user (?P<target>[\w.-]+) (?:added|removed) by (?P<user>[\w.-]+) (?:to|from) group ", "group-user-added", "iam",
             "change", "success", ("gpasswd",), starts=("user ",)),
    # systemd units (not targets), as Elastic's system/syslog pipeline reads them
    _Pattern(r"^Started " + _not_before("target "), "service-start", "process", "start", None, ("systemd",),
             starts=("Started ",), auth=False),
    _Pattern(r"^Stopped " + _not_before("target "), "service-stop", "process", "end", None, ("systemd",),
             starts=("Stopped ",), auth=False),
    _Pattern(r"^change user '(?P<target>[^']+)' ", "user-changed", "iam", "user,change", "success", starts=("change user '",)),
    # anchored: only messages starting with one of its start literals can match
    _Pattern(r"^(?:pam_unix\([\w-]+:chauthtok\): )?password changed for (?P<target>\S+)", "password-changed", "iam",
             "change", "success", starts=("pam_unix(", "password changed for "), contains="password changed for "),
)
"""``category``/``type`` are comma-separated ECS arrays, in Elastic's order. Accounts an IAM line
acts on are ``target`` (``user.target.name``); where Elastic also names them ``user.name`` (the
line names no actor), :data:`_ACTS_ON_ITSELF` copies them."""

_ACTS_ON_ITSELF = ("user-created", "user-deleted", "group-member-added", "user-changed", "password-changed")

_AUTH_PROGRAMS = (
    "sshd", "sudo", "su", "useradd", "usermod", "userdel", "groupadd", "groupmod", "groupdel",
    "passwd", "chpasswd", "chage", "gpasswd", "login", "systemd-logind", "CRON", "cron", "polkitd",
    "pkexec", "gdm-password", "pam",
)


IPV4 = r"^(?:\d{1,3}\.){3}\d{1,3}$"
IPV6 = r"^[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?$"
_IP_LITERAL = f"(?:{IPV4})|(?:{IPV6})"  # one regex pass instead of two


def ip_or_null(expr: pl.Expr) -> pl.Expr:
    """``expr`` when it is an IPv4/IPv6 literal, else null (host names are not ``source.ip``)."""
    return pl.when(expr.str.contains(_IP_LITERAL)).then(expr)


_CONSTANT = ("_action", "_category", "_type", "_outcome")
"""Output columns set from the matched pattern itself."""

_GROUPS = {"_user": ("user", "user2"), "_ip": ("ip", "rhost"), "_port": ("port",),
           "_target": ("target", "owner"), "_effective": ("effective", "effective2")}
"""Output column → the named groups that fill it, first non-null wins."""

_STARTS = tuple(dict.fromkeys(s for p in _PATTERNS for s in p.starts))
# One anchored alternation finds the start literal of every message in one pass (a starts_with per
# literal and pattern cost 3x more). Equal to "starts with any of" only while no literal is a
# prefix of another: then at most one literal can match at position 0.
assert not any(a != b and b.startswith(a) for a in _STARTS for b in _STARTS), "start literals must be prefix-free"
_ROUTE = "^(" + "|".join(re.escape(s) for s in _STARTS) + ")"


def _kind_table() -> tuple[dict[str, int], dict[str, int], tuple[str, ...], dict[int, int], list[int]]:
    """The gates as one lookup: codes for start literals and programs, the distinct ``contains``
    literals (one bit each), for every (start, program, bits) key the first pattern whose gate is
    open, and the (start, program) keys (bits 0) whose pattern depends on the bits: elsewhere the
    literals need no search, and the table holds bits 0 only. Precomputed from the patterns, so
    :func:`with_routing` is equal to evaluating the gates in order
    (``tests/ingest/test_syslog_fast.py`` compares them)."""
    starts = {s: i for i, s in enumerate(_STARTS, start=1)}  # 0: none
    programs = {name: i for i, name in enumerate(dict.fromkeys(n for p in _PATTERNS for n in p.programs), start=1)}
    needles = tuple(dict.fromkeys(p.contains for p in _PATTERNS if p.contains))
    table: dict[int, int] = {}
    needs_bits: list[int] = []
    for start in (None, *_STARTS):
        for program in (None, *programs):
            base = starts.get(start, 0) + (len(starts) + 1) * programs.get(program, 0)
            # the patterns open to this start and program, in order, up to the first needing no literal
            open_ = []
            for i, p in enumerate(_PATTERNS):
                if (not p.starts or start in p.starts) and (not p.programs or program in p.programs):
                    open_.append((i, None if p.contains is None else 1 << needles.index(p.contains)))
                    if p.contains is None:
                        break
            if any(bit is not None for _, bit in open_):
                needs_bits.append(base)
            for bits in range(1 << len(needles)) if base in needs_bits else (0,):
                for i, bit in open_:
                    if bit is None or bits & bit:
                        table[base + (len(starts) + 1) * (len(programs) + 1) * bits] = i
                        break
    return starts, programs, needles, table, needs_bits


_STARTS_CODE, _PROGRAMS_CODE, _NEEDLES, _KIND, _NEEDS_BITS = _kind_table()


_AUTH_PROGRAM = len(_PROGRAMS_CODE) + 1
"""``_pcode`` is the program's code in the routing table (0: none of the patterns' programs), plus
this when the program is one of ``_AUTH_PROGRAMS``."""


def _program_codes(programs: pl.Series) -> pl.Expr:
    """``_pcode`` of column ``_prog`` (see :data:`_AUTH_PROGRAM`; null programs: 0). Worked out
    once per distinct program, of which a block holds few (per row, splitting off ``(…)`` and the
    two lookups cost 2.5x more)."""
    names = programs.drop_nulls().unique()
    if names.is_empty():
        return pl.lit(0, pl.Int32)
    base = names.str.splitn("(", 2).struct.field("field_0")  # "sshd(pam_unix)" → "sshd"
    codes = base.replace_strict(_PROGRAMS_CODE, default=0, return_dtype=pl.Int32) \
        + _AUTH_PROGRAM * base.is_in(list(_AUTH_PROGRAMS)).cast(pl.Int32)
    return pl.col("_prog").replace_strict(names, codes, default=0, return_dtype=pl.Int32)


# Built once: turning the lookup tables into polars literals cost more per block than using them.
_BASE = pl.col("_start").replace_strict(_STARTS_CODE, default=0, return_dtype=pl.Int32) \
    + (len(_STARTS_CODE) + 1) * (pl.col("_pcode") % (len(_PROGRAMS_CODE) + 1))
"""The routing key of the start literal and the program, before the ``contains`` literals."""
_BITS = pl.sum_horizontal(pl.col("_msg").str.contains(n, literal=True).cast(pl.Int32) * (1 << j) for j, n in enumerate(_NEEDLES)) \
    * ((len(_STARTS_CODE) + 1) * (len(_PROGRAMS_CODE) + 1))
"""The ``contains`` literals' part of the routing key."""
_KIND_OF = pl.col("_key").replace_strict(_KIND, default=None, return_dtype=pl.Int8)
# A small table gathered by the matched pattern's index (null: no match) costs a quarter of a
# per-row lookup.
_ARRAYS = ("_category", "_type")


def _table(key: str) -> pl.Series:
    values = [getattr(p, key.removeprefix("_")) for p in _PATTERNS]
    if key in _ARRAYS:
        return pl.Series([v.split(",") if v else None for v in values], dtype=pl.List(pl.String))
    return pl.Series(values, dtype=pl.String)


_CONSTANTS = {k: pl.lit(_table(k)).gather(pl.col("_match")) for k in _CONSTANT}
_CONSTANTS["_outcome"] = pl.when(pl.col("_error").is_not_null()).then(pl.lit("failure")).otherwise(_CONSTANTS["_outcome"])
_USER = pl.when(pl.col("_user").is_in(["", "-"])).then(None).otherwise(pl.col("_user"))
"""A user name the pattern found ("" and "-" are none); applied to the found rows only, once."""
_ACTS_ON = pl.col("_match").is_in([i for i, p in enumerate(_PATTERNS) if p.action in _ACTS_ON_ITSELF])
_FOUND = {
    # No actor named ("session opened for user X", "by (uid=0)"): X is the user, as in Elastic.
    "_user": pl.coalesce(pl.col("_user"), pl.col("_effective"), pl.when(_ACTS_ON).then(pl.col("_target"))),
    "_effective": pl.when(pl.col("_user").is_not_null()).then(pl.col("_effective")),
    "_ip": ip_or_null(pl.col("_ip")),
}

_IAM_PROGRAMS = {"useradd": ("user", "creation"), "userdel": ("user", "deletion"), "usermod": ("user", "change"),
                 "groupadd": ("group", "creation"), "groupdel": ("group", "deletion"), "groupmod": ("group", "change")}
_GENERIC_USER = (
    r"for user ['\"]?(?P<for>[^'\"\s(]+)['\"]?(?:\(uid=\d+\))?(?: by ['\"]?(?P<by>[^'\"\s(]*)['\"]?(?:\(uid=\d+\))?)?\s*$"
    r"|by user ['\"]?(?P<by2>[^'\"\s]+)['\"]?\s*$"
    r"|[^ ] user ['\"](?P<quoted>[^'\"]+)['\"]"
)
"""Elastic's PAM user patterns, for auth lines no specific pattern took ("failed adding user 'x'")."""


def _with_generic(frame: pl.DataFrame) -> pl.DataFrame:
    """Fill ``_user``/``_effective`` of auth lines no pattern matched from Elastic's generic PAM user
    patterns, and categorise unmatched lines of the user/group tools (iam; failure when the message
    says "fail", as Elastic does). Only those lines are searched: usually a few per block."""
    rest = frame.with_row_index("_row").filter(pl.col("_auth") & pl.col("_action").is_null())
    if rest.is_empty():
        return frame
    g, tool = pl.col("_g"), pl.col("_prog")
    by = g.struct.field("by").replace("", None)
    iam = tool.is_in(list(_IAM_PROGRAMS))
    found = rest.with_columns(_g=pl.col("_msg").str.extract_groups(_GENERIC_USER)).select(
        "_row",
        _user=pl.coalesce(by, g.struct.field("by2"), g.struct.field("for"), g.struct.field("quoted")),
        _effective=pl.when(by.is_not_null()).then(g.struct.field("for")),
        _category=pl.when(iam).then(pl.lit(pl.Series([["iam"]], dtype=pl.List(pl.String))).first()),
        _type=pl.when(iam).then(pl.concat_list(
            tool.replace_strict({k: v[0] for k, v in _IAM_PROGRAMS.items()}, default=None, return_dtype=pl.String),
            tool.replace_strict({k: v[1] for k, v in _IAM_PROGRAMS.items()}, default=None, return_dtype=pl.String))),
        _outcome=pl.when(iam).then(
            pl.when(pl.col("_msg").str.contains("fail", literal=True)).then(pl.lit("failure")).otherwise(pl.lit("success"))),
    )
    filled = frame.with_row_index("_row").join(found, on="_row", how="left", suffix="_generic")
    return filled.select(
        *(c for c in frame.columns if c not in found.columns),
        *(pl.coalesce(c, f"{c}_generic").alias(c) for c in found.columns if c != "_row"),
    ).select(frame.columns)


_IS_AUTH = (pl.col("_pcode") >= _AUTH_PROGRAM) | pl.col("_msg").str.starts_with("pam_") \
    | pl.col("_match").is_in([i for i, p in enumerate(_PATTERNS) if p.auth])


def _hit_regex(regex: str) -> str:
    """``regex`` led by an empty ``hit`` group: "" on a match, null otherwise (other groups can be
    null on a match). Empty, so no copy of the matched text is made for it."""
    return "^(?P<hit>)" + regex.removeprefix("^")


def _extract(kind: int, rows: pl.DataFrame, *, fast: bool) -> pl.DataFrame:
    """``rows`` (``_row``, ``_msg``) routed to pattern ``kind``, as ``_row`` plus the pattern's
    results in a common layout: ``_match`` (``kind`` where its regex matched, else null),
    ``_user _ip _port _target _error``. With ``fast`` and a one-pass form, the full regex runs only
    on the rows that form missed."""
    p = _PATTERNS[kind]
    regexes = [p.fast, p.regex] if fast and p.fast else [p.regex]
    parts = []
    if "(?P<" not in p.regex:
        # nothing to extract (systemd's Started/Stopped): a match test, without building groups
        return rows.lazy().select(
            "_row", _match=pl.when(pl.col("_msg").str.contains(p.regex)).then(pl.lit(kind, pl.Int8)),
            **dict.fromkeys([*_GROUPS, "_error"], pl.lit(None, pl.String)),
        ).pipe(run)
    for regex in regexes:
        m = pl.col("_m")
        names = {out: [m.struct.field(n) for n in _GROUPS[out] if f"(?P<{n}>" in regex] for out in _GROUPS}
        # One query, two steps: the regex runs once, then its groups are read (polars would run it
        # again for every reference to it within one step).
        part = rows.lazy().select("_row", _m=pl.col("_msg").str.extract_groups(_hit_regex(regex))).select(
            "_row",
            _match=pl.when(m.struct.field("hit").is_not_null()).then(pl.lit(kind, pl.Int8)),
            **{out: pl.coalesce(fields) if fields else pl.lit(None, pl.String) for out, fields in names.items()},
            _error=m.struct.field("error") if p.failure_if_error and "(?P<error>" in regex else pl.lit(None, pl.String),
        ).pipe(run)
        hit = part.get_column("_match").is_not_null()
        if regex is regexes[-1] or hit.all():  # usually the one-pass form took every row
            parts.append(part)
            break
        parts.append(part.filter(hit))
        rows = rows.filter(~hit)  # rows and part are in the same order
    return pl.concat(parts) if len(parts) > 1 else parts[0]


_RESULTS = pl.Schema({"_match": pl.Int8(), **dict.fromkeys([*_GROUPS, "_error"], pl.String())})
"""What :func:`_extract` finds for each routed row (besides ``_row``)."""


def _with_removals(frame: pl.DataFrame) -> pl.DataFrame:
    """gpasswd's "user X removed by Y from group G": action group-user-removed (one pattern takes
    both directions; this looks at that pattern's rows only, when a block has any)."""
    gpasswd = pl.col("_action") == "group-user-added"
    if frame.select(gpasswd.any()).item():
        removed = gpasswd & pl.col("_msg").str.contains(" removed by ", literal=True)
        frame = frame.with_columns(_action=pl.when(removed).then(pl.lit("group-user-removed")).otherwise("_action"))
    return frame


_REPEAT_START = "message repeated "
_REPEAT = r"^message repeated (\d+) times?: \[ ?(.*?)\]$"
"""rsyslog's compression of identical messages ("message repeated 5 times: [ Failed password for root
from ...]", 85 lines of the real auth.log standing for 410 failed passwords): the line is
categorised as the message it repeats, and stands for that many events (:func:`expand_repeats`)."""

MAX_REPEATS = 200
"""Most events one repeat line becomes. Real counts are small (at most 5 in the real auth.log:
sshd's tries per connection); the cap bounds what a forged line can make of a few bytes, as the
reader's gzip ratio limit (200) does for compressed input."""


def unwrap_repeats(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series | None]:
    """``frame`` with each ``_msg`` that is rsyslog's ``message repeated N times: [ MSG ]`` replaced
    by MSG, so that every parser reads the message repeated, and the ``_msg`` column as it was to
    put back (None when no line is a repeat: one literal test per block)."""
    message = frame.get_column("_msg")
    repeated = message.str.starts_with(_REPEAT_START)
    if not repeated.any():
        return frame, None
    return frame.with_columns(_msg=pl.when(repeated).then(message.str.extract(_REPEAT, 2)).fill_null(message)), message


def most_repeats(lines: pl.DataFrame) -> np.ndarray | None:
    """:meth:`LineFormat.most_events` of lines that may hold a repeat message: :data:`MAX_REPEATS`
    for each line mentioning one (one literal search; None when no line does)."""
    mentions = lines.get_column("text").str.contains(_REPEAT_START, literal=True)
    if not mentions.any():
        return None
    return np.where(mentions.fill_null(False).to_numpy(), MAX_REPEATS, 1)


def expand_repeats(chunk: ParsedChunk) -> ParsedChunk:
    """``chunk`` with each event whose ``message`` is rsyslog's ``message repeated N times: [ MSG ]``
    made N events (at most :data:`MAX_REPEATS`): the same row, each copy with its own
    ``event.hash`` (:func:`dplogs.ingest.base.repeat_hash`). rsyslog writes MSG once and then
    this line for the N identical messages that followed, so counting the line once lost N - 1."""
    message = chunk.events.get_column("message")
    if not message.str.starts_with(_REPEAT_START).any():
        return chunk
    digits = message.str.extract(_REPEAT, 1)
    counts = pl.select(pl.when(digits.str.len_chars() > 9).then(MAX_REPEATS + 1)
                       .otherwise(digits.cast(pl.Int64, strict=False)).fill_null(1).clip(1)).to_series().to_numpy()
    capped = int((counts > MAX_REPEATS).sum())
    counts = np.minimum(counts, MAX_REPEATS)
    rows = np.repeat(np.arange(len(counts)), counts)
    copy = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    events = chunk.events[rows].with_columns(repeat_hash(pl.col("event.hash"), pl.lit(copy)).alias("event.hash"))
    return replace(chunk, events=events, repeated=chunk.repeated + len(rows) - len(counts),
                   repeats_capped=chunk.repeats_capped + capped)


def with_routing(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``_pcode``, ``_start`` and ``_kind``: the pattern each message is routed to (null:
    none), from ``_prog`` and ``_msg``. The ``contains`` literals are searched for only in the
    messages whose start and program leave the pattern to them (in auth.log, the PAM and sudo lines:
    searching every message cost a third of the routing)."""
    frame = frame.lazy().with_columns(_pcode=_program_codes(frame.get_column("_prog")), _start=pl.col("_msg").str.extract(_ROUTE, 1)) \
        .with_columns(_key=_BASE).pipe(run)
    searched = frame.get_column("_key").is_in(_NEEDS_BITS)
    if searched.any():
        bits = frame.select("_msg").filter(searched).select(_BITS).to_series()  # filtering _msg alone: no copy of the rest
        key = frame.get_column("_key").scatter(searched.arg_true(), frame.get_column("_key").filter(searched) + bits)
        frame = frame.with_columns(key)
    return frame.lazy().with_columns(_kind=_KIND_OF).drop("_key").pipe(run)


def with_auth(frame: pl.DataFrame, *, fast: bool = True) -> pl.DataFrame:
    """Add ``_user _ip _port _target _effective _action _category _type _outcome`` (null where no pattern
    matches) and ``_auth`` (the line belongs to the auth log) from ``_msg`` and ``_prog``.

    Each line is routed by literal gates to the one pattern it can match (the first open gate), and
    only that pattern's regex runs on it (:func:`_extract` on that pattern's rows); the results
    go back to row order with one gather. With ``fast`` (the default; False only for tests), a
    pattern's one-pass form runs first and its full regex only on the rows the fast form missed."""
    frame = with_routing(frame)
    routed = frame.select("_msg", "_kind", _row=pl.int_range(pl.len(), dtype=pl.UInt32)).filter(pl.col("_kind").is_not_null())
    by_kind = routed.partition_by("_kind", as_dict=True, include_key=False)
    found = pl.concat([_extract(kind, rows, fast=fast) for (kind,), rows in sorted(by_kind.items())]) \
        if by_kind else pl.DataFrame(schema={"_row": pl.UInt32, **_RESULTS})
    # Row r's results are found[where[r]]; rows no pattern took have a null index (null results).
    where = np.full(frame.height, found.height, dtype=np.uint32)
    where[found.get_column("_row").to_numpy()] = np.arange(found.height, dtype=np.uint32)
    index = pl.select(pl.when(pl.lit(where) < found.height).then(pl.lit(where))).to_series()
    back = found.drop("_row").with_columns(_user=_USER).select(pl.all().gather(index))
    frame = frame.with_columns(back.get_columns()).lazy().with_columns(**_FOUND, **_CONSTANTS).with_columns(_auth=_IS_AUTH).drop(
        "_pcode", "_start", "_kind", "_match", "_error").pipe(run)
    return _with_removals(_with_generic(frame))
