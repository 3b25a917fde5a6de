"""Apache/nginx access logs and IIS W3C logs: golden lines, header handling, real logs."""

from __future__ import annotations

import datetime as dt
import gzip
import re
from pathlib import Path

import polars as pl

from dplogs.ingest.access import IIS, Access
from dplogs.ingest.base import IngestOptions
from tests.ingest.structured_helpers import lines_frame, parse

UTC = dt.UTC


def test_combined_golden_line() -> None:
    line = ('83.149.9.216 - alice [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" '
            '200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" '
            '"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36"')
    row = Access().parse_lines(lines_frame(line), "a", IngestOptions()).events.row(0, named=True)
    assert row["@timestamp"] == dt.datetime(2015, 5, 17, 10, 5, 3, tzinfo=UTC)
    assert (row["source.ip"], row["user.name"], row["http.request.method"]) == ("83.149.9.216", "alice", "GET")
    assert row["url.original"] == "/presentations/logstash-monitorama-2013/images/kibana-search.png"
    assert (row["http.response.status_code"], row["http.response.body.bytes"]) == (200, 203023)
    assert row["http.request.referrer"] == "http://semicomplete.com/presentations/logstash-monitorama-2013/"
    assert row["user_agent.original"].startswith("Mozilla/5.0 (Macintosh")
    assert (row["event.category"], row["event.outcome"], row["event.dataset"]) == (["web"], "success", "web.access")


def test_common_format_escaped_quotes_and_forwarded_for() -> None:
    frame = lines_frame(
        '::1 - - [26/Dec/2016:16:16:48 +0200] "-" 408 -',
        '10.0.0.2, 10.0.0.1, 85.181.35.98 - - [07/Dec/2016:11:05:07 +0100] "GET /x HTTP/1.1" 200 571 "-" "a \\"quoted\\" agent"',
        '"10.5.102.222, 199.96.1.1" 10.2.1.185 - - [22/Jan/2016:13:18:29 +0000] "GET /a HTTP/1.1" 200 1 "-" "CloudFront"',
        'localhost - - [29/May/2017:19:02:48 +0000] "GET /test2 HTTP/1.1" 500 612',
    )
    ev = Access().parse_lines(frame, "a", IngestOptions()).events
    assert ev.get_column("source.ip").to_list() == ["::1", "85.181.35.98", "199.96.1.1", None]
    assert ev.get_column("http.request.method").to_list() == [None, "GET", "GET", "GET"]
    assert ev.get_column("http.response.body.bytes").to_list() == [None, 571, 1, 612]
    assert ev.get_column("user_agent.original").to_list()[1] == 'a "quoted" agent'
    assert ev.get_column("event.outcome").to_list() == ["failure", "success", "success", "failure"]
    assert ev.get_column("@timestamp").to_list()[0] == dt.datetime(2016, 12, 26, 14, 16, 48, tzinfo=UTC)


def test_more_numbers_after_the_bytes_keep_referrer_and_agent() -> None:
    # LogFormats with %O/%I/%D after %b: the referrer and user agent were lost (the integrations
    # helper saw it on one of Elastic's apache/access test lines)
    chunk = Access().parse_lines(lines_frame(
        '10.1.2.3 - bob [26/Dec/2016:16:22:13 +0200] "GET /a HTTP/1.1" 200 612 3413 "http://x/" "curl/8.0"',
        '10.1.2.3 - bob [26/Dec/2016:16:22:13 +0200] "GET /a HTTP/1.1" 200 612 - 77 "-" "Mozilla/5.0 (X11)"',
    ), "access.log", IngestOptions())
    assert chunk.events.select("http.response.body.bytes", "http.request.referrer", "user_agent.original").rows() == [
        (612, "http://x/", "curl/8.0"), (612, None, "Mozilla/5.0 (X11)")]


def test_bad_lines_are_quarantined_with_reasons() -> None:
    frame = lines_frame('1.2.3.4 - - [99/Foo/2016:16:16:48 +0200] "GET / HTTP/1.1" 200 1', "no access line", "")
    chunk = Access().parse_lines(frame, "a", IngestOptions())
    assert chunk.quarantine.select("line", "reason").rows() == [(1, "bad timestamp"), (2, "not an access log line")]
    assert chunk.skipped == 1 and chunk.events.is_empty()


def test_iis_header_change_mid_file_and_across_chunks() -> None:
    text = [
        "#Software: Microsoft Internet Information Services 10.0",
        "#Fields: date time c-ip cs-username cs-method cs-uri-stem cs-uri-query sc-status",
        "2024-01-02 03:04:05 10.1.1.1 bob GET /a x=1 200",
        "#Fields: date time cs-method cs-uri-stem sc-status c-ip sc-bytes",
        "2024-01-02 03:04:06 POST /b 404 2001:db8::1%4 77",
        "2024-01-02 03:04:07 GET /c 200",  # 5 values under a 7-field header, no IIS default that wide
    ]
    chunk = IIS().parse_lines(lines_frame(*text), "iis.log", IngestOptions())
    ev = chunk.events
    assert ev.select("source.ip", "user.name", "http.request.method", "url.original", "http.response.status_code").rows() == [
        ("10.1.1.1", "bob", "GET", "/a?x=1", 200), ("2001:db8::1", None, "POST", "/b", 404),
    ]
    assert ev.get_column("http.response.body.bytes").to_list() == [None, 77]
    assert chunk.quarantine.select("line", "reason").rows() == [(6, "field count differs from #Fields")]
    assert chunk.skipped == 3
    # The #Fields line of an earlier chunk still applies to the next one.
    from dplogs.ingest.base import InputSource

    data = "".join(t + "\n" for t in text[:3] * 1 + [text[2]] * 5).encode()
    import io

    source = InputSource(name="x", head=data, open=lambda: io.BytesIO(data))
    chunks = list(IIS().parse(source, IngestOptions(chunk_lines=2)))
    assert sum(c.events.height for c in chunks) == 6 and all(c.quarantine.is_empty() for c in chunks)


def test_iis_without_header_and_no_default_width_is_quarantined() -> None:
    chunk = IIS().parse_lines(lines_frame("2024-01-02 03:04:05 10.1.1.1 GET /"), "x", IngestOptions())
    assert chunk.quarantine.get_column("reason").to_list() == [
        "no #Fields header before line, and its field count is no IIS default layout's"]


def test_real_apache_log_independent_counts(datasets_dir: Path) -> None:
    path = datasets_dir / "web_access/apache_logs_elastic_examples.log.gz"
    events, quarantine, _ = parse("access", path)
    raw = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert quarantine.is_empty() and events.height == len(raw) == 10_000
    # client addresses and status codes, read with plain Python string splitting
    assert events.get_column("source.ip").n_unique() == len({ln.split(" ", 1)[0] for ln in raw}) == 1753
    status = {}
    for ln in raw:
        code = int(re.search(r'" (\d{3}) ', ln).group(1))
        status[code] = status.get(code, 0) + 1
    assert dict(events.group_by("http.response.status_code").len().iter_rows()) == status


def test_real_tomcat_and_iis_logs(datasets_dir: Path) -> None:
    tomcat = datasets_dir / "evtx_attack_samples/web_attack_and_isp_webshell_localhost_access_log.txt"
    events, quarantine, skipped = parse("access", tomcat)
    records = [ln for ln in tomcat.read_bytes().split(b"\n") if ln.strip()]
    assert quarantine.is_empty() and events.height == len(records) and skipped == 0
    # requests holding unescaped quotes (an XSS probe) still parse
    probe = 'postdata="><script>'
    expected = sum(probe.encode() in r for r in records)
    assert expected == 2
    assert events.filter(pl.col("url.original").str.contains(probe, literal=True)).height == expected
    assert events.filter(pl.col("http.response.status_code") == 404).height == 1484
    assert events.get_column("source.ip").n_unique() == 4
    assert "admin" in events.get_column("user.name").to_list()

    iis = datasets_dir / "evtx_attack_samples/Tunna_rdp_tunnel_IIS.log"
    events, quarantine, skipped = parse("iis", iis)
    lines = iis.read_bytes().decode("utf-8", "replace").splitlines()
    comments = sum(ln.startswith("#") or not ln.strip() for ln in lines)
    assert quarantine.is_empty()
    assert (events.height, skipped) == (len(lines) - comments, comments)
    assert events.filter(pl.col("url.original").str.contains("port=3389", literal=True)).height > 0
