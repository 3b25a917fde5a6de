"""Firewall messages in syslog (``dplogs.ingest.firewall``): one golden line per message shape
(netfilter/UFW/EdgeOS, Cisco ASA/FTD connections, denies and AAA/VPN logins, Cisco IOS access-list
logs), the gates, and
hostile input (bad addresses, overlong fields, missing fields: null, never a crash or a lost line)."""

from __future__ import annotations

import datetime as dt

import pytest

from dplogs.ingest.base import IngestOptions
from dplogs.ingest.syslog import Syslog
from tests.ingest.structured_helpers import detected, lines_frame

OPTIONS = IngestOptions(year=2024)
KEYS = ("source.ip", "source.port", "destination.ip", "destination.port", "network.transport", "event.action",
        "event.category", "event.type", "event.outcome", "user.name", "event.code", "event.dataset", "event.module")


def _parsed(*lines: str):
    chunk = Syslog().parse_lines(lines_frame(*lines), "fw.log", OPTIONS)
    assert chunk.quarantine.is_empty(), chunk.quarantine.rows()
    assert chunk.events.height == len(lines)
    return chunk.events


def _one(line: str) -> dict:
    row = _parsed(line).row(0, named=True)
    return {k: row[k] for k in KEYS}


def _fields(src, sport, dst, dport, transport, action, category, types, outcome, user=None, code=None,
            dataset="cisco.asa", module="cisco") -> dict:
    return dict(zip(KEYS, (src, sport, dst, dport, transport, action, category, types, outcome, user, code, dataset, module)))


NF = "Mar  4 10:00:00 gw kernel: "
NETFILTER = [
    (NF + "[UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=203.0.113.9 DST=10.0.0.5 LEN=60 "
          "TOS=0x00 PREC=0x00 TTL=50 ID=1 DF PROTO=TCP SPT=40000 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0",
     _fields("203.0.113.9", 40000, "10.0.0.5", 22, "tcp", None, ["network"], ["connection", "denied"], "failure",
             dataset="iptables.log", module="iptables")),
    (NF + "[UFW ALLOW] IN=eth0 OUT= MAC=00 SRC=198.51.100.2 DST=10.0.0.5 LEN=60 PROTO=UDP SPT=5353 DPT=53 LEN=40",
     _fields("198.51.100.2", 5353, "10.0.0.5", 53, "udp", None, ["network"], ["connection", "allowed"], "success",
             dataset="iptables.log", module="iptables")),
    (NF + "[12345.678901] [UFW AUDIT] IN=eth0 OUT= SRC=198.51.100.2 DST=10.0.0.5 LEN=60 PROTO=2",  # IGMP: no transport of ours
     _fields("198.51.100.2", None, "10.0.0.5", None, None, None, ["network"], ["connection"], None,
             dataset="iptables.log", module="iptables")),
    (NF + "iptables REJECT: IN= OUT=eth0 SRC=2001:db8::1 DST=2001:db8::2 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=1 PROTO=ICMPv6 TYPE=128 CODE=0",
     _fields("2001:db8::1", None, "2001:db8::2", None, "ipv6-icmp", None, ["network"], ["connection", "denied"], "failure",
             dataset="iptables.log", module="iptables")),
    # the LOG prefix where the tag is ("DENY: IN=…", no host): the verdict is in it (Elastic's test-iptables-raw)
    ("Jan  8 03:37:09 DENY: IN=eth0 OUT= SRC=203.0.113.50 DST=10.0.0.5 LEN=60 PROTO=TCP SPT=4000 DPT=22",
     _fields("203.0.113.50", 4000, "10.0.0.5", 22, "tcp", None, ["network"], ["connection", "denied"], "failure",
             dataset="iptables.log", module="iptables")),
    # no tag at all: the host, then the prefix (were no fields)
    ("Jun 28 04:35:31 blockhost [LAN_IN-300-A] IN=eth1 OUT=eth0 SRC=198.51.100.9 DST=10.0.0.8 LEN=60 PROTO=UDP SPT=5555 DPT=53",
     _fields("198.51.100.9", 5555, "10.0.0.8", 53, "udp", None, ["network"], ["connection", "allowed"], "success",
             dataset="iptables.log", module="iptables")),  # the host's name is no verdict
    ("Jun 28 04:35:30 edge-7 [LAN_IN-300-D] IN=eth1 OUT=eth0 SRC=198.51.100.9 DST=10.0.0.8 LEN=60 PROTO=TCP SPT=5555 DPT=3389",
     _fields("198.51.100.9", 5555, "10.0.0.8", 3389, "tcp", None, ["network"], ["connection", "denied"], "failure",
             dataset="iptables.log", module="iptables")),
    # an ICMP error quotes the packet it answers: its addresses and ports are not this packet's
    (NF + "[wan-local-default-D]IN=eth0 OUT= SRC=192.0.2.71 DST=192.0.2.83 LEN=88 PROTO=ICMP TYPE=3 CODE=3 "
          "[SRC=192.0.2.83 DST=192.168.1.9 LEN=60 PROTO=UDP SPT=21458 DPT=62936 LEN=40 ]",
     _fields("192.0.2.71", None, "192.0.2.83", None, "icmp", None, ["network"], ["connection", "denied"], "failure",
             dataset="iptables.log", module="iptables")),
]


@pytest.mark.parametrize(("line", "expected"), NETFILTER)
def test_netfilter_lines(line: str, expected: dict) -> None:
    assert _one(line) == expected


ASA = "Mar  4 2024 10:00:00 fw01 : "
CISCO = [
    ("%ASA-4-106023: Deny tcp src outside:203.0.113.5/4444 dst inside:10.1.1.5/445 by access-group \"in\" [0x0, 0x0]",
     _fields("203.0.113.5", 4444, "10.1.1.5", 445, "tcp", "firewall-rule", ["network"], ["connection", "denied"], "failure", code="106023")),
    ("%ASA-4-106023: Deny icmp src outside:2001:db8::5 dst inside:2001:db8::9 (type 128, code 0) by access-group \"in\" [0x0, 0x0]",
     _fields("2001:db8::5", None, "2001:db8::9", None, "icmp", "firewall-rule", ["network"], ["connection", "denied"], "failure", code="106023")),
    ("%ASA-2-106001: Inbound TCP connection denied from 198.51.100.4/901 to 10.1.1.5/111 flags SYN  on interface outside",
     _fields("198.51.100.4", 901, "10.1.1.5", 111, "tcp", "firewall-rule", ["network"], ["connection", "denied"], "failure", code="106001")),
    ("%ASA-2-106006: Deny inbound UDP from 198.51.100.4/137 to 10.1.1.5/137 on interface outside",
     _fields("198.51.100.4", 137, "10.1.1.5", 137, "udp", "firewall-rule", ["network"], ["connection", "denied"], "failure", code="106006")),
    ("%ASA-2-106007: Deny inbound UDP from 198.51.100.4/5353 to 10.1.1.5/53 due to DNS Query",
     _fields("198.51.100.4", 5353, "10.1.1.5", 53, "udp", "firewall-rule", ["network"], ["connection", "denied"], "failure", code="106007")),
    ("%ASA-3-106014: Deny inbound icmp src outside:198.51.100.4 dst inside:10.1.1.5 (type 8, code 0)",
     _fields("198.51.100.4", None, "10.1.1.5", None, "icmp", "firewall-rule", ["network"], ["connection", "denied"], "failure", code="106014")),
    ("%ASA-6-106015: Deny TCP (no connection) from 198.51.100.4/443 to 10.1.1.5/5679 flags RST  on interface outside",
     _fields("198.51.100.4", 443, "10.1.1.5", 5679, "tcp", "firewall-rule", ["network"], ["connection", "denied"], "failure", code="106015")),
    ("%ASA-5-106100: access-list acl_in denied udp outside/198.51.100.4(1039) -> inside/10.1.1.5(53) hit-cnt 1 first hit [0xd820e56a, 0x0]",
     _fields("198.51.100.4", 1039, "10.1.1.5", 53, "udp", "firewall-rule", ["network"], ["connection", "denied"], "failure", code="106100")),
    ("%ASA-5-106100: access-list acl_in est-allowed tcp inside/10.1.1.5(49840) -> outside/192.0.2.8(443) hit-cnt 1 first hit [0x0, 0x0]",
     _fields("10.1.1.5", 49840, "192.0.2.8", 443, "tcp", "firewall-rule", ["network"], ["connection", "allowed"], "success", code="106100")),
    ("%ASA-4-710003: TCP access denied by ACL from 198.51.100.4/2000 to outside:192.0.2.1/22",
     _fields("198.51.100.4", 2000, "192.0.2.1", 22, "tcp", "firewall-rule", ["network"], ["connection", "denied"], "failure", code="710003")),
    # Built outbound: the inside host ("to") initiated it, so it is the source
    ("%ASA-6-302013: Built outbound TCP connection 11757 for outside:192.0.2.8/80 (192.0.2.8/80) to inside:10.1.1.5/1772 (198.51.100.1/1772)",
     _fields("10.1.1.5", 1772, "192.0.2.8", 80, "tcp", "flow-creation", ["network"], ["connection", "start"], None, code="302013")),
    ("%ASA-6-302015: Built inbound UDP connection 11758 for outside:198.51.100.4/53 (198.51.100.4/53) to dmz:10.2.2.2/5353 (192.0.2.2/5353)",
     _fields("198.51.100.4", 53, "10.2.2.2", 5353, "udp", "flow-creation", ["network"], ["connection", "start"], None, code="302015")),
    ("%ASA-6-302014: Teardown TCP connection 11749 for outside:192.0.2.8/80 to inside:10.1.1.5/1758 duration 0:01:07 bytes 38110 TCP FINs",
     _fields("192.0.2.8", 80, "10.1.1.5", 1758, "tcp", "flow-expiration", ["network"], ["connection", "end"], None, code="302014")),
    ("%ASA-6-302016: Teardown UDP connection 666 for outside:192.0.2.8/53 user1 to inside:10.1.1.5/52925 user2 duration 0:00:01 bytes 99",
     _fields("192.0.2.8", 53, "10.1.1.5", 52925, "udp", "flow-expiration", ["network"], ["connection", "end"], None, code="302016")),
    # ICMP connections: the numbers after the addresses are ICMP sequence/type/code, not ports; Built
    # states a direction, Teardown none, where its local address is the source (Elastic's
    # test-302020-direction and test-hostnames)
    ("%ASA-6-302020: Built inbound ICMP connection for faddr 203.0.113.8/30211 gaddr 192.0.2.9/0 laddr 10.1.1.9/0 type 8 code 0",
     _fields("203.0.113.8", None, "10.1.1.9", None, "icmp", "flow-creation", ["network"], ["connection", "start"], None, code="302020")),
    ("%ASA-6-302020: Built outbound ICMP connection for faddr 203.0.113.8/0 gaddr 192.0.2.9/0 laddr 10.1.1.9/0 type 8 code 0",
     _fields("10.1.1.9", None, "203.0.113.8", None, "icmp", "flow-creation", ["network"], ["connection", "start"], None, code="302020")),
    ("%ASA-6-302021: Teardown ICMP connection for faddr 203.0.113.8/0 gaddr 192.0.2.9/41022 laddr 10.1.1.9/41022 type 8 code 0",
     _fields("10.1.1.9", None, "203.0.113.8", None, "icmp", "flow-expiration", ["network"], ["connection", "end"], None, code="302021")),
    # AAA / VPN: the user, where they came from, the outcome
    ("%ASA-6-113004: AAA user authentication Successful : server =  10.9.9.9 : user = Alice",
     _fields(None, None, None, None, None, "user-authentication", ["authentication"], ["info"], "success", "alice", "113004")),
    ("%ASA-6-113005: AAA user authentication Rejected : reason = AAA failure : server = 10.9.9.9 : user = bob : user IP = 198.51.100.4",
     _fields("198.51.100.4", None, None, None, None, "user-authentication", ["authentication"], ["info"], "failure", "bob", "113005")),
    ("%ASA-6-113015: AAA user authentication Rejected : reason = Invalid password : local database : user = ***** : user IP = 198.51.100.4",
     _fields("198.51.100.4", None, None, None, None, "user-authentication", ["authentication"], ["info"], "failure", None, "113015")),
    ("%ASA-6-605004: Login denied from 198.51.100.4/52000 to outside:192.0.2.1/ssh for user \"admin\"",
     _fields("198.51.100.4", 52000, "192.0.2.1", None, None, "user-authentication", ["authentication"], ["info"], "failure", "admin", "605004")),
    ("%ASA-6-605005: Login permitted from 10.1.1.5/52001 to inside:10.1.1.1/https for user \"carol\"",
     _fields("10.1.1.5", 52001, "10.1.1.1", None, None, "user-authentication", ["authentication"], ["info"], "success", "carol", "605005")),
    ("%ASA-5-611101: User authentication succeeded: IP address: 10.1.1.5, Uname: dave",
     _fields("10.1.1.5", None, None, None, None, "user-authentication", ["authentication"], ["info"], "success", "dave", "611101")),
    ("%ASA-5-611102: User authentication failed: IP = 198.51.100.4, Uname: root",
     _fields("198.51.100.4", None, None, None, None, "user-authentication", ["authentication"], ["info"], "failure", "root", "611102")),
    ("%ASA-6-716039: Group <DfltGrpPolicy> User <erin> IP <198.51.100.4> Authentication: rejected, Session Type: WebVPN.",
     _fields("198.51.100.4", None, None, None, None, "user-authentication", ["authentication"], ["info"], "failure", "erin", "716039")),
    # AnyConnect: the session's user and address, with or without <> (Elastic's test-anyconnect-messages)
    ("%ASA-6-113039: Group <GroupPolicy Staff VPN> User <Frank.O'Hara> IP <198.51.100.23> AnyConnect parent session started.",
     _fields("198.51.100.23", None, None, None, None, "client-vpn-connected", ["network", "session"], ["connection", "start"],
             None, "frank.o'hara", "113039")),
    ("%ASA-4-113029: Group STAFF User gina IP 2001:db8::77 Session could not be established: session limit of 2 reached",
     _fields("2001:db8::77", None, None, None, None, "client-vpn-error", ["network"], ["connection", "error", "denied"],
             None, "gina", "113029")),
    ("%ASA-6-113037: Reboot pending, new sessions disabled. Denied user login.",
     _fields(None, None, None, None, None, "client-vpn-error", ["network"], ["connection", "error", "denied"], None, None, "113037")),
    ("%ASA-4-722051: Group <Staff> User <hank> IP <203.0.113.70> IPv4 Address <10.20.0.9> IPv6 address <::> assigned to session",
     _fields("203.0.113.70", None, None, None, None, "address-assigned", ["network"], ["connection", "info"], "success",
             "hank", "722051")),
    # a multi-context ASA names the context before the interface ("v1:outside:…")
    ("%ASA-4-106023: Deny udp src v1:outside:198.51.100.4/5353 dst v2:inside:2001:db8::9/53 by access-group \"in\" [0x0, 0x0]",
     _fields("198.51.100.4", 5353, "2001:db8::9", 53, "udp", "firewall-rule", ["network"], ["connection", "denied"], "failure", code="106023")),
    # FTD writes the same messages under its own prefix
    ("%FTD-2-106001: Inbound TCP connection denied from 198.51.100.4/901 to 10.1.1.5/111 flags SYN  on interface LAN",
     _fields("198.51.100.4", 901, "10.1.1.5", 111, "tcp", "firewall-rule", ["network"], ["connection", "denied"], "failure", code="106001")),
]


@pytest.mark.parametrize(("message", "expected"), CISCO)
def test_cisco_asa_messages(message: str, expected: dict) -> None:
    assert _one(ASA + message) == expected


IOS = [
    ("Feb  8 04:00:48 198.51.100.2 585917: Feb  8 04:00:47.272: %SEC-6-IPACCESSLOGP: list 177 denied udp "
     "198.51.100.195(55250) -> 198.51.100.255(15600), 1 packet",
     _fields("198.51.100.195", 55250, "198.51.100.255", 15600, "udp", None, ["network"], ["connection", "denied"], "failure",
             code="IPACCESSLOGP", dataset="cisco.ios")),
    ("May  3 19:11:33 rtr1 12: *May  3 19:11:32.619: %IPV6-6-ACCESSLOGP: list ACL-IN/10 permitted tcp 2001:DB8::3(1027) "
     "-> 2001:DB8:1000::1(22), 9 packets",
     _fields("2001:DB8::3", 1027, "2001:DB8:1000::1", 22, "tcp", None, ["network"], ["connection", "allowed"], "success",
             code="ACCESSLOGP", dataset="cisco.ios")),
    ("Feb  8 04:00:48 rtr1 %SEC-6-IPACCESSLOGDP: list 151 denied icmp 198.51.100.1 -> 198.51.100.2 (3/4), 1 packet",
     _fields("198.51.100.1", None, "198.51.100.2", None, "icmp", None, ["network"], ["connection", "denied"], "failure",
             code="IPACCESSLOGDP", dataset="cisco.ios")),
    ("Feb  8 04:00:48 rtr1 44: %SEC-6-IPACCESSLOGRL: access-list logging rate-limited or missed 18 packets",
     _fields(None, None, None, None, None, None, None, None, None, code="IPACCESSLOGRL", dataset="cisco.ios")),
]


@pytest.mark.parametrize(("line", "expected"), IOS)
def test_cisco_ios_access_list_logs(line: str, expected: dict) -> None:
    assert _one(line) == expected


def test_ios_lines_sent_without_a_relay_header(tmp_path) -> None:
    """A router logging straight to the collector writes its own header: ``<pri>seq: [host: ]
    [*]Mmm dd [yyyy] hh:mm:ss[.ms] [zone]: %FAC-SEV-MNEMONIC: …`` (Elastic's cisco_ios
    test-syslog-header, test-badauth: all quarantined as "no syslog header", and a file of them was
    refused as an unknown format). Their stamp is read in --tz, as an ASA's; an uptime stamp
    ("2y10w") is no time, so that line stays quarantined."""
    lines = (
        "<189>1234: Mar  4 10:00:00.120: %SEC-6-IPACCESSLOGP: list 101 denied tcp 203.0.113.7(4444) -> 10.0.0.5(22), 1 packet",
        "<189>1235: rtr2: *Mar 4 2024 10:00:01.5 UTC: %SEC-6-IPACCESSLOGP: list 101 permitted udp 198.51.100.3(53) -> "
        "10.0.0.5(5353), 3 packets",
        "<189>1236: 192.0.2.1 77: Mar  4 10:00:02: %LINK-3-UPDOWN: Interface Gi0/1, changed state to up",
        "<189>: sw9: Mar  4 10:00:03 CET: %SYS-5-CONFIG_I: Configured from console by admin on vty0",
        "<46>: 2023 Aug 27 21:40:50 PDT: %SNMPD-6-INFO: SNMP log informational",  # the year first (NX-OS)
        "<189>1237: sw9: 1238: 2y10w: %SYS-5-CONFIG_I: Configured from console by admin on vty0",
    )
    chunk = Syslog().parse_lines(lines_frame(*lines), "ios.log", OPTIONS)
    events = chunk.events
    assert chunk.quarantine.get_column("reason").to_list() == ["no syslog header"]  # the uptime stamp only
    assert events.get_column("@timestamp").to_list() == [
        dt.datetime(2024, 3, 4, 10, 0, 0, 120000, tzinfo=dt.UTC), dt.datetime(2024, 3, 4, 10, 0, 1, 500000, tzinfo=dt.UTC),
        dt.datetime(2024, 3, 4, 10, 0, 2, tzinfo=dt.UTC), dt.datetime(2024, 3, 4, 10, 0, 3, tzinfo=dt.UTC),
        dt.datetime(2023, 8, 27, 21, 40, 50, tzinfo=dt.UTC)]
    assert events.get_column("host.name").to_list() == [None, "rtr2", "192.0.2.1", "sw9", None]
    assert events.get_column("process.name").to_list() == [None] * 5
    assert events.get_column("source.ip").to_list() == ["203.0.113.7", "198.51.100.3", None, None, None]
    assert events.get_column("event.type").to_list() == [["connection", "denied"], ["connection", "allowed"], None, None, None]
    assert events.get_column("event.severity").to_list() == [5] * 4 + [6]
    log = tmp_path / "ios.log"
    log.write_text("\n".join(lines) + "\n")
    assert detected(log) == "syslog"


def test_asa_header_shapes() -> None:
    """The id after a host and tag, as the tag (no host), after a colon ending the stamp (no
    device id), and ASA's own level as event.severity when the line has no priority."""
    body = "Deny tcp src outside:203.0.113.5/4444 dst inside:10.1.1.5/445 by access-group \"in\" [0x0, 0x0]"
    events = _parsed(
        f"Mar  4 10:00:00 fw01 CiscoASA[999]: %ASA-4-106023: {body}",
        f"Mar  4 2024 10:00:00 %ASA-4-106023: {body}",
        f"Mar  4 2024 10:00:00: %ASA-4-106023: {body}",
        f"<166>Mar  4 2024 10:00:00 fw01 : %ASA-session-4-106023: {body}",
        f"Mar  4 2024 10:00:00 fw02: %ASA-4-106023: {body}",
        # a relay's header, then the device's own stamp and zone (Elastic's test-asa-tz-mapping: were no fields)
        f"Mar  4 10:00:00 relay1 : Mar  4 06:00:00 EDT: %ASA-auth-4-106023: {body}",
        f"Mar  4 10:00:00 relay1 : Mar  4 2024 06:00:00.123 EDT: %ASA-4-106023: {body}",
    )
    assert events.get_column("source.ip").to_list() == ["203.0.113.5"] * 7
    assert events.get_column("event.code").to_list() == ["106023"] * 7
    assert events.get_column("event.severity").to_list() == [4, 4, 4, 6, 4, 4, 4]  # <166>: the priority's severity
    # the header's stamp, read in --tz (the device's zone name is not read: see docs/architecture.md)
    assert events.get_column("@timestamp").to_list() == [dt.datetime(2024, 3, 4, 10, tzinfo=dt.UTC)] * 7
    # the message id in the tag's place and an empty tag name no process (were "%ASA-4-106023" and "");
    # a device name ending in a colon is the host (Elastic's test-hostnames; was process "fw02", no host)
    assert events.get_column("process.name").to_list() == ["CiscoASA", None, None, None, None, None, None]
    assert events.get_column("host.name").to_list() == ["fw01", None, None, "fw01", "fw02", "relay1", "relay1"]


def test_rsyslog_repeats_of_firewall_messages_keep_their_fields() -> None:
    """``message repeated N times: [ MSG ]`` is read as MSG by the firewall parsers too, as by the
    auth patterns (Elastic's cisco_asa test-repeat-deny: the deny's addresses were lost, so a
    scanner's repeated denies counted for no source)."""
    chunk = Syslog().parse_lines(lines_frame(
        "Jan  5 09:00:01 192.0.2.254 %ASA-2-106006: message repeated 3 times: [ Deny inbound UDP from "
        "198.51.100.7/138 to 10.9.8.7/138 on interface lan]",
        NF + "message repeated 2 times: [ [UFW BLOCK] IN=eth0 OUT= SRC=203.0.113.44 DST=10.0.0.5 LEN=60 PROTO=TCP SPT=5000 DPT=23]",
    ), "fw.log", OPTIONS)
    events = chunk.events
    assert events.height == 5 and chunk.quarantine.is_empty()
    assert events.get_column("source.ip").to_list() == ["198.51.100.7"] * 3 + ["203.0.113.44"] * 2
    assert events.get_column("destination.port").to_list() == [138] * 3 + [23] * 2
    assert events.get_column("network.transport").to_list() == ["udp"] * 3 + ["tcp"] * 2
    assert events.get_column("event.outcome").to_list() == ["failure"] * 5
    assert events.get_column("message").str.starts_with("message repeated ").all()  # the line is kept whole


def test_gates_leave_other_lines_alone() -> None:
    """``SRC=`` outside a kernel line, a kernel line without a netfilter shape, an ASA id inside
    other text, and an unknown ASA id: no firewall fields (the last keeps its id)."""
    events = _parsed(
        "Mar  4 10:00:00 h app[1]: IN=x is not OUT= netfilter SRC=",
        "Mar  4 10:00:00 h app[1]: got SRC=1.2.3.4 DST=5.6.7.8 from a user",
        "Mar  4 10:00:00 h kernel: usb 1-1: SRC=1.2.3.4 new device",
        "Mar  4 10:00:00 h app[1]: forwarded %ASA-4-106023: Deny tcp src a:1.2.3.4/1 dst b:5.6.7.8/2",
        "Mar  4 2024 10:00:00 fw : %ASA-6-305011: Built dynamic TCP translation from inside:10.1.1.5/1772 to outside:192.0.2.1/8256",
        "Feb 21 21:54:44 web1 sshd[3402]: Accepted password for bob from 10.0.2.2 port 63673 ssh2",
        "Mar  4 10:00:00 h 1234: list 177 denied udp 1.2.3.4(1) -> 5.6.7.8(2), 1 packet",  # IOS's shape, no id
    )
    assert events.get_column("destination.ip").to_list() == [None] * 7
    assert events.get_column("source.ip").to_list() == [None] * 5 + ["10.0.2.2", None]
    assert events.get_column("event.dataset").to_list() == ["system.syslog"] * 4 + ["cisco.asa", "system.auth", "system.syslog"]
    assert events.get_column("event.code").to_list() == [None] * 4 + ["305011", None, None]
    assert events.get_column("event.action").to_list() == [None] * 5 + ["ssh_login", None]


def test_hostile_fields_become_null() -> None:
    """Bad addresses (octets out of range, names, overlong), ports out of range or overlong,
    missing fields: null, every line stored."""
    long = "9" * 5000
    events = _parsed(
        NF + "[UFW BLOCK] IN=eth0 OUT= SRC=999.1.1.1 DST=10.0.0.5 LEN=60 PROTO=TCP SPT=70000 DPT=22",
        NF + f"[UFW BLOCK] IN=eth0 OUT= SRC={'a' * 100000} DST=10.0.0.5 LEN=60 PROTO=TCP SPT={long} DPT={long}",
        NF + "[UFW BLOCK] IN=eth0 OUT= SRC= DST= LEN=60",
        NF + "[UFW BLOCK] IN=eth0 OUT= SRC=1.2.3.4",  # no DST=: not a netfilter line, plain syslog
        NF + f"[UFW BLOCK] IN=eth0 OUT= SRC=1.2.3.4 DST=::1 PROTO={'X' * 10000} SPT=1 DPT=2",
        ASA + "%ASA-4-106023: Deny tcp src outside:256.0.0.1/99999 dst inside:host.example/445 by access-group \"in\"",
        ASA + f"%ASA-6-113005: AAA user authentication Rejected : reason = x : server = 1.1.1.1 : user = {'u' * 20000} : user IP = 1.2.3.999",
        ASA + "%ASA-4-106023: Deny tcp src outside:",
        ASA + "%ASA-4-106023:",
        ASA + "%ASA-4-1060231: Deny tcp src outside:1.2.3.4/1 dst inside:5.6.7.8/2",
    )
    assert events.get_column("source.ip").to_list() == [None, None, None, None, "1.2.3.4", None, None, None, None, None]
    assert events.get_column("destination.ip").to_list() == ["10.0.0.5", "10.0.0.5", None, None, "::1", None, None, None, None, None]
    assert events.get_column("source.port").to_list() == [None, None, None, None, 1, None, None, None, None, None]
    assert events.get_column("destination.port").to_list() == [22, None, None, None, 2, 445, None, None, None, None]
    assert events.get_column("network.transport").to_list() == ["tcp", "tcp", None, None, None, "tcp", None, None, None, None]
    assert events.get_column("user.name").to_list()[6] == "u" * 20000
    # a failed AAA login without a valid address still counts as a failure of that user
    assert events.get_column("event.outcome").to_list()[6] == "failure"
    assert events.get_column("event.code").to_list()[7:] == ["106023", "106023", None]
    # a deny the regex cannot read (cut, another version's wording) is still a denied connection
    assert events.select("event.action", "event.type", "event.outcome").rows()[7:] == [
        ("firewall-rule", ["connection", "denied"], "failure")] * 2 + [(None, None, None)]
