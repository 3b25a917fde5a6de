"""AWS CloudTrail: ``{"Records": [...]}`` files as AWS delivers them (gzipped or not), and records one
per line (as exported by Logstash and the OTRF datasets).

A ``Records`` document is one JSON value, so it is read whole (AWS keeps each delivered file small);
its records are numbered 1, 2… in place of line numbers and carry no byte offset. JSON-lines input
streams in chunks like any line format. Mapping (as Elastic's aws/cloudtrail pipeline):
``eventTime`` → ``@timestamp``, ``userIdentity.userName`` (else the last segment of its ARN, else
``additionalEventData.UserName``) → ``user.name`` (a UPN split into name and ``user.domain``),
``sourceIPAddress`` → ``source.ip`` (only when it is an address: AWS services appear there by name),
``eventName`` → ``event.action``, ``eventSource`` → ``event.provider``, ``awsRegion`` →
``cloud.region``, ``userAgent`` → ``user_agent.original``. ``event.outcome`` is failure when the
record has an ``errorCode`` or a sign-in result of ``Failure`` (``responseElements.ConsoleLogin``,
``serviceEventDetails.UserAuthentication``…: a failed console login carries no error code), else
success. A record without ``eventName`` is quarantined.

>>> import io
>>> from dplogs.ingest.base import IngestOptions, InputSource
>>> doc = b'{"Records": [{"eventTime": "2020-09-14T00:44:23Z", "eventName": "GetObject", "eventSource": "s3.amazonaws.com", "userIdentity": {"arn": "arn:aws:iam::1:user/pedro"}, "sourceIPAddress": "1.2.3.4", "errorCode": "AccessDenied"}]}'
>>> src = InputSource(name="ct.json", head=doc, open=lambda: io.BytesIO(doc))
>>> (chunk,) = CloudTrail().parse(src, IngestOptions())
>>> chunk.events.select("user.name", "source.ip", "event.action", "event.outcome").row(0)
('pedro', '1.2.3.4', 'GetObject', 'failure')
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import polars as pl

from dplogs.errors import DataError
from dplogs.ingest import _structured as st
from dplogs.ingest.accounts import account_columns
from dplogs.ingest.base import LINES_SCHEMA, IngestOptions, InputSource, LogFormat, ParsedChunk, register
from dplogs.schema import STORE_SCHEMA

PATHS: list[st.Path] = [
    ("eventTime",), ("@timestamp",), ("eventName",), ("eventSource",), ("errorCode",), ("errorMessage",),
    ("awsRegion",), ("userAgent",), ("sourceIPAddress",), ("eventID",), ("eventType",),
    ("userIdentity", "userName"), ("userIdentity", "arn"), ("userIdentity", "principalId"),
    ("userIdentity", "type"), ("userIdentity", "accountId"), ("additionalEventData", "UserName"),
    ("responseElements", "ConsoleLogin"), *(("serviceEventDetails", k) for k in ("UserAuthentication", "CredentialVerification", "CredentialChallenge")),
]
_AUTH_ACTIONS = ["AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity", "GetSessionToken", "GetFederationToken"]
_IP = r"^(\d{1,3}(\.\d{1,3}){3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]+)$"
_RECORDS = re.compile(rb'^\s*\{\s*"Records"\s*:')


def _map(frame: pl.DataFrame, source: str, options: IngestOptions) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events and rejected rows of a frame holding one String column per path."""

    def get(*path: str) -> pl.Expr:
        return st.nonempty(pl.col(st.col_name(path)))

    ok = get("eventName").is_not_null()
    rejected = frame.filter(~ok).select(LINES_SCHEMA.names()).with_columns(
        reason=pl.lit("not a CloudTrail record (no eventName)")
    )
    address = get("sourceIPAddress")
    provider = get("eventSource")
    results = [get("responseElements", "ConsoleLogin"), *(get("serviceEventDetails", k) for k in (
        "UserAuthentication", "CredentialVerification", "CredentialChallenge"))]
    failed = pl.any_horizontal(r == "Failure" for r in results).fill_null(False)
    authentication = (provider == "signin.amazonaws.com") | ((provider == "sts.amazonaws.com") & get("eventName").is_in(_AUTH_ACTIONS))
    columns = {
        "@timestamp": st.parse_timestamp(pl.coalesce(get("eventTime"), get("@timestamp"))),
        "event.action": get("eventName"),
        "event.provider": provider,
        "event.outcome": pl.when(get("errorCode").is_not_null() | failed).then(pl.lit("failure")).otherwise(pl.lit("success")),
        "event.category": pl.when(authentication).then(pl.lit("authentication"))
        .when(provider.is_in(["iam.amazonaws.com", "sts.amazonaws.com"])).then(pl.lit("iam")),
        "event.type": pl.when(authentication).then(pl.lit("info")),
        "message": get("errorMessage"),
        **account_columns(pl.coalesce(get("userIdentity", "userName"), get("userIdentity", "arn").str.extract(r"[/:]([^/:]+)$", 1),
                                      get("additionalEventData", "UserName")), case_insensitive=False),
        "user.id": get("userIdentity", "principalId"),
        "source.ip": pl.when(address.str.contains(_IP)).then(address),
        "user_agent.original": get("userAgent"),
        "cloud.provider": pl.lit("aws"),
        "cloud.region": get("awsRegion"),
    }
    dataset = options.dataset or "aws.cloudtrail"
    kept = frame.filter(ok)
    events = st.finish(kept, columns, source=source, dataset=dataset, module="aws")
    return st.in_time_range(events, kept, rejected, options)


def _document_chunk(data: bytes, source: str, options: IngestOptions) -> ParsedChunk:
    """All records of one ``{"Records": [...]}`` document."""
    schema = {"Records": pl.List(st.struct_dtype(PATHS))}
    # JSON strings hold no raw newlines, so joining the pretty-printed document into one line is safe.
    flat = data.replace(b"\r", b" ").replace(b"\n", b" ")
    try:
        doc = pl.read_ndjson(flat, schema=schema, ignore_errors=True)
    except pl.exceptions.PolarsError:
        doc = None
    if doc is None or doc.height != 1 or doc["Records"][0] is None:
        text = data.decode("utf-8", errors="replace")
        bad = pl.DataFrame({"line": [1], "offset": [0], "text": [text], "reason": ["invalid CloudTrail Records document"]},
                           schema={**LINES_SCHEMA, "reason": pl.String})
        return st.chunk(pl.DataFrame(schema=STORE_SCHEMA), bad, source)
    records = doc.select(pl.col("Records").explode()).unnest("Records")
    frame = records.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("line"),
        pl.lit(None, pl.Int64).alias("offset"),
        # the record's own fields stand in for its raw text (hash and quarantine)
        pl.struct(pl.all()).struct.json_encode().alias("text"),
        *st.flatten(PATHS),
    )
    events, rejected = _map(frame, source, options)
    return st.chunk(events, rejected, source)


@register
class CloudTrail(LogFormat):
    name = "cloudtrail"
    description = 'AWS CloudTrail: {"Records": [...]} files or one record per line'

    def sniff(self, head: bytes) -> float:
        if _RECORDS.match(head):
            return 0.98
        return 0.95 * st.share(
            st.sample_objects(head), lambda d: "eventName" in d and "eventSource" in d and ("awsRegion" in d or "eventVersion" in d)
        )

    def parse(self, source: InputSource, options: IngestOptions) -> Iterator[ParsedChunk]:
        from dplogs.ingest.reader import iter_lines

        with source.open() as stream:
            if _RECORDS.match(source.head):
                # one JSON document, read whole: bounded like a line (parsing takes ~20x its size)
                data = stream.read(options.max_line_bytes + 1)
                if len(data) > options.max_line_bytes:
                    raise DataError(f"the CloudTrail Records document is longer than {options.max_line_bytes:,} bytes "
                                    "(--max-line-bytes; parsing it takes about 20 times that in memory); pass "
                                    "--max-line-bytes N to accept it, or give the records one per line")
                yield _document_chunk(data, source.name, options)
                return
            for lines in iter_lines(stream, chunk_lines=options.chunk_lines, max_line_bytes=options.max_line_bytes):
                yield self.parse_lines(lines, source.name, options)

    def parse_lines(self, lines: pl.DataFrame, source: str, options: IngestOptions) -> ParsedChunk:
        """One chunk of JSON-lines records."""
        decoded, rejected, skipped = st.decode_json(lines, PATHS)
        events, no_name = _map(decoded, source, options)
        return st.chunk(events, pl.concat([rejected, no_name]).sort("line"), source, skipped)
