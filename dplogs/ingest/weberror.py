"""Web server error logs: Apache httpd (2.2 and 2.4 layouts) and nginx.

They hold what the access log does not: authentication failures of HTTP basic/digest auth with the
account tried, requests the configuration denied, and WAF (ModSecurity) blocks with the rule that
fired. Fields follow Elastic's ``apache/error`` and ``nginx/error`` pipelines (``event.category``
web, ``event.type`` error or info by level, ``source.ip``/``source.port`` of ``[client …]``,
``process.pid``); beyond them, dplogs reads the account and the outcome of the auth messages
(``user.name``, ``event.category`` authentication first, ``event.outcome`` failure, so the shipped
failed-login queries count them), denials (``event.type`` denied), ModSecurity's rule
(``rule.id``, ``rule.name``), the ``AH…`` message code (``event.code``), the level as a syslog
severity (``event.severity``), and nginx's ``client:``/``request:`` trailer. Times without a zone
(the default layouts) are local time in ``--tz``; a record without a time (a start-up message
written before logging was set up) is quarantined, as in every format.

>>> import polars as pl
>>> from dplogs.ingest.base import IngestOptions
>>> lines = pl.DataFrame({"line": [1, 2], "offset": [0, 140], "text": [
...     '[Thu Mar 14 10:00:00.5 2024] [auth_basic:error] [pid 7] [client 10.0.0.9:5120] AH01617: '
...     'user bob: authentication failure for "/admin": Password Mismatch',
...     '2024/03/14 10:00:01 [error] 9#9: *3 user "eve" was not found in "/etc/nginx/.htpasswd", '
...     'client: 10.0.0.8, server: intranet, request: "GET /admin HTTP/1.1", host: "intranet"']})
>>> ev = WebError().parse_lines(lines, "error.log", IngestOptions()).events
>>> ev.select("user.name", "source.ip", "url.original", "event.outcome", "event.dataset").rows()
[('bob', '10.0.0.9', '/admin', 'failure', 'apache.error'), ('eve', '10.0.0.8', '/admin', 'failure', 'nginx.error')]
"""

from __future__ import annotations

import re

import polars as pl

from dplogs.ingest._text import finish, localize, nonempty
from dplogs.ingest.auth import ip_or_null
from dplogs.ingest.base import IngestOptions, LineFormat, ParsedChunk, register, sniff_lines
from dplogs.schema import FIELDS

APACHE = (
    r"^\[(?P<time>[^\]]+)\] \[(?:(?P<module>[^:\]\s]*):)?(?P<level>[a-z]+[0-9]*)\]"
    r"(?: \[pid (?P<pid>\d+)(?::tid \d+)?\])?(?: \[client (?P<client>[^\]\s]+)\])? ?(?P<message>.*)$"
)
"""Apache's ``[time] [module:level] [pid P:tid T] [client A:P] message`` (2.4) and
``[time] [level] [client A] message`` (2.2); pid and client are optional in both."""
NGINX = (
    r"^(?P<time>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) \[(?P<level>[a-z]+)\] (?P<pid>\d+)#\d+: "
    r"(?:\*\d+ )?(?P<message>.*)$"
)
"""nginx's ``yyyy/mm/dd hh:mm:ss [level] pid#tid: *connection message``."""
_SNIFF = re.compile(
    r"^(?:\[(?:\w{3} \w{3} \d{2} \d{1,2}:\d{2}:\d{2}(?:\.\d+)? \d{4}|\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? [+-]\d{4})\]"
    r" \[(?:[^:\]\s]*:)?[a-z]+[0-9]*\]"
    r"|\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} \[[a-z]+\] \d+#\d+: )"
)
_SEVERITY = {"emerg": 0, "alert": 1, "crit": 2, "error": 3, "warn": 4, "notice": 5, "info": 6, "debug": 7}
_ERROR_LEVELS = ("emerg", "alert", "crit", "error", "warn")  # Elastic's apache/error: event.type error, else info
# The account in an authentication failure: Apache mod_auth_basic/digest (AH01617, AH01618, 2.2's
# wording alike) and nginx auth_basic. Authorization failures (AH01790) name an account that did log in.
_AUTH_FAILURE = (
    r"^(?:AH0161[78]: )?user (?P<a>[^\s:\"]+)(?:: authentication failure for \"(?P<au>[^\"]*)\"| not found:? (?P<nu>\S+))"
    r"|^(?:\[client [^\]]*\] )?user \"(?P<n>[^\"]*)\"(?:: password mismatch| was not found in)"
)
_DENIED = (
    r"(?:client denied by server configuration|access forbidden by rule|directory index of .* is forbidden"
    r"|Directory index forbidden by rule|ModSecurity: Access denied)"
)


def _client(address: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """``A``, ``A:port`` or ``[v6]:port`` as (ip, port). A bare IPv6 address that ends in a
    hex group is read whole: Apache writes ``2001:db8::1:5120`` for a port, which no rule can tell
    from an address."""
    whole = ip_or_null(address.str.strip_chars("[]"))
    parts = address.str.extract_groups(r"^\[?(?P<ip>[0-9A-Fa-f:.]+?)\]?:(?P<port>\d{1,5})$")
    ip = pl.coalesce(whole, ip_or_null(parts.struct.field("ip")))
    port = pl.when(whole.is_null()).then(parts.struct.field("port").cast(pl.Int32, strict=False))
    return ip, pl.when(port.is_between(0, 65535)).then(port)


@register
class WebError(LineFormat):
    name = "weberror"
    description = "Apache httpd and nginx error logs (auth failures, denials, ModSecurity blocks)"

    def sniff(self, head: bytes) -> float:
        lines = [ln.decode("utf-8", "replace") for ln in sniff_lines(head)]
        if not lines:
            return 0.0
        return 0.9 * sum(bool(_SNIFF.match(ln)) for ln in lines) / len(lines)

    def parse_lines(self, lines: pl.DataFrame, source: str, options: IngestOptions) -> ParsedChunk:
        text = pl.col("text")
        # A file is one server's: the other layout's regex (~40% of the parse) runs only when some line may be one
        bracketed = lines.select(text.str.starts_with("[").sum()).item()
        none = pl.lit(None, pl.Struct({"time": pl.String, "level": pl.String, "pid": pl.String, "message": pl.String,
                                       "client": pl.String}))
        apache = text.str.extract_groups(APACHE) if bracketed else none
        nginx = text.str.extract_groups(NGINX) if bracketed < lines.height else none
        is_nginx = nginx.struct.field("level").is_not_null()
        part = lambda name: pl.when(is_nginx).then(nginx.struct.field(name)).otherwise(apache.struct.field(name))  # noqa: E731
        frame = lines.with_columns(
            _nginx=is_nginx, _time_text=part("time"), _level=part("level"), _pid=part("pid"), _msg=part("message"),
            _client=apache.struct.field("client"),
        )
        stamp = pl.col("_time_text")
        zoned = stamp.str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%d %H:%M:%S%.f %z", strict=False)
        local = pl.coalesce(
            stamp.str.strptime(pl.Datetime("us"), "%a %b %d %H:%M:%S%.f %Y", strict=False),
            stamp.str.strptime(pl.Datetime("us"), "%Y/%m/%d %H:%M:%S", strict=False),
        )
        msg = pl.col("_msg")
        trailer = msg.str.extract_groups(r", client: (?P<client>[^,\s]+)(?:, server: [^,]*)?(?:, request: \"(?P<request>[^\"]*)\")?")
        request = trailer.struct.field("request").str.extract_groups(r"^(?P<method>[A-Za-z]+) (?P<url>\S+)")
        frame = frame.with_columns(
            _time=pl.coalesce(zoned, localize(local, options.tz)),
            _client=pl.coalesce(pl.col("_client"), msg.str.extract(r"^\[client ([^\]\s]+)\]"), trailer.struct.field("client")),
            _method=request.struct.field("method"), _url=request.struct.field("url"),
            _auth=msg.str.extract_groups(_AUTH_FAILURE),
            _denied=msg.str.contains(_DENIED),
            _rule_id=msg.str.extract(r'\[id "([^"]*)"\]'), _rule_name=msg.str.extract(r'\[msg "([^"]*)"\]'),
            _waf_uri=msg.str.extract(r'\[uri "([^"]*)"\]'),
        )
        reason = (
            pl.when(pl.col("_level").is_null()).then(pl.lit("not an Apache or nginx error log line"))
            .when(pl.col("_time").is_null()).then(pl.lit("bad timestamp"))
        )
        auth = pl.col("_auth")
        user = nonempty(pl.coalesce(auth.struct.field("a"), auth.struct.field("n")))
        failed_login = user.is_not_null()
        level = pl.col("_level").str.extract(r"^([a-z]+)")
        ip, port = _client(pl.col("_client"))
        method = pl.col("_method").str.to_uppercase()  # a public key domain: other words are no HTTP method
        error_type = pl.when(pl.col("_nginx") | level.is_in(_ERROR_LEVELS)).then(pl.lit(["error"], pl.List(pl.String))) \
            .otherwise(pl.lit(["info"], pl.List(pl.String)))
        fields = [
            pl.col("_time").alias("@timestamp"),
            ip.alias("source.ip"),
            port.alias("source.port"),
            user.alias("user.name"),
            pl.col("_pid").cast(pl.Int64, strict=False).alias("process.pid"),
            level.replace_strict(_SEVERITY, default=7, return_dtype=pl.Int64).alias("event.severity"),
            msg.str.extract(r"^(AH\d{5}):").alias("event.code"),
            nonempty(msg).alias("message"),
            pl.when(method.is_in(list(FIELDS["http.request.method"].allowed or ()))).then(method).alias("http.request.method"),
            pl.coalesce(auth.struct.field("au"), auth.struct.field("nu"), pl.col("_waf_uri"), pl.col("_url")).alias("url.original"),
            pl.col("_rule_id").alias("rule.id"),
            pl.col("_rule_name").alias("rule.name"),
            pl.lit("event").alias("event.kind"),
            pl.when(failed_login).then(pl.lit(["authentication", "web"], pl.List(pl.String)))
            .otherwise(pl.lit(["web"], pl.List(pl.String))).alias("event.category"),
            pl.when(pl.col("_denied") & ~failed_login).then(pl.lit(["denied"], pl.List(pl.String)))
            .otherwise(error_type).alias("event.type"),
            pl.when(failed_login | pl.col("_denied")).then(pl.lit("failure")).alias("event.outcome"),
        ]
        dataset = pl.when(pl.col("_nginx")).then(pl.lit("nginx.error")).otherwise(pl.lit("apache.error"))
        module = pl.when(pl.col("_nginx")).then(pl.lit("nginx")).otherwise(pl.lit("apache"))
        return finish(frame, source=source, options=options, reason=reason, fields=fields, dataset=dataset, module=module)
