"""Release value object: payload round trip (what an idempotent replay re-emits) and writers."""

from __future__ import annotations

import datetime as dt
import io
import json

import polars as pl
import pyarrow.parquet as pq
import pytest

from dplogs.engine.release import Release, write_release
from dplogs.errors import InternalError, UsageError

UTC = dt.timezone.utc


def release() -> Release:
    data = pl.DataFrame({
        "bucket": pl.Series([dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2026, 11, 2, tzinfo=UTC)], dtype=pl.Datetime("us", "UTC")),
        "http.response.status_code": pl.Series([404, 500], dtype=pl.Int32),
        "aggregate": ["count", "count"],
        "value": [3.0, float("nan")],
        "mechanism": ["discrete laplace"] * 2,
        "scale": [2.0, None],
        "ci_low": [-3.0, None],
        "ci_high": [9.0, None],
    })
    return Release(data=data, privacy={"epsilon": 1.0, "bias_note": "x"})


def test_payload_round_trip_keeps_types_and_values():
    r = release()
    payload = json.loads(json.dumps(r.to_payload()))  # what the ledger stores
    back = Release.from_payload(payload)
    assert back.data.schema == r.data.schema
    assert back.data.with_columns(pl.col("value").fill_nan(None)).equals(r.data.with_columns(pl.col("value").fill_nan(None)))
    assert back.privacy == r.privacy


def test_json_is_data_plus_privacy_with_iso_times_and_null_nan():
    buf = io.StringIO()
    write_release(release(), "json", buf)
    out = json.loads(buf.getvalue())
    assert out["privacy"]["epsilon"] == 1.0
    assert out["data"][0]["bucket"] == "2026-11-01T00:00:00Z" and out["data"][1]["value"] is None


def test_arrow_and_parquet_carry_metadata():
    table = release().to_arrow()
    assert json.loads(table.schema.metadata[b"dplogs.privacy"]) == {"epsilon": 1.0, "bias_note": "x"}
    buf = io.BytesIO()
    write_release(release(), "parquet", buf)
    assert json.loads(pq.read_table(io.BytesIO(buf.getvalue())).schema.metadata[b"dplogs.privacy"])["epsilon"] == 1.0


def test_csv_is_plain_with_metadata_as_opt_in_header_or_sidecar(tmp_path):
    buf = io.StringIO()
    write_release(release(), "csv", buf)
    assert not buf.getvalue().startswith("#")
    back = pl.read_csv(io.StringIO(buf.getvalue()))  # plain read_csv works
    assert back["bucket"].to_list() == ["2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"]
    buf = io.StringIO()
    write_release(release(), "csv", buf, csv_metadata=True)
    first, *_ = buf.getvalue().splitlines()
    assert json.loads(first.removeprefix("# privacy: "))["bias_note"] == "x"
    assert pl.read_csv(io.StringIO(buf.getvalue()), comment_prefix="#").height == back.height
    write_release(release(), "csv", tmp_path / "out.csv")
    assert json.loads((tmp_path / "out.csv.privacy.json").read_text())["epsilon"] == 1.0


def test_csv_writes_whole_counts_as_integers():
    r = Release(data=pl.DataFrame({"aggregate": ["count", "count"], "value": [333.0, -7.0], "mechanism": ["l", "l"],
                                   "scale": [2.0, 2.0], "ci_low": [320.0, -20.0], "ci_high": [346.0, 6.0]}), privacy={})
    text = io.StringIO()
    write_release(r, "csv", text)
    assert '"count",333,' in text.getvalue() and '"count",-7,' in text.getvalue()
    back = pl.read_csv(io.StringIO(text.getvalue()))
    assert back["value"].dtype == pl.Int64 and back["scale"].dtype == pl.Float64


def test_bad_format_and_missing_columns():
    with pytest.raises(UsageError, match="use one of"):
        write_release(release(), "xml", io.StringIO())
    with pytest.raises(InternalError):
        Release(data=pl.DataFrame({"value": [1.0]}), privacy={})


def test_the_table_shows_bucket_times_for_people():
    """The table printed day buckets as 2026-11-01T00:00:00Z (reported by the newuser helper): a
    column of UTC midnights is dates, other times minutes marked Z; JSON and CSV keep ISO."""
    buf = io.StringIO()
    write_release(release(), "table", buf)
    assert "2026-11-01 " in buf.getvalue() and "T00:00:00Z" not in buf.getvalue()
    hourly = release()
    hourly = Release(data=hourly.data.with_columns(pl.col("bucket").dt.offset_by("14h")), privacy=hourly.privacy)
    buf = io.StringIO()
    write_release(hourly, "table", buf)
    assert "2026-11-01 14:00Z" in buf.getvalue() and "2026-11-02 14:00Z" in buf.getvalue()
