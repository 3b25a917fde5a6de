"""Microsoft Sentinel / Azure Monitor Log Analytics ``Syslog`` table rows exported as JSON lines
(``TimeGenerated``, ``EventTime``, ``Computer``, ``HostName``, ``ProcessName``, ``SyslogMessage``…),
the shape OTRF's Linux recordings and Sentinel query exports have.

The columns give the syslog header (time, host, program, pid); ``SyslogMessage`` is the message
alone, and is read by what wrote it:

- Sysmon for Linux writes its event as Windows-style XML (``<Event><System>…<EventData>``): the
  ``System`` and ``Data`` elements are taken out and mapped by :mod:`dplogs.ingest.windows`, which
  knows the Sysmon event ids (``event.dataset`` ``sysmon_linux.log``, as Elastic's sysmon_linux
  integration; ``user.name`` from its ``User``, the process from ``Image``/``ProcessId``).
- Microsoft's auditd agent (auoms) writes ``type=AUOMS_EXECVE … key=value …`` records: the
  syscall, its success, the process (``exe``, ``comm``, ``pid``, ``cmdline``) and the acting
  ``user``/``effective_user`` (``event.dataset`` ``auditd.log``, as Elastic's auditd module).
- Anything else is a syslog message: the auth categorisation of :mod:`dplogs.ingest.auth` applies
  (sshd, sudo, su, pam…), exactly as for an auth.log line.

The event's time is ``EventTime`` (the syslog header's), else ``TimeGenerated`` (when Log Analytics
received it); Sysmon's own ``UtcTime`` wins for Sysmon events, as in the Windows format.

>>> from dplogs.ingest.base import IngestOptions
>>> line = ('{"TimeGenerated":"2022-05-11T18:10:21.9Z","EventTime":"2022-05-11T18:10:21Z","Computer":"UBUNTU5",'
...         '"HostName":"UBUNTU5","ProcessName":"sshd","ProcessID":812,"Facility":"auth",'
...         '"SyslogMessage":"Failed password for bob from 10.0.0.9 port 50514 ssh2","Type":"Syslog"}')
>>> lines = pl.DataFrame({"line": [1], "offset": [0], "text": [line]})
>>> row = SentinelSyslog().parse_lines(lines, "s.json", IngestOptions()).events.row(0, named=True)
>>> row["user.name"], row["source.ip"], row["event.outcome"], row["host.name"], row["event.dataset"]
('bob', '10.0.0.9', 'failure', 'UBUNTU5', 'system.auth')
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dplogs.ingest import _structured as st
from dplogs.ingest import syslog, windows
from dplogs.ingest.accounts import account_columns
from dplogs.ingest.auth import expand_repeats, most_repeats
from dplogs.ingest.base import LINES_SCHEMA, IngestOptions, LineFormat, ParsedChunk, register
from dplogs.schema import STORE_SCHEMA

_COLUMNS = {
    "time": ("TimeGenerated",), "event_time": ("EventTime",), "computer": ("Computer",),
    "host": ("HostName",), "program": ("ProcessName",), "pid": ("ProcessID",),
    "severity": ("SeverityLevel",), "message": ("SyslogMessage",),
}
PATHS: list[st.Path] = list(_COLUMNS.values())
_SEVERITY = {"emerg": "0", "alert": "1", "crit": "2", "err": "3", "error": "3", "warning": "4", "warn": "4",
             "notice": "5", "info": "6", "debug": "7"}
# The auoms fields mapped (``key=value`` or ``key="value"``).
_AUOMS_KEYS = ("type", "syscall", "success", "pid", "comm", "exe", "cmdline", "user", "effective_user")
_AUOMS_OUTCOME = {"yes": "success", "no": "failure"}


def _col(key: str) -> pl.Expr:
    return st.nonempty(pl.col(st.col_name(_COLUMNS[key])), "-")


def _unescape_xml(expr: pl.Expr) -> pl.Expr:
    """XML text to its characters: the five predefined entities (``&amp;`` last, so ``&amp;lt;``
    stays ``&lt;``)."""
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&")):
        expr = expr.str.replace_all(entity, char, literal=True)
    return expr


def _sysmon_events(rows: pl.DataFrame, source: str, options: IngestOptions) -> pl.DataFrame:
    """Sysmon for Linux XML messages, as the decoded columns of a Windows ``Event`` tree mapped by
    :mod:`dplogs.ingest.windows`."""
    message = pl.col(st.col_name(_COLUMNS["message"]))

    def element(regex: str) -> pl.Expr:
        return _unescape_xml(message.str.extract(regex, 1))

    tree = {
        ("Event", "System", "EventID"): element(r"<EventID>(\d+)</EventID>"),
        ("Event", "System", "Channel"): element(r"<Channel>([^<]*)</Channel>"),
        ("Event", "System", "Computer"): element(r"<Computer>([^<]*)</Computer>"),
        ("Event", "System", "Provider", "#attributes", "Name"): element(r'<Provider Name="([^"]*)"'),
        ("Event", "System", "TimeCreated", "#attributes", "SystemTime"): element(r'<TimeCreated SystemTime="([^"]*)"'),
        **{("Event", "EventData", name): element(rf'<Data Name="{name}">([^<]*)</Data>') for name in windows.EVENT_DATA},
    }
    decoded = rows.select(
        *LINES_SCHEMA.names(),
        *(pl.lit(None, pl.String).alias(st.col_name(p)) for p in windows.PATHS if p not in tree),
        *(expr.alias(st.col_name(p)) for p, expr in tree.items()),
        _host=pl.coalesce(_col("host"), _col("computer")),
    )
    columns = windows.event_columns(options)
    columns.pop("event.dataset")
    columns["host.name"] = pl.coalesce(columns["host.name"], pl.col("_host"))
    # Linux accounts are case-sensitive (the Windows mapping lower-cases them)
    columns |= account_columns(pl.col(st.col_name(("Event", "EventData", "User"))), case_insensitive=False)
    dataset = pl.lit(options.dataset or "sysmon_linux.log", pl.String)
    return st.finish(decoded, columns, source=source, dataset=dataset, module="sysmon_linux")


def _auoms_events(rows: pl.DataFrame, source: str, options: IngestOptions, time: pl.Expr) -> pl.DataFrame:
    """auoms ``type=AUOMS_… key=value`` records."""
    message = pl.col(st.col_name(_COLUMNS["message"]))
    values = {
        key: pl.coalesce(message.str.extract(rf'(?:^|\s){key}="([^"]*)"', 1),
                         st.nonempty(message.str.extract(rf'(?:^|\s){key}=([^"\s]\S*)', 1), "(none)"))
        for key in _AUOMS_KEYS
    }
    execve = values["syscall"] == "execve"
    columns = {
        "@timestamp": time,
        "event.action": values["syscall"],
        "event.category": pl.when(execve).then(pl.lit(["process"], pl.List(pl.String))),
        "event.type": pl.when(execve).then(pl.lit(["start"], pl.List(pl.String))),
        "event.outcome": values["success"].replace_strict(_AUOMS_OUTCOME, default=None, return_dtype=pl.String),
        "event.code": values["type"],
        "user.name": values["user"],
        "user.effective.name": pl.when(values["effective_user"] != values["user"]).then(values["effective_user"]),
        "process.pid": values["pid"].cast(pl.Int64, strict=False),
        "process.executable": values["exe"],
        "process.name": pl.coalesce(values["exe"].str.extract(r"([^/]+)$", 1), values["comm"]),
        "process.command_line": values["cmdline"],
        "host.name": pl.coalesce(_col("host"), _col("computer")),
        "message": message,
    }
    dataset = pl.lit(options.dataset or "auditd.log", pl.String)
    return st.finish(rows, columns, source=source, dataset=dataset, module="auditd")


def _syslog_events(rows: pl.DataFrame, source: str, options: IngestOptions, time: pl.Expr) -> pl.DataFrame:
    """Plain syslog messages: the syslog format's header columns from the table's, then its auth
    categorisation and ECS fields."""
    severity = _col("severity").str.to_lowercase().replace_strict(_SEVERITY, default=None, return_dtype=pl.String)
    frame = syslog.categorise(rows.with_columns(
        _time=time, _host=pl.coalesce(_col("host"), _col("computer")), _prog=pl.coalesce(_col("program"), pl.lit("")),
        _pid=_col("pid"), _msg=pl.col(st.col_name(_COLUMNS["message"])),
        _pri=severity,  # the severity alone (facility 0): event.severity is the priority mod 8
    ))
    dataset = pl.lit(options.dataset, pl.String) if options.dataset else syslog.DATASET
    return st.finish(frame, {e.meta.output_name(): e for e in syslog.FIELDS}, source=source, dataset=dataset,
                     module=syslog.MODULE)


def _is_sentinel_syslog(doc: dict) -> bool:
    return "SyslogMessage" in doc and ("TimeGenerated" in doc or "EventTime" in doc)


@register
class SentinelSyslog(LineFormat):
    name = "sentinel"
    description = ("Microsoft Sentinel / Log Analytics Syslog table rows as JSON lines (syslog messages, "
                   "Sysmon for Linux, auoms)")

    def sniff(self, head: bytes) -> float:
        return 0.95 * st.share(st.sample_objects(head), _is_sentinel_syslog)

    def most_events(self, lines: pl.DataFrame) -> np.ndarray | None:
        return most_repeats(lines)

    def parse_lines(self, lines: pl.DataFrame, source: str, options: IngestOptions) -> ParsedChunk:
        decoded, rejected, skipped = st.decode_json(lines, PATHS)
        message = pl.col(st.col_name(_COLUMNS["message"]))
        no_message = decoded.filter(message.is_null())
        if no_message.height:  # a JSON object without SyslogMessage is not a row of this table
            rejected = pl.concat([rejected, no_message.select(LINES_SCHEMA.names()).with_columns(
                reason=pl.lit("no SyslogMessage"))]).sort("line")
            decoded = decoded.filter(message.is_not_null())
        time = pl.coalesce(st.parse_timestamp(_col("event_time"), options.tz), st.parse_timestamp(_col("time"), options.tz))
        kind = (pl.when(message.str.starts_with("<Event>") | message.str.starts_with("<Event "))
                .then(pl.lit("sysmon"))
                .when(message.str.starts_with("type=AUOMS_")).then(pl.lit("auoms"))
                .otherwise(pl.lit("syslog")))
        parts = decoded.with_columns(_kind=kind).partition_by("_kind", as_dict=True, include_key=False)
        parsers = {"sysmon": lambda r: _sysmon_events(r, source, options),
                   "auoms": lambda r: _auoms_events(r, source, options, time),
                   "syslog": lambda r: _syslog_events(r, source, options, time)}
        frames, rows = [], []
        for (name,), part in sorted(parts.items()):
            frames.append(parsers[name](part))
            rows.append(part.select(LINES_SCHEMA.names()))
        if not frames:
            return st.chunk(pl.DataFrame(schema=STORE_SCHEMA), rejected, source, skipped)
        events, rows_in_order = pl.concat(frames), pl.concat(rows)
        order = rows_in_order.get_column("line").arg_sort()
        events, rows_in_order = events[order], rows_in_order[order]
        events, rejected = st.in_time_range(events, rows_in_order, rejected, options)
        return expand_repeats(st.chunk(events, rejected, source, skipped))
