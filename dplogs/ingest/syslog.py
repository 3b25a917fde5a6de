"""Syslog: RFC 3164 (BSD, e.g. ``/var/log/auth.log``), its ISO-8601 variant (rsyslog high
precision timestamps), its ``Mmm dd yyyy hh:mm:ss`` variant (network devices such as Cisco ASA,
whose year is the line's own; ASA without a device id ends it with a colon) and RFC 5424. Auth
messages are categorised by :mod:`dplogs.ingest.auth`, firewall messages (netfilter, Cisco ASA and
IOS) read by :mod:`dplogs.ingest.firewall`.

The header grammar follows Elastic Filebeat's ``system/syslog`` grok: timestamp, host, then the
program name up to the first ``[pid]: `` or ``: ``; a line with a timestamp but no host/program keeps
everything after the timestamp as the message. RFC 3164 timestamps carry no year and no zone: the
year is ``IngestOptions.year`` (default: the current year, minus one for dates more than a day in
the future) and the zone ``IngestOptions.tz`` (default UTC).

>>> import polars as pl
>>> from dplogs.ingest.base import IngestOptions
>>> lines = pl.DataFrame({"line": [1], "offset": [0], "text": [
...     "Feb 21 21:54:44 web1 sshd[3402]: Accepted password for bob from 10.0.2.2 port 63673 ssh2"]})
>>> ev = Syslog().parse_lines(lines, "auth.log", IngestOptions(year=2024, tz="Europe/Paris")).events
>>> ev.select("@timestamp", "host.name", "user.name", "event.action", "event.outcome").rows()
[(datetime.datetime(2024, 2, 21, 20, 54, 44, tzinfo=zoneinfo.ZoneInfo(key='UTC')), 'web1', 'bob', 'ssh_login', 'success')]
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import replace

import numpy as np
import polars as pl

from dplogs.ingest._text import blank, finish, localize, run
from dplogs.ingest.accounts import account_columns, is_qualified
from dplogs.ingest.auditd import parse_records, syslog_record
from dplogs.ingest.auth import expand_repeats, most_repeats, unwrap_repeats, with_auth
from dplogs.ingest.base import IngestOptions, LineFormat, ParsedChunk, register, sniff_lines
from dplogs.ingest.firewall import with_firewall

_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_HOST = r"[0-9A-Za-z][\w.\-]*|[0-9A-Fa-f]*:[0-9A-Fa-f:]+"
HEADER_3164 = (
    r"^(?:<(?P<pri>\d{1,3})>)?"
    rf"(?:(?P<bsd>(?:{_MONTHS}) +\d{{1,2}} \d{{2}}:\d{{2}}:\d{{2}})"
    # with the year: network devices (Cisco ASA), which may end it with a colon when they name no host
    rf"|(?P<bsdy>(?:{_MONTHS}) +\d{{1,2}} \d{{4}} \d{{2}}:\d{{2}}:\d{{2}}):?"
    r"|(?P<iso>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?)(?P<tz>Z|[+-]\d{2}:?\d{2})?)"
    rf"(?:(?: +(?P<host>{_HOST}))? +(?P<prog>.*?)(?:\[(?P<pid>\d+)\])?: (?P<msg>.*)| +(?P<rest>.*))$"
)
HEADER_5424 = (
    r"^<(?P<pri>\d{1,3})>\d{1,2} (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: \ufeff?(?P<msg>.*))?$"
)
HEADER_CISCO = (
    r"^(?:<(?P<pri>\d{1,3})>)?(?P<pre>(?:\S+ )*?)(?:(?P<year0>\d{4}) )?[*.]?"
    rf"(?P<stamp>(?:{_MONTHS}) +\d{{1,2}})(?P<year> \d{{4}})?(?P<clock> \d{{2}}:\d{{2}}:\d{{2}})(?P<frac>\.\d{{1,6}})?"
    r"(?: [A-Za-z]{1,6})?: (?P<msg>%[A-Z][A-Z0-9_]*-(?:[A-Za-z0-9_]+-)?[0-7]-[A-Z0-9_]+:.*)$"
)
"""A Cisco IOS line the router sent straight to the collector, with no relay's header: ``<pri>``, its
sequence number, maybe its name or address (``1236: sw01: ``, ``: 192.0.2.1 77: ``), its own stamp
(``*`` or ``.`` when its clock is not synchronised; the year after the day or, NX-OS, first;
milliseconds and a zone name, which is not read:
the stamp is read in --tz, as an ASA's), then the ``%FACILITY-SEVERITY-MNEMONIC:`` message."""
_CISCO_HOST = r"(?:^| )([^\s]*[^\s\d:][^\s]*?):? (?:\d+: )?$"
"""The device in what comes before a Cisco stamp: the last word that is not a sequence number."""
_IS_5424 = r"^<\d{1,3}>\d{1,2} "
_SNIFF = re.compile(
    rf"^(?:<\d{{1,3}}>)?(?:(?:{_MONTHS}) +\d{{1,2}} (?:\d{{2}}:\d{{2}}:\d{{2}}|\d{{4}} \d{{2}}:\d{{2}}:\d{{2}}:?)"
    rf"|\d{{4}}-\d{{2}}-\d{{2}}T\d{{2}}:\d{{2}}:\d{{2}}\S*) +\S"
)
_SNIFF_5424 = re.compile(_IS_5424)
_SNIFF_CISCO = re.compile(HEADER_CISCO)
_YEARLESS = rf"^(?:{_MONTHS}) +\d{{1,2}} \d{{2}}:"  # an RFC 3164 stamp, not one with its year or ISO


def _nil(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr == "-").then(None).otherwise(expr)


def _bsd_in(bsd: pl.Expr, year: int, tz: str) -> pl.Expr:
    """An RFC 3164 ``Mmm dd hh:mm:ss`` stamp read in ``year`` and zone ``tz``, as UTC."""
    return localize(pl.format("{} {}", pl.lit(year), bsd).str.strptime(pl.Datetime("us"), "%Y %b %d %H:%M:%S", strict=False), tz)


@functools.lru_cache(maxsize=16)
def _bsd_fast_time(year: int, tz: str) -> pl.Expr:
    """:func:`_bsd_in` of ``_ts_str`` for stamps known to be exactly ``Mmm [ d]d hh:mm:ss`` (the
    fast path): rewritten to ISO ``YYYY-MM-DDThh:mm:ss``, which polars parses ~5x faster than
    ``%b``. The date part goes through one lookup of its six characters (``"Mar  1"`` →
    ``"2024-03-01T"``; a third of the cost of rewriting month and day apart, once per run of equal dates); days that do not
    exist in a month give null at ``strptime``, like unknown ones at the lookup, as in
    :func:`_bsd_in` (``tests/ingest/test_syslog_fast.py`` compares the two). Built once per year
    and zone: building it cost ~0.3 ms per block."""
    dates = {}
    for number, month in enumerate(_MONTHS.split("|"), start=1):
        for day in range(1, 32):
            dates[f"{month} {day:2d}"] = dates[f"{month} {day:02d}"] = f"{year:04d}-{number:02d}-{day:02d}T"
    bsd = pl.col("_ts_str")
    # Looked up once per run of equal dates (a log is in time order: a block holds a few runs), then
    # spread back over the rows: 40% less than a lookup per row, and no more on shuffled lines.
    day = bsd.str.slice(0, 6)
    date = day.rle().struct.field("value").replace_strict(dates, default=None, return_dtype=pl.String).gather(day.rle_id())
    iso = pl.concat_str(date, bsd.str.slice(7))
    # cache=False: stamps repeat too little within a block for polars' per-value cache to pay.
    return localize(iso.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S", strict=False, cache=False), tz)


def _with_bsd_time(frame: pl.DataFrame, options: IngestOptions) -> pl.DataFrame:
    """``_time`` from the fast path's RFC 3164 stamps in ``_ts_str``, equal to
    :func:`syslog_time`, but the previous year is parsed only when some stamp would lie in the
    future (rare: year rollover)."""
    if options.year is not None:
        return frame.with_columns(_time=_bsd_fast_time(options.year, options.tz))
    now = dt.datetime.now(dt.UTC)
    frame = frame.with_columns(_time=_bsd_fast_time(now.year, options.tz))
    future = pl.col("_time") > pl.lit(now + dt.timedelta(days=1))
    if frame.select(future.any()).item():
        frame = frame.with_columns(_time=pl.when(future).then(_bsd_fast_time(now.year - 1, options.tz)).otherwise(pl.col("_time")))
    return frame


def syslog_time(bsd: pl.Expr, iso: pl.Expr, tz_suffix: pl.Expr, options: IngestOptions, bsd_year: pl.Expr | None = None) -> pl.Expr:
    """UTC timestamp from an RFC 3164 ``Mmm dd hh:mm:ss``, a ``Mmm dd yyyy hh:mm:ss`` (``bsd_year``:
    its own year, no guess) or an ISO-8601 string (one non-null), applying the year and zone rules
    of :class:`IngestOptions`."""
    if options.year is not None:
        bsd_ts = _bsd_in(bsd, options.year, options.tz)
    else:
        now = dt.datetime.now(dt.UTC)
        this_year = _bsd_in(bsd, now.year, options.tz)
        bsd_ts = pl.when(this_year > pl.lit(now + dt.timedelta(days=1))).then(_bsd_in(bsd, now.year - 1, options.tz)).otherwise(this_year)
    aware = pl.format("{}{}", iso, tz_suffix.str.replace("Z", "+00:00")).str.strptime(
        pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M:%S%.f%z", strict=False
    )
    naive = localize(iso.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S%.f", strict=False), options.tz)
    stamped = [] if bsd_year is None else [localize(bsd_year.str.strptime(pl.Datetime("us"), "%b %d %Y %H:%M:%S", strict=False), options.tz)]
    return pl.coalesce(bsd_ts, *stamped, pl.when(tz_suffix.is_not_null()).then(aware).otherwise(naive))


_FAST = rf"^(?:{_MONTHS}) [ \d]\d \d\d:\d\d:\d\d [0-9A-Za-z][\w.\-]* \S[^:]*?: "
_HEADER_COLUMNS = ("_ts_str", "_time", "_host", "_prog", "_pid", "_msg", "_pri", "_header")


def _header_fast(lines: pl.DataFrame, options: IngestOptions) -> pl.DataFrame:
    """Header columns for lines matching ``_FAST``; equal to what ``HEADER_3164`` extracts.

    After the 16-byte stamp comes ``host tag: msg``; the host holds no space and no colon, so the
    first space ends it and the first ``": "`` ends the tag."""
    text, tag = pl.col("text"), pl.col("_tag")
    if lines.select((text.str.len_bytes() == text.str.len_chars()).all()).item():
        # ASCII: str.find's byte offsets are character offsets too, so cut at them (half the
        # cost of splitting). "prog[pid]": where the "[pid]" suffix starts, by a regex search
        # without captures (half the cost of extracting it), then both parts by cutting there.
        rest, sp, colon, cut = pl.col("_rest"), pl.col("_sp"), pl.col("_colon"), pl.col("_cut")
        frame = lines.lazy().with_columns(_rest=text.str.slice(16)).with_columns(
            _sp=rest.str.find(" ", literal=True).cast(pl.Int64), _colon=rest.str.find(": ", literal=True).cast(pl.Int64),
        ).select(*lines.columns, _ts_str=text.str.slice(0, 15), _host=rest.str.slice(0, sp),
                 _tag=rest.str.slice(sp + 1, colon - sp - 1), _msg=rest.str.slice(colon + 2),
        ).with_columns(_cut=tag.str.find(r"\[\d+\]$").cast(pl.Int64)).with_columns(
            _pid=tag.str.slice(cut + 1, tag.str.len_bytes().cast(pl.Int64) - cut - 2),
            _prog=pl.when(cut.is_null()).then(tag).otherwise(tag.str.slice(0, cut)),
        ).pipe(run)
    else:
        # Split at the first space and the first ": "; the pid by regex, the program by cutting
        # its length off the tag.
        host_rest = text.str.slice(16).str.splitn(" ", 2)
        tag_msg = host_rest.struct.field("field_1").str.splitn(": ", 2)
        pid = pl.col("_pid")
        frame = lines.lazy().with_columns(
            _ts_str=text.str.slice(0, 15), _host=host_rest.struct.field("field_0"),
            _tag=tag_msg.struct.field("field_0"), _msg=tag_msg.struct.field("field_1"),
        ).with_columns(_pid=tag.str.extract(r"\[(\d+)\]$", 1)).with_columns(
            _prog=pl.when(pid.is_null()).then(tag).otherwise(tag.str.head(-(pid.str.len_chars().cast(pl.Int64) + 2))),
        ).pipe(run)
    return _with_bsd_time(frame, options).lazy().with_columns(
        _pri=pl.lit(None, pl.String),
        _header=pl.lit(True),
    ).select(*lines.columns, *_HEADER_COLUMNS).pipe(run)


def _header_slow(lines: pl.DataFrame, options: IngestOptions) -> pl.DataFrame:
    """Header columns through the full RFC 3164 / ISO / RFC 5424 regexes."""
    text = pl.col("text")
    frame = lines.with_columns(_h=text.str.extract_groups(HEADER_3164)).unnest("_h")
    frame = frame.with_columns(
        _ts_str=pl.coalesce("bsd", "bsdy", "iso"),
        _time=syslog_time(pl.col("bsd"), pl.col("iso"), pl.col("tz"), options, pl.col("bsdy")),
        _host=pl.col("host"),
        _prog=pl.col("prog"),
        _pid=pl.col("pid"),
        _msg=pl.coalesce("msg", "rest"),
        _pri=pl.col("pri"),
    ).select(*lines.columns, "_ts_str", "_time", "_host", "_prog", "_pid", "_msg", "_pri")
    frame = _with_cisco_headers(frame, options)
    if not frame.select(text.str.contains(_IS_5424).any()).item():
        return frame.with_columns(_header=pl.col("_ts_str").is_not_null())
    g = text.str.extract_groups(HEADER_5424)
    ts5424 = g.struct.field("ts")
    time5424 = ts5424.str.replace(r"Z$", "+00:00").str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M:%S%.f%z", strict=False)
    is5424 = g.struct.field("pri").is_not_null()
    return frame.with_columns(
        pl.when(is5424).then(_nil(ts5424)).otherwise(pl.col("_ts_str")).alias("_ts_str"),
        pl.when(is5424).then(time5424).otherwise(pl.col("_time")).alias("_time"),
        pl.when(is5424).then(_nil(g.struct.field("host"))).otherwise(pl.col("_host")).alias("_host"),
        pl.when(is5424).then(_nil(g.struct.field("app"))).otherwise(pl.col("_prog")).alias("_prog"),
        pl.when(is5424).then(_nil(g.struct.field("procid"))).otherwise(pl.col("_pid")).alias("_pid"),
        pl.when(is5424).then(g.struct.field("msg").fill_null("")).otherwise(pl.col("_msg")).alias("_msg"),
        pl.when(is5424).then(g.struct.field("pri")).otherwise(pl.col("_pri")).alias("_pri"),
        pl.when(is5424).then(True).otherwise(pl.col("_ts_str").is_not_null()).alias("_header"),
    )


def _with_cisco_headers(frame: pl.DataFrame, options: IngestOptions) -> pl.DataFrame:
    """``frame`` with the lines RFC 3164 did not read but :data:`HEADER_CISCO` does given their
    header columns (only those lines are searched: usually none)."""
    missed = pl.col("_ts_str").is_null()
    if not frame.select(missed.any()).item():
        return frame
    g = pl.col("text").str.extract_groups(HEADER_CISCO)
    found = frame.select(_g=pl.when(missed).then(g)).unnest("_g")
    stamp, year = found.get_column("stamp"), found.get_column("year").fill_null(" " + found.get_column("year0"))
    clock, frac = found.get_column("clock"), found.get_column("frac")
    bsd = pl.when(pl.lit(year).is_null()).then(pl.lit(stamp) + pl.lit(clock))
    bsdy = pl.when(pl.lit(year).is_not_null()).then(pl.lit(stamp) + pl.lit(year) + pl.lit(clock))
    micros = pl.lit(frac).str.slice(1).str.pad_end(6, "0").cast(pl.Int64, strict=False).fill_null(0)
    time = syslog_time(bsd, pl.lit(None, pl.String), pl.lit(None, pl.String), options, bsdy) + pl.duration(microseconds=micros)
    ok = pl.lit(found.get_column("msg")).is_not_null()
    return frame.with_columns(
        _ts_str=pl.when(ok).then(pl.coalesce(bsd, bsdy)).otherwise(pl.col("_ts_str")),
        _time=pl.when(ok).then(time).otherwise(pl.col("_time")),
        _host=pl.when(ok).then(pl.lit(found.get_column("pre")).str.extract(_CISCO_HOST, 1)).otherwise(pl.col("_host")),
        _msg=pl.when(ok).then(pl.lit(found.get_column("msg"))).otherwise(pl.col("_msg")),
        _pri=pl.when(ok).then(pl.lit(found.get_column("pri"))).otherwise(pl.col("_pri")),
    )


# Quarantine reason (null: parsed), ECS fields and dataset of a parsed header + auth frame (the
# header columns _time _host _prog _pid _msg _pri; dplogs.ingest.sentinel builds them too).
# Indented header-less lines continue the previous message (multi-line syslog): they are
# quarantined under their own reason, so nothing is silently merged or lost.
_REASON = (
    pl.when(pl.col("text").str.contains(r"^[ \t]") & ~pl.col("_header")).then(pl.lit("continuation line"))
    .when(~pl.col("_header")).then(pl.lit("no syslog header"))
    .when(pl.col("_ts_str").is_not_null() & pl.col("_time").is_null()).then(pl.lit("bad timestamp"))
)
_BAD_STAMP = pl.when(pl.col("_time").is_null()).then(pl.lit("bad timestamp"))
FIELDS = (
    pl.col("_time").alias("@timestamp"),
    pl.col("_host").alias("host.name"),
    # an empty tag ("fw01 : %ASA-…") or a Cisco message id where the tag is (no host) names no process
    pl.when((pl.col("_prog") != "") & ~pl.col("_prog").str.starts_with("%")).then(pl.col("_prog")).alias("process.name"),
    pl.col("_pid").cast(pl.Int64, strict=False).alias("process.pid"),
    pl.col("_msg").alias("message"),
    # an ASA message's level is its severity when the line has no priority
    pl.coalesce(pl.col("_pri").cast(pl.Int64, strict=False) % 8, pl.col("_level").cast(pl.Int64, strict=False)).alias("event.severity"),
    pl.col("_user").alias("user.name"),
    pl.col("_domain").alias("user.domain"),
    pl.col("_target").alias("user.target.name"),
    pl.col("_effective").alias("user.effective.name"),
    pl.col("_ip").alias("source.ip"),
    pl.col("_port").cast(pl.Int32, strict=False).alias("source.port"),
    pl.col("_dst_ip").alias("destination.ip"),
    pl.col("_dst_port").cast(pl.Int32, strict=False).alias("destination.port"),
    pl.col("_transport").alias("network.transport"),
    pl.col("_code").alias("event.code"),
    pl.col("_action").alias("event.action"),
    pl.col("_category").alias("event.category"),
    pl.col("_type").alias("event.type"),
    pl.col("_outcome").alias("event.outcome"),
    pl.lit("event").alias("event.kind"),
)
_LAST_REPEATED = r"^(?:\S+ )?(?:--- )?last message repeated (\d+) times?(?: ---)?$"
"""sysklogd's and BSD syslogd's compression of identical messages: the message is the line before
(the last one written), this line says how many more times it came. Without a tag (``host last
message repeated N times``) the header grammar leaves the host in the message; macOS wraps it in
``---``; old rsyslog (Ubuntu 12.04) writes the tag of the message and no host."""
_LAST_REPEATED_TAGGED = r"^last message repeated (\d+) times?$"


def _repeat_count() -> pl.Expr:
    """The N of a ``last message repeated N times`` line (header columns), else null."""
    return pl.when(pl.col("_prog").is_null()).then(pl.col("_msg").str.extract(_LAST_REPEATED, 1)) \
        .otherwise(pl.col("_msg").str.extract(_LAST_REPEATED_TAGGED, 1))


_CARRIED = ("_host", "_prog", "_pid", "_msg", "_pri", "_header")
"""What a ``last message repeated`` line takes from the line it repeats."""

ORPHAN_REPEAT = "'last message repeated N times' with no message before it in this input (e.g. rotated into the previous file)"


def with_last_repeated(frame: pl.DataFrame, before: pl.DataFrame | None) -> pl.DataFrame:
    """``frame`` (header columns, in line order) with each ``last message repeated N times`` line
    rewritten as rsyslog's ``message repeated N times: [ MSG ]`` for the message, host, program and
    pid of the last line before it that is neither blank nor a repeat (``before``: that line of
    the blocks before, :meth:`Syslog.carry`), so that categorisation and
    :func:`~dplogs.ingest.auth.expand_repeats` make it N events of that message at the repeat's
    own time. Counted once, it lost N events (a brute force on a sysklogd host logs most of its
    failures this way). A repeat with no header line before it is marked ``_orphan`` (quarantined:
    its message is not in this input)."""
    if not frame.select(pl.col("_msg").str.contains("last message repeated ", literal=True).any()).item():
        return frame.with_columns(_orphan=pl.lit(False))
    frame = frame.with_columns(_n=_repeat_count())
    none = pl.DataFrame({c: [None] for c in _CARRIED}, schema={**dict.fromkeys(_CARRIED, pl.String), "_header": pl.Boolean})
    lines = pl.concat([none if before is None else before, frame.select(_CARRIED)], how="vertical_relaxed")
    # row i's line is the last row before it that is neither a repeat nor blank (index 0: ``before``)
    is_line = pl.concat([pl.Series([True]), frame.select(pl.col("_n").is_null() & ~blank()).to_series().fill_null(False)])
    index = pl.select(pl.when(pl.lit(is_line)).then(pl.int_range(lines.height)).forward_fill()).to_series()
    ref = lines[index.slice(0, frame.height)]
    inner = ref.get_column("_msg").str.extract(r"^message repeated \d+ times?: \[ ?(.*?)\]$", 1).fill_null(ref.get_column("_msg"))
    found = pl.col("_n").is_not_null() & pl.lit(ref.get_column("_header")).fill_null(False)
    return frame.with_columns(
        *(pl.when(found).then(pl.lit(ref.get_column(c))).otherwise(pl.col(c)).alias(c) for c in ("_host", "_prog", "_pid", "_pri")),
        _msg=pl.when(found).then(pl.format("message repeated {} times: [ {} ]", pl.col("_n"), pl.lit(inner))).otherwise(pl.col("_msg")),
        _orphan=pl.col("_n").is_not_null() & ~found,
    ).drop("_n")


def split_audit(frame: pl.DataFrame, source: str, options: IngestOptions) -> tuple[pl.DataFrame, ParsedChunk | None]:
    """``frame`` (header columns) without the lines that carry a Linux audit record (audispd,
    the kernel's ``audit: type=…``, journald's ``audit[pid]: TYPE …``; :func:`~dplogs.ingest.auditd.
    syslog_record`), and those lines read as the audit reader reads audit.log: their account,
    address, outcome and category, the record's own time where it has one, the syslog host where
    the record names no node. As syslog lines they were uncategorised events without a user."""
    maybe = frame.select(pl.col("_msg").str.contains("audit", literal=True) | (pl.col("_prog") == "audit")).to_series()
    if not maybe.any():
        return frame, None
    # the record's regexes run on the lines the literal test lets through only (a few in auth.log)
    rows = frame.filter(maybe).select("line", "offset", "text", "_host", "_prog", "_msg", "_time").with_columns(
        _audit=syslog_record(pl.col("_prog"), pl.col("_msg"), pl.col("_time"))).filter(pl.col("_audit").is_not_null())
    if rows.is_empty():
        return frame, None
    rest = frame.filter(~pl.col("line").is_in(rows.get_column("line").implode()))
    return rest, parse_records(rows.drop("_prog", "_msg", "_time"), source, options, record=pl.col("_audit"),
                               host=pl.col("_host"))


def merged(chunk: ParsedChunk, audit: ParsedChunk | None) -> ParsedChunk:
    """The syslog ``chunk`` with the ``audit`` records its lines carried."""
    if audit is None:
        return chunk
    return replace(chunk, events=pl.concat([chunk.events, audit.events]), skipped=chunk.skipped + audit.skipped,
                   quarantine=pl.concat([chunk.quarantine, audit.quarantine]).sort("line"))


def with_accounts(frame: pl.DataFrame) -> pl.DataFrame:
    """``_user``/``_domain`` with qualified names split (``CORP\\bob``, ``bob@corp.example`` from
    sshd/sudo on directory-joined hosts); Unix names keep their case. Usually no name in a block is
    qualified, and then only the test runs."""
    if not is_qualified(frame.get_column("_user")):
        return frame.with_columns(_domain=pl.lit(None, pl.String))
    split = account_columns(pl.col("_user"), case_insensitive=False)
    return frame.with_columns(_user=split["user.name"], _domain=split["user.domain"])


DATASET = pl.coalesce("_fw_dataset", pl.when(pl.col("_auth")).then(pl.lit("system.auth")).otherwise(pl.lit("system.syslog")))
MODULE = pl.coalesce(pl.col("_fw_dataset").str.extract(r"^(\w+)\.", 1), pl.lit("system"))
"""``event.module``: a firewall dataset's first word (iptables, cisco), else system."""


def categorise(frame: pl.DataFrame) -> pl.DataFrame:
    """The parsed header columns with auth categorisation, firewall fields and accounts added; a
    repeat line is categorised as the message it repeats and keeps its own text in ``message``."""
    frame, message = unwrap_repeats(frame)
    frame = with_accounts(with_firewall(with_auth(frame)))
    return frame if message is None else frame.with_columns(message)


@register
class Syslog(LineFormat):
    name = "syslog"
    description = "syslog RFC 3164 (auth.log, /var/log/messages; --year/--tz) and RFC 5424, with auth categorisation and firewall fields (iptables/UFW, Cisco ASA/FTD, IOS)"

    def sniff(self, head: bytes) -> float:
        lines = [ln.decode("utf-8", "replace") for ln in sniff_lines(head)]
        # Indented lines continue the message before them (macOS and Java multi-line messages): they
        # are not records, so they neither count for nor against the header lines they follow.
        records = [ln for ln in lines if ln[0] not in " \t"]
        if not records:
            return 0.0
        hits = sum(bool(_SNIFF.match(ln) or _SNIFF_5424.match(ln) or _SNIFF_CISCO.match(ln)) for ln in records)
        return 0.8 * hits / len(records)

    def most_events(self, lines: pl.DataFrame) -> np.ndarray | None:
        return most_repeats(lines)

    def parse_lines(self, lines: pl.DataFrame, source: str, options: IngestOptions) -> ParsedChunk:
        return self.parse_block(lines, None, source, options)

    def carry(self, lines: pl.DataFrame, before: object, options: IngestOptions) -> pl.DataFrame | None:
        """The header of the last line of ``lines`` that is neither blank nor a ``last message
        repeated`` line (else ``before``): what a repeat at the next block's start repeats. Parsed
        from the end, 16 lines first (a block rarely ends in more repeats)."""
        for tail in (lines.tail(16), lines):
            header = _header_slow(tail, options)
            last = header.filter(~blank() & _repeat_count().is_null()).select(_CARRIED).tail(1)
            if last.height or tail.height == lines.height:
                break
        return last if last.height else before

    def parse_block(self, lines: pl.DataFrame, raw: memoryview | None, source: str, options: IngestOptions,
                    before: object = None) -> ParsedChunk:
        # Common lines ("Mmm dd hh:mm:ss host tag: msg") take a fast path of fixed slices and
        # literal splits; the rest (ISO/RFC 5424 stamps, no host, odd spacing) the full regexes.
        # Both give the same columns, so results do not depend on the path taken.
        fast = lines.with_columns(_ok=pl.col("text").str.contains(_FAST))
        orphan = pl.when(pl.col("_orphan")).then(pl.lit(ORPHAN_REPEAT))
        if fast.get_column("_ok").all():
            # Every line has a header, a stamp and a message, so none is blank and only the stamp
            # (or a repeat of nothing) can be bad.
            header, audit = split_audit(with_last_repeated(_header_fast(lines, options), before), source, options)
            chunk = finish(categorise(header), source=source, options=options, reason=orphan.otherwise(_BAD_STAMP),
                           fields=FIELDS, dataset=DATASET, module=MODULE, blank_lines=False)
            chunk = expand_repeats(chunk)
            return merged(replace(chunk, yearless=chunk.events.height), audit)  # the fast path reads year-less stamps only
        split = fast.partition_by("_ok", as_dict=True, include_key=False)
        parts = []
        if (True,) in split:
            parts.append(_header_fast(split[(True,)], options))
        if (False,) in split:
            parts.append(_header_slow(split[(False,)], options))
        header, audit = split_audit(with_last_repeated(pl.concat(parts).sort("line"), before), source, options)
        frame = categorise(header.with_columns(pl.col("_msg").fill_null("")))
        yearless = frame.select((pl.col("_ts_str").str.contains(_YEARLESS) & pl.col("_time").is_not_null()).sum()).item()
        chunk = finish(frame, source=source, options=options, reason=orphan.otherwise(_REASON), fields=FIELDS,
                       dataset=DATASET, module=MODULE)
        return merged(expand_repeats(replace(chunk, yearless=yearless)), audit)
