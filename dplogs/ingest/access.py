"""Web access logs: Apache/nginx common and combined formats, and IIS W3C extended logs.

Field semantics follow Elastic Filebeat's ``apache/access``, ``nginx/access`` and ``iis/access``
pipelines: ``-`` means absent (stored as null); for nginx's ``X-Forwarded-For`` lists the first
public address is the client (``source.ip``), else the first one; host names are not ``source.ip``.

>>> import polars as pl
>>> from dplogs.ingest.base import IngestOptions
>>> lines = pl.DataFrame({"line": [1], "offset": [0], "text": [
...     '10.1.2.3 - bob [26/Dec/2016:16:22:13 +0200] "GET /a?b=1 HTTP/1.1" 404 499 "-" "curl/8.0"']})
>>> ev = Access().parse_lines(lines, "access.log", IngestOptions()).events
>>> ev.select("source.ip", "user.name", "http.request.method", "url.original", "http.response.status_code").rows()
[('10.1.2.3', 'bob', 'GET', '/a?b=1', 404)]
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import polars as pl

from dplogs.ingest._text import finish, localize, nonempty
from dplogs.ingest.accounts import account_columns, is_qualified
from dplogs.ingest.auth import IPV4, IPV6, ip_or_null
from dplogs.ingest.base import IngestOptions, InputSource, LineFormat, ParsedChunk, register, sniff_lines
from dplogs.schema import FIELDS

_QUOTED = r'(?:[^"\\]|\\.)*'
ACCESS = (
    rf'^(?:"(?P<xff>[^"]*)" )?(?P<client>.+?) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] '
    # Tomcat and old Apache do not escape quotes inside the request: it ends at `" <status> `.
    rf'"(?P<request>.*?)" (?P<status>\d{{3}}) (?P<bytes>\d+|-)'
    # a LogFormat may put more numbers after the bytes (%O, %I, %D: sent, received, microseconds)
    rf'(?: (?:\d+|-))*(?: "(?P<referrer>{_QUOTED})" "(?P<agent>{_QUOTED})")?.*$'
)
ACCESS_FAST = (
    r'^(?P<client>[^ "]+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"\\]*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-)(?: "(?P<referrer>[^"\\]*)" "(?P<agent>[^"\\]*)")?$'
)
""":data:`ACCESS` for the common line: no X-Forwarded-For prefix, a client without spaces or quotes,
no quote or backslash inside the request, referrer and agent, nothing after the agent. One-pass,
so Rust's regex extracts its groups with its one-pass DFA instead of backtracking (3.5x cheaper;
the backtracking was over half of an access ingest). Where it matches, :data:`ACCESS` matches with
the same groups (``tests/ingest/test_access_fast.py``); the other lines run :data:`ACCESS`."""
_GROUPS = ("xff", "client", "ident", "user", "time", "request", "status", "bytes", "referrer", "agent")
SSL_REQUEST = rf'^\[(?P<time>[^\]]+)\] (?P<client>\S+) (?P<tls>\S+) (?P<cipher>\S+) "(?P<request>{_QUOTED})" (?P<bytes>\d+|-)$'
"""Apache mod_ssl's ``ssl_request_log`` (CustomLog with %t %h %{SSL_PROTOCOL}x %{SSL_CIPHER}x)."""
_REQUEST = r"^(?P<method>[A-Za-z]+) (?P<url>\S+)(?: HTTP/(?P<version>[\d.]+))?$"
_SNIFF_ACCESS = re.compile(r'^\S.* \S+ \S+ \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "')
_SNIFF_SSL = re.compile(r'^\[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] \S+ \S+ \S+ "')
_WEB = pl.lit(["web"], pl.List(pl.String)).alias("event.category")  # ECS arrays, as Elastic's access pipelines
_ACCESS = pl.lit(["access"], pl.List(pl.String)).alias("event.type")
_PRIVATE = r"^(?:10\.|127\.|192\.168\.|172\.(?:1[6-9]|2\d|3[01])\.|::1$|f[cd][0-9a-f]{2}:|fe80:)"


def _client_ip(client: pl.Expr, xff: pl.Expr) -> pl.Expr:
    """The first public IP of the (possibly comma-separated) client and X-Forwarded-For list,
    else its first IP."""
    addrs = pl.concat_list(xff.fill_null("").str.split(","), client.str.split(",")).list.eval(
        pl.element().str.strip_chars().filter(
            pl.element().str.strip_chars().str.contains(IPV4) | pl.element().str.strip_chars().str.contains(IPV6)
        )
    )
    public = addrs.list.eval(pl.element().filter(~pl.element().str.to_lowercase().str.contains(_PRIVATE))).list.first()
    return pl.coalesce(public, addrs.list.first())


def access_groups(lines: pl.DataFrame, *, fast: bool = True) -> pl.DataFrame:
    """``lines`` plus the groups of :data:`ACCESS` (null where it does not match). With ``fast``
    (the default; False only for tests), :data:`ACCESS_FAST` runs first and :data:`ACCESS` only on
    the lines it missed."""
    text = pl.col("text")
    if not fast:
        return lines.with_columns(_m=text.str.extract_groups(ACCESS)).unnest("_m").select(*lines.columns, *_GROUPS)
    frame = lines.with_columns(_m=text.str.extract_groups(ACCESS_FAST)).unnest("_m") \
        .select(*lines.columns, pl.lit(None, pl.String).alias("xff"), *_GROUPS[1:])
    missed = frame.get_column("status").is_null()  # status is in every match
    if not missed.any():
        return frame
    rest = lines.with_row_index("_row").filter(missed).with_columns(_m=text.str.extract_groups(ACCESS)).unnest("_m")
    return pl.concat([frame.with_row_index("_row").filter(~missed), rest.select(frame.with_row_index("_row").columns)]) \
        .sort("_row").drop("_row")


def _unescape(expr: pl.Expr) -> pl.Expr:
    return expr.str.replace_all('\\"', '"', literal=True)


@register
class Access(LineFormat):
    name = "access"
    description = "Apache/nginx access logs: common, combined, and mod_ssl request logs"

    def sniff(self, head: bytes) -> float:
        lines = [ln.decode("utf-8", "replace") for ln in sniff_lines(head)]
        if not lines:
            return 0.0
        return 0.9 * sum(bool(_SNIFF_ACCESS.match(ln) or _SNIFF_SSL.match(ln)) for ln in lines) / len(lines)

    def parse_lines(self, lines: pl.DataFrame, source: str, options: IngestOptions) -> ParsedChunk:
        frame = access_groups(lines)
        if frame.select((pl.col("status").is_null() & pl.col("text").str.starts_with("[")).any()).item():
            ssl = pl.col("text").str.extract_groups(SSL_REQUEST)
            is_ssl = pl.col("status").is_null() & ssl.struct.field("time").is_not_null()
            frame = frame.with_columns(
                _ssl=is_ssl,
                **{c: pl.when(is_ssl).then(ssl.struct.field(c)).otherwise(pl.col(c)) for c in ("time", "client", "request", "bytes")},
            )
        else:
            frame = frame.with_columns(_ssl=pl.lit(False))
        ssl_lines = frame.select(pl.col("_ssl").any()).item()
        req = pl.col("request").str.extract_groups(_REQUEST)
        frame = frame.with_columns(
            _time=pl.col("time").str.strptime(pl.Datetime("us", "UTC"), "%d/%b/%Y:%H:%M:%S %z", strict=False),
            _req=req,
        )
        reason = (
            pl.when(pl.col("status").is_null() & ~pl.col("_ssl")).then(pl.lit("not an access log line"))
            .when(pl.col("_time").is_null()).then(pl.lit("bad timestamp"))
        )
        # vhost_combined (Apache "%v:%p %h ...", nginx "$host $remote_addr ..."): a first field before
        # the client. Elastic reads it as the destination (domain or IP, and port).
        vhost_cols = [pl.lit(None, pl.String).alias("_dest"), pl.lit(None, pl.String).alias("_dport")]
        # (A client with a comma is nginx's address list, "a, b c": not a vhost.)
        has_vhost = pl.col("client").str.contains(r"^[^\s,]+ [^\s,]+$")
        if frame.select(pl.col("client").str.contains(" ", literal=True).any()).item():  # usually none: skip the regex
            parts = pl.col("client").str.splitn(" ", 2)
            vhost = pl.when(has_vhost).then(parts.struct.field("field_0"))
            host_port = vhost.str.extract_groups(r"^(?P<host>\[[^\]]*\]|[^:]+|[0-9A-Fa-f:]+)(?::(?P<port>\d+))?$")
            frame = frame.with_columns(
                _dest=host_port.struct.field("host").str.strip_chars("[]"), _dport=host_port.struct.field("port"),
                client=pl.when(vhost.is_not_null()).then(parts.struct.field("field_1")).otherwise(pl.col("client")),
            )
        else:
            frame = frame.with_columns(vhost_cols)
        # Usually no line has an X-Forwarded-For list or a comma in the client: the first public IP
        # of a one-element list is that element when it is an IP, so the list machinery is skipped.
        lists = pl.col("xff").is_not_null() | pl.col("client").str.contains(",", literal=True)
        if frame.select(lists.any()).item():
            client_ip = _client_ip(pl.col("client"), pl.col("xff"))
        else:
            client_ip = ip_or_null(pl.col("client").str.strip_chars())
        # Qualified web users (bob@example.com) are split; usually a block has none: skip the regex.
        user = nonempty(pl.col("user"))
        if is_qualified(frame.get_column("user")):
            user_columns = [e.alias(k) for k, e in account_columns(user, case_insensitive=False).items()]
        else:
            user_columns = [user.alias("user.name")]
        fields = [
            pl.col("_time").alias("@timestamp"),
            client_ip.alias("source.ip"),
            ip_or_null(pl.col("_dest")).alias("destination.ip"),
            pl.col("_dport").cast(pl.Int32, strict=False).alias("destination.port"),
            *user_columns,
            pl.col("_req").struct.field("method").str.to_uppercase().alias("http.request.method"),
            pl.col("_req").struct.field("url").alias("url.original"),
            pl.col("status").cast(pl.Int32).alias("http.response.status_code"),
            pl.col("bytes").cast(pl.Int64, strict=False).alias("http.response.body.bytes"),
            nonempty(_unescape(pl.col("referrer"))).alias("http.request.referrer"),
            nonempty(_unescape(pl.col("agent"))).alias("user_agent.original"),
            pl.lit("event").alias("event.kind"),
            # mod_ssl's request log gets no type, as in Elastic (usually no line of a block is one)
            _WEB, pl.when(~pl.col("_ssl")).then(_ACCESS).alias("event.type") if ssl_lines else _ACCESS,
            pl.when(pl.col("status").cast(pl.Int32, strict=False) >= 400).then(pl.lit("failure"))
            .when(pl.col("status").is_not_null()).then(pl.lit("success")).alias("event.outcome"),
        ]
        return finish(frame, source=source, options=options, reason=reason, fields=fields, dataset="web.access", module="web")


# IIS W3C field name -> (ECS field, dtype)
_IIS_FIELDS: dict[str, tuple[str, pl.DataType]] = {
    "s-ip": ("destination.ip", pl.String()),
    "s-port": ("destination.port", pl.Int32()),
    "cs-method": ("http.request.method", pl.String()),
    "cs-username": ("user.name", pl.String()),
    "c-ip": ("source.ip", pl.String()),
    "cs(User-Agent)": ("user_agent.original", pl.String()),
    "cs(Referer)": ("http.request.referrer", pl.String()),
    "sc-status": ("http.response.status_code", pl.Int32()),
    "sc-bytes": ("http.response.body.bytes", pl.Int64()),
    "s-computername": ("host.name", pl.String()),
}
_MAX_LAYOUTS = 64
_MAX_FIELDS_LINE = 4096
_IIS_READ = frozenset({*_IIS_FIELDS, "date", "time", "cs-uri-stem", "cs-uri-query"})
"""The W3C fields the parser reads; a #Fields line's other names are skipped."""


_IIS_DEFAULT_LAYOUTS = (
    "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) "
    "cs(Referer) sc-status sc-substatus sc-win32-status time-taken",
    "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) "
    "sc-status sc-substatus sc-win32-status time-taken",
    "#Fields: date time s-sitename cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) "
    "cs(Cookie) cs(Referer) cs-host sc-status sc-substatus sc-win32-status sc-bytes cs-bytes time-taken",
    "#Fields: date time s-sitename s-computername s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username "
    "c-ip cs-version cs(User-Agent) cs(Cookie) cs(Referer) cs-host sc-status sc-substatus sc-win32-status "
    "sc-bytes cs-bytes time-taken",
    # IIS FTP's default W3C fields
    "#Fields: date time c-ip cs-username s-ip s-port cs-method cs-uri-stem sc-status sc-win32-status sc-substatus "
    "x-session x-fullpath",
)


_SNIFF_IIS = re.compile(  # the method after s-ip, s-sitename s-ip or s-sitename s-computername s-ip (or FTP's layout)
    rb"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \S+ (?:[A-Z]+ /|\S+ [A-Z]+ /|\S+ \S+ [A-Z]+ /|\S+ \S+ \d+ [A-Za-z]+ )")


@register
class IIS(LineFormat):
    name = "iis"
    description = "IIS W3C extended logs (#Fields: header, which may change mid-file)"

    def sniff(self, head: bytes) -> float:
        if re.search(rb"(?m)^#Fields: (?:date|time) ", head):
            return 0.95
        # Header-less: "date time s-ip METHOD /stem ..." with a default layout's width.
        lines = sniff_lines(head)
        widths = {len(layout.split()) - 1 for layout in _IIS_DEFAULT_LAYOUTS}
        hits = sum(bool(_SNIFF_IIS.match(ln)) and len(ln.split(b" ")) in widths for ln in lines)
        return 0.9 * hits / len(lines) if lines else 0.0

    def parse(self, source: InputSource, options: IngestOptions) -> Iterator[ParsedChunk]:
        from dplogs.ingest.reader import iter_lines

        header: str | None = None  # the #Fields line in force, carried across chunks
        with source.open() as stream:
            for lines in iter_lines(stream, chunk_lines=options.chunk_lines, max_line_bytes=options.max_line_bytes):
                chunk, header = self._parse(lines, source.name, options, header)
                yield chunk

    def parse_lines(self, lines: pl.DataFrame, source: str, options: IngestOptions) -> ParsedChunk:
        return self._parse(lines, source, options, None)[0]

    def _parse(
        self, lines: pl.DataFrame, source: str, options: IngestOptions, header: str | None
    ) -> tuple[ParsedChunk, str | None]:
        text = pl.col("text")
        frame = lines.with_columns(
            _hdr=pl.when(text.str.starts_with("#Fields:")).then(text).forward_fill().fill_null(pl.lit(header, pl.String)),
            _comment=text.str.starts_with("#"),
        )
        last = frame.get_column("_hdr").last() if frame.height else header
        cols = frame.with_columns(_parts=text.str.split(" "))
        # A line whose field count contradicts the #Fields in force is read with the IIS default
        # layout of that width, if one exists (Elastic's pipeline matches those layouts).
        n = pl.col("_parts").list.len()
        # Real files change #Fields a handful of times and name ~30 fields; each layout costs one
        # expression branch, so the rest are quarantined (20,000 layouts ran for minutes, 200,000
        # fields ran out of memory)
        headers = [h for h in frame.get_column("_hdr").drop_nulls().unique(maintain_order=True).to_list()
                   if len(h) <= _MAX_FIELDS_LINE][:_MAX_LAYOUTS]
        effective = pl.lit(None, pl.String)
        for hdr in headers:
            effective = pl.when((pl.col("_hdr") == hdr) & (n == len(hdr.split()) - 1)).then(pl.lit(hdr)).otherwise(effective)
        # Without any #Fields line (IIS was told not to write headers, or the file is a fragment),
        # the same default layouts apply: IIS's default W3C field list first.
        data = ~pl.col("_comment")
        for layout in _IIS_DEFAULT_LAYOUTS:
            effective = pl.when(effective.is_null() & data & (n == len(layout.split()) - 1)).then(pl.lit(layout)).otherwise(effective)
        cols = cols.with_columns(_eff=effective)
        outputs: dict[str, pl.Expr] = {}
        # One branch per distinct layout (a handful per file), not per line.
        for hdr in cols.get_column("_eff").drop_nulls().unique(maintain_order=True).to_list():
            names = hdr.removeprefix("#Fields:").split()
            this = pl.col("_eff") == hdr
            # only the fields read below: a #Fields line naming 200,000 fields made as many columns (OOM)
            values = {name: pl.col("_parts").list.get(i, null_on_oob=True) for i, name in enumerate(names)
                      if name in _IIS_READ}
            if "date" in values and "time" in values:
                values["_datetime"] = pl.format("{} {}", values["date"], values["time"])
            if "cs-uri-stem" in values:
                query = nonempty(values["cs-uri-query"]) if "cs-uri-query" in values else pl.lit(None, pl.String)
                values["_url"] = pl.when(query.is_null()).then(values["cs-uri-stem"]).otherwise(pl.format("{}?{}", values["cs-uri-stem"], query))
            for key, expr in values.items():
                outputs[key] = pl.when(this).then(expr).otherwise(outputs.get(key, pl.lit(None, pl.String)))
        cols = cols.with_columns(**{f"_f:{k}": v for k, v in outputs.items()})
        get = lambda k: pl.col(f"_f:{k}") if k in outputs else pl.lit(None, pl.String)  # noqa: E731
        time = localize(get("_datetime").str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False), options.tz)
        cols = cols.with_columns(_time=time)
        reason = (
            pl.when(pl.col("_hdr").is_null() & pl.col("_eff").is_null())
            .then(pl.lit("no #Fields header before line, and its field count is no IIS default layout's"))
            .when(pl.col("_eff").is_null() & ~pl.col("_hdr").is_in(pl.Series(headers, dtype=pl.String).implode()))
            .then(pl.lit(f"#Fields line in force is one of more than {_MAX_LAYOUTS} in a chunk or longer than "
                         f"{_MAX_FIELDS_LINE:,} characters"))
            .when(pl.col("_eff").is_null()).then(pl.lit("field count differs from #Fields"))
            .when(pl.col("_time").is_null()).then(pl.lit("bad timestamp"))
        )
        fields = [pl.col("_time").alias("@timestamp"), nonempty(get("_url")).alias("url.original")]
        for w3c, (ecs, dtype) in _IIS_FIELDS.items():
            value = nonempty(get(w3c))
            if ecs == "http.request.method":  # a public key domain: FTP commands are not HTTP methods
                value = pl.when(value.is_in(list(FIELDS[ecs].allowed or ()))).then(value)
            if ecs == "user.name":  # a Windows account: DOMAIN\user, case-insensitive
                fields += [e.alias(k) for k, e in account_columns(value, case_insensitive=True).items()]
                continue
            if w3c == "cs(User-Agent)":
                value = value.str.replace_all("+", " ", literal=True)
            if ecs.endswith(".ip"):
                # IIS writes IPv6 zones (::1%0); upstream test logs wrap some addresses in [...]
                value = ip_or_null(value.str.extract(r"^\[?([0-9A-Fa-f:.]+)"))
            fields.append(value.cast(dtype, strict=False).alias(ecs))
        status = get("sc-status").cast(pl.Int32, strict=False)
        fields += [
            pl.lit("event").alias("event.kind"),
            pl.lit(["web", "network"], pl.List(pl.String)).alias("event.category"),  # as Elastic's iis/access
            pl.lit(["connection"], pl.List(pl.String)).alias("event.type"),
            pl.when(status >= 400).then(pl.lit("failure")).when(status.is_not_null()).then(pl.lit("success")).alias("event.outcome"),
        ]
        chunk = finish(cols, source=source, options=options, reason=reason, fields=fields, dataset="iis.access",
                       module="iis", skip=pl.col("_comment"))
        return chunk, last
