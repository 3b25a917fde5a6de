"""Firewall events inside syslog messages: Linux netfilter log lines (iptables/nftables ``LOG``
targets, UFW, Ubiquiti EdgeOS), Cisco ASA/FTD messages and Cisco IOS access-list logs, read into ``source.*``,
``destination.*``, ``network.transport``, the verdict (``event.type`` allowed/denied,
``event.outcome``) and, for AAA and VPN logins, the user. The fields and their meaning follow
Elastic Filebeat's ``iptables`` and ``cisco/asa`` modules (``tests/ingest/test_oracles_firewall.py``
compares them with Filebeat's own output, and its ``cisco/ios`` module's; the deliberate differences
are listed there and in docs/architecture.md).

As with the auth patterns, cheap literal gates decide which lines pay for a regex: kernel
messages holding ``SRC=`` (and messages starting ``IN=``: a netfilter prefix taken for the
program) go to the netfilter regex; messages starting ``%ASA-``/``%FTD-`` (or whose tag is such an
id) to the one regex of their message id, and those or messages tagged with a number (IOS's
sequence number) to the IOS ``ACCESSLOG`` regex. Addresses that are not IP literals and ports outside
0-65535 become null; transports outside ``network.transport``'s public domain become null.

>>> df = pl.DataFrame({"_host": ["gw", "fw01", "h"], "_pid": [None, None, "7"], "_prog": ["kernel", "CiscoASA", "sshd"],
...                    "_msg": [
...     "[UFW BLOCK] IN=eth0 OUT= MAC=00:11 SRC=203.0.113.9 DST=10.0.0.5 LEN=60 PROTO=TCP SPT=4242 DPT=22 SYN",
...     "%ASA-4-106023: Deny udp src outside:198.51.100.7/5353 dst inside:10.0.0.9/53 by access-group \\"in\\" [0x0, 0x0]",
...     "Accepted password for bob from 10.0.2.2 port 63673 ssh2"]})
>>> from dplogs.ingest.auth import with_auth
>>> out = with_firewall(with_auth(df))
>>> for row in out.select("_ip", "_dst_ip", "_dst_port", "_transport", "_outcome", "_code").rows():
...     print(row)
('203.0.113.9', '10.0.0.5', '22', 'tcp', 'failure', None)
('198.51.100.7', '10.0.0.9', '53', 'udp', 'failure', '106023')
('10.0.2.2', None, None, None, 'success', None)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from dplogs.ingest._text import run
from dplogs.schema import FIELDS

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"^{_OCTET}(?:\.{_OCTET}){{3}}$"
_IPV6 = r"^[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}$"
_IP = f"(?:{_IPV4})|(?:{_IPV6})"
"""An IP literal, octets in range (``999.1.1.1`` is not one); IPv6 without a zone."""

_TRANSPORTS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "icmpv6": "ipv6-icmp", "ipv6-icmp": "ipv6-icmp",
               "sctp": "sctp", "gre": "gre", "esp": "esp",
               # IANA protocol numbers, as netfilter logs protocols it has no name for
               "1": "icmp", "6": "tcp", "17": "udp", "47": "gre", "50": "esp", "58": "ipv6-icmp", "132": "sctp"}
assert set(_TRANSPORTS.values()) <= set(FIELDS["network.transport"].allowed or ()), "network.transport is a public domain"

# --- netfilter -------------------------------------------------------------------------------

_ADDRESSES = r" SRC=(?P<src>\S*) DST=(?P<dst>\S*)"
_PROTOCOL = r" PROTO=(?P<proto>\S+)(?: SPT=(?P<sport>\d+) DPT=(?P<dport>\d+))?"
"""The packet's own header: the first `` SRC=``/`` PROTO=`` (an ICMP error quotes the packet it
answers after its own, as ``[SRC=… PROTO=UDP SPT=… ]``), ports only right after the protocol. Two
short searches rather than one regex over the line: captures over a whole line cost 2x more."""
_UBIQUITI = r"\[[^\]]*-(?P<verdict>[ADR])\]\s*$"
"""EdgeOS prefixes ``[ruleset-rule-A]``: A accept, D drop, R reject."""
_DENY_WORDS = r"(?i)block|drop|deny|denied|reject"
_ALLOW_WORDS = r"(?i)accept|allow|permit"


def _connection_types(verdict: pl.Expr) -> pl.Expr:
    """``event.type`` (comma-separated) of a connection with this verdict."""
    return pl.when(verdict == "denied").then(pl.lit("connection,denied")).when(verdict == "allowed") \
        .then(pl.lit("connection,allowed")).otherwise(pl.lit("connection"))


def _netfilter(rows: pl.DataFrame) -> pl.DataFrame:
    """``_row`` plus the common result columns for netfilter messages: ``[prefix]IN=… OUT=… SRC=…
    DST=…`` (other rows give no results, and stay ordinary syslog)."""
    msg, a, p = pl.col("_msg"), pl.col("_a"), pl.col("_p")
    prefix = pl.col("_prefix")
    ubiquiti = prefix.str.extract(_UBIQUITI, 1)
    denied, allowed = prefix.str.contains(_DENY_WORDS), prefix.str.contains(_ALLOW_WORDS)
    verdict = (pl.when(ubiquiti.is_in(["D", "R"])).then(pl.lit("denied")).when(ubiquiti == "A").then(pl.lit("allowed"))
               .when(ubiquiti.is_null() & denied & ~allowed).then(pl.lit("denied"))
               .when(ubiquiti.is_null() & allowed & ~denied).then(pl.lit("allowed")))
    at_in, at_out = msg.str.find("IN=", literal=True), msg.str.find(" OUT=", literal=True)
    # a prefix written where the tag is ("DENY: IN=…", no host) was read as the program; a line with
    # no tag holds the host before the prefix ("edge-7 [LAN_IN-300-D] IN=…"), not a verdict's word
    prog = pl.col("_prog")
    before = msg.str.head(at_in)
    written = pl.when((at_in == 0) & (prog != "kernel")).then(prog) \
        .when(prog.is_null()).then(before.str.replace(r"^\S+ ", "")).otherwise(before)
    return rows.lazy().select(
        "_row", _prefix=pl.when(at_in < at_out).then(written),
        # literal searches: a regex cost 10x more
        _a=msg.str.extract_groups(_ADDRESSES), _p=msg.str.extract_groups(_PROTOCOL),
    ).filter(prefix.is_not_null() & a.struct.field("src").is_not_null()).select(
        "_row",
        _fw_src=a.struct.field("src"), _fw_sport=p.struct.field("sport"), _fw_dst=a.struct.field("dst"),
        _fw_dport=p.struct.field("dport"), _fw_proto=p.struct.field("proto"), _fw_user=pl.lit(None, pl.String),
        _fw_verdict=verdict, _fw_action=pl.lit(None, pl.String), _fw_category=pl.lit("network"),
        _fw_dataset=pl.lit("iptables.log"), _code=pl.lit(None, pl.String), _level=pl.lit(None, pl.String),
    ).with_columns(_fw_types=_connection_types(pl.col("_fw_verdict"))).pipe(run)  # a step apart: the verdict's regexes run once


# --- Cisco ASA / FTD -------------------------------------------------------------------------

_ASA_ID = r"%(?:ASA|FTD)-(?:[A-Za-z_]+-)?(?P<level>[0-7])-(?P<id>\d{6})"
_DEVICE_STAMP = r"[A-Z][a-z]{2} +\d{1,2}(?: \d{4})? \d\d:\d\d:\d\d(?:\.\d+)?(?: [A-Za-z]{1,6})?: "
"""The device's own stamp (and zone name) when a relay's header comes first (``relay : Sep 25
15:47:07 EDT: %ASA-…``, the relay writing an empty tag); the header's stamp is the one read."""
_ASA_IN_MESSAGE = rf"^(?P<head>(?:{_DEVICE_STAMP})?{_ASA_ID}(?::|$) ?)"
"""The id leading a message; the body follows the head (captures over the whole line cost 10x more)."""
_ASA_IN_TAG = rf"{_ASA_ID}$"
"""A device writing no host puts the id where the syslog tag is (``… 2012 23:30:09 %ASA-6-302016:
Teardown …``); the message is then the body."""

_ADDR = r"[^/\s()]+"
_IF = r"[^:\s]+:"  # an interface name and its colon (IPv6 addresses hold colons, names do not)


@dataclass(frozen=True)
class _Message:
    """ASA message ids sharing one shape. Named groups: src sport dst dport proto user verdict dir."""

    ids: tuple[str, ...]
    regex: str
    action: str
    category: str = "network"
    """``event.category`` (comma-separated)."""
    verdict: str | None = None
    """The verdict when the message states none in a ``verdict`` group: allowed, denied or None."""
    types: str | None = None
    """``event.type`` (comma-separated; None: a connection's, by its verdict)."""


_CONN = rf"(?:\({_ADDR}/\d+\))"
_ANYCONNECT = r"^Group (?:<[^>]*>|\S+) User <?(?P<user>[^<>]*?)>? IP <?(?P<src>[0-9A-Fa-f.:]+)>? "
_MESSAGES: tuple[_Message, ...] = (
    _Message(("106001",), rf"^Inbound (?P<proto>\S+) connection denied from (?P<src>{_ADDR})/(?P<sport>\d+) to (?P<dst>{_ADDR})/(?P<dport>\d+)",
             "firewall-rule", verdict="denied"),
    _Message(("106006", "106007"),
             rf"^Deny (?:inbound|outbound) (?P<proto>\S+) from (?P<src>{_ADDR})/(?P<sport>\d+) to (?P<dst>{_ADDR})/(?P<dport>\d+)",
             "firewall-rule", verdict="denied"),
    _Message(("106014",), rf"^Deny (?:inbound|outbound) (?P<proto>icmp) src {_IF}(?P<src>{_ADDR}) dst {_IF}(?P<dst>{_ADDR})",
             "firewall-rule", verdict="denied"),
    _Message(("106015",), rf"^Deny (?P<proto>\S+) \(no connection\) from (?P<src>{_ADDR})/(?P<sport>\d+) to (?P<dst>{_ADDR})/(?P<dport>\d+)",
             "firewall-rule", verdict="denied"),
    _Message(("106016",), r"^Deny IP spoof from \(?(?P<src>[^()\s]+)\)? to (?P<dst>\S+)", "firewall-rule", verdict="denied"),
    _Message(("106023",), rf"^Deny (?P<proto>\S+) src {_IF}(?P<src>{_ADDR})(?:/(?P<sport>\d+))?(?:\([^)]*\))? "
                          rf"dst {_IF}(?P<dst>{_ADDR})(?:/(?P<dport>\d+))?", "firewall-rule", verdict="denied"),
    _Message(("106100",), rf"^access-list \S+ (?P<verdict>permitted|denied|est-allowed) (?P<proto>\S+) [^/\s]+/(?P<src>{_ADDR})\((?P<sport>\d+)\)"
                          rf"(?:\([^)]*\))? -> [^/\s]+/(?P<dst>{_ADDR})\((?P<dport>\d+)\)", "firewall-rule"),
    # "for" is the side the connection is for: the foreign host of an outbound connection, whose
    # initiator is the "to" side (see _BUILT)
    _Message(("302013", "302015", "302017"),
             rf"^Built (?:(?P<dir>inbound|outbound) )?(?P<proto>\S+) connection \S+ for {_IF}(?P<src>{_ADDR})/(?P<sport>\d+) {_CONN}"
             rf"(?: \([^)]*\))? to {_IF}(?P<dst>{_ADDR})/(?P<dport>\d+) {_CONN}", "flow-creation", types="connection,start"),
    _Message(("302014", "302016", "302018"),
             rf"^Teardown (?P<proto>\S+) connection \S+ for {_IF}(?P<src>{_ADDR})/(?P<sport>\d+)(?: \S+)? to {_IF}(?P<dst>{_ADDR})/(?P<dport>\d+)",
             "flow-expiration", types="connection,end"),
    # ICMP: the numbers after the addresses are the ICMP sequence number, type and code, not ports;
    # Teardown states no direction, and its local address is the source (as Elastic reads it)
    _Message(("302020",), rf"^Built (?:(?P<dir>inbound|outbound) )?(?P<proto>ICMP) connection for faddr (?P<src>{_ADDR})/\d+ "
                          rf"gaddr \S+ laddr (?P<dst>{_ADDR})/\d+", "flow-creation", types="connection,start"),
    _Message(("302021",), rf"^Teardown (?P<proto>ICMP) connection for faddr (?P<dst>{_ADDR})/\d+ "
                          rf"gaddr \S+ laddr (?P<src>{_ADDR})/\d+", "flow-expiration", types="connection,end"),
    _Message(("304001",), rf"^(?P<src>{_ADDR}) Accessed URL (?P<dst>[^:\s]+):", "firewall-rule", verdict="allowed"),
    _Message(("304002",), r"^Access denied URL \S+ SRC (?P<src>\S+) DEST (?P<dst>\S+)", "firewall-rule", verdict="denied"),
    _Message(("313001",), r"^Denied (?P<proto>ICMP) type=\d+, code=\d+ from (?P<src>\S+) on interface", "firewall-rule", verdict="denied"),
    _Message(("313004",), r"^Denied (?P<proto>ICMP) type=\d+, from (?:laddr )?(?P<src>\S+) on interface \S+ to (?P<dst>\S+?):? ",
             "firewall-rule", verdict="denied"),
    _Message(("338001", "338002", "338003", "338004", "338005", "338006", "338007", "338008"),
             rf"^Dynamic Filter (?P<verdict>permitted|monitored|dropped) black ?listed (?P<proto>\S+) traffic from "
             rf"{_IF}(?P<src>{_ADDR})/(?P<sport>\d+) {_CONN} to {_IF}(?P<dst>{_ADDR})/(?P<dport>\d+)", "firewall-rule"),
    _Message(("710003", "710005"), rf"^(?P<proto>\S+) (?:access denied by ACL|request discarded) from (?P<src>{_ADDR})/(?P<sport>\d+) "
                                   rf"to {_IF}(?P<dst>{_ADDR})/(?P<dport>\d+)", "firewall-rule", verdict="denied"),
    # AAA and VPN logins: the user, the address they came from, the outcome
    _Message(("113004", "113012"), r"^AAA user authentication Successful : (?:server = +\S+|local database) : user = +(?P<user>.*?)\s*$",
             "user-authentication", "authentication", verdict="allowed", types="info"),
    _Message(("113005", "113015"), r"^AAA user authentication Rejected : reason = .*? : (?:server = +\S+|local database) : "
                                   r"user = +(?P<user>.*?) : user IP = +(?P<src>\S+)", "user-authentication", "authentication",
             verdict="denied", types="info"),
    _Message(("605004", "605005"), rf"^Login (?P<verdict>denied|permitted) from (?P<src>{_ADDR})/(?P<sport>\d+) to {_IF}(?P<dst>{_ADDR})/\S+ "
                                   r"for user \"(?P<user>[^\"]*)\"", "user-authentication", "authentication", types="info"),
    _Message(("611101", "611102"),
             r"^User authentication (?P<verdict>succeeded|failed): IP(?: address)? *[:=] *(?P<src>[0-9A-Fa-f.:]*[0-9A-Fa-f]),? *"
                                   r"Uname: *(?P<user>.*?)\s*$", "user-authentication", "authentication", types="info"),
    _Message(("716038", "716039"), r"^Group <[^>]*> User <(?P<user>[^>]*)> IP <(?P<src>[^>]*)> Authentication: (?P<verdict>successful|rejected)",
             "user-authentication", "authentication", types="info"),
    # AnyConnect sessions: the user and the address they came from ("Group G User U IP A", with or
    # without <> around each); the errors name no outcome (Elastic: types connection, error, denied)
    _Message(("113039",), _ANYCONNECT, "client-vpn-connected", "network,session", types="connection,start"),
    _Message(tuple(str(i) for i in range(113029, 113039)), _ANYCONNECT, "client-vpn-error", types="connection,error,denied"),
    _Message(("113040",), r"^Terminating the VPN connection attempt from ", "client-vpn-disconnected", types="connection,end"),
    _Message(("722051",), r"^Group <[^>]*> User <(?P<user>[^>]*)> IP <(?P<src>[^>]*)> IPv4 Address ", "address-assigned",
             verdict="allowed", types="connection,info"),
)
_BUILT = {"302013", "302015", "302017", "302020"}
"""Built messages: an outbound connection's initiator is its "to" side, so source and destination
swap (Teardown messages state no direction: "for" is the source, as Elastic reads them)."""
_BY_ID = {i: k for k, m in enumerate(_MESSAGES) for i in m.ids}
assert len(_BY_ID) == sum(len(m.ids) for m in _MESSAGES), "one shape per message id"

_ALLOWED_WORDS = ("permitted", "est-allowed", "succeeded", "successful", "allowed")
_DENIED_WORDS = ("denied", "dropped", "rejected", "failed")


def _address(captured: pl.Expr) -> pl.Expr:
    """A captured address without the interface name a multi-context ASA adds before it
    (``v1:outside:10.8.1.9``: the context and interface; the regex takes the first name only)."""
    return pl.when(captured.str.contains(_IP)).then(captured).otherwise(captured.str.replace(r"^[^:\s]+:", ""))


def _asa_message(kind: int, rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` (``_row``, ``_body``) of message shape ``kind``: the common result columns. The id
    says what happened (action, category, a stated verdict), so a line the regex misses (another
    software version's wording, a cut line) still counts as that event, without its fields."""
    m = _MESSAGES[kind]
    g = pl.col("_g")

    def group(name: str) -> pl.Expr:
        return g.struct.field(name) if f"(?P<{name}>" in m.regex else pl.lit(None, pl.String)

    said = group("verdict")
    verdict = (pl.when(said.is_in(_ALLOWED_WORDS)).then(pl.lit("allowed")).when(said.is_in(_DENIED_WORDS)).then(pl.lit("denied"))
               if "(?P<verdict>" in m.regex else pl.lit(m.verdict, pl.String))
    src, sport, dst, dport = _address(group("src")), group("sport"), _address(group("dst")), group("dport")
    swap = (group("dir") == "outbound").fill_null(False) if m.ids[0] in _BUILT else pl.lit(False)
    return rows.lazy().select("_row", "_code", "_level", _g=pl.col("_body").str.extract_groups(m.regex)).select(
        "_row",
        _fw_src=pl.when(swap).then(dst).otherwise(src), _fw_sport=pl.when(swap).then(dport).otherwise(sport),
        _fw_dst=pl.when(swap).then(src).otherwise(dst), _fw_dport=pl.when(swap).then(sport).otherwise(dport),
        _fw_proto=group("proto"), _fw_user=group("user"), _fw_verdict=verdict,
        _fw_action=pl.lit(m.action), _fw_category=pl.lit(m.category),
        _fw_dataset=pl.lit("cisco.asa"), _code="_code", _level="_level",
    ).with_columns(_fw_types=_connection_types(pl.col("_fw_verdict")) if m.types is None else pl.lit(m.types)).pipe(run)


def _asa(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` (``_row``, ``_prog``, ``_msg``) that may be ASA messages: id, level and, for the
    shapes in :data:`_MESSAGES`, the common result columns."""
    in_msg = pl.col("_msg").str.extract_groups(_ASA_IN_MESSAGE)
    in_tag = pl.col("_prog").str.extract_groups(_ASA_IN_TAG)
    found = rows.lazy().select("_row", "_msg", _m=in_msg, _t=in_tag).select(
        "_row",
        _code=pl.coalesce(pl.col("_m").struct.field("id"), pl.col("_t").struct.field("id")),
        _level=pl.coalesce(pl.col("_m").struct.field("level"), pl.col("_t").struct.field("level")),
        _body=pl.when(pl.col("_m").struct.field("id").is_not_null())
        .then(pl.col("_msg").str.slice(pl.col("_m").struct.field("head").str.len_chars())).otherwise(pl.col("_msg")),
    ).filter(pl.col("_code").is_not_null()).with_columns(
        _kind=pl.col("_code").replace_strict(_BY_ID, default=None, return_dtype=pl.Int16)).pipe(run)
    shaped = found.filter(pl.col("_kind").is_not_null()).partition_by("_kind", as_dict=True, include_key=False)
    parts = [_asa_message(kind, part) for (kind,), part in sorted(shaped.items())]
    rest = found.filter(pl.col("_kind").is_null())
    if rest.height:  # ids without a shape here: dataset, id and level only
        parts.append(rest.select("_row", **{c: pl.lit(None, pl.String) for c in _RESULTS if c not in ("_code", "_level")},
                                 _code="_code", _level="_level").with_columns(_fw_dataset=pl.lit("cisco.asa")))
    return pl.concat([p.select("_row", *_RESULTS) for p in parts]) if parts else pl.DataFrame(schema={"_row": pl.UInt32, **_RESULTS})


# --- Cisco IOS access-list logging --------------------------------------------------------------

_IOS_ID = r"%(?:SEC|IPV6)-(?P<level>[0-7])-(?P<code>(?:IP)?ACCESSLOG\w*)(?::|$)"
_IOS = (r"list \S+ (?P<verdict>denied|permitted) (?P<proto>\S+) (?P<src>[0-9A-Fa-f.:]*[0-9A-Fa-f])(?:\((?P<sport>\d+)\))?"
        r"(?: \([^)]*\))? -> (?P<dst>[0-9A-Fa-f.:]*[0-9A-Fa-f])(?:\((?P<dport>\d+)\))?")
"""``%SEC-6-IPACCESSLOGP: list 177 denied udp 198.51.100.195(55250) -> 198.51.100.255(15600), 1
packet`` (ports only for TCP/UDP; ``(3/4)`` after an ICMP source is its type and code). IOS puts its
own sequence number where the syslog tag is, and often its own stamp before the id."""


def _ios(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` (``_row``, ``_prog``, ``_msg``) that may be IOS access-list logs: the common result
    columns of those holding an ``ACCESSLOG`` id in the message or as the tag (a summary such as
    ``IPACCESSLOGRL`` keeps its id only)."""
    i, g = pl.col("_i"), pl.col("_g")
    said = g.struct.field("verdict")
    verdict = pl.when(said == "permitted").then(pl.lit("allowed")).when(said == "denied").then(pl.lit("denied"))
    in_msg, in_tag = pl.col("_msg").str.extract_groups(_IOS_ID), pl.col("_prog").str.extract_groups(_IOS_ID)
    return rows.lazy().select("_row", _i=pl.when(in_msg.struct.field("code").is_not_null()).then(in_msg).otherwise(in_tag),
                              _g=pl.col("_msg").str.extract_groups(_IOS)) \
        .filter(i.struct.field("code").is_not_null()).select(
        "_row",
        _fw_src=g.struct.field("src"), _fw_sport=g.struct.field("sport"), _fw_dst=g.struct.field("dst"),
        _fw_dport=g.struct.field("dport"), _fw_proto=g.struct.field("proto"), _fw_user=pl.lit(None, pl.String),
        _fw_verdict=verdict, _fw_action=pl.lit(None, pl.String),
        _fw_category=pl.when(said.is_not_null()).then(pl.lit("network")),
        _fw_dataset=pl.lit("cisco.ios"), _code=i.struct.field("code"), _level=i.struct.field("level"),
    ).with_columns(_fw_types=pl.when(pl.col("_fw_category").is_not_null()).then(_connection_types(pl.col("_fw_verdict")))).pipe(run)


# --- all ---------------------------------------------------------------------------------------

_RESULTS = pl.Schema({c: pl.String() for c in (
    "_fw_src", "_fw_sport", "_fw_dst", "_fw_dport", "_fw_proto", "_fw_user", "_fw_verdict", "_fw_action",
    "_fw_category", "_fw_types", "_fw_dataset", "_code", "_level")})
"""What a firewall parser finds for one row (``_fw_types``: ``event.type``, comma-separated)."""
_TYPES = ("connection", "connection,denied", "connection,allowed", "connection,start", "connection,end",
          "connection,error,denied", "connection,info", "info")
assert {m.types for m in _MESSAGES if m.types} <= set(_TYPES)
# A small table of arrays gathered by index: building the arrays per row cost 15x more.
_TYPE_ARRAYS = pl.Series([t.split(",") for t in _TYPES], dtype=pl.List(pl.String))
_TYPE_INDEX = {t: i for i, t in enumerate(_TYPES)}
ADDED = ("_dst_ip", "_dst_port", "_transport", "_code", "_level", "_fw_dataset")
"""Columns :func:`with_firewall` adds (null on other lines)."""


def _ip(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.contains(_IP)).then(expr)


def _port(expr: pl.Expr) -> pl.Expr:
    port = expr.cast(pl.Int64, strict=False)
    return pl.when(port.is_between(0, 65535)).then(expr)


def _no_user(name: pl.Expr) -> pl.Expr:
    """The AAA/VPN account lower-cased (its directory, AD or RADIUS, compares names without case:
    ``Bob`` and ``bob`` are one person, so one privacy unit, as for Windows accounts); None for an
    empty name and for ASA's mask of hidden names (``*****``)."""
    return pl.when(name.str.contains(r"[^*\s]")).then(name.str.to_lowercase())


def _device_as_host(frame: pl.DataFrame) -> dict[str, pl.Expr]:
    """``_host``/``_prog`` of Cisco lines whose device name ends in a colon (``… 2019 10:21:36 fw01:
    %ASA-…``): the header grammar reads it as the tag, but Cisco devices write no tag, so a lone
    name with no pid there is the device (Elastic: its host). Empty when no line is such (only the
    Cisco lines with no host are tested: no regex over the block)."""
    maybe = (frame.get_column("_fw_dataset").str.starts_with("cisco.") & frame.get_column("_host").is_null()
             & frame.get_column("_pid").is_null()).fill_null(False)
    if not maybe.any():
        return {}
    names = frame.get_column("_prog").filter(maybe)
    named = (names.str.contains(r"^[0-9A-Za-z][\w.\-]*$") & names.str.to_integer(strict=False).is_null()).fill_null(False)
    device = maybe.scatter(maybe.arg_true(), named)
    prog = pl.col("_prog")
    return {"_host": pl.when(device).then(prog).otherwise(pl.col("_host")), "_prog": pl.when(device).then(None).otherwise(prog)}


def with_firewall(frame: pl.DataFrame) -> pl.DataFrame:
    """Replace the auth columns ``_user _ip _port _action _category _type _outcome`` of firewall
    messages with what the message says, and add :data:`ADDED` (``_code``/``_level``: a Cisco
    message id and level; ``_fw_dataset``: ``iptables.log``, ``cisco.asa`` or ``cisco.ios``), from
    ``_prog`` and ``_msg``."""
    prog, msg = frame.get_column("_prog"), frame.get_column("_msg")
    # the gates: literal tests over every line, a regex only on the lines they let through
    # "SRC=" is searched for in kernel messages and in lines with no tag ("host [prefix] IN=…") only
    kernel = ((prog == "kernel") | prog.is_null()).fill_null(False)
    netfilter = msg.str.starts_with("IN=").fill_null(False)
    if kernel.any():
        with_src = msg.filter(kernel).str.contains("SRC=", literal=True).fill_null(False)
        netfilter = netfilter | kernel.clone().scatter(kernel.arg_true(), with_src)
    # Cisco: a "%" leading the message (one byte: a third of testing the prefixes), an id as the tag
    # (no host), IOS's sequence number as the tag (its own stamp may lead the message) or a relay's
    # empty tag (the device's stamp leads the message); _asa and
    # _ios keep the rows holding their ids. Literal ids and parsing the number cost 40% less than
    # one regex "^\d+$|%" over the tags.
    cisco = (msg.str.starts_with("%") | prog.str.contains(r"%(?:ASA|FTD|SEC|IPV6)-")
             | prog.str.to_integer(strict=False).is_not_null() | (prog == "")).fill_null(False)
    if not (netfilter.any() or cisco.any()):
        return frame.with_columns(pl.lit(None, pl.String).alias(c) for c in ADDED)
    rows = frame.select("_prog", "_msg", _row=pl.int_range(pl.len(), dtype=pl.UInt32))
    parts = []
    if netfilter.any():
        parts.append(_netfilter(rows.filter(netfilter & ~cisco)))
    if cisco.any():
        candidates = rows.filter(cisco)
        parts += [_asa(candidates), _ios(candidates)]
    # a line one parser took is not another's (a message holding both ids: the first, in this order)
    found = pl.concat([p.select("_row", *_RESULTS) for p in parts]).unique("_row", keep="first", maintain_order=True)
    where = np.full(frame.height, found.height, dtype=np.uint32)
    where[found.get_column("_row").to_numpy()] = np.arange(found.height, dtype=np.uint32)
    index = pl.select(pl.when(pl.lit(where) < found.height).then(pl.lit(where))).to_series()
    back = found.drop("_row").select(pl.all().gather(index))
    fw = pl.col("_fw_dataset").is_not_null()
    verdict, category = pl.col("_fw_verdict"), pl.col("_fw_category")
    types = pl.lit(_TYPE_ARRAYS).gather(pl.col("_fw_types").replace_strict(_TYPE_INDEX, default=None, return_dtype=pl.UInt32))
    found_here = {
        "_ip": _ip(pl.col("_fw_src")), "_port": _port(pl.col("_fw_sport")), "_user": _no_user(pl.col("_fw_user")),
        "_action": pl.col("_fw_action"), "_category": category.str.split(","),
        "_type": types,
        "_outcome": pl.when(verdict == "allowed").then(pl.lit("success")).when(verdict == "denied").then(pl.lit("failure")),
    }
    proto = pl.col("_fw_proto").str.to_lowercase()
    frame = frame.with_columns(back.get_columns())
    return frame.lazy().with_columns(
        **_device_as_host(frame),
        **{c: pl.when(fw).then(e).otherwise(pl.col(c)) for c, e in found_here.items()},
        _dst_ip=_ip(pl.col("_fw_dst")), _dst_port=_port(pl.col("_fw_dport")),
        _transport=proto.replace_strict(_TRANSPORTS, default=None, return_dtype=pl.String),
    ).drop(c for c in _RESULTS if c not in ADDED).pipe(run)
