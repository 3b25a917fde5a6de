"""Linux audit logs (``/var/log/audit/audit.log``): one event per record line, as Elastic
Filebeat's ``auditd`` module reads them (``tests/ingest/test_oracles_auditd.py`` compares both).

A record is ``[node=HOST ]type=TYPE msg=audit(SECONDS.MILLIS:SERIAL): key=value …``; userspace
records (logins, sudo, account changes) add an inner ``msg='key=value …'``, and enriched logs
(``log_format=ENRICHED``) append ``\\x1d``-separated translations such as ``AUID="alice"``.
Records of one kernel event share ``msg=audit(T:SERIAL)``; each stays its own event.

ECS mapping: ``event.action`` is the record type lower-cased (``user_login``), ``event.code`` the
type as logged; ``event.outcome`` from ``res=`` (``success``/``yes``/``1``; ``failed``/``no``/``0``)
or the syscall's ``success=``; ``event.category``/``event.type`` per record type as Elastic's
integration maps them (:data:`CATEGORIES`). ``user.name`` is an **account name**: ``acct=`` (the
account a login, PAM or account-management record is about), else the enriched name of the audit
uid (``AUID``, the login identity), else of ``UID``; qualified names (``bob@CORP``) are split as
every reader splits them (:mod:`dplogs.ingest.accounts`; Unix case kept). A numeric ``uid`` alone is ``user.id`` and
not a name (uid 1000 on two hosts are two people; a name ``1000`` would merge with it), so such
rows have no ``user.name`` and fall to the next field of the store's unit chain or the shared unit
(docs/privacy.md). ``source.ip`` from ``addr=`` (else ``src=``), IP literals only; ``host.name``
from ``node=`` (``hostname=`` names the remote peer, like ``addr``); ``process.pid``/``name``/
``executable`` from ``pid``/``comm``/``exe``; ``process.command_line`` from EXECVE's ``a0 a1 …``,
``proctitle=`` or USER_CMD's ``cmd=``.

Untrusted strings that are not printable ASCII without spaces or quotes are logged as hex
(``exe=2F746D70…``): those are decoded, and may hold control characters (escape them wherever
shown, as all log text). ``?``, ``(null)``, ``(none)`` and the unset id ``4294967295`` are null.

Keys are found by one search each, only where a key can start: after a space, the ``\\x1d`` of
the enriched part, or the inner ``msg='``. Quoted values never hold a space (auditd hex-encodes
those), so no quoted value can fake a key.

>>> from dplogs.ingest.base import IngestOptions
>>> line = ("type=USER_LOGIN msg=audit(1481077212.430:1205): pid=2036 uid=0 auid=4294967295 ses=3 "
...         "msg='op=login acct=\\"bob\\" exe=\\"/usr/sbin/sshd\\" hostname=10.0.2.2 addr=10.0.2.2 terminal=ssh res=failed'")
>>> lines = pl.DataFrame({"line": [1], "offset": [0], "text": [line]})
>>> row = Auditd().parse_lines(lines, "audit.log", IngestOptions()).events.row(0, named=True)
>>> row["event.action"], row["event.category"], row["event.outcome"], row["user.name"], row["source.ip"]
('user_login', ['authentication'], 'failure', 'bob', '10.0.2.2')
>>> str(row["@timestamp"]), row["process.name"], row["user.id"]
('2016-12-07 02:20:12.430000+00:00', 'sshd', '0')
"""

from __future__ import annotations

import re

import polars as pl

from dplogs.ingest._text import finish, run
from dplogs.ingest.accounts import account_columns, is_qualified
from dplogs.ingest.auth import ip_or_null
from dplogs.ingest.base import IngestOptions, LineFormat, ParsedChunk, register, sniff_lines
from dplogs.schema import FIELDS

_START = r"^(?:node=(?P<node>\S+) )?type=(?P<type>\S+) msg=audit\("
_HEADER = _START + r"(?P<sec>\d{1,12})\.(?P<ms>\d{3}):(?P<serial>\d{1,20})\):(?P<body>.*)$"
_TYPE = r"^[A-Za-z0-9_\[\]]{1,64}$"
"""Record type names (``USER_LOGIN``, ``UNKNOWN[1334]``, the numeric ``1400`` of kernel lines);
anything else (a megabyte of text) is not an audit record."""
_SNIFF = re.compile(rb"^(?:node=\S+ )?type=[A-Za-z0-9_\[\]]{1,64} msg=audit\(")

_VALUE = r'"[^"\s]*"|[^\s"\'\x1d]*'
"""A value as logged: quoted (never with a space: auditd hex-encodes those, so a quote left open
does not swallow the keys after it), else up to a space, quote or ``\x1d``."""
_HEX_KEYS = frozenset({"exe", "comm", "acct", "cmd", "proctitle"})
"""The keys read whose value auditd hex-encodes when it is not printable ASCII without spaces and
quotes (EXECVE's ``aN`` too, decoded by :func:`_arguments`)."""
_KEYS = ("pid", "uid", "res", "success", "acct", "exe", "comm", "addr", "src", "cmd", "proctitle", "syscall",
         "arch", "AUID", "UID", "SYSCALL")
_NULLS = ("", "?", "(null)", "(none)")
_UNSET_ID = ("4294967295", "-1")
"""A numeric uid/auid that is not set (``(uid_t)-1``); enriched logs write its name ``unset``."""
_NO_ACCOUNT = ("(unknown)", "(invalid user)")
"""What sshd writes into ``acct=`` when the name tried is unknown or not an account: no name."""
_OUTCOME = {"success": "success", "yes": "success", "1": "success",
            "failed": "failure", "failure": "failure", "fail": "failure", "no": "failure", "0": "failure"}

CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # record type -> (event.category, event.type), as Elastic's auditd integration (go-libaudit's
    # table) maps them; its ``stop`` type is ECS ``end`` here.
    "USER_AUTH": (("authentication",), ("info",)),
    "USER_ACCT": (("authentication",), ("info",)),
    "USER_LOGIN": (("authentication",), ("start",)),
    "USER_LOGOUT": (("authentication",), ("end",)),
    "USER_ERR": (("authentication",), ("info",)),
    "LOGIN": (("authentication",), ("start",)),
    "CRED_ACQ": (("authentication",), ("info",)),
    "CRED_DISP": (("authentication",), ("info",)),
    "CRED_REFR": (("authentication",), ("info",)),
    "GRP_AUTH": (("authentication",), ("info",)),
    "USER_START": (("session",), ("start",)),
    "USER_END": (("session",), ("end",)),
    "USER_CMD": (("process",), ("start",)),
    "EXECVE": (("process",), ("start",)),
    "SYSCALL": (("process",), ("info",)),
    "ADD_USER": (("iam",), ("user", "creation")),
    "DEL_USER": (("iam",), ("user", "deletion")),
    "USER_MGMT": (("iam",), ("user", "change")),
    "USER_CHAUTHTOK": (("iam",), ("user", "change")),
    "ACCT_LOCK": (("iam",), ("user", "info")),
    "ACCT_UNLOCK": (("iam",), ("user", "info")),
    "ROLE_ASSIGN": (("iam",), ("user", "change")),
    "ROLE_REMOVE": (("iam",), ("user", "change")),
    "ADD_GROUP": (("iam",), ("group", "creation")),
    "DEL_GROUP": (("iam",), ("group", "deletion")),
    "GRP_MGMT": (("iam",), ("group", "change")),
    "GRP_CHAUTHTOK": (("iam",), ("group", "change")),
    "CONFIG_CHANGE": (("process", "configuration"), ("change",)),
    "DAEMON_CONFIG": (("process", "configuration"), ("change",)),
    "FEATURE_CHANGE": (("configuration",), ("change",)),
    "MAC_CONFIG_CHANGE": (("configuration",), ("change",)),
    "MAC_POLICY_LOAD": (("configuration",), ("access",)),
    "MAC_STATUS": (("configuration",), ("change",)),
    "NETFILTER_CFG": (("configuration",), ("change",)),
    "DAEMON_START": (("process",), ("start",)),
    "DAEMON_END": (("process",), ("end",)),
    "DAEMON_ABORT": (("process",), ("end",)),
    "SERVICE_START": (("process",), ("start",)),
    "SERVICE_STOP": (("process",), ("end",)),
    "ANOM_ABEND": (("process",), ("end",)),
    "ANOM_EXEC": (("process",), ("start",)),
    "CRYPTO_KEY_USER": (("process",), ("info",)),
    "CRYPTO_SESSION": (("process",), ("info",)),
    "KERN_MODULE": (("driver",), ("start",)),
    "SOFTWARE_UPDATE": (("package",), ("info",)),
    "SYSTEM_BOOT": (("host",), ("start",)),
    "SYSTEM_SHUTDOWN": (("host",), ("end",)),
    "SYSTEM_RUNLEVEL": (("host",), ("change",)),
}
SYSCALLS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # SYSCALL records naming their call (enriched ``SYSCALL=unlink``; x86-64 execve numbers below)
    **dict.fromkeys(("execve", "execveat"), (("process",), ("start",))),
    **dict.fromkeys(("unlink", "unlinkat", "rmdir"), (("file",), ("deletion",))),
    **dict.fromkeys(("creat", "mkdir", "mkdirat", "mknod", "mknodat", "link", "linkat", "symlink", "symlinkat"),
                    (("file",), ("creation",))),
    **dict.fromkeys(("rename", "renameat", "renameat2", "chmod", "fchmod", "fchmodat", "chown", "fchown", "fchownat",
                     "lchown", "truncate", "ftruncate", "setxattr", "lsetxattr", "fsetxattr"), (("file",), ("change",))),
    **dict.fromkeys(("connect",), (("network",), ("connection", "start"))),
    **dict.fromkeys(("accept", "accept4"), (("network",), ("connection", "start"))),
    **dict.fromkeys(("kill", "tkill", "tgkill"), (("process",), ("end",))),
    **dict.fromkeys(("init_module", "finit_module"), (("driver",), ("start",))),
    "delete_module": (("driver",), ("end",)),
}
_X86_64 = {"59": "execve", "322": "execveat"}
"""x86-64 (``arch=c000003e``) numbers of the calls whose category matters most when not enriched."""
for _cats, _types in (*CATEGORIES.values(), *SYSCALLS.values()):
    assert set(_cats) <= set(FIELDS["event.category"].allowed or ()), "event.category is a public domain"
    assert set(_types) <= set(FIELDS["event.type"].allowed or ()), "event.type is a public domain"


def _raw(body: pl.Expr, key: str) -> pl.Expr:
    """The value of ``key`` as logged (quoted, hex or bare), the first one where a key can start."""
    return body.str.extract(rf"(?:^|[\s\x1d]|\smsg='){key}=({_VALUE})", 1)


_HEX = r"^(?:[0-9A-F]{2})+$"
_ASCII_HEX = r"^(?:[0-7][0-9A-F])+$"


def _utf8_hex(values: pl.Series) -> pl.Series:
    """Hex of non-ASCII bytes as text, invalid UTF-8 replaced (polars has no lossy decode).
    Python per value, but only for such values (``values`` is null elsewhere): UTF-8 names and
    paths are rare."""
    rows = values.is_not_null().arg_true()
    if rows.is_empty():
        return values
    texts = [bytes.fromhex(v).decode("utf-8", "replace") for v in values.gather(rows).to_list()]
    return values.clone().scatter(rows, texts)


def decoded(raw: pl.Expr, hexable: bool) -> pl.Expr:
    """A logged value as text: quotes removed, hex decoded (for keys auditd encodes; it writes
    upper-case hex), the placeholders for "none" null."""
    value = pl.when(raw.str.starts_with('"')).then(raw.str.strip_prefix('"').str.strip_suffix('"'))
    if hexable:
        ascii_hex = raw.str.contains(_ASCII_HEX)
        other_hex = raw.str.contains(_HEX) & ascii_hex.not_()
        value = (value.when(ascii_hex).then(pl.when(ascii_hex).then(raw).str.decode("hex").cast(pl.String))
                 .when(other_hex).then(pl.when(other_hex).then(raw).map_batches(_utf8_hex, return_dtype=pl.String)))
    return value.otherwise(raw).replace(_NULLS, None)


def _arguments(frame: pl.DataFrame) -> pl.Series:
    """EXECVE's ``a0 a1 …`` decoded and joined by spaces (null on other records). Only EXECVE
    rows are searched; their arguments are decoded as one column, then joined per row."""
    args = frame.select(pl.int_range(pl.len()).alias("_row"), "_type", "body").filter(pl.col("_type") == "EXECVE").select(
        "_row", _arg=pl.col("body").str.extract_all(rf"(?:^|\s)a\d+=(?:{_VALUE})")).explode("_arg")
    out = pl.Series("_cmdline", [None] * frame.height, pl.String)
    if args.is_empty():
        return out
    raw = args.select(pl.col("_row"), pl.col("_arg").str.replace(r"^\s?a\d+=", ""))
    joined = raw.with_columns(_arg=decoded(pl.col("_arg"), hexable=True).fill_null("")).group_by(
        "_row", maintain_order=True).agg(pl.col("_arg").str.join(" "))
    return out.scatter(joined.get_column("_row"), joined.get_column("_arg"))


NUMBERED = {
    "1006": "LOGIN", "1100": "USER_AUTH", "1101": "USER_ACCT", "1102": "USER_MGMT", "1103": "CRED_ACQ",
    "1104": "CRED_DISP", "1105": "USER_START", "1106": "USER_END", "1107": "USER_AVC", "1108": "USER_CHAUTHTOK",
    "1109": "USER_ERR", "1110": "CRED_REFR", "1112": "USER_LOGIN", "1113": "USER_LOGOUT", "1114": "ADD_USER",
    "1115": "DEL_USER", "1116": "ADD_GROUP", "1117": "DEL_GROUP", "1123": "USER_CMD", "1126": "GRP_AUTH",
    "1127": "SYSTEM_BOOT", "1128": "SYSTEM_SHUTDOWN", "1129": "SYSTEM_RUNLEVEL", "1130": "SERVICE_START",
    "1131": "SERVICE_STOP", "1132": "GRP_MGMT", "1133": "GRP_CHAUTHTOK", "1135": "ACCT_LOCK", "1136": "ACCT_UNLOCK",
    "1138": "SOFTWARE_UPDATE", "1200": "DAEMON_START", "1201": "DAEMON_END", "1202": "DAEMON_ABORT",
    "1203": "DAEMON_CONFIG", "1300": "SYSCALL", "1302": "PATH", "1305": "CONFIG_CHANGE", "1306": "SOCKADDR",
    "1307": "CWD", "1309": "EXECVE", "1325": "NETFILTER_CFG", "1327": "PROCTITLE", "1328": "FEATURE_CHANGE",
    "1330": "KERN_MODULE", "1400": "AVC", "1403": "MAC_POLICY_LOAD", "1404": "MAC_STATUS", "1405": "MAC_CONFIG_CHANGE",
    "1701": "ANOM_ABEND", "2301": "ROLE_ASSIGN", "2302": "ROLE_REMOVE", "2404": "CRYPTO_KEY_USER",
    "2407": "CRYPTO_SESSION",
}
"""Record type numbers (linux/audit.h, libaudit.h) of the types named elsewhere in this module:
the kernel writes ``audit: type=1100 audit(…)`` when no audit daemon reads its records."""

_KERNEL = r"^(?:\[\s*\d+\.\d+\]\s*)?audit: type=(\w{1,64}) audit\((\d{1,12}\.\d{3}:\d{1,20})\): ?(.*)$"
_JOURNAL = r"^([A-Z][A-Z0-9_]{0,63}) ((?:\w+=\S*).*)$"


def syslog_record(program: pl.Expr, message: pl.Expr, time: pl.Expr) -> pl.Expr:
    """The audit record a syslog message carries, written as audit.log writes it, else null:

    - ``audispd``/``audisp-syslog``: the record itself (``[node=H ]type=T msg=audit(…): …``);
    - the kernel's (no audit daemon running; ``kern.log``): ``audit: type=1100 audit(T:S): …``,
      the type number named (:data:`NUMBERED`);
    - journald's (program ``audit``): ``USER_AUTH pid=… msg='…'``, stamped with the syslog ``time``
      (serial 0: journald drops it).
    """
    kernel = message.str.extract_groups(_KERNEL)
    journal = message.str.extract_groups(_JOURNAL)
    epoch = time.dt.epoch("ms")
    return pl.coalesce(
        pl.when(message.str.contains(_START)).then(message),
        pl.format("type={} msg=audit({}): {}", kernel.struct.field("1").replace(NUMBERED), kernel.struct.field("2"),
                  kernel.struct.field("3")),
        pl.when(program == "audit").then(pl.format(
            "type={} msg=audit({}.{}:0): {}", journal.struct.field("1"), epoch // 1000,
            (epoch % 1000).cast(pl.String).str.zfill(3), journal.struct.field("2"))),
    )


_KINDS = {f"T:{k}": v for k, v in CATEGORIES.items()} | {f"S:{k}": v for k, v in SYSCALLS.items()}
_JOINED = tuple({name: ",".join(pair[i]) for name, pair in _KINDS.items()} for i in (0, 1))
"""Per record type (``T:``) or syscall (``S:``): its categories (0) and types (1), comma-joined."""


def _categories(kind: pl.Expr, index: int) -> pl.Expr:
    """``event.category`` (index 0) or ``event.type`` (1) of the record type / syscall in ``kind``."""
    return kind.replace_strict(_JOINED[index], default=None, return_dtype=pl.String).str.split(",")


@register
class Auditd(LineFormat):
    name = "auditd"
    description = "Linux audit log (auditd audit.log: logins, sudo, account changes, execve, SELinux), raw or enriched"

    def sniff(self, head: bytes) -> float:
        lines = sniff_lines(head)
        return 0.95 * sum(bool(_SNIFF.match(ln)) for ln in lines) / len(lines) if lines else 0.0

    def parse_lines(self, lines: pl.DataFrame, source: str, options: IngestOptions) -> ParsedChunk:
        return parse_records(lines, source, options)


def parse_records(lines: pl.DataFrame, source: str, options: IngestOptions, *, record: pl.Expr | None = None,
                  host: pl.Expr | None = None) -> ParsedChunk:
    """Audit records of ``lines`` as events. ``record``: where each line's record is (default: the
    line itself; :mod:`dplogs.ingest.syslog` gives the record a syslog line carries, see
    :func:`syslog_record`, so that ``event.hash`` and the quarantine keep the line as read);
    ``host``: ``host.name`` where the record names no ``node=``."""
    text = pl.col("text") if record is None else record
    header = text.str.extract_groups(_HEADER)
    frame = lines.lazy().with_columns(_h=header).unnest("_h").with_columns(
        _type=pl.col("type"), _start=text.str.contains(_START), _host=pl.lit(None, pl.String) if host is None else host,
        body=pl.lit(" ") + pl.col("body"),  # so the first key has a space before it
    ).pipe(run)
    reason = (pl.when(pl.col("_start").not_()).then(pl.lit("not an audit record (no type=… msg=audit(…) header)"))
              .when(pl.col("_type").is_null()).then(pl.lit("bad msg=audit(SECONDS.MILLIS:SERIAL) time stamp"))
              .when(pl.col("_type").str.contains(_TYPE).not_()).then(pl.lit("record type is not an audit type name")))
    body = pl.col("body")
    # two steps: an expression used twice is computed twice (no common-subexpression pass)
    frame = frame.with_columns(_cmdline_args=_arguments(frame), **{f"_r_{k}": _raw(body, k) for k in _KEYS})
    frame = frame.with_columns(**{f"_v_{k}": decoded(pl.col(f"_r_{k}"), k in _HEX_KEYS) for k in _KEYS})
    v = lambda k: pl.col(f"_v_{k}")  # noqa: E731
    syscall = pl.coalesce(v("SYSCALL"), pl.when(v("arch") == "c000003e").then(
        v("syscall").replace_strict(_X86_64, default=None, return_dtype=pl.String)))
    kind = pl.when((pl.col("_type") == "SYSCALL") & syscall.is_in(list(SYSCALLS))).then(pl.lit("S:") + syscall) \
        .otherwise(pl.lit("T:") + pl.col("_type"))
    account = pl.coalesce(v("acct").replace(_NO_ACCOUNT, None), v("AUID").replace("unset", None),
                          v("UID").replace("unset", None))
    frame = frame.with_columns(_user=account, _domain=pl.lit(None, pl.String))
    if is_qualified(frame.get_column("_user")):  # bob@CORP.EXAMPLE (sssd, winbind): one identity per account
        split = account_columns(pl.col("_user"), case_insensitive=False)
        frame = frame.with_columns(_user=split["user.name"], _domain=split["user.domain"])
    fields = [
        pl.from_epoch(pl.col("sec").cast(pl.Int64) * 1000 + pl.col("ms").cast(pl.Int64), time_unit="ms")
        .dt.replace_time_zone("UTC").alias("@timestamp"),
        pl.col("_type").str.to_lowercase().alias("event.action"),
        pl.col("_type").alias("event.code"),
        pl.lit("event").alias("event.kind"),
        _categories(kind, 0).alias("event.category"),
        _categories(kind, 1).alias("event.type"),
        pl.coalesce(v("res"), v("success")).str.to_lowercase()
        .replace_strict(_OUTCOME, default=None, return_dtype=pl.String).alias("event.outcome"),
        pl.col("_user").alias("user.name"),
        pl.col("_domain").alias("user.domain"),
        v("uid").replace(_UNSET_ID, None).alias("user.id"),
        pl.coalesce(ip_or_null(v("addr")), ip_or_null(v("src"))).alias("source.ip"),
        pl.coalesce("node", "_host").alias("host.name"),
        v("pid").cast(pl.Int64, strict=False).alias("process.pid"),
        v("exe").alias("process.executable"),
        pl.coalesce(v("comm"), v("exe").str.extract(r"([^/]+)$", 1)).alias("process.name"),
        pl.coalesce(pl.col("_cmdline_args"), v("proctitle").str.replace_all("\x00", " ", literal=True),
                    v("cmd")).alias("process.command_line"),
        body.str.strip_chars_start(" ").alias("message"),
    ]
    return finish(frame, source=source, options=options, reason=reason, fields=fields,
                  dataset="auditd.log", module="auditd")
