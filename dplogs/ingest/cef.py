"""ArcSight CEF and IBM QRadar LEEF 1.0/2.0 lines, bare or behind a syslog header.

CEF escapes: in the header ``\\|`` and ``\\\\``; in extensions ``\\=``, ``\\\\``, ``\\n`` and
``\\r``. An extension value runs until the next `` key=`` (values may hold spaces; an escaped
``\\=`` never starts a key). LEEF 2.0 names its extension delimiter in the header (a character or
hex such as ``x09``/``^``); LEEF 1.0 uses tab.

ECS mapping: src/dst → source.ip/destination.ip, spt/dpt → ports, suser → user.name,
duser → user.target.name, act → event.action, in/out → source.bytes / destination.bytes,
dvchost (else dvc) → host.name, msg → message. ``@timestamp`` is the first of ``rt``, ``end``,
``start`` (LEEF: ``devTime``) and the syslog header's stamp; a record with none of them cannot be
placed in time and is quarantined ("no timestamp"), like one whose stamp does not parse.

>>> import polars as pl
>>> from dplogs.ingest.base import IngestOptions
>>> lines = pl.DataFrame({"line": [1], "offset": [0], "text": [
...     r"CEF:0|Acme|FW|1.0|100|Deny|5|src=10.0.0.1 suser=bob msg=a\\=b c\\\\d act=drop rt=1700000000000"]})
>>> Cef().parse_lines(lines, "fw.log", IngestOptions()).events.select("source.ip", "user.name", "message", "event.action").rows()
[('10.0.0.1', 'bob', 'a=b c\\\\d', 'drop')]
"""

from __future__ import annotations

import re
from dataclasses import replace

import polars as pl

from dplogs.ingest._text import finish, localize
from dplogs.ingest.accounts import account_columns
from dplogs.ingest.auth import ip_or_null
from dplogs.ingest.base import IngestOptions, LineFormat, ParsedChunk, register, sniff_lines
from dplogs.ingest.syslog import syslog_time

_F = r"((?:[^|\\]|\\.)*)"  # one header field, pipes escaped
CEF_HEADER = rf"^(?P<prefix>.*?)CEF:(?P<version>\d+)\|{_F}\|{_F}\|{_F}\|{_F}\|{_F}\|{_F}\|(?P<ext>.*)$"
LEEF_HEADER = rf"^(?P<prefix>.*?)LEEF:(?P<version>[12]\.0)\|{_F}\|{_F}\|{_F}\|([^|]*)\|(?P<rest>.*)$"
_PREFIX = (
    r"^(?:<\d{1,3}>)?(?:\d{1,2} )?(?:(?P<bsd>(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2} \d{2}:\d{2}:\d{2})"
    r"|(?P<iso>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?)(?P<tz>Z|[+-]\d{2}:?\d{2})?) +(?P<host>[\w.\-:]+)"
)
_SEVERITY = {"unknown": 0, "low": 3, "medium": 6, "high": 8, "very-high": 10}
_PROTO = {"1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp", "132": "sctp", "47": "gre", "50": "esp"}
_PRIVATE_USE = "\ue000"  # stands in for an escaped backslash while the other escapes are undone


def cef_unescape(expr: pl.Expr, *, extension: bool) -> pl.Expr:
    """Undo CEF escapes in one pass-equivalent: ``\\\\`` is protected first so that ``\\\\n`` stays
    a backslash followed by ``n``."""
    out = expr.str.replace_all(r"\\", _PRIVATE_USE, literal=True)
    if extension:
        out = (
            out.str.replace_all(r"\=", "=", literal=True)
            .str.replace_all(r"\n", "\n", literal=True)
            .str.replace_all(r"\r", "\r", literal=True)
        )
    out = out.str.replace_all(r"\|", "|", literal=True)
    return out.str.replace_all(_PRIVATE_USE, "\\", literal=True)


def _ext(ext: pl.Expr, key: str) -> pl.Expr:
    """The raw value of ``key`` in a CEF extension string (null when absent)."""
    return ext.str.extract(rf"(?:^|\s){re.escape(key)}=((?:[^\\]|\\.)*?)\s*(?:\s[\w.\[\]-]+=|$)", 1)


def device_time(value: pl.Expr, tz: str) -> pl.Expr:
    """CEF ``rt``/LEEF ``devTime``: epoch milliseconds or ``MMM dd yyyy HH:mm:ss[.SSS]`` (local
    time in ``tz``)."""
    millis = pl.when(value.str.contains(r"^\d{10,14}$")).then(
        pl.from_epoch(value.cast(pl.Int64, strict=False), time_unit="ms").dt.replace_time_zone("UTC")
    )
    text = value.str.replace(r"\.\d+$", "")
    parsed = localize(text.str.strptime(pl.Datetime("us"), "%b %d %Y %H:%M:%S", strict=False), tz)
    return pl.coalesce(millis, parsed).dt.cast_time_unit("us")


def _severity(value: pl.Expr) -> pl.Expr:
    return pl.coalesce(value.cast(pl.Int64, strict=False), value.str.to_lowercase().replace_strict(_SEVERITY, default=None, return_dtype=pl.Int64))


def _yearless(frame: pl.DataFrame, device_time: pl.Expr, prefix_stamp: pl.Expr) -> int:
    """Records dated by their syslog prefix's RFC 3164 stamp (no device time), whose year was guessed."""
    return frame.select((device_time.is_null() & prefix_stamp.is_not_null()).sum()).item()


def _lines_sniff(head: bytes, marker: re.Pattern[bytes]) -> float:
    lines = sniff_lines(head)
    return 0.95 * sum(bool(marker.search(ln)) for ln in lines) / len(lines) if lines else 0.0


@register
class Cef(LineFormat):
    name = "cef"
    description = "ArcSight CEF, bare or wrapped in a syslog header"

    def sniff(self, head: bytes) -> float:
        return _lines_sniff(head, re.compile(rb"CEF:\d+\|"))

    def parse_lines(self, lines: pl.DataFrame, source: str, options: IngestOptions) -> ParsedChunk:
        h = pl.col("text").str.extract_groups(CEF_HEADER)
        frame = lines.with_columns(_h=h).unnest("_h")
        frame = frame.rename({str(i): f"_h{i}" for i in range(3, 9)}).with_columns(
            _p=pl.col("prefix").str.extract_groups(_PREFIX)
        )
        ext = pl.col("ext")
        values = {k: cef_unescape(_ext(ext, k), extension=True) for k in (
            "src", "dst", "spt", "dpt", "suser", "duser", "act", "rt", "in", "out", "dvc", "dvchost", "msg",
            "proto", "requestMethod", "request", "outcome", "end", "start",
        )}
        frame = frame.with_columns(**{f"_x_{k}": v for k, v in values.items()})
        x = lambda k: pl.col(f"_x_{k}")  # noqa: E731
        p = pl.col("_p")
        prefix_time = syslog_time(p.struct.field("bsd"), p.struct.field("iso"), p.struct.field("tz"), options)
        stamps = ("rt", "end", "start")
        frame = frame.with_columns(_rt=pl.coalesce(device_time(x(k), options.tz) for k in stamps), _pt=prefix_time)
        reason = (
            pl.when(pl.col("version").is_null()).then(pl.lit("no CEF header"))
            .when(pl.any_horizontal(x(k).is_not_null() for k in stamps) & pl.col("_rt").is_null()).then(pl.lit("bad timestamp"))
        )
        outcome = x("outcome").str.to_lowercase()
        fields = [
            pl.coalesce("_rt", "_pt").alias("@timestamp"),
            ip_or_null(x("src")).alias("source.ip"),
            ip_or_null(x("dst")).alias("destination.ip"),
            x("spt").cast(pl.Int32, strict=False).alias("source.port"),
            x("dpt").cast(pl.Int32, strict=False).alias("destination.port"),
            *(e.alias(k) for k, e in account_columns(x("suser"), case_insensitive=False).items()),
            x("duser").alias("user.target.name"),
            x("act").alias("event.action"),
            x("in").cast(pl.Int64, strict=False).alias("source.bytes"),
            x("out").cast(pl.Int64, strict=False).alias("destination.bytes"),
            pl.coalesce(x("dvchost"), x("dvc"), p.struct.field("host")).alias("host.name"),
            pl.coalesce(x("msg"), cef_unescape(pl.col("_h7"), extension=False)).alias("message"),
            x("proto").str.to_lowercase().replace(_PROTO).alias("network.transport"),
            x("requestMethod").str.to_uppercase().alias("http.request.method"),
            x("request").alias("url.original"),
            cef_unescape(pl.col("_h6"), extension=False).alias("event.code"),
            pl.format("{} {}", cef_unescape(pl.col("_h3"), extension=False), cef_unescape(pl.col("_h4"), extension=False)).alias("event.provider"),
            _severity(cef_unescape(pl.col("_h8"), extension=False)).alias("event.severity"),
            pl.when(outcome.is_in(["success", "failure"])).then(outcome).alias("event.outcome"),
            pl.lit("event").alias("event.kind"),
        ]
        chunk = finish(frame, source=source, options=options, reason=reason, fields=fields, dataset="cef.log", module="cef")
        return replace(chunk, yearless=_yearless(frame, pl.col("_rt"), p.struct.field("bsd")))


@register
class Leef(LineFormat):
    name = "leef"
    description = "IBM QRadar LEEF 1.0 (tab-delimited) and 2.0 (declared delimiter)"

    def sniff(self, head: bytes) -> float:
        return _lines_sniff(head, re.compile(rb"LEEF:[12]\.0\|"))

    def parse_lines(self, lines: pl.DataFrame, source: str, options: IngestOptions) -> ParsedChunk:
        frame = lines.with_columns(_h=pl.col("text").str.extract_groups(LEEF_HEADER)).unnest("_h")
        frame = frame.rename({str(i): f"_h{i}" for i in range(3, 7)})
        # LEEF 2.0: field 6 is the delimiter and the extension follows; 1.0: the rest is the extension.
        v2 = pl.col("version") == "2.0"
        v2_parts = pl.col("rest").str.extract_groups(r"^(?P<delim>[^|]*)\|(?P<ext>.*)$")
        frame = frame.with_columns(
            _delim=pl.when(v2).then(v2_parts.struct.field("delim")).otherwise(pl.lit("\t")),
            _ext=pl.when(v2).then(v2_parts.struct.field("ext")).otherwise(pl.col("rest")),
        )
        frame = frame.with_columns(
            _delim=pl.when(pl.col("_delim").str.contains(r"^(?:0?x|\\x)[0-9A-Fa-f]{2}$"))
            .then(pl.col("_delim").str.extract(r"([0-9A-Fa-f]{2})$", 1))
            .otherwise(pl.col("_delim"))
        )
        # Normalise every line's delimiter to tab: one replace per distinct delimiter, not per line.
        ext = pl.col("_ext")
        for delim in frame.get_column("_delim").drop_nulls().unique().to_list():
            char = chr(int(delim, 16)) if re.fullmatch(r"[0-9A-Fa-f]{2}", delim) else (delim or "\t")
            if char != "\t":
                ext = pl.when(pl.col("_delim") == delim).then(ext.str.replace_all(char, "\t", literal=True)).otherwise(ext)
        frame = frame.with_columns(_ext=ext)
        keys = ("src", "dst", "srcPort", "dstPort", "usrName", "devTime", "proto", "sev", "cat", "srcBytes", "dstBytes", "identHostName", "action")
        frame = frame.with_columns(**{f"_x_{k}": pl.col("_ext").str.extract(rf"(?:^|\t){k}=([^\t]*)", 1) for k in keys})
        x = lambda k: pl.col(f"_x_{k}")  # noqa: E731
        p = pl.col("prefix").str.extract_groups(_PREFIX)
        frame = frame.with_columns(
            _t=device_time(x("devTime"), options.tz),
            _pt=syslog_time(p.struct.field("bsd"), p.struct.field("iso"), p.struct.field("tz"), options),
            _host=p.struct.field("host"),
        )
        reason = (
            pl.when(pl.col("version").is_null()).then(pl.lit("no LEEF header"))
            .when(v2 & pl.col("_ext").is_null()).then(pl.lit("no LEEF 2.0 delimiter field"))
            .when(x("devTime").is_not_null() & pl.col("_t").is_null()).then(pl.lit("bad timestamp"))
        )
        fields = [
            pl.coalesce("_t", "_pt").alias("@timestamp"),
            ip_or_null(x("src")).alias("source.ip"),
            ip_or_null(x("dst")).alias("destination.ip"),
            x("srcPort").cast(pl.Int32, strict=False).alias("source.port"),
            x("dstPort").cast(pl.Int32, strict=False).alias("destination.port"),
            *(e.alias(k) for k, e in account_columns(x("usrName"), case_insensitive=False).items()),
            x("srcBytes").cast(pl.Int64, strict=False).alias("source.bytes"),
            x("dstBytes").cast(pl.Int64, strict=False).alias("destination.bytes"),
            pl.coalesce(x("identHostName"), pl.col("_host")).alias("host.name"),
            x("proto").str.to_lowercase().replace(_PROTO).alias("network.transport"),
            x("action").alias("event.action"),
            pl.col("_h6").alias("event.code"),
            pl.format("{} {}", pl.col("_h3"), pl.col("_h4")).alias("event.provider"),
            x("sev").cast(pl.Int64, strict=False).alias("event.severity"),
            pl.lit("event").alias("event.kind"),
        ]
        chunk = finish(frame, source=source, options=options, reason=reason, fields=fields, dataset="leef.log", module="leef")
        return replace(chunk, yearless=_yearless(frame, pl.col("_t"), p.struct.field("bsd")))
