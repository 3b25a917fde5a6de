"""JSON lines: ECS documents, Suricata EVE, and generic flat JSON with a field mapping.

ECS documents may nest (``{"user": {"name": "x"}}``) or use dotted keys (``{"user.name": "x"}``);
both are read for every store field and the first non-null wins. ``--map key=ecs.field``
(:attr:`IngestOptions.field_map`) adds source keys (top level, or a dotted path into nested
objects) and takes precedence over the ECS keys; a document with none of these keys is quarantined
with a reason that says to pass ``--map``. Suricata EVE lines (``event_type`` + ``src_ip``)
are mapped the way Elastic's suricata module does for the fields the store holds.

>>> from dplogs.ingest.base import IngestOptions
>>> lines = pl.DataFrame({"line": [1, 2], "offset": [0, 40],
...     "text": ['{"@timestamp": "2024-01-02T03:04:05Z", "user": {"name": "ann"}}', '{oops']}
... ).cast({"line": pl.Int64, "offset": pl.Int64})
>>> out = JsonLines().parse_lines(lines, "x.jsonl", IngestOptions())
>>> out.events["user.name"].to_list(), out.quarantine["reason"].to_list()
(['ann'], ['not a JSON object'])
"""

from __future__ import annotations

import polars as pl

from dplogs.errors import UsageError
from dplogs.ingest import _structured as st
from dplogs.ingest.base import LINES_SCHEMA, IngestOptions, LineFormat, ParsedChunk, register
from dplogs.schema import STORE_SCHEMA, TIMESTAMP

_OWN = {"log.file.path", "log.offset", "event.hash"}  # set by the ingest itself, never copied
_ECS = [name for name in STORE_SCHEMA.names() if name not in _OWN]

# Suricata EVE key path -> ECS field (Elastic's suricata/eve pipeline, restricted to the store).
_EVE = {
    ("src_ip",): "source.ip", ("src_port",): "source.port", ("dest_ip",): "destination.ip",
    ("dest_port",): "destination.port", ("flow", "bytes_toserver"): "source.bytes",
    ("flow", "bytes_toclient"): "destination.bytes", ("app_proto",): "network.protocol",
    ("alert", "severity"): "event.severity", ("alert", "signature"): "rule.name",
    ("alert", "signature_id"): "rule.id", ("alert", "category"): "rule.category",
    ("http", "http_method"): "http.request.method", ("http", "url"): "url.original",
    ("http", "status"): "http.response.status_code", ("http", "length"): "http.response.body.bytes",
    ("http", "http_user_agent"): "user_agent.original", ("http", "http_refer"): "http.request.referrer",
    ("dns", "rrname"): "dns.question.name",
}
_EVE_EXTRA = [("event_type",), ("timestamp",), ("proto",), ("alert", "action")]


def _source_path(key: str) -> list[st.Path]:
    """A mapped key is looked up literally and, when dotted, also as a nested path."""
    return [(key,), tuple(key.split("."))] if "." in key else [(key,)]


def check_field_map(field_map: dict[str, str]) -> None:
    """Reject a mapping onto a field the store does not have, naming the valid ones.

    >>> check_field_map({"Source IP": "source.ip"})
    >>> check_field_map({"ip": "src.ip"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dplogs.errors.UsageError: --map ip=src.ip: 'src.ip' is not a store field; use one of: ...
    """
    for key, target in field_map.items():
        if target not in STORE_SCHEMA or target in _OWN:
            known = ", ".join(sorted(set(STORE_SCHEMA.names()) - _OWN))
            raise UsageError(f"--map {key}={target}: {target!r} is not a store field; use one of: {known}")


def timestamp(text: pl.Expr, tz: str) -> pl.Expr:
    """ISO-8601 text, or epoch seconds/milliseconds as digits, to UTC."""
    numeric = text.cast(pl.Float64, strict=False)
    epoch = pl.when(numeric > 1e11).then(numeric / 1000).otherwise(numeric)
    return pl.coalesce(st.parse_timestamp(text, tz), st.epoch_seconds(epoch))


def _with_timestamp(frame: pl.DataFrame, text: pl.Expr, tz: str) -> pl.DataFrame:
    """``frame`` plus ``_dplogs:ts`` = :func:`timestamp` of ``text``. Usually every stamp carries a zone,
    and then the zoned parse alone is the answer: the other readings are computed only otherwise."""
    frame = frame.with_columns(text.alias("_dplogs:ts_text"))
    frame = st.with_zoned_timestamp(frame, "_dplogs:ts_text", "_dplogs:ts")
    if frame.get_column("_dplogs:ts").null_count() > frame.get_column("_dplogs:ts_text").null_count():
        frame = frame.with_columns(timestamp(pl.col("_dplogs:ts_text"), tz).alias("_dplogs:ts"))
    return frame.drop("_dplogs:ts_text")


@register
class JsonLines(LineFormat):
    name = "jsonl"
    description = "JSON lines: ECS documents (nested or dotted keys), Suricata EVE, or any flat JSON with --map"

    def sniff(self, head: bytes) -> float:
        docs = st.sample_objects(head)
        objects = st.share(docs, lambda d: True)
        if objects < 0.8:
            return 0.0
        ecs = st.share(docs, lambda d: "@timestamp" in d or "ecs" in d or any("." in k for k in d))
        eve = st.share(docs, lambda d: "event_type" in d and "src_ip" in d or d.get("event_type") == "stats")
        # Plain JSON objects stay below the more specific JSON formats (windows, zeek, cloudtrail).
        return max(0.6, 0.8 * ecs, 0.9 * eve) * objects

    def parse_lines(self, lines: pl.DataFrame, source: str, options: IngestOptions) -> ParsedChunk:
        return self.parse_block(lines, None, source, options)

    def parse_block(self, lines: pl.DataFrame, raw: memoryview | None, source: str, options: IngestOptions,
                    before: object = None) -> ParsedChunk:
        check_field_map(options.field_map)
        paths: list[st.Path] = []
        for name in _ECS:
            paths += [(name,), tuple(name.split("."))]
        for key in options.field_map:
            paths += _source_path(key)
        paths += list(_EVE) + _EVE_EXTRA
        decoded, rejected, skipped = st.decode_json(lines, paths, raw=raw)

        # Most wanted paths are absent from a given file: a null literal instead of their all-null
        # column keeps the ~100 coalesces below cheap (same values).
        filled = {c for c, n in zip(decoded.columns, decoded.null_count().row(0), strict=True) if n < decoded.height}

        def get(path: st.Path) -> pl.Expr:
            name = st.col_name(path)
            return pl.col(name) if name in filled else pl.lit(None, pl.String)

        candidates: dict[str, list[pl.Expr]] = {name: [] for name in _ECS}
        for key, target in options.field_map.items():
            candidates[target] += [get(p) for p in _source_path(key)]
        eve = get(("event_type",)).is_not_null()
        for path, target in _EVE.items():
            candidates[target].append(pl.when(eve).then(get(path)))
        for name in _ECS:
            candidates[name] += [get((name,)), get(tuple(name.split(".")))]
        columns = {name: pl.coalesce(exprs) for name, exprs in candidates.items()}
        for name in ("event.category", "event.type"):  # ECS arrays (a document may give one string)
            value = columns[name]
            columns[name] = pl.when(value.str.starts_with("[")).then(value.str.json_decode(pl.List(pl.String))) \
                .when(value.is_not_null()).then(pl.concat_list(value))
        decoded = _with_timestamp(decoded, pl.coalesce(columns[TIMESTAMP], get(("timestamp",))), options.tz)
        columns[TIMESTAMP] = pl.col("_dplogs:ts")
        event_type = get(("event_type",))
        columns |= {
            "event.kind": pl.coalesce(
                columns["event.kind"],
                pl.when(event_type == "alert").then(pl.lit("alert"))
                .when(event_type == "stats").then(pl.lit("metric")),
                pl.lit("event"),
            ),
            # Suricata, as Elastic's suricata/eve: alerts are network + intrusion_detection, allowed
            # or denied by the alert's action; app-layer records network/protocol.
            "event.category": pl.coalesce(
                columns["event.category"],
                pl.when(eve & (event_type == "alert")).then(pl.lit(["network", "intrusion_detection"], pl.List(pl.String)))
                .when(eve & get(("src_ip",)).is_not_null()).then(pl.lit(["network"], pl.List(pl.String))),
            ),
            "event.type": pl.coalesce(
                columns["event.type"],
                pl.when(eve & (event_type == "alert")).then(
                    pl.when(get(("alert", "action")) == "blocked").then(pl.lit(["denied"], pl.List(pl.String)))
                    .otherwise(pl.lit(["allowed"], pl.List(pl.String))))
                .when(eve & get(("src_ip",)).is_not_null() & (event_type != "stats")).then(pl.lit(["protocol"], pl.List(pl.String))),
            ),
            "event.action": columns["event.action"],  # Elastic's suricata/eve sets none (event_type is not an action)
            "event.outcome": pl.coalesce(
                columns["event.outcome"],
                pl.when(get(("alert", "action")) == "allowed").then(pl.lit("success"))
                .when(get(("alert", "action")) == "blocked").then(pl.lit("failure")),
            ),
            "network.transport": pl.coalesce(columns["network.transport"], get(("proto",)).str.to_lowercase()),
            "http.request.method": columns["http.request.method"].str.to_uppercase(),
        }
        dataset = pl.coalesce(
            pl.lit(options.dataset, pl.String),
            columns.pop("event.dataset"),
            pl.when(eve).then(pl.lit("suricata.eve")),
            pl.lit("json.generic" if options.field_map else "json.ecs"),
        )
        module = pl.coalesce(
            columns.pop("event.module"), pl.when(eve).then(pl.lit("suricata")), pl.lit("json")
        )
        # A document carrying no field dplogs knows is not understood: quarantined, and the summary's
        # reason tells the user how to map it.
        understood = pl.any_horizontal(pl.lit(False), *(get(p).is_not_null() for p in dict.fromkeys(paths) if st.col_name(p) in filled))
        unknown = decoded.filter(~understood)
        if unknown.height:
            decoded = decoded.filter(understood)
            rejected = pl.concat([rejected, unknown.select(LINES_SCHEMA.names()).with_columns(
                reason=pl.lit("no known field; pass --map KEY=ecs.field"))]).sort("line")
        events = st.finish(decoded, columns, source=source, dataset=dataset, module=module)
        events, rejected = st.in_time_range(events, decoded, rejected, options)
        return st.chunk(events, rejected, source, skipped)
