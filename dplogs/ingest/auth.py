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


_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(r"^(?P<ev>Accepted) (?P<method>\S+) for (?:invalid user )?(?P<user>.*?) from " + _IP + r" port (?P<port>\d+)",
             "ssh_login", "authentication", "info", "success", ("sshd",)),
    _Pattern(r"^(?P<ev>Failed|Postponed) (?P<method>\S+) for (?:invalid user )?(?P<user>.*?) from " + _IP + r" port (?P<port>\d+)",
             "ssh_login", "authentication", "info", "failure", ("sshd",)),
    _Pattern(r"^(?:Invalid|Illegal) user (?P<user>.*?) from " + _IP + r"(?: port (?P<port>\d+))?\s*$",
             "ssh_login", "authentication", "info", "failure", ("sshd",)),
    _Pattern(r"^Did not receive identification string from " + _IP + r"(?: port (?P<port>\d+))?",
             "ssh_dropped_connection", "network", "connection", "failure", ("sshd",)),
    _Pattern(r"^\s*(?P<user>\S+) : (?:(?P<error>[^;=]*?) ; )?TTY=.*?; PWD=.*?; USER=(?P<target>\S+) ; (?:\S+=\S* ; )*COMMAND=",
             "sudo", "process", "start", "success", ("sudo",), failure_if_error=True),
    _Pattern(r"^(?:pam_unix\([\w-]+:auth\): )?authentication failure;.*?(?:rhost=(?P<rhost>\S*))?\s*(?:user=(?P<user>\S+))?\s*$",
             "authentication_failure", "authentication", "info", "failure"),
    _Pattern(r"^pam_unix\([\w-]+:session\): session opened for user (?P<user>[^\s(]+)(?:\(uid=\d+\))?(?: by (?P<by>\S*?)(?:\(uid=\d+\))?)?\s*$",
             "session_opened", "session", "start", "success"),
    _Pattern(r"^pam_unix\([\w-]+:session\): session closed for user (?P<user>\S+)",
             "session_closed", "session", "end", "success"),
    _Pattern(r"^(?:Successful su|\+ \S+) (?:for (?P<target>\S+) by (?P<user>\S+)|(?P<user2>[^:\s]+):(?P<target2>\S+))",
             "su", "authentication", "start", "success", ("su",)),
    _Pattern(r"^(?:FAILED su|- \S+) (?:for (?P<target>\S+) by (?P<user>\S+)|(?P<user2>[^:\s]+):(?P<target2>\S+))",
             "su", "authentication", "start", "failure", ("su",)),
    _Pattern(r"^new user: name=(?P<user>[^,]+), UID=", "user-created", "iam", "creation", "success"),
    _Pattern(r"^new group: name=(?P<group>[^,]+), GID=", "group-created", "iam", "creation", "success"),
    _Pattern(r"^delete user '(?P<user>[^']+)'", "user-deleted", "iam", "deletion", "success"),
    _Pattern(r"^(?:group '(?P<group>[^']+)' removed|removed group '(?P<group2>[^']+)')", "group-deleted", "iam", "deletion", "success"),
    _Pattern(r"^add '(?P<user>[^']+)' to (?:shadow )?group '(?P<group>[^']+)'", "user-added-to-group", "iam", "change", "success"),
    _Pattern(r"^change user '(?P<user>[^']+)' ", "user-changed", "iam", "change", "success"),
    _Pattern(r"^(?:pam_unix\([\w-]+:chauthtok\): )?password changed for (?P<user>\S+)", "password-changed", "iam", "change", "success"),
)

_AUTH_PROGRAMS = (
    "sshd", "sudo", "su", "useradd", "usermod", "userdel", "groupadd", "groupmod", "groupdel",
    "passwd", "chpasswd", "chage", "gpasswd", "login", "systemd-logind", "CRON", "cron", "polkitd",
    "pkexec", "gdm-password", "pam",
)


IPV4 = r"^(?:\d{1,3}\.){3}\d{1,3}$"
IPV6 = r"^[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?$"


def ip_or_null(expr: pl.Expr) -> pl.Expr:
    """``expr`` when it is an IPv4/IPv6 literal, else null (host names are not ``source.ip``)."""
    return pl.when(expr.str.contains(IPV4) | expr.str.contains(IPV6)).then(expr)


def _field(m: pl.Expr, regex: str, *names: str) -> pl.Expr:
    present = [m.struct.field(n) for n in names if f"(?P<{n}>" in regex]
    return pl.coalesce(present) if present else pl.lit(None, pl.String)


def with_auth(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``_user _ip _port _target _action _category _type _outcome`` (null where no pattern
    matches) and ``_auth`` (the line belongs to the auth log) from ``_msg`` and ``_prog``."""
    prog = pl.col("_prog").str.replace(r"\(.*$", "")
    hits: list[pl.Expr] = []
    values: dict[str, list[pl.Expr]] = {k: [] for k in ("user", "ip", "port", "target", "action", "category", "type", "outcome")}
    for p in _PATTERNS:
        regex = "^(?P<hit>" + p.regex.removeprefix("^") + ")"
        m = pl.col("_msg").str.extract_groups(regex)
        hit = m.struct.field("hit").is_not_null()
        hits.append(hit & prog.is_in(list(p.programs)) if p.programs else hit)
        outcome = pl.lit(p.outcome)
        if p.failure_if_error:
            outcome = pl.when(m.struct.field("error").is_not_null()).then(pl.lit("failure")).otherwise(outcome)
        values["user"].append(_field(m, regex, "user", "user2"))
        values["ip"].append(_field(m, regex, "ip", "rhost"))
        values["port"].append(_field(m, regex, "port"))
        values["target"].append(_field(m, regex, "target", "target2", "group", "group2"))
        values["action"].append(pl.lit(p.action))
        values["category"].append(pl.lit(p.category))
        values["type"].append(pl.lit(p.type))
        values["outcome"].append(outcome)
    first = pl.coalesce([pl.when(h).then(pl.lit(i)) for i, h in enumerate(hits)])
    out = frame.with_columns(_first=first)
    out = out.with_columns(
        **{
            f"_{key}": pl.coalesce([pl.when(pl.col("_first") == i).then(e) for i, e in enumerate(exprs)])
            for key, exprs in values.items()
        }
    )
    return out.with_columns(
        _user=pl.when(pl.col("_user").is_in(["", "-"])).then(None).otherwise(pl.col("_user")),
        _ip=ip_or_null(pl.col("_ip")),
        _auth=prog.is_in(list(_AUTH_PROGRAMS)) | pl.col("_msg").str.starts_with("pam_") | pl.col("_first").is_not_null(),
    ).drop("_first")
