"""The access-log fast path gives exactly what the full regex gives.

``access_groups`` runs the one-pass ``ACCESS_FAST`` first and the backtracking ``ACCESS`` only on
the lines it missed; the groups must equal those of ``ACCESS`` alone on every line, including the
shapes the fast form refuses (X-Forwarded-For prefixes, vhost fields, escaped quotes, trailing
fields) and the ones built to trip it (spaces, quotes, tabs and brackets in odd places).
"""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dplogs.ingest.access import ACCESS_FAST, Access, access_groups
from dplogs.ingest.base import IngestOptions
from tests.ingest.structured_helpers import lines_frame

odd = st.text(st.sampled_from(list('ab -"\\[]\t:/é0')), max_size=8)
field = st.one_of(st.sampled_from(["-", "bob", "10.0.0.1", "::1", "a b", "x\ty", '"q"', "ü"]), odd)
client = st.one_of(st.sampled_from(["10.1.2.3", "2001:db8::1", "example.com:80 10.1.2.3", "a, b", "h\tx", '"x'], ), odd)
stamp = st.sampled_from(["26/Dec/2016:16:22:13 +0200", "01/Mar/2024:00:00:00 +0000", "bad", "x]y", ""])
request = st.one_of(st.sampled_from(["GET /a?b=1 HTTP/1.1", "POST / HTTP/2.0", "-", "GET /q\\\"x HTTP/1.1", 'GET /"x" HTTP/1.1', ""]), odd)
quoted = st.one_of(st.sampled_from(["-", "https://intranet.example.com/", "curl/8.0", 'a \\" b', "x\\y"]), odd)
tail = st.sampled_from(["", ' "-"', " 0.003", " extra", "\t", ' "a" "b"'])


@st.composite
def access_line(draw) -> str:
    xff = draw(st.sampled_from(["", '"10.0.0.9, 1.2.3.4" ', '"" ']))
    status = draw(st.sampled_from(["200", "404", "2000", "x"]))
    size = draw(st.sampled_from(["123", "-", "", "1 2"]))
    line = (f'{xff}{draw(client)} {draw(field)} {draw(field)} [{draw(stamp)}] "{draw(request)}" {status} {size}')
    if draw(st.booleans()):
        line += f' "{draw(quoted)}" "{draw(quoted)}"'
    return line + draw(tail)


@settings(max_examples=400, deadline=None)
@given(st.lists(access_line(), min_size=1, max_size=8))
def test_fast_access_groups_equal_the_full_regex(lines) -> None:
    frame = lines_frame(*lines)
    assert access_groups(frame).to_dicts() == access_groups(frame, fast=False).to_dicts()


def test_fast_form_takes_the_common_lines_and_the_rest_still_parse() -> None:
    common = '10.1.2.3 - bob [26/Dec/2016:16:22:13 +0200] "GET /a?b=1 HTTP/1.1" 404 499 "-" "curl/8.0"'
    other = ['"10.0.0.9, 1.2.3.4" 10.1.2.3 - - [26/Dec/2016:16:22:13 +0200] "GET / HTTP/1.1" 200 1',
             'example.com:80 10.1.2.3 - - [26/Dec/2016:16:22:13 +0200] "GET / HTTP/1.1" 200 1 "-" "x"',
             '10.1.2.3 - - [26/Dec/2016:16:22:13 +0200] "GET /a\\"b HTTP/1.1" 200 1 "-" "x" "extra"']
    frame = lines_frame(common, *other)
    assert frame.select(pl.col("text").str.contains(ACCESS_FAST)).to_series().to_list() == [True, False, False, False]
    events = Access().parse_lines(frame, "access.log", IngestOptions()).events
    assert events.get_column("source.ip").to_list() == ["10.1.2.3", "1.2.3.4", "10.1.2.3", "10.1.2.3"]
    assert events.get_column("url.original").to_list() == ["/a?b=1", "/", "/", '/a\\"b']  # the URL is kept as logged
