"""The fast path of zoned timestamps reads every stamp exactly as the general format does.

``with_zoned_timestamp`` sends stamps of the usual fixed UTC layouts to polars' fixed-layout
parser and everything else to the general ``%.f%#z`` format; here both are compared on generated
stamps built to hit the edges: out-of-range fields, leap seconds, fractions of every length, other
zones, lower-case ``z``, padding and non-ASCII digits.
"""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dplogs.ingest._structured import with_zoned_timestamp, zoned_timestamp

digits = st.text("0123456789", min_size=1, max_size=3)


def field(low: int, high: int) -> st.SearchStrategy[str]:
    """Mostly a zero-padded value in [low, high] (a little beyond the valid range), sometimes junk."""
    return st.one_of(st.integers(low, high).map(lambda v: f"{v:02d}"), st.integers(low, high).map(str),
                     digits, st.sampled_from(["٠١", "1a"]))


two = field(0, 99)
stamp = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, zone, pad: f"{pad}{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{zone}{pad}",
    st.sampled_from(["2024", "1999", "0024", "20240"]), field(0, 13), field(0, 32), st.sampled_from(["T", " ", "t"]),
    field(0, 24), field(0, 60), field(0, 61),
    st.one_of(st.just(""), st.text("0123456789", min_size=0, max_size=10).map(lambda f: "." + f)),
    st.sampled_from(["Z", "z", "+02:00", "-0530", "", "UTC", "+2"]),
    st.sampled_from(["", " "]),
)


@settings(max_examples=400, deadline=None)
@given(values=st.lists(st.one_of(stamp, st.text(max_size=30)), min_size=1, max_size=20))
def test_fast_layouts_equal_the_general_format(values: list[str]) -> None:
    frame = pl.DataFrame({"t": values}, schema={"t": pl.String})
    fast = with_zoned_timestamp(frame, "t", "ts").get_column("ts")
    general = frame.select(zoned_timestamp(pl.col("t"))).to_series()
    assert fast.to_list() == general.to_list()


def test_fast_layouts_equal_the_general_format_on_a_grid() -> None:
    """Deterministic companion of the property test: every fraction length and zone around
    valid and out-of-range fields (random fields are rarely all valid)."""
    days = ["2024-02-29", "2023-02-29", "2024-13-01", "2024-00-10", "2024-1-01", "2024-12-31"]
    times = ["00:00:00", "23:59:59", "23:59:60", "24:00:00", "12:60:00", "7:08:09"]
    fractions = ["", ".", ".1", ".12", ".123", ".1234", ".123456", ".1234567", ".123456789", ".1234567890"]
    zones = ["Z", "z", "+02:00", "-0530", ""]
    values = [f"{d}{sep}{t}{f}{z}" for d in days for sep in "T " for t in times for f in fractions for z in zones]
    frame = pl.DataFrame({"t": values})
    fast = with_zoned_timestamp(frame, "t", "ts").get_column("ts")
    general = frame.select(zoned_timestamp(pl.col("t"))).to_series()
    assert fast.to_list() == general.to_list()
    assert fast.is_not_null().sum() > len(values) // 10


def test_fast_layouts_are_taken_for_the_usual_stamps() -> None:
    stamps = ["2024-03-01T00:00:07Z", "2024-03-01T00:00:07.123Z", "2024-03-01T00:00:07.123456Z",
              "2024-03-01T00:00:07.123456789Z", "2024-02-30T00:00:07.000Z"]
    frame = pl.DataFrame({"t": stamps})
    got = with_zoned_timestamp(frame, "t", "ts").get_column("ts").to_list()
    assert [v and (v.second, v.microsecond) for v in got] == [(7, 0), (7, 123000), (7, 123456), (7, 123456), None]
