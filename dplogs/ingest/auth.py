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
    starts: tuple[str, ...] = ()
    contains: str | None = None
    """Cheap literal gate: the regex runs only on messages starting with one of ``starts`` (or
    containing ``contains``), so each line pays for at most one capturing regex."""

    def gate(self, msg: pl.Expr, prog: pl.Expr) -> pl.Expr:
        cond = pl.lit(True)
        if self.starts:
            cond = pl.any_horizontal(*(msg.str.starts_with(p) for p in self.starts))
        if self.contains:
            cond = cond & msg.str.contains(self.contains, literal=True)
        return cond & prog.is_in(list(self.programs)) if self.programs else cond


_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(r"^(?P<ev>Accepted) (?P<method>\S+) for (?:invalid user )?(?P<user>.*?) from " + _IP + r" port (?P<port>\d+)",
             "ssh_login", "authentication", "info", "success", ("sshd",), starts=("Accepted ",)),
    _Pattern(r"^(?P<ev>Failed|Postponed) (?P<method>\S+) for (?:invalid user )?(?P<user>.*?) from " + _IP + r" port (?P<port>\d+)",
             "ssh_login", "authentication", "info", "failure", ("sshd",), starts=("Failed ", "Postponed ")),
    _Pattern(r"^(?:Invalid|Illegal) user (?P<user>.*?) from " + _IP + r"(?: port (?P<port>\d+))?\s*$",
             "ssh_login", "authentication", "info", "failure", ("sshd",), starts=("Invalid user ", "Illegal user ")),
    _Pattern(r"^Did not receive identification string from " + _IP + r"(?: port (?P<port>\d+))?",
             "ssh_dropped_connection", "network", "connection", "failure", ("sshd",), starts=("Did not receive ",)),
    _Pattern(r"^\s*(?P<user>\S+) : (?:(?P<error>[^;=]*?) ; )?TTY=.*?; PWD=.*?; USER=(?P<target>\S+) ; (?:\S+=\S* ; )*COMMAND=",
             "sudo", "process", "start", "success", ("sudo",), failure_if_error=True, contains="COMMAND="),
    _Pattern(r"^(?:pam_unix\([\w-]+:auth\): )?authentication failure;.*?(?:rhost=(?P<rhost>\S*))?\s*(?:user=(?P<user>\S+))?\s*$",
             "authentication_failure", "authentication", "info", "failure",
             starts=("pam_unix(", "authentication failure;"), contains="authentication failure;"),
    _Pattern(r"^pam_unix\([\w-]+:session\): session opened for user (?P<user>[^\s(]+)(?:\(uid=\d+\))?(?: by (?P<by>\S*?)(?:\(uid=\d+\))?)?\s*$",
             "session_opened", "session", "start", "success", starts=("pam_unix(",), contains="): session opened for user "),
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


def ip_or_null(expr: pl.Expr) -> pl.Expr:
    """``expr`` when it is an IPv4/IPv6 literal, else null (host names are not ``source.ip``)."""
    return pl.when(expr.str.contains(IPV4) | expr.str.contains(IPV6)).then(expr)


def _field(m: pl.Expr, regex: str, *names: str) -> pl.Expr:
    present = [m.struct.field(n) for n in names if f"(?P<{n}>" in regex]
    return pl.coalesce(present) if present else pl.lit(None, pl.String)


_OUT = {"_user": pl.String(), "_ip": pl.String(), "_port": pl.String(), "_target": pl.String(),
        "_action": pl.String(), "_category": pl.String(), "_type": pl.String(), "_outcome": pl.String()}


_CONSTANT = ("_action", "_category", "_type", "_outcome")


def _apply(p: _Pattern, frame: pl.DataFrame) -> pl.DataFrame:
    regex = "^(?P<hit>" + p.regex.removeprefix("^") + ")"
    # Materialised once: inside when/then polars would run the regex again per reference.
    frame = frame.select("_row", _m=pl.col("_msg").str.extract_groups(regex))
    m = pl.col("_m")
    hit = m.struct.field("hit").is_not_null()
    outcome = pl.lit(p.outcome)
    if p.failure_if_error:
        outcome = pl.when(m.struct.field("error").is_not_null()).then(pl.lit("failure")).otherwise(outcome)
    values = {
        "_user": _field(m, regex, "user", "user2"),
        "_ip": _field(m, regex, "ip", "rhost"),
        "_port": _field(m, regex, "port"),
        "_target": _field(m, regex, "target", "target2", "group", "group2"),
        "_action": pl.lit(p.action),
        "_category": pl.lit(p.category),
        "_type": pl.lit(p.type),
        "_outcome": outcome,
    }
    # Captured groups are null already when the regex fails; only the constants need the guard.
    return frame.select(
        "_row", **{k: (pl.when(hit).then(v) if k in _CONSTANT else v).cast(_OUT[k]) for k, v in values.items()}
    )


def with_auth(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``_user _ip _port _target _action _category _type _outcome`` (null where no pattern
    matches) and ``_auth`` (the line belongs to the auth log) from ``_msg`` and ``_prog``.

    Each line is routed by literal gates to the one pattern it can match, and only that pattern's
    regex runs on it (groups of rows per pattern, never a loop over rows); row order is kept."""
    frame = frame.with_columns(_p=pl.col("_prog").str.replace(r"\(.*$", ""))  # computed once, used twice
    prog = pl.col("_p")
    # All gates as flat boolean columns, then the first true one (a nested when-chain is ~2x slower).
    gates = frame.select("_msg", "_p").with_columns(
        **{f"_g{i}": p.gate(pl.col("_msg"), pl.col("_p")) for i, p in enumerate(_PATTERNS)}
    )
    kind = pl.coalesce([pl.when(pl.col(f"_g{i}")).then(pl.lit(i, pl.Int32)) for i in range(len(_PATTERNS))])
    # Route on a narrow frame and sort only the narrow result back into row order.
    narrow = gates.select("_msg", _kind=kind, _row=pl.int_range(pl.len(), dtype=pl.UInt32))
    parts = [narrow.filter(pl.col("_kind").is_null()).select("_row", *(pl.lit(None, dtype).alias(k) for k, dtype in _OUT.items()))]
    for i in narrow.get_column("_kind").drop_nulls().unique().sort().to_list():
        parts.append(_apply(_PATTERNS[i], narrow.filter(pl.col("_kind") == i)))
    found = pl.concat(parts).sort("_row").drop("_row")
    out = frame.with_columns(found.get_columns())
    return out.with_columns(
        _user=pl.when(pl.col("_user").is_in(["", "-"])).then(None).otherwise(pl.col("_user")),
        _ip=ip_or_null(pl.col("_ip")),
        _auth=prog.is_in(list(_AUTH_PROGRAMS)) | pl.col("_msg").str.starts_with("pam_") | pl.col("_action").is_not_null(),
    ).drop("_p")
