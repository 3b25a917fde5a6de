"""The ECS field catalogue: the columns of the store, their dtypes and their public domains.

Every parser emits exactly :data:`STORE_SCHEMA` (missing fields are null), so one Parquet dataset
holds events from every format. A field with ``allowed`` values has a *public* domain: the engine
may release it as a group key without partition selection, because its values are known without
looking at the data (ECS enumerations, HTTP methods). Every other string field is *private*.

>>> FIELDS["event.outcome"].allowed
('success', 'failure', 'unknown')
>>> FIELDS["user.name"].is_public_key
False
>>> STORE_SCHEMA["@timestamp"]
Datetime(time_unit='us', time_zone='UTC')
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

SCHEMA_VERSION = 4
"""Bumped whenever :data:`STORE_SCHEMA` or the store layout changes; stored in the store manifest.
2: ``event.hash`` is two u64 words instead of 40 decimal digits (a fifth of the ingest time went
into formatting and writing the digits).
3: ``event.category``/``event.type`` are lists (ECS arrays); ``user.effective.name`` and ``rule.*``
added; account names normalised (``DOMAIN\\user``/``user@REALM`` split, Windows/Kerberos lower-cased).
4: events carry their privacy unit as a code into the store's unit dictionary (``dplogs.ingest.store``);
version 3 stores still read (by value) and stay version 3 when ingested into (no codes part-way).
Older stores are rebuilt by re-ingesting their logs into a new store; dplogs before 4 refuses 4,
so no older version writes into a store with codes."""
READABLE_SCHEMA_VERSIONS = (3, 4)
"""Store versions this dplogs opens."""

TIMESTAMP = "@timestamp"
TIMESTAMP_DTYPE = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class Field:
    """One ECS field as dplogs stores it. Public: its name, dtype, description and domain."""

    name: str
    dtype: pl.DataType
    description: str
    allowed: tuple[str, ...] | None = None
    """The public key domain (ECS allowed values), or None when the domain is private."""
    identity: bool = False
    """True for person-like fields that may serve as the privacy unit."""
    aliases: tuple[str, ...] = ()
    """Names analysts know this field by from other tools and the raw logs (Winlogbeat, Splunk,
    Zeek, CloudTrail): a query naming one is told the store's name (never mapped silently)."""

    def __post_init__(self) -> None:
        if self.allowed is not None and not self.allowed:
            raise ValueError(f"{self.name}: an allowed-values list must not be empty")

    @property
    def is_public_key(self) -> bool:
        return self.allowed is not None


_CATEGORIES = (
    "api", "authentication", "configuration", "database", "driver", "email", "file", "host",
    "iam", "intrusion_detection", "library", "malware", "network", "package", "process",
    "registry", "session", "threat", "vulnerability", "web",
)
_TYPES = (
    "access", "admin", "allowed", "change", "connection", "creation", "deletion", "denied", "end",
    "error", "group", "indicator", "info", "installation", "protocol", "start", "user",
)
_HTTP_METHODS = (
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "PROPFIND",
)

_S, _I32, _I64, _F64 = pl.String(), pl.Int32(), pl.Int64(), pl.Float64()
_LIST = pl.List(pl.String())
"""ECS arrays of keywords (``event.category``, ``event.type``). A query's ``=``/``IN``/``LIKE`` on
one means "contains"; grouping by one groups by its first (primary) value."""
HASH_DTYPE = pl.Array(pl.UInt64(), 2)
"""``event.hash``: 128 bits as two u64 words. ECS calls it a keyword; the store keeps the raw
bits because the hash is only compared, never shown or grouped on."""

_CATALOGUE: tuple[Field, ...] = (
    Field(TIMESTAMP, TIMESTAMP_DTYPE, "When the event happened, UTC.", aliases=("timestamp", "time", "_time", "ts", "EventTime", "TimeCreated")),
    Field("event.dataset", _S, "Source log, e.g. system.auth, apache.access, windows.security."),
    Field("event.module", _S, "Producer family, e.g. system, apache, windows, zeek, aws."),
    Field("event.kind", _S, "ECS event kind.", allowed=("alert", "event", "metric", "state", "pipeline_error", "signal")),
    Field("event.category", _LIST, "ECS categories (an array, the primary one first).", allowed=_CATEGORIES),
    Field("event.type", _LIST, "ECS types (an array).", allowed=_TYPES),
    Field("event.action", _S, "What happened, e.g. ssh_login, logon-failed, sudo.", aliases=("action", "eventName")),
    Field("event.outcome", _S, "ECS outcome.", allowed=("success", "failure", "unknown"), aliases=("outcome", "result")),
    Field("event.code", _S, "Source event id, e.g. Windows 4625, Sysmon 1.", aliases=("winlog.event_id", "EventID", "event_id", "EventCode")),
    Field("event.provider", _S, "Source provider or channel."),
    Field("event.severity", _I64, "Numeric severity as the source gives it."),
    Field("message", _S, "Free-text message.", aliases=("msg",)),
    Field("user.name", _S, "User the event is about.", identity=True, aliases=("user", "username", "TargetUserName", "userIdentity.userName", "account")),
    Field("user.domain", _S, "Domain of user.name."),
    Field("user.id", _S, "User id or SID."),
    Field("user.target.name", _S, "User acted upon (useradd, 4720, su target)."),
    Field("user.effective.name", _S, "User whose rights were used (sudo/su target, PAM 'for user')."),
    Field("source.ip", _S, "Client / source address.", identity=True,
          aliases=("src", "src_ip", "source_ip", "client.ip", "client_ip", "clientip", "remote_addr", "id.orig_h", "IpAddress", "sourceIPAddress")),
    Field("source.port", _I32, "Source port.", aliases=("src_port", "id.orig_p", "IpPort")),
    Field("source.bytes", _I64, "Bytes sent by the source.", aliases=("orig_bytes", "bytes_out")),
    Field("destination.ip", _S, "Destination address.", aliases=("dst", "dest", "dst_ip", "dest_ip", "id.resp_h")),
    Field("destination.port", _I32, "Destination port.", aliases=("dst_port", "dest_port", "id.resp_p")),
    Field("destination.bytes", _I64, "Bytes sent by the destination.", aliases=("resp_bytes", "bytes_in")),
    Field("host.name", _S, "Host that logged the event.", identity=True, aliases=("host", "hostname", "Computer", "computer_name")),
    Field("process.name", _S, "Process name (sshd, sudo, powershell.exe)."),
    Field("process.pid", _I64, "Process id."),
    Field("process.executable", _S, "Full path of the executable.", aliases=("Image", "exe")),
    Field("process.command_line", _S, "Full command line.", aliases=("CommandLine", "cmdline", "command_line")),
    Field("process.parent.executable", _S, "Parent executable.", aliases=("ParentImage",)),
    Field("network.transport", _S, "tcp, udp, icmp…", allowed=("tcp", "udp", "icmp", "ipv6-icmp", "sctp", "gre", "esp"), aliases=("proto", "transport")),
    Field("network.protocol", _S, "Application protocol (dns, http, ssl…)."),
    Field("http.request.method", _S, "HTTP method.", allowed=_HTTP_METHODS, aliases=("method", "http_method", "verb")),
    Field("http.request.referrer", _S, "Referrer."),
    Field("http.response.status_code", _I32, "HTTP status code.", aliases=("status", "status_code", "http.status", "http.status_code", "sc-status")),
    Field("http.response.body.bytes", _I64, "Response body size in bytes.", aliases=("bytes", "response_bytes", "body_bytes_sent", "size")),
    Field("url.original", _S, "Request URL as logged.", aliases=("url", "uri", "request", "uri_path", "url.path", "url.full")),
    Field("user_agent.original", _S, "User agent string.", aliases=("user_agent", "useragent", "http_user_agent")),
    Field("dns.question.name", _S, "Queried name.", aliases=("query", "dns.query")),
    Field("winlog.logon.type", _S, "Windows logon type (2, 3, 10…).", aliases=("LogonType", "logon_type", "winlog.event_data.LogonType")),
    Field("winlog.channel", _S, "Windows event channel.", aliases=("Channel",)),
    Field("rule.name", _S, "Detection rule / signature name (IDS alerts).", aliases=("signature", "alert.signature")),
    Field("rule.id", _S, "Detection rule / signature id."),
    Field("rule.category", _S, "Detection rule category."),
    Field("cloud.provider", _S, "Cloud provider (aws)."),
    Field("cloud.region", _S, "Cloud region."),
    Field("log.file.path", _S, "File the event was read from."),
    Field("log.offset", _I64, "Byte offset of the source line in its file (for golden tests)."),
    Field("event.hash", HASH_DTYPE, "Content hash of the source record; makes re-ingestion idempotent."),
)

FIELDS: dict[str, Field] = {f.name: f for f in _CATALOGUE}
STORE_SCHEMA: pl.Schema = pl.Schema({f.name: f.dtype for f in _CATALOGUE})
IDENTITY_FIELDS: tuple[str, ...] = tuple(f.name for f in _CATALOGUE if f.identity)
ALIASES: dict[str, str] = {a.lower(): f.name for f in _CATALOGUE for a in f.aliases}
"""Other tools' names for store fields (lower-cased) -> the store's name; see :attr:`Field.aliases`."""
DEFAULT_PRIVACY_UNIT = "user.name"


def conform(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """Return ``frame`` with exactly the store's columns, in order, cast to the store's dtypes.

    Missing columns become nulls; columns outside the catalogue are dropped.

    >>> conform(pl.DataFrame({"user.name": ["alice"], "extra": [1]})).width == len(STORE_SCHEMA)
    True
    """
    schema = frame.collect_schema()
    return frame.select(_conformed(name, dtype, schema.get(name)).alias(name) for name, dtype in STORE_SCHEMA.items())


def is_list(name: str) -> bool:
    """True for the store's array columns (``event.category``, ``event.type``)."""
    return isinstance(STORE_SCHEMA[name], pl.List)


def _conformed(name: str, dtype: pl.DataType, have: pl.DataType | None) -> pl.Expr:
    """Column ``name`` cast to ``dtype``; a single string where the store keeps an array becomes a
    one-element array (parsers and callers may give one category)."""
    if have is None:
        return pl.lit(None, dtype)
    if isinstance(dtype, pl.List) and not isinstance(have, pl.List):
        value = pl.col(name).cast(pl.String, strict=False)
        return pl.when(value.is_not_null()).then(pl.concat_list(value))
    return pl.col(name).cast(dtype, strict=False)
