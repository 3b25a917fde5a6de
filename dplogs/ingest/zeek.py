"""Zeek logs: TSV with its ``#fields`` header, and Zeek JSON lines (``_path``, ``@stream`` or none).

TSV header and comment lines (``#separator``, ``#fields``, ``#types``, ``#open``, ``#close``…) and
blank lines are not records: they are counted in :attr:`ParsedChunk.skipped`. A file may hold several
header blocks; each data line is split by the ``#fields`` line in force above it, also across chunk
boundaries (:meth:`Zeek.parse` carries the header from one chunk to the next). ``-`` (unset) and
``(empty)`` become null. Both shapes go through one mapping: ``id.orig_h`` → ``source.ip``,
``id.resp_h`` → ``destination.ip``, ports, ``proto`` → ``network.transport``, ``service`` or the log
type → ``network.protocol``, byte counts, the user of ntlm/rdp/kerberos/radius/ftp/http logs
(Windows, Kerberos and RADIUS accounts normalised by :mod:`dplogs.ingest.accounts`), outcomes where
the log has one (ntlm/kerberos ``success``, ssh ``auth_success``, radius ``result``, ftp reply
codes, conn states), DNS and HTTP
fields, ECS category/type arrays as Elastic sets them; ``event.dataset`` is ``zeek.<log>``
(``zeek.connection`` for conn, as Elastic names it), the log type taken from ``_path``/``@stream``,
the TSV ``#path``, the fields only one log has, or the file name (``ssh.log``).

>>> from dplogs.ingest.base import IngestOptions
>>> text = ["#separator \\\\x09", "#path\\tntlm", "#fields\\tts\\tid.orig_h\\tusername\\tsuccess",
...         "1521911721.608646\\t10.0.0.1\\tbob\\tF"]
>>> lines = pl.DataFrame({"line": [1, 2, 3, 4], "offset": [0, 17, 27, 58], "text": text})
>>> out = Zeek().parse_lines(lines, "ntlm.log", IngestOptions())
>>> out.events.select("event.dataset", "source.ip", "user.name", "event.outcome").row(0), out.skipped
(('zeek.ntlm', '10.0.0.1', 'bob', 'failure'), 3)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from dplogs.ingest import _structured as st
from dplogs.ingest.accounts import account_columns
from dplogs.ingest.base import LINES_SCHEMA, IngestOptions, InputSource, LineFormat, ParsedChunk, register

FIELDS = (
    "ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service",
    "orig_bytes", "resp_bytes", "username", "domainname", "success", "cookie", "client", "user",
    "reply_code", "query", "method", "uri", "host", "status_code", "user_agent", "referrer",
    "response_body_len", "auth_success", "conn_state", "server_name", "note", "src", "fuid",
    "request_type", "realm", "dst", "p", "rejected", "security_protocol", "dropped", "result",
)
_PATH_KEYS = ("_path", "@stream")
_TCP_LOGS = ["http", "ssl", "ssh", "smtp", "ftp", "rdp", "ntlm", "smb_mapping", "smb_files", "dce_rpc", "ldap", "kerberos"]
"""Logs whose records lack ``proto`` but run over TCP (Kerberos: as Elastic's zeek/kerberos sets it)."""
_UDP_LOGS = ["radius"]
"""Logs whose records lack ``proto`` but run over UDP (as Elastic's zeek/radius sets it)."""
_TRANSPORTS = ["tcp", "udp", "icmp"]


@dataclass(frozen=True)
class Header:
    """The TSV header in force: field names and log type (``#path``)."""

    fields: tuple[str, ...]
    path: str | None = None


def _col(name: str) -> str:
    return f"z:{name}"


def _json_paths() -> list[st.Path]:
    paths: list[st.Path] = [(k,) for k in _PATH_KEYS]
    for name in FIELDS:
        paths.append((name,))
        if "." in name:  # some exporters write id_orig_h, or nest {"id": {"orig_h": ...}}
            paths += [(name.replace(".", "_"),), tuple(name.split("."))]
    return paths


def _from_json(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    decoded, rejected, _ = st.decode_json(rows, _json_paths())

    def field(name: str) -> pl.Expr:
        options = [pl.col(st.col_name((name,)))]
        if "." in name:
            options += [pl.col(st.col_name((name.replace(".", "_"),))), pl.col(st.col_name(tuple(name.split("."))))]
        return pl.coalesce(options)

    frame = decoded.select(
        *LINES_SCHEMA.names(),
        pl.coalesce(pl.col(st.col_name((k,))) for k in _PATH_KEYS).alias("path"),
        *(field(name).alias(_col(name)) for name in FIELDS),
    )
    return frame, rejected


def _from_tsv(rows: pl.DataFrame, header: Header) -> tuple[pl.DataFrame, pl.DataFrame]:
    n = len(header.fields)
    width = pl.col("text").str.count_matches("\t", literal=True) + 1
    good = rows.filter(width == n)
    bad = rows.filter(width != n).with_columns(reason=pl.lit(f"expected {n} tab-separated Zeek fields"))
    parts = pl.col("text").str.split_exact("\t", n - 1)
    index = {name: i for i, name in enumerate(header.fields)}
    frame = good.select(
        *LINES_SCHEMA.names(),
        pl.lit(header.path, pl.String).alias("path"),
        *(
            (parts.struct.field(f"field_{index[name]}") if name in index else pl.lit(None, pl.String)).alias(_col(name))
            for name in FIELDS
        ),
    )
    return frame, bad


def _infer_path(z) -> pl.Expr:
    """The log type of records that do not name it (the Elastic oracle files, plain exports), from
    fields only that log has."""
    return (
        pl.when(z("conn_state").is_not_null()).then(pl.lit("conn"))
        .when(z("auth_success").is_not_null()).then(pl.lit("ssh"))
        .when(z("request_type").is_not_null()).then(pl.lit("kerberos"))
        .when(z("domainname").is_not_null()).then(pl.lit("ntlm"))
        .when(z("result").is_not_null() & z("username").is_not_null()).then(pl.lit("radius"))
        .when(z("cookie").is_not_null() | z("security_protocol").is_not_null()).then(pl.lit("rdp"))
        .when(z("query").is_not_null()).then(pl.lit("dns"))
        .when(z("method").is_not_null() | z("uri").is_not_null()).then(pl.lit("http"))
        .when(z("server_name").is_not_null()).then(pl.lit("ssl"))
        .when(z("note").is_not_null()).then(pl.lit("notice"))
        .when(z("fuid").is_not_null()).then(pl.lit("files"))
    )


def _timestamp(ts: pl.Expr) -> pl.Expr:
    """Epoch seconds as decimal text, parsed exactly (a float would lose the last microsecond),
    or ISO-8601 as Zeek's JSON writer may emit."""
    seconds = ts.str.extract(r"^(\d+)(?:\.\d*)?$", 1).cast(pl.Int64, strict=False)
    micros = ts.str.extract(r"^\d+\.(\d{1,6})", 1).str.pad_end(6, "0").cast(pl.Int64, strict=False).fill_null(0)
    epoch = (seconds * 1_000_000 + micros).cast(pl.Datetime("us", "UTC"))
    return pl.coalesce(epoch, st.parse_timestamp(ts))


def _boolean(expr: pl.Expr) -> pl.Expr:
    low = expr.str.to_lowercase()
    return pl.when(low.is_in(["t", "true"])).then(pl.lit("success")).when(low.is_in(["f", "false"])).then(pl.lit("failure"))


# ECS arrays per log, as Elastic's zeek pipelines set them; conn's types follow its state.
_CATEGORIES = {"conn": ["network"], "dns": ["network"], "kerberos": ["network", "authentication"],
               "ntlm": ["network", "authentication"], "ssh": ["network", "authentication"], "rdp": ["network"],
               "notice": ["intrusion_detection"], "http": ["network", "web"], "ssl": ["network"], "files": ["file"],
               "radius": ["network", "authentication"]}
_TYPES = {"dns": ["connection", "protocol", "info"], "kerberos": ["connection", "protocol", "access"],
          "ntlm": ["connection", "info"], "ssh": ["connection", "protocol"], "rdp": ["protocol", "info"],
          "notice": ["info"], "http": ["connection", "protocol"], "ssl": ["connection", "protocol"], "files": ["info"],
          "radius": ["connection", "info"]}
_CONN_TYPES = {"S0": ["connection", "start"], "S1": ["connection", "start"], "SF": ["connection", "start", "end"],
               "REJ": ["connection", "start", "denied"], **dict.fromkeys(
                   ["S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"], ["connection", "info"])}
_CONN_OUTCOME = {**dict.fromkeys(["REJ", "S0", "RSTOS0", "SH"], "failure"),
                 **dict.fromkeys(["SF", "S1", "S2", "S3", "RSTO", "RSTR"], "success")}
"""A connection that was never established (rejected, unanswered, reset or closed before the
responder's SYN-ACK) failed; an established one succeeded. Elastic sets no outcome for conn."""
_LOGS = ("conn", "dns", "http", "ssl", "ssh", "kerberos", "ntlm", "rdp", "notice", "files", "ftp", "smtp", "dhcp",
         "smb_mapping", "smb_files", "dce_rpc", "x509", "weird", "ldap", "sip", "snmp", "tunnel", "dpd", "software", "radius")


def path_from_name(name: str) -> str | None:
    """The Zeek log type a file name states (``ssh.log``, ``conn.2024-01-01-00-00-00.log.gz``).

    >>> path_from_name("/var/zeek/ssh.log"), path_from_name("x.log")
    ('ssh', None)
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1].split(".", 1)[0]
    return next((part for part in re.split(r"[-_]", base) if part in _LOGS), None) if base not in _LOGS else base


def _lookup(key: pl.Expr, table: dict[str, list[str]]) -> pl.Expr:
    """The array ``table`` gives ``key`` (null for other keys): a small table gathered by index."""
    index = key.replace_strict(list(table), list(range(len(table))), default=None, return_dtype=pl.UInt32)
    return pl.lit(pl.Series(list(table.values()), dtype=pl.List(pl.String))).gather(index)


def _map(frame: pl.DataFrame, source: str, options: IngestOptions) -> pl.DataFrame:
    def z(name: str) -> pl.Expr:
        return st.nonempty(pl.col(_col(name)), "-", "(empty)")

    path = pl.coalesce(st.nonempty(pl.col("path"), "-"), _infer_path(z), pl.lit(path_from_name(source), pl.String))
    proto = z("proto").str.to_lowercase()
    kerberos = account_columns(z("client").str.extract(r"^([^/@]+)", 1), z("client").str.extract(r"[/@]([^/@]+)$", 1),
                               case_insensitive=True)
    ntlm = account_columns(z("username"), z("domainname"), case_insensitive=True)
    # a RADIUS account is a directory's (NPS/AD, LDAP), compared without case, like an ASA AAA user
    radius = account_columns(z("username"), case_insensitive=True)
    user = (
        pl.when(path == "ntlm").then(ntlm["user.name"])
        .when(path == "rdp").then(account_columns(z("cookie"), case_insensitive=True)["user.name"])
        .when(path == "kerberos").then(kerberos["user.name"])
        .when(path == "radius").then(radius["user.name"])
        .when(path.is_in(["ftp", "http"])).then(z("user").fill_null(z("username")))
    )
    state = z("conn_state")
    # a notice about a source that was not dropped: that traffic was allowed (Elastic's zeek/notice)
    dropped = _boolean(z("dropped"))
    notice_type = pl.when((path == "notice") & z("src").is_not_null()).then(
        pl.when(dropped == "success").then(pl.lit(["info", "denied"], pl.List(pl.String)))
        .when(dropped == "failure").then(pl.lit(["info", "allowed"], pl.List(pl.String))))
    reply = z("reply_code").cast(pl.Int32, strict=False)
    outcome = (
        pl.when(path.is_in(["ntlm", "kerberos"])).then(_boolean(z("success")))
        .when(path == "ssh").then(_boolean(z("auth_success")))
        .when(path == "radius").then(z("result").replace_strict({"success": "success", "failed": "failure"}, default=None))
        .when(path == "conn").then(state.replace_strict(_CONN_OUTCOME, default=None, return_dtype=pl.String))
        .when(path == "dns").then(pl.when(_boolean(z("rejected")) == "success").then(pl.lit("failure")).otherwise(pl.lit("success")))
        .when((path == "ftp") & reply.is_not_null()).then(
            pl.when(reply < 400).then(pl.lit("success")).otherwise(pl.lit("failure")))
    )
    dataset = pl.when(path == "conn").then(pl.lit("zeek.connection")).otherwise(pl.lit("zeek.") + path)
    columns = {
        "@timestamp": _timestamp(z("ts")),
        "event.dataset": pl.coalesce(pl.lit(options.dataset, pl.String), dataset, pl.lit("zeek.unknown")),
        "event.kind": pl.when(path == "notice").then(pl.lit("alert")).otherwise(pl.lit("event")),
        "event.category": pl.coalesce(_lookup(path, _CATEGORIES), pl.when(path.is_not_null()).then(pl.lit(["network"], pl.List(pl.String)))),
        "event.type": pl.coalesce(pl.when(path == "conn").then(_lookup(state, _CONN_TYPES)), notice_type, _lookup(path, _TYPES),
                                  pl.when(path.is_not_null()).then(pl.lit(["protocol"], pl.List(pl.String)))),
        "event.action": z("request_type"),
        "rule.name": pl.when(path == "notice").then(z("note")),
        "event.outcome": outcome,
        "event.provider": path,
        "user.name": user,
        "user.domain": pl.when(path == "ntlm").then(ntlm["user.domain"]).when(path == "kerberos").then(kerberos["user.domain"])
        .when(path == "radius").then(radius["user.domain"]),
        "source.ip": pl.coalesce(z("id.orig_h"), z("src")),
        "source.port": z("id.orig_p"),
        "destination.ip": pl.coalesce(z("id.resp_h"), z("dst")),
        "destination.port": pl.coalesce(z("id.resp_p"), pl.when(path == "notice").then(z("p"))),
        "source.bytes": z("orig_bytes"),
        "destination.bytes": z("resp_bytes"),
        "network.transport": pl.coalesce(
            pl.when(proto.is_in(_TRANSPORTS)).then(proto),
            pl.when(path.is_in(_TCP_LOGS)).then(pl.lit("tcp")),
            pl.when(path.is_in(_UDP_LOGS)).then(pl.lit("udp")),
        ),
        "network.protocol": pl.coalesce(pl.when(path == "conn").then(z("service")), pl.when(path != "conn").then(path)),
        "dns.question.name": pl.when(path == "dns").then(z("query")),
        "http.request.method": pl.when(path == "http").then(z("method").str.to_uppercase()),
        "url.original": pl.when(path == "http").then(z("uri")),
        "http.response.status_code": pl.when(path == "http").then(z("status_code")),
        "http.response.body.bytes": pl.when(path == "http").then(z("response_body_len")),
        "http.request.referrer": pl.when(path == "http").then(z("referrer")),
        "user_agent.original": pl.when(path == "http").then(z("user_agent")),
    }
    dataset_expr = columns.pop("event.dataset")
    return st.finish(frame, columns, source=source, dataset=dataset_expr, module="zeek")


def _header_value(prefix: str) -> pl.Expr:
    return pl.when(pl.col("text").str.starts_with(prefix)).then(pl.col("text").str.strip_prefix(prefix))


_MAX_LAYOUTS = 64


def parse_chunk(
    lines: pl.DataFrame, source: str, options: IngestOptions, header: Header | None = None
) -> tuple[ParsedChunk, Header | None]:
    """Parse one chunk given the TSV header in force before it; returns the chunk and the header in
    force after it (for the next chunk)."""
    text = pl.col("text")
    meta = lines.with_columns(
        fields=_header_value("#fields\t"),
        path=_header_value("#path\t"),
        kind=pl.when(text.str.strip_chars() == "").then(pl.lit("blank"))
        .when(text.str.starts_with("#")).then(pl.lit("header"))
        .when(text.str.strip_chars_start().str.starts_with("{")).then(pl.lit("json"))
        .otherwise(pl.lit("tsv")),
    ).with_columns(
        block=pl.col("fields").is_not_null().cum_sum(),
        fields=pl.col("fields").forward_fill(),
        path=pl.col("path").forward_fill(),
    )
    skipped = meta.filter(pl.col("kind").is_in(["blank", "header"])).height
    frames: list[pl.DataFrame] = []
    rejected: list[pl.DataFrame] = []
    json_rows = meta.filter(pl.col("kind") == "json").select(LINES_SCHEMA.names())
    if json_rows.height:
        frame, bad = _from_json(json_rows)
        frames.append(frame)
        rejected.append(bad)
    # One iteration per distinct header (usually one per file; concatenated rotations repeat it),
    # not per line. Each costs ~1 ms, so rows under headers past the first _MAX_LAYOUTS of a chunk
    # are quarantined (a distinct #fields line before every record: 5,000 records took 5.5 s).
    # Rows before the chunk's first #fields line (block 0) read the header carried in.
    tsv = meta.filter(pl.col("kind") == "tsv").with_columns(
        layout=pl.when(pl.col("block") > 0).then(pl.concat_str([pl.col("fields"), pl.col("path").fill_null("")],
                                                               separator="\n")))
    layouts = tsv.get_column("layout").drop_nulls().unique(maintain_order=True)
    if len(layouts) > _MAX_LAYOUTS:
        kept = tsv.get_column("layout").is_null() | tsv.get_column("layout").is_in(layouts.head(_MAX_LAYOUTS).implode())
        rejected.append(tsv.filter(~kept).select(LINES_SCHEMA.names()).with_columns(
            reason=pl.lit(f"one of more than {_MAX_LAYOUTS} distinct #fields headers in a chunk")))
        tsv = tsv.filter(kept)
    for (layout,), rows in tsv.group_by("layout", maintain_order=True):
        first = rows.row(0, named=True)
        if layout is None:
            current = header
            if current is not None and first["path"] is not None:
                current = Header(current.fields, first["path"])
        else:
            current = Header(tuple(first["fields"].split("\t")), first["path"])
        rows = rows.select(LINES_SCHEMA.names())
        if current is None:
            rejected.append(rows.with_columns(reason=pl.lit("Zeek TSV record before any #fields header")))
            continue
        frame, bad = _from_tsv(rows, current)
        frames.append(frame)
        rejected.append(bad)
    last = meta.filter(pl.col("kind") == "header").tail(1)
    if last.height and last["fields"][0] is not None:
        header = Header(tuple(last["fields"][0].split("\t")), last["path"][0])
    elif header is not None and last.height and last["path"][0] is not None:
        header = Header(header.fields, last["path"][0])
    parsed = pl.concat(frames, how="vertical").sort("line") if frames else None
    parsed = _empty_frame() if parsed is None else parsed
    events = _map(parsed, source, options)
    bad_rows = pl.concat(rejected).sort("line") if rejected else pl.DataFrame(schema={**LINES_SCHEMA, "reason": pl.String})
    events, bad_rows = st.in_time_range(events, parsed, bad_rows, options)
    return st.chunk(events, bad_rows, source, skipped), header


def _empty_frame() -> pl.DataFrame:
    return pl.DataFrame(schema={**LINES_SCHEMA, "path": pl.String, **{_col(n): pl.String for n in FIELDS}})


def _is_zeek_json(doc: dict) -> bool:
    keys = set(doc)
    return "ts" in keys and bool(keys & {"uid", "id.orig_h", "id_orig_h", "_path", "@stream", "fuid", "note"})


@register
class Zeek(LineFormat):
    name = "zeek"
    description = "Zeek logs: TSV with #fields/#types headers, or Zeek JSON lines"

    def sniff(self, head: bytes) -> float:
        if head.startswith(b"#separator") or b"\n#fields\t" in head[:8192]:
            return 0.98
        return 0.95 * st.share(st.sample_objects(head), _is_zeek_json)

    def parse_lines(self, lines: pl.DataFrame, source: str, options: IngestOptions) -> ParsedChunk:
        return parse_chunk(lines, source, options)[0]

    def parse(self, source: InputSource, options: IngestOptions) -> Iterator[ParsedChunk]:
        from dplogs.ingest.reader import iter_lines

        header: Header | None = None
        with source.open() as stream:
            for lines in iter_lines(stream, chunk_lines=options.chunk_lines, max_line_bytes=options.max_line_bytes):
                chunk, header = parse_chunk(lines, source.name, options, header)
                yield chunk
