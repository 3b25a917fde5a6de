"""Categorisation of auth.log messages (sshd, sudo, su, pam_unix, useradd & co.), after Elastic
Filebeat's ``system/auth`` ingest pipeline: its grok patterns define which values are extracted
(``user.name``, ``source.ip``, ``source.port``) and its event fields the names used here
(``event.action`` ``ssh_login``, ``event.category`` authentication / iam / session / process).

Every pattern is an anchored regex applied to the whole message column at once; the first one
that matches a line wins (``pl.coalesce`` in pattern order).

>>> df = pl.DataFrame({"_prog": ["sshd", "sudo"], "_msg": [
...     "Failed password for invalid user admin from 10.0.0.1 port 22 ssh2",
...     "  bob : TTY=pts/0 ; PWD=/home/bob ; USER=root ; COMMAND=/bin/ls"]})
>>> with_auth(df).select("_user", "_ip", "_action", "_outcome").rows()
[('admin', '10.0.0.1', 'ssh_login', 'failure'), ('bob', None, 'sudo', 'success')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

_IP = r"(?P<ip>[0-9A-Fa-f:.]+(?:%\w+)?)"


@dataclass(frozen=True)
class _Pattern:
    """One message pattern; the named groups user/ip/port/target/error are extracted."""

    regex: str
    action: str
    category: str
    type: str
    outcome: str | None
    programs: tuple[str, ...] = ()
    """Process names the pattern applies to (empty: any)."""
    failure_if_error: bool = False
    starts: tuple[str, ...] = ()
    contains: str | None = None
    """Cheap literal gate: the regex runs only on messages starting with one of ``starts`` (or
    containing ``contains``), so each line pays for at most one capturing regex."""
    fast: str | None = None
    """Optional one-pass form of ``regex`` for the common shape of the line (user names without
    spaces…). Rust's regex extracts groups from an anchored one-pass regex with its one-pass DFA,
    2-3x faster than ``regex``'s backtracking. It must match only lines ``regex`` matches, with the
    same groups; lines it misses run ``regex``. ``tests/ingest/test_auth_fast.py`` checks this on
    hostile generated messages."""


_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(r"^(?P<ev>Accepted) (?P<method>\S+) for (?:invalid user )?(?P<user>.*?) from " + _IP + r" port (?P<port>\d+)",
             "ssh_login", "authentication", "info", "success", ("sshd",), starts=("Accepted ",),
             fast=r"^Accepted \S+ for (?P<user>\S+) from " + _IP + r" port (?P<port>\d+)"),
    _Pattern(r"^(?P<ev>Failed|Postponed) (?P<method>\S+) for (?:invalid user )?(?P<user>.*?) from " + _IP + r" port (?P<port>\d+)",
             "ssh_login", "authentication", "info", "failure", ("sshd",), starts=("Failed ", "Postponed "),
             fast=r"^(?:Failed|Postponed) \S+ for (?P<user>\S+) from " + _IP + r" port (?P<port>\d+)"),
    _Pattern(r"^(?:Invalid|Illegal) user (?P<user>.*?) from " + _IP + r"(?: port (?P<port>\d+))?\s*$",
             "ssh_login", "authentication", "info", "failure", ("sshd",), starts=("Invalid user ", "Illegal user "),
             fast=r"^(?:Invalid|Illegal) user (?P<user>\S+) from " + _IP + r"(?: port (?P<port>\d+))?$"),
    _Pattern(r"^Did not receive identification string from " + _IP + r"(?: port (?P<port>\d+))?",
             "ssh_dropped_connection", "network", "connection", "failure", ("sshd",), starts=("Did not receive ",)),
    _Pattern(r"^\s*(?P<user>\S+) : (?:(?P<error>[^;=]*?) ; )?TTY=.*?; PWD=.*?; USER=(?P<target>\S+) ; (?:\S+=\S* ; )*COMMAND=",
             "sudo", "process", "start", "success", ("sudo",), failure_if_error=True, contains="COMMAND=",
             fast=r"^\s*(?P<user>\S+) : TTY=[^;]*; PWD=[^;]*; USER=(?P<target>\S+) ; (?:[^C\s]\S*=\S* ; )*COMMAND="),
    _Pattern(r"^(?:pam_unix\([\w-]+:auth\): )?authentication failure;.*?(?:rhost=(?P<rhost>\S*))?\s*(?:user=(?P<user>\S+))?\s*$",
             "authentication_failure", "authentication", "info", "failure",
             starts=("pam_unix(", "authentication failure;"), contains="authentication failure;"),
    _Pattern(r"^pam_unix\([\w-]+:session\): session opened for user (?P<user>[^\s(]+)(?:\(uid=\d+\))?(?: by (?P<by>\S*?)(?:\(uid=\d+\))?)?\s*$",
             "session_opened", "session", "start", "success", starts=("pam_unix(",), contains="): session opened for user ",
             fast=r"^pam_unix\([\w-]+:session\): session opened for user (?P<user>[^\s(]+)(?:\(uid=\d+\))?(?: by [^\s(]*(?:\(uid=\d+\))?)?$"),
    _Pattern(r"^pam_unix\([\w-]+:session\): session closed for user (?P<user>\S+)",
             "session_closed", "session", "end", "success", starts=("pam_unix(",), contains="): session closed for user "),
    _Pattern(r"^(?:Successful su|\+ \S+) (?:for (?P<target>\S+) by (?P<user>\S+)|(?P<user2>[^:\s]+):(?P<target2>\S+))",
             "su", "authentication", "start", "success", ("su",), starts=("Successful su", "+ ")),
    _Pattern(r"^(?:FAILED su|- \S+) (?:for (?P<target>\S+) by (?P<user>\S+)|(?P<user2>[^:\s]+):(?P<target2>\S+))",
             "su", "authentication", "start", "failure", ("su",), starts=("FAILED su", "- ")),
    _Pattern(r"^new user: name=(?P<user>[^,]+), UID=", "user-created", "iam", "creation", "success", starts=("new user: ",)),
    _Pattern(r"^new group: name=(?P<group>[^,]+), GID=", "group-created", "iam", "creation", "success", starts=("new group: ",)),
    _Pattern(r"^delete user '(?P<user>[^']+)'", "user-deleted", "iam", "deletion", "success", starts=("delete user '",)),
    _Pattern(r"^(?:group '(?P<group>[^']+)' removed|removed group '(?P<group2>[^']+)')", "group-deleted", "iam",
             "deletion", "success", starts=("group '", "removed group '")),
    _Pattern(r"^add '(?P<user>[^']+)' to (?:shadow )?group '(?P<group>[^']+)'", "user-added-to-group", "iam", "change",
             "success", starts=("add '",)),
    _Pattern(r"^change user '(?P<user>[^']+)' ", "user-changed", "iam", "change", "success", starts=("change user '",)),
    _Pattern(r"^(?:pam_unix\([\w-]+:chauthtok\): )?password changed for (?P<user>\S+)", "password-changed", "iam",
             "change", "success", contains="password changed for "),
)

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
           "_target": ("target", "target2", "group", "group2")}
"""Output column → the named groups that fill it, first non-null wins."""

_STARTS = tuple(dict.fromkeys(s for p in _PATTERNS for s in p.starts))
# One anchored alternation finds the start literal of every message in one pass (a starts_with per
# literal and pattern cost 3x more). Equal to "starts with any of" only while no literal is a
# prefix of another: then at most one literal can match at position 0.
assert not any(a != b and b.startswith(a) for a in _STARTS for b in _STARTS), "start literals must be prefix-free"
_ROUTE = "^(" + "|".join(re.escape(s) for s in _STARTS) + ")"


def _gate(p: _Pattern) -> pl.Expr:
    """``p``'s literal gate over ``_start`` (the start literal), ``_msg`` and ``_p`` (program)."""
    cond = pl.col("_start").is_in(list(p.starts)) if p.starts else pl.lit(True)
    if p.contains:
        cond = cond & pl.col("_msg").str.contains(p.contains, literal=True)
    return cond & pl.col("_p").is_in(list(p.programs)) if p.programs else cond


def _hit_regex(regex: str) -> str:
    """``regex`` with a ``hit`` group around the whole match (groups can be null on a match)."""
    return "^(?P<hit>" + regex.removeprefix("^") + ")"


def _groups(m: pl.Expr, regex: str, out: str) -> list[pl.Expr]:
    return [m.struct.field(n) for n in _GROUPS[out] if f"(?P<{n}>" in regex]


def with_auth(frame: pl.DataFrame, *, fast: bool = True) -> pl.DataFrame:
    """Add ``_user _ip _port _target _action _category _type _outcome`` (null where no pattern
    matches) and ``_auth`` (the line belongs to the auth log) from ``_msg`` and ``_prog``.

    Each line is routed by literal gates to the one pattern it can match (the first open gate), and
    only that pattern's regex runs on it: the other rows are masked to null, which the regex skips.
    With ``fast`` (the default; False only for tests), a pattern's one-pass form runs first and its
    full regex only on the rows the fast form missed."""
    frame = frame.with_columns(_p=pl.col("_prog").str.replace(r"\(.*$", ""), _start=pl.col("_msg").str.extract(_ROUTE, 1))
    frame = frame.with_columns(_kind=pl.coalesce([pl.when(_gate(p)).then(pl.lit(i, pl.Int8)) for i, p in enumerate(_PATTERNS)]))
    kind, msg = pl.col("_kind"), pl.col("_msg")
    matches: list[str] = []
    hits: list[pl.Expr] = []
    errors: list[pl.Expr] = []
    values: dict[str, list[pl.Expr]] = {k: [] for k in _GROUPS}
    for i in frame.get_column("_kind").drop_nulls().unique().sort().to_list():
        p = _PATTERNS[i]
        regexes = [p.fast, p.regex] if fast and p.fast else [p.regex]
        for j, regex in enumerate(regexes):
            # Materialised once: inside when/then polars would run the regex again per reference.
            name = f"_m{i}_{j}"
            rows = kind == i
            if j:  # the full regex runs only where the fast form did not match
                rows = rows & pl.col(f"_m{i}_0").struct.field("hit").is_null()
                if not frame.select(rows.any()).item():
                    break
            frame = frame.with_columns(pl.when(rows).then(msg).str.extract_groups(_hit_regex(regex)).alias(name))
            matches.append(name)
            m = pl.col(name)
            hits.append(m.struct.field("hit").is_not_null())
            if p.failure_if_error and "(?P<error>" in regex:
                errors.append(m.struct.field("error"))
            for out in _GROUPS:
                values[out].extend(_groups(m, regex, out))
    # The pattern that matched each row (null: none did); the constants follow from it.
    frame = frame.with_columns(_hit=pl.when(pl.any_horizontal(hits)).then(kind) if hits else pl.lit(None, pl.Int8))
    hit = pl.col("_hit")
    constant = {k: hit.replace_strict({i: getattr(p, k.removeprefix("_")) for i, p in enumerate(_PATTERNS)}, return_dtype=pl.String)
                for k in _CONSTANT}
    if errors:
        constant["_outcome"] = pl.when(pl.coalesce(errors).is_not_null()).then(pl.lit("failure")).otherwise(constant["_outcome"])
    found = {k: pl.coalesce(v) if v else pl.lit(None, pl.String) for k, v in values.items()}
    out = frame.with_columns(
        _user=pl.when(found["_user"].is_in(["", "-"])).then(None).otherwise(found["_user"]),
        _ip=ip_or_null(found["_ip"]),
        _port=found["_port"],
        _target=found["_target"],
        **constant,
    )
    return out.with_columns(
        _auth=pl.col("_p").is_in(list(_AUTH_PROGRAMS)) | msg.str.starts_with("pam_") | pl.col("_action").is_not_null(),
    ).drop("_p", "_start", "_kind", "_hit", *matches)
