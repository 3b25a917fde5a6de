"""Windows event logs: flat NXLog/Winlogbeat JSON, the ``Event.System``/``Event.EventData`` JSON
tree, and binary ``.evtx`` files (through the ``evtx`` package, converted to the tree).

Both JSON shapes are read with one set of key paths and coalesced, so a chunk may mix them. Security
events 4624/4625/4634/4647/4648/4672/4688/4689/4720/4722/4725/4726/4740/4768/4769/4771/4776/
4778/4779 and Sysmon 1/3/5/7/10/11/12/13/22/23/26 are mapped to ECS the way Winlogbeat does (``event.action``,
``event.category``, ``event.outcome`` from the audit keywords or the status code, ``user.name`` from
the target account for logons and from the subject for actions a subject performs); every other
event still ingests with its code, channel, provider, host, time and user. Values Windows writes for
"none" (``-``, empty) become null, and ``::ffff:``-mapped IPv4 addresses are unmapped.

>>> from dplogs.ingest.base import IngestOptions
>>> line = ('{"@timestamp":"2020-10-22T08:30:00Z","Hostname":"DC1","Channel":"security","EventID":4625,'
...         '"EventType":"AUDIT_FAILURE","TargetUserName":"ann","IpAddress":"::ffff:10.0.0.5","LogonType":"3"}')
>>> lines = pl.DataFrame({"line": [1], "offset": [0], "text": [line]})
>>> row = WindowsJson().parse_lines(lines, "w.json", IngestOptions()).events.row(0, named=True)
>>> row["event.action"], row["event.outcome"], row["user.name"], row["source.ip"], row["winlog.channel"]
('logon-failed', 'failure', 'ann', '10.0.0.5', 'Security')
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import polars as pl

from dplogs.errors import StoreWriteError
from dplogs.escape import visible
from dplogs.ingest import _structured as st
from dplogs.ingest.accounts import account_columns
from dplogs.ingest.base import (
    LINES_SCHEMA,
    IngestOptions,
    InputSource,
    LineFormat,
    LogFormat,
    ParsedChunk,
    register,
)
from dplogs.schema import STORE_SCHEMA

# EventID -> (event.action, event.category, event.type, whose account is user.name)
_SECURITY: dict[str, tuple[str, str, str, str]] = {
    "4624": ("logged-in", "authentication", "start", "target"),
    "4625": ("logon-failed", "authentication", "start", "target"),
    "4634": ("logged-out", "authentication", "end", "target"),
    "4647": ("logged-out", "authentication", "end", "target"),
    "4648": ("logged-in-explicit", "authentication", "start", "subject"),
    "4672": ("logged-in-special", "iam", "admin", "subject"),
    "4688": ("created-process", "process", "start", "subject"),
    "4689": ("exited-process", "process", "end", "subject"),
    "4720": ("added-user-account", "iam", "creation", "subject"),
    "4722": ("enabled-user-account", "iam", "change", "subject"),
    "4725": ("disabled-user-account", "iam", "change", "subject"),
    "4726": ("deleted-user-account", "iam", "deletion", "subject"),
    "4740": ("locked-out-user-account", "iam", "change", "subject"),
    "4768": ("kerberos-authentication-ticket-requested", "authentication", "start", "target"),
    "4769": ("kerberos-service-ticket-requested", "authentication", "start", "target"),
    "4771": ("kerberos-preauth-failed", "authentication", "start", "target"),
    "4776": ("credential-validated", "authentication", "start", "target"),
    "4778": ("session-reconnected", "authentication", "start", "target"),
    "4779": ("session-disconnected", "authentication", "end", "target"),
}
_SYSMON: dict[str, tuple[str, str, str]] = {
    "1": ("Process Create (rule: ProcessCreate)", "process", "start"),
    "3": ("Network connection detected (rule: NetworkConnect)", "network", "connection"),
    "5": ("Process terminated (rule: ProcessTerminate)", "process", "end"),
    "7": ("Image loaded (rule: ImageLoad)", "library", "start"),
    "10": ("Process accessed (rule: ProcessAccess)", "process", "access"),
    "11": ("File created (rule: FileCreate)", "file", "creation"),
    "12": ("Registry object added or deleted (rule: RegistryEvent)", "registry", "change"),
    "13": ("Registry value set (rule: RegistryEvent)", "registry", "change"),
    "22": ("Dns query (rule: DnsQuery)", "network", "protocol"),
    "23": ("File Delete archived (rule: FileDelete)", "file", "deletion"),
    "26": ("File Delete logged (rule: FileDeleteDetected)", "file", "deletion"),
}
_STATUS_CODED = ["4768", "4769", "4776"]  # outcome from Status (0x0 = success), as Winlogbeat does
_IANA_PROTOCOLS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "ipv6-icmp"}

EVENT_DATA = (
    "TargetUserName", "TargetDomainName", "TargetUserSid", "SubjectUserName", "SubjectDomainName",
    "SubjectUserSid", "IpAddress", "IpPort", "LogonType", "ProcessName", "ProcessId",
    "NewProcessName", "NewProcessId", "CommandLine", "ParentProcessName", "Image", "ParentImage",
    "User", "SourceIp", "SourcePort", "DestinationIp", "DestinationPort", "Protocol", "QueryName",
    "Status", "SourceAddress", "DestAddress", "DestPort", "UtcTime", "SourceImage", "SourceProcessId",
    "SourceUser",
)
_SYSTEM = {
    "code": ("EventID",), "channel": ("Channel",), "host": ("Computer",),
    "provider": ("Provider", "#attributes", "Name"), "keywords": ("Keywords",),
    "time": ("TimeCreated", "#attributes", "SystemTime"), "sid": ("Security", "#attributes", "UserID"),
}
_FLAT = {
    "code": ("EventID",), "channel": ("Channel",), "host": ("Hostname",), "provider": ("SourceName",),
    "eventtype": ("EventType",), "time": ("@timestamp",), "time_created": ("TimeCreated",),
    "message": ("Message",),
}
PATHS: list[st.Path] = (
    [("Event", "System", *p) for p in _SYSTEM.values()]
    + [("Event", "EventData", f) for f in EVENT_DATA]
    + list(_FLAT.values())
    + [(f,) for f in EVENT_DATA if (f,) not in _FLAT.values()]
)


def _get(path: st.Path) -> pl.Expr:
    return st.nonempty(pl.col(st.col_name(path)), "-")


def _data(name: str) -> pl.Expr:
    """An EventData field from either shape."""
    return pl.coalesce(_get(("Event", "EventData", name)), _get((name,)))


def _integer(expr: pl.Expr) -> pl.Expr:
    """Decimal or ``0x`` hexadecimal text to an integer (Windows writes pids both ways)."""
    hexa = expr.str.to_lowercase().str.strip_prefix("0x")
    return (
        pl.when(expr.str.starts_with("0x") | expr.str.starts_with("0X"))
        .then(hexa.str.to_integer(base=16, strict=False))
        .otherwise(expr.cast(pl.Int64, strict=False))
    )


def _ip(expr: pl.Expr) -> pl.Expr:
    return expr.str.strip_prefix("::ffff:")


def event_columns(options: IngestOptions) -> dict[str, pl.Expr]:
    sys_ = {k: _get(("Event", "System", *p)) for k, p in _SYSTEM.items()}
    flat = {k: _get(p) for k, p in _FLAT.items()}
    raw_code = pl.coalesce(sys_["code"], flat["code"])
    # Classic events write EventID as {"#attributes": {"Qualifiers": ...}, "#text": 7036}.
    code = (
        pl.when(raw_code.str.starts_with("{"))
        .then(raw_code.str.json_path_match("$['#text']"))
        .otherwise(raw_code)
    )
    channel_raw = pl.coalesce(sys_["channel"], flat["channel"])
    channel = pl.when(channel_raw.str.to_lowercase() == "security").then(pl.lit("Security")).otherwise(channel_raw)
    provider = pl.coalesce(sys_["provider"], flat["provider"])
    security = (channel == "Security") | (provider == "Microsoft-Windows-Security-Auditing")
    # Sysmon for Linux writes the same event ids and fields (dplogs.ingest.sentinel reads its XML)
    sysmon = (channel == "Microsoft-Windows-Sysmon/Operational") | provider.is_in(["Microsoft-Windows-Sysmon", "Linux-Sysmon"])

    def table(mapping: dict, index: int, family: pl.Expr) -> pl.Expr:
        lookup = {k: v[index] for k, v in mapping.items()}
        return pl.when(family).then(code.replace_strict(lookup, default=None, return_dtype=pl.String))

    role = table(_SECURITY, 3, security)
    # User: "DOMAIN\\name" in Sysmon's User field.
    user_field = pl.coalesce(_data("User"), _data("SourceUser"))  # SourceUser: Sysmon 10 (13.x+)
    user_domain_part = user_field.str.extract(r"^(.*)\\[^\\]*$", 1)
    user_name_part = pl.coalesce(user_field.str.extract(r"\\([^\\]*)$", 1), user_field)
    target, subject = _data("TargetUserName"), _data("SubjectUserName")
    subject_first = (role == "subject") | role.is_null()
    user_name = pl.when(subject_first).then(pl.coalesce(subject, target, user_name_part)).otherwise(
        pl.coalesce(target, subject, user_name_part)
    )
    user_domain = pl.when(subject_first).then(
        pl.coalesce(pl.when(subject.is_not_null()).then(_data("SubjectDomainName")),
                    pl.when(target.is_not_null()).then(_data("TargetDomainName")), user_domain_part)
    ).otherwise(
        pl.coalesce(pl.when(target.is_not_null()).then(_data("TargetDomainName")),
                    pl.when(subject.is_not_null()).then(_data("SubjectDomainName")), user_domain_part)
    )
    user_id = pl.when(subject_first).then(pl.coalesce(_data("SubjectUserSid"), _data("TargetUserSid"))).otherwise(
        pl.coalesce(_data("TargetUserSid"), _data("SubjectUserSid"))
    )
    keywords = sys_["keywords"].str.to_lowercase().str.strip_prefix("0x").str.zfill(16).str.slice(2, 1)
    audit = pl.coalesce(
        pl.when(flat["eventtype"] == "AUDIT_SUCCESS").then(pl.lit("success"))
        .when(flat["eventtype"] == "AUDIT_FAILURE").then(pl.lit("failure")),
        pl.when(keywords == "2").then(pl.lit("success")).when(keywords == "1").then(pl.lit("failure")),
    )
    status = _data("Status")
    outcome = (
        pl.when(~security).then(None)
        .when(code.is_in(["4625", "4771"])).then(pl.lit("failure"))
        .when(code.is_in(_STATUS_CODED) & status.is_not_null())
        .then(pl.when(_integer(status) == 0).then(pl.lit("success")).otherwise(pl.lit("failure")))
        .otherwise(audit)
    )
    dataset = (
        pl.when(security).then(pl.lit("windows.security"))
        .when(sysmon).then(pl.lit("windows.sysmon"))
        .otherwise(pl.lit("windows.") + channel.str.to_lowercase().str.replace_all(r"[^a-z0-9]+", "_"))
    )
    protocol = _data("Protocol").str.to_lowercase()
    # Sysmon 10 names the accessing process SourceImage (Winlogbeat maps it to process.executable).
    executable = pl.coalesce(_data("NewProcessName"), _data("Image"), _data("ProcessName"), _data("SourceImage"))
    time = st.parse_timestamp(pl.coalesce(sys_["time"], flat["time"], flat["time_created"]), options.tz)
    # Sysmon batches its writes; UtcTime is when the event happened (Winlogbeat uses it too).
    utc_time = pl.when(sysmon).then(st.parse_timestamp(_data("UtcTime"), "UTC"))
    return {
        "@timestamp": pl.coalesce(utc_time, time),
        "event.dataset": pl.coalesce(pl.lit(options.dataset, pl.String), dataset, pl.lit("windows.unknown")),
        "event.code": code,
        "event.provider": provider,
        "event.action": pl.coalesce(table(_SECURITY, 0, security), table(_SYSMON, 0, sysmon)),
        "event.category": pl.coalesce(table(_SECURITY, 1, security), table(_SYSMON, 1, sysmon)),
        "event.type": pl.coalesce(table(_SECURITY, 2, security), table(_SYSMON, 2, sysmon)),
        "event.outcome": outcome,
        "message": flat["message"],
        # Windows account names are case-insensitive, and 4768/4769 write Kerberos principals
        # (user@REALM): one account, one user.name (dplogs.ingest.accounts).
        **account_columns(user_name, user_domain, case_insensitive=True),
        "user.id": pl.coalesce(user_id, pl.when(sysmon.not_()).then(sys_["sid"])),
        "user.target.name": pl.when(role == "subject").then(account_columns(target, case_insensitive=True)["user.name"]),
        "source.ip": _ip(pl.coalesce(_data("IpAddress"), _data("SourceIp"), _data("SourceAddress"))),
        "source.port": pl.coalesce(_data("IpPort"), _data("SourcePort")),
        "destination.ip": _ip(pl.coalesce(_data("DestinationIp"), _data("DestAddress"))),
        "destination.port": pl.coalesce(_data("DestinationPort"), _data("DestPort")),
        "network.transport": pl.coalesce(protocol.replace_strict(_IANA_PROTOCOLS, default=None), protocol),
        "host.name": pl.coalesce(sys_["host"], flat["host"]),
        "process.executable": executable,
        "process.pid": _integer(pl.coalesce(_data("NewProcessId"), _data("ProcessId"), _data("SourceProcessId"))),
        "process.command_line": _data("CommandLine"),
        "process.parent.executable": pl.coalesce(_data("ParentProcessName"), _data("ParentImage")),
        "process.name": executable.str.extract(r"([^\\/]+)$", 1),
        "dns.question.name": _data("QueryName"),
        "winlog.logon.type": _data("LogonType"),
        "winlog.channel": channel,
    }


def _parse(lines: pl.DataFrame, source: str, options: IngestOptions) -> ParsedChunk:
    decoded, rejected, skipped = st.decode_json(lines, PATHS)
    columns = event_columns(options)
    dataset = columns.pop("event.dataset")
    events = st.finish(decoded, columns, source=source, dataset=dataset, module="windows")
    no_id = events["event.code"].is_null()
    if no_id.any():  # a JSON object that is not a Windows event at all
        rejected = pl.concat([
            rejected,
            decoded.filter(no_id).select(LINES_SCHEMA.names()).with_columns(reason=pl.lit("no EventID")),
        ]).sort("line")
        events, decoded = events.filter(~no_id), decoded.filter(~no_id)
    events, rejected = st.in_time_range(events, decoded, rejected, options)
    return st.chunk(events, rejected, source, skipped)


def _is_windows(doc: dict) -> bool:
    return ("EventID" in doc and ("Channel" in doc or "Hostname" in doc or "SourceName" in doc)) or (
        isinstance(doc.get("Event"), dict) and "System" in doc["Event"]
    )


@register
class WindowsJson(LineFormat):
    name = "windows"
    description = "Windows events as JSON lines: flat NXLog/Winlogbeat exports or the Event.System/EventData tree"

    def sniff(self, head: bytes) -> float:
        return 0.95 * st.share(st.sample_objects(head), _is_windows)

    def parse_lines(self, lines: pl.DataFrame, source: str, options: IngestOptions) -> ParsedChunk:
        return _parse(lines, source, options)


EVTX_MAGIC = b"ElfFile\x00"


def _starts_with_magic(path: str) -> bool:
    """True for an uncompressed .evtx file, which the native reader opens by path (faster)."""
    with open(path, "rb") as f:
        return f.read(len(EVTX_MAGIC)) == EVTX_MAGIC


@register
class Evtx(LogFormat):
    name = "evtx"
    description = "Binary Windows .evtx files, read with the evtx package"

    def sniff(self, head: bytes) -> float:
        return 1.0 if head.startswith(EVTX_MAGIC) else 0.0

    def parse(self, source: InputSource, options: IngestOptions) -> Iterator[ParsedChunk]:
        import evtx  # native reader, loaded only for .evtx input

        with source.open() as stream, tempfile.TemporaryDirectory(prefix="dplogs-evtx-") as tmp:
            path = source.path
            if path is None or not _starts_with_magic(path):
                # The native reader seeks, which a gzip stream cannot: spool it to a plain file.
                path = os.path.join(tmp, "input.evtx")
                try:
                    with open(path, "wb") as out:
                        shutil.copyfileobj(stream, out, 1 << 22)
                except OSError as exc:  # a full temporary directory would be an exit 70
                    if exc.errno is None:  # not the file system's (a damaged gzip stream's own error)
                        raise
                    raise StoreWriteError(
                        f"cannot unpack {visible(source.name)} to a temporary file in {visible(tmp)} ({exc.strerror or exc}): "
                        "point TMPDIR at a directory with room for the input, or ingest it uncompressed; nothing "
                        "was written to the store") from None
            try:
                records = evtx.PyEvtxParser(path).records_json()
            except Exception as exc:  # the evtx package raises plain RuntimeErrors
                bad = pl.DataFrame({"line": [1], "text": [str(exc)], "reason": ["not a readable EVTX file"]})
                yield ParsedChunk(pl.DataFrame(schema=STORE_SCHEMA), st.quarantine(bad, source.name))
                return
            number = 0
            while True:
                texts: list[str | None] = []
                errors: list[str | None] = []
                # The evtx API yields one Python dict per record; everything after this is vectorised.
                for _ in range(options.chunk_lines):
                    try:
                        record = next(records)
                    except StopIteration:
                        break
                    except Exception as exc:  # a corrupt record: quarantined, the file goes on
                        texts.append(None)
                        errors.append(str(exc) or type(exc).__name__)
                    else:
                        texts.append(record["data"])
                        errors.append(None)
                if not texts:
                    return
                batch = pl.DataFrame({"text": texts, "error": errors}, schema={"text": pl.String, "error": pl.String})
                batch = batch.with_row_index("line", offset=number + 1).with_columns(
                    pl.col("line").cast(pl.Int64),
                    pl.lit(None, pl.Int64).alias("offset"),
                    # records_json may pretty-print; newlines only occur between JSON tokens
                    pl.col("text").str.replace_all("\n", " ", literal=True),
                )
                number += batch.height
                bad = batch.filter(pl.col("error").is_not_null())
                chunk = _parse(batch.filter(pl.col("error").is_null()).select(LINES_SCHEMA.names()), source.name, options)
                if bad.height:
                    # reasons are shown in summaries: a fixed category, the error text stays in `text`
                    extra = st.quarantine(bad.select("line", pl.col("error").alias("text"), reason=pl.lit("unreadable EVTX record")), source.name)
                    chunk = ParsedChunk(chunk.events, pl.concat([chunk.quarantine, extra]), skipped=chunk.skipped)
                yield chunk
