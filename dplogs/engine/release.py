"""A DP release: the released cells plus the privacy metadata that must travel with them.

:class:`Release` is the only thing the engine hands to the CLI, reports and API callers. Its
``data`` has one row per released cell::

    <key columns...> [bin_lo, bin_hi] aggregate value mechanism scale ci_low ci_high

``value`` is the noisy (or post-processed) number, ``scale`` the noise scale (Laplace b or
Gaussian σ; null for post-processed cells such as means, ratios and quantiles), ``ci_low``/
``ci_high`` a 95% interval for the noise. ``privacy`` holds ε, δ, ρ, mechanisms, scales, bounds,
the privacy unit, the window, the key handling, the bias note and the ledger entry id.

Output formats (:func:`write_release`) and where the metadata goes:

- ``table``: a rich table on stdout; the metadata summary is printed to stderr by the CLI. Cells
  are plain text, never rich markup, with control characters shown as escapes (``\\x1b``);
- ``json``: ``{"data": [...cells...], "privacy": {...}}``;
- ``ndjson``: the first line is ``{"privacy": {...}}``, every further line one cell;
- ``csv``: plain CSV with a header, so ``pl.read_csv(path)`` and spreadsheets read it as is. The
  metadata goes to a sidecar ``PATH.privacy.json`` when written to a path, or, with
  ``csv_metadata=True`` (``--csv-metadata``), to a first comment line ``# privacy: {...}`` (read
  that with ``comment_prefix="#"``). Value and interval columns whose every cell is a whole
  number (counts, distinct units) are written as integers. Text cells are always quoted;
  those a spreadsheet would run as a formula (starting with ``= + - @``, tab or CR) also get a
  leading ``'`` (OWASP's advice), and control characters are written as visible escapes
  (``\\x1b``, as on the terminal); numbers are never touched. ``csv_safe=False`` (``--csv-raw``)
  leaves text cells as released (JSON and Parquet keep them exactly too);
- ``parquet``: the cells, with the metadata as JSON under the key ``dplogs.privacy`` in the
  schema's key-value metadata.

>>> r = Release(data=pl.DataFrame({"aggregate": ["count"], "value": [3.0], "mechanism": ["laplace"],
...     "scale": [1.0], "ci_low": [0.0], "ci_high": [6.0]}), privacy={"epsilon": 1.0})
>>> r.to_dict()
{'data': [{'aggregate': 'count', 'value': 3.0, 'mechanism': 'laplace', 'scale': 1.0, 'ci_low': 0.0, 'ci_high': 6.0}], 'privacy': {'epsilon': 1.0}}
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dplogs.errors import InternalError, UsageError
from dplogs.files import write_atomic
from dplogs.escape import CSV_FORMULA_PATTERN, visible

CELL_COLUMNS = ("aggregate", "value", "mechanism", "scale", "ci_low", "ci_high")
EXACT_COLUMN = "exact"
"""Under a protection policy: the exactly counted (unprotected) part of each direct value."""


def key_columns(data: pl.DataFrame) -> list[str]:
    """The group-key columns of a release's cells (everything but the cell columns)."""
    return [c for c in data.columns if c not in CELL_COLUMNS and c != EXACT_COLUMN]
FORMATS = ("table", "json", "ndjson", "csv", "parquet")
METADATA_KEY = "dplogs.privacy"


@dataclass(frozen=True)
class Release:
    """Public: released cells (``data``) and their privacy metadata (``privacy``)."""

    data: pl.DataFrame
    privacy: dict[str, Any]

    def __post_init__(self) -> None:
        missing = [c for c in CELL_COLUMNS if c not in self.data.columns]
        if missing:
            raise InternalError(f"release data lacks columns {missing}")

    def to_polars(self) -> pl.DataFrame:
        return self.data

    def to_arrow(self) -> pa.Table:
        """The cells as Arrow, with the privacy metadata in the schema (key ``dplogs.privacy``)."""
        table = self.data.to_arrow()
        meta = dict(table.schema.metadata or {})
        meta[METADATA_KEY.encode()] = json.dumps(self.privacy).encode()
        return table.replace_schema_metadata(meta)

    def rows(self) -> list[dict[str, Any]]:
        """The cells as JSON-ready dicts (times as ISO 8601, NaN as null)."""
        return [{k: _jsonable(v) for k, v in row.items()} for row in self.data.to_dicts()]

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.rows(), "privacy": self.privacy}

    def to_payload(self) -> dict[str, Any]:
        """What the ledger stores so an idempotent rerun re-emits exactly this release."""
        return {"data": self.rows(), "schema": {c: _kind(t) for c, t in self.data.schema.items()}, "privacy": self.privacy}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Release:
        schema = {c: _DTYPES[k] for c, k in payload["schema"].items()}
        frame = pl.DataFrame(payload["data"], schema={c: (pl.String if t == _DT else t) for c, t in schema.items()}, orient="row")
        frame = frame.with_columns(
            pl.col(c).str.to_datetime(time_unit="us", time_zone="UTC") for c, t in schema.items() if t == _DT
        )
        return cls(data=frame, privacy=payload["privacy"])


_DT = pl.Datetime("us", "UTC")
_DTYPES: dict[str, pl.DataType] = {
    "datetime": _DT, "int32": pl.Int32(), "int64": pl.Int64(), "float": pl.Float64(), "str": pl.String(),
}


def _kind(dtype: pl.DataType) -> str:
    for name, t in _DTYPES.items():
        if dtype == t:
            return name
    raise InternalError(f"unexpected release column type {dtype}")


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_release(
    release: Release, fmt: str, out: IO[bytes] | IO[str] | Path | str, *, title: str | None = None,
    csv_safe: bool = True, csv_metadata: bool = False,
) -> None:
    """Write ``release`` as ``fmt`` to a path or an open stream (binary for parquet).

    The whole output is rendered before anything is written, and rendering cannot fail on the
    released values: keys are log text an attacker may choose, and the release is already charged.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    if fmt == "parquet":
        buf = io.BytesIO()
        pq.write_table(release.to_arrow(), buf)
        data: str | bytes = buf.getvalue()
    else:
        data = _render_text(release, fmt, title=title, csv_safe=csv_safe, csv_metadata=csv_metadata)
    if not isinstance(out, (str, Path)):
        out.write(data)  # type: ignore[arg-type]
        return
    # a file is replaced whole (a killed run or a full disk left half a CSV under its name); plain
    # CSV's metadata sidecar is removed first and written after, so a CSV is never beside the
    # metadata of another release: at worst it has none
    sidecar = Path(f"{out}.privacy.json") if fmt == "csv" and not csv_metadata else None
    if sidecar is not None:
        sidecar.unlink(missing_ok=True)
    write_atomic(out, data)
    if sidecar is not None:
        write_atomic(sidecar, json.dumps(release.privacy, indent=2) + "\n")


def _render_text(release: Release, fmt: str, *, title: str | None = None, csv_safe: bool = True,
                 csv_metadata: bool = False) -> str:
    """``release`` as the text of ``fmt`` (every format but parquet)."""
    if fmt == "json":
        return json.dumps(release.to_dict(), indent=2) + "\n"
    if fmt == "ndjson":
        lines = [json.dumps({"privacy": release.privacy})] + [json.dumps(r) for r in release.rows()]
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        header = "# privacy: " + json.dumps(release.privacy) + "\n" if csv_metadata else ""
        return header + _csv(release.data, safe=csv_safe)
    if fmt == "table":
        return _table(release, title=title)
    raise UsageError(f"unknown text format {fmt!r}; use one of: {', '.join(f for f in FORMATS if f != 'parquet')}")


def _csv(data: pl.DataFrame, *, safe: bool) -> str:
    texts = [c for c, t in data.schema.items() if t == pl.String]
    frame = data.with_columns(
        pl.col(c).dt.to_string("%Y-%m-%dT%H:%M:%SZ") for c, t in data.schema.items() if t == _DT
    ).with_columns(
        pl.col(c).cast(pl.Int64) for c in ("value", "ci_low", "ci_high", "exact") if c in data.columns and _whole(data[c])
    )
    if safe:
        # control characters written as escapes too: a terminal showing the file (`cat`, or the
        # CSV on stdout) obeyed a released key's ESC sequences; releases are small, so per cell
        frame = frame.with_columns(pl.col(c).map_elements(visible, return_dtype=pl.String) for c in texts)
        frame = frame.with_columns(
            pl.when(pl.col(c).str.contains(CSV_FORMULA_PATTERN)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
            for c in texts
        )
    # text cells always quoted: a key such as "#x" must not read as a comment line (see above)
    return frame.write_csv(quote_style="non_numeric")


def _whole(column: pl.Series) -> bool:
    """Every non-null cell is a whole number that int64 holds (counts and distinct units)."""
    values = column.drop_nulls()
    if not values.dtype.is_float():
        return False
    return values.len() > 0 and bool(((values == values.round(0)) & (values.abs() < 2**62)).all())


NOT_ENOUGH_DATA_TEXT = "not enough data"
"""How a ratio or mean too noisy to say anything is marked in its mechanism (engine.execute)."""


def shown_number(v: float) -> str:
    """A released number for people to read: whole units with thousands separators from 100 up
    (bytes summed per week printed as -3.72169e+06 before), three significant digits below (a
    failure rate of 0.109346 claimed a precision its noise does not have). JSON, CSV and Parquet
    keep every digit.

    >>> [shown_number(x) for x in (-3721690.4, 1460.0, 123.5, 46.37, 0.236558, 46.0, 1e-07, float("nan"))]
    ['-3,721,690', '1,460', '124', '46.4', '0.237', '46', '1e-07', 'nan']
    """
    if math.isfinite(v) and 100 <= abs(v) < 1e18:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def shown_times(stamps: pl.Series) -> list[str]:
    """A column of UTC instants for people to read: dates alone when every one is a UTC midnight
    (day, week and month buckets), else minutes (seconds where any has them), marked Z for UTC.

    >>> import datetime as dt
    >>> day = lambda *a: dt.datetime(*a, tzinfo=dt.timezone.utc)
    >>> shown_times(pl.Series([day(2024, 3, 4), day(2024, 3, 5)], dtype=_DT))
    ['2024-03-04', '2024-03-05']
    >>> shown_times(pl.Series([day(2024, 3, 4), day(2024, 3, 4, 14), None], dtype=_DT))
    ['2024-03-04 00:00Z', '2024-03-04 14:00Z', '']
    """
    utc = stamps.dt.convert_time_zone("UTC")
    if (utc.dt.truncate("1d") == utc).all():
        fmt = "%Y-%m-%d"
    else:
        fmt = "%Y-%m-%d %H:%M:%SZ" if (utc.dt.truncate("1m") != utc).any() else "%Y-%m-%d %H:%MZ"
    return utc.dt.strftime(fmt).fill_null("").to_list()


def _table(release: Release, *, title: str | None) -> str:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Text objects, never markup strings: "[/]" or "[link=...]" in a key is shown, not parsed
    table = Table(title=None if title is None else Text(visible(title)), show_lines=False)
    for c in release.data.columns:
        table.add_column(Text(visible(c)), justify="right" if release.data.schema[c].is_numeric() else "left")
    reasons = set()
    stamps = {c: shown_times(release.data.get_column(c)) for c, t in release.data.schema.items() if t == _DT}
    for i, row in enumerate(release.rows()):
        cells = {k: "" if v is None else stamps[k][i] if k in stamps else shown_number(v) if isinstance(v, float)
                 else visible(str(v)) for k, v in row.items()}
        # a ratio too noisy to say anything: the value cell says so, its reason goes under the table
        # once (in every row's mechanism it made the table ~180 characters wide)
        base, sep, reason = cells.get("mechanism", "").partition(f"; {NOT_ENOUGH_DATA_TEXT}: ")
        if sep and row.get("value") is None:
            cells["value"], cells["mechanism"] = NOT_ENOUGH_DATA_TEXT, base + ")"
            reasons.add(reason.removesuffix(")"))
        table.add_row(*(Text(v) for v in cells.values()))
    if reasons:
        table.caption = Text(f"{NOT_ENOUGH_DATA_TEXT}: {'; '.join(sorted(reasons))}: released as null (the json/csv value is empty)")
    buf = io.StringIO()
    Console(file=buf, width=200, force_terminal=False, highlight=False).print(table)
    return buf.getvalue()
