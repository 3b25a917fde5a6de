"""Differential testing of everything a caller can read except the noise.

A pair of neighbouring stores is built through the real CLI (``dplogs ingest`` of generated logs):
D, and D' = D minus every row of one unit in one budget window. Each release path is then run on
both with noise off (:func:`dplogs.privacy.testing.exact_mode`), and what it shows is compared
after masking only the released noisy values: exit code, stdout, stderr, the files it writes and
the release's privacy metadata (scales, bounds, L0/L∞, groups, coverage, warnings). Anything else
that differs depends on one unit's data outside the noise: a side channel.

The generated world is one month (2024-03) of sshd logins (``auth.log``) and web requests
(``access.log``) by a crowd of units, plus victims chosen to be worst cases for some path:

- ``heavy``: the heaviest contributor (hundreds of failed logins, huge responses);
- ``lonely``: the only unit on host ``host9`` and the only one active in hour 03 of 2024-03-12;
- ``dayonly``: the only unit with events on 2024-03-14 (its removal empties a whole day);
- ``clamp``: responses at and beyond the clamp edge (1,000,000 bytes);
- ``winner``: the account failing most often (the top-k winner among private user names);
- ``outside``: a roster person who also logs in from outside the organisation's networks;
- the shared unattributed unit (web requests without a user), named ``SHARED`` here;
- ``april``: the only unit with auth events in April (its removal empties the auth rows of a
  whole budget window); the access log covers April through the crowd, so coverage is unchanged.

Every victim's rows lie strictly inside each input's first and last day, so the public coverage
spans are the same on both sides (coverage edges are tested on their own).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.privacy.testing import exact_mode

SHARED = "SHARED"  # the shared unattributed unit (rows without user.name)
CROWD = [f"crowd{i:02d}" for i in range(16)]
VICTIMS = ("heavy", "lonely", "dayonly", "clamp", "winner", "outside", SHARED, "april")


@dataclass(frozen=True)
class Event:
    when: dt.datetime
    unit: str  # user name, or SHARED for a row without one
    kind: str  # "accepted" | "failed" | "web"
    host: str = "host1"
    ip: str = "10.0.0.1"
    size: int = 500


def world(seed: int = 7) -> list[Event]:
    """The generated logs' events (deterministic)."""
    r = random.Random(seed)
    out: list[Event] = []
    march = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    for day in range(20):
        if day == 13:  # 2024-03-14 belongs to dayonly alone
            continue
        for u in CROWD:
            for _ in range(r.randint(1, 3)):
                t = march + dt.timedelta(days=day, hours=r.choice([1, 5, 8, 9, 14, 17, 20]), minutes=r.randint(0, 59))
                out.append(Event(t, u, r.choice(["accepted", "accepted", "failed"]), f"host{r.randint(1, 2)}",
                                 f"10.0.{r.randint(0, 3)}.{r.randint(1, 9)}"))
                out.append(Event(t, u, "web", size=r.randint(100, 5000)))
        for _ in range(3):  # unattributed web requests (kube probes)
            out.append(Event(march + dt.timedelta(days=day, hours=r.randint(0, 23)), SHARED, "web", size=57))
    for day in range(3, 17):  # the heaviest contributor
        for h in range(12):
            t = march + dt.timedelta(days=day, hours=9 + h % 8, minutes=h)
            out.append(Event(t, "heavy", "failed", "host1", "10.0.1.1"))
            out.append(Event(t, "heavy", "web", size=900_000))
    out.append(Event(dt.datetime(2024, 3, 12, 3, 7, tzinfo=dt.UTC), "lonely", "failed", "host9", "10.0.2.2"))
    out.append(Event(dt.datetime(2024, 3, 12, 3, 9, tzinfo=dt.UTC), "lonely", "accepted", "host9", "10.0.2.2"))
    for m in (5, 35):
        out.append(Event(dt.datetime(2024, 3, 14, 10, m, tzinfo=dt.UTC), "dayonly", "failed", "host2", "10.0.3.3"))
        out.append(Event(dt.datetime(2024, 3, 14, 10, m, tzinfo=dt.UTC), "dayonly", "web", size=4_000))
    for day, size in ((4, 1_000_000), (6, 3_000_000), (9, 999_999)):
        out.append(Event(march + dt.timedelta(days=day, hours=14), "clamp", "web", size=size))
        out.append(Event(march + dt.timedelta(days=day, hours=14), "clamp", "accepted", "host2", "10.0.0.7"))
    for day in range(2, 18):  # most failed logins per account after heavy? no: per day it wins the top-k
        for m in range(4):
            out.append(Event(march + dt.timedelta(days=day, hours=2, minutes=m), "winner", "failed", "host2", "10.0.0.9"))
    for day in (5, 11):
        out.append(Event(march + dt.timedelta(days=day, hours=17), "outside", "accepted", "host1", "10.0.0.44"))
        out.append(Event(march + dt.timedelta(days=day, hours=18), "outside", "failed", "host1", "198.51.100.7"))
    april = dt.datetime(2024, 4, 1, tzinfo=dt.UTC)
    for day in range(10):  # April: the crowd only browses; april alone logs in
        for u in CROWD[:4]:
            out.append(Event(april + dt.timedelta(days=day, hours=10), u, "web", size=700))
        if 2 <= day <= 6:
            out.append(Event(april + dt.timedelta(days=day, hours=11), "april", "failed", "host1", "10.0.0.5"))
    return sorted(out, key=lambda e: (e.when, e.unit, e.kind))


def render(events: list[Event]) -> dict[str, str]:
    """``auth.log`` (RFC 3164 sshd lines, read with --year 2024) and ``access.log`` (combined)."""
    auth, web = [], []
    for e in events:
        t = e.when
        if e.kind == "web":
            user = "-" if e.unit == SHARED else e.unit
            web.append(f'{e.ip} - {user} [{t:%d/%b/%Y:%H:%M:%S} +0000] "GET /app HTTP/1.1" 200 {e.size} "-" "ua"')
        else:
            verb = "Accepted" if e.kind == "accepted" else "Failed"
            auth.append(f"{t:%b} {t.day:2d} {t:%H:%M:%S} {e.host} sshd[4242]: {verb} password for {e.unit} "
                        f"from {e.ip} port 50022 ssh2")
    return {"auth.log": "\n".join(auth) + "\n", "access.log": "\n".join(web) + "\n"}


def neighbour(events: list[Event], victim: str, window: tuple[dt.datetime, dt.datetime]) -> list[Event]:
    """D' : ``events`` without every row of ``victim`` inside the budget window ``[lo, hi)``."""
    lo, hi = window
    return [e for e in events if not (e.unit == victim and lo <= e.when < hi)]


MARCH = (dt.datetime(2024, 3, 1, tzinfo=dt.UTC), dt.datetime(2024, 4, 1, tzinfo=dt.UTC))
APRIL = (dt.datetime(2024, 4, 1, tzinfo=dt.UTC), dt.datetime(2024, 5, 1, tzinfo=dt.UTC))


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def build_store(path: Path, events: list[Event], *, policy: bool = False, covers: str | None = None) -> Path:
    """A store at ``path`` from ``events`` through the real CLI, with generous caps; with ``policy``,
    the crowd and the victims are declared people and 10.0.0.0/8 the organisation's network; with
    ``covers``, the ingest declares the days the logs cover (``--covers``)."""
    logs = path.parent / f"{path.name}-logs"
    logs.mkdir(parents=True)
    files = []
    for name, text in render(events).items():
        (logs / name).write_text(text)
        files.append(logs / name)
    res = invoke("ingest", "--store", path, "--year", "2024", "--quiet", *(["--covers", covers] if covers else []), *files)
    assert res.exit_code == 0, res.output
    res = invoke("budget", "set", "--store", path, "--epsilon", 1e6, "--delta", 0.5)
    assert res.exit_code == 0, res.output
    if policy:
        roster = logs / "people.txt"
        roster.write_text("\n".join([*CROWD, *(v for v in VICTIMS if v != SHARED)]) + "\n")
        res = invoke("protect", "--store", path, "--networks", "10.0.0.0/8", "--users", roster)
        assert res.exit_code == 0, res.output
    return path


@dataclass
class Pair:
    """D and D' (named by the victim removed), built lazily and reused per module."""

    root: Path
    events: list[Event]
    policy: bool = False
    covers: str | None = None
    stores: dict[str, Path] = field(default_factory=dict)

    def store(self, victim: str | None, window=MARCH) -> Path:
        key = "D" if victim is None else f"{victim}-{window[0]:%Y%m}"
        if key not in self.stores:
            events = self.events if victim is None else neighbour(self.events, victim, window)
            assert victim is None or len(events) < len(self.events), f"{victim} has no rows in {window}"
            self.stores[key] = build_store(self.root / key, events, policy=self.policy, covers=self.covers)
        return self.stores[key]


# --- observing one run --------------------------------------------------------------------------

_VOLATILE = [
    (re.compile(r"\b[0-9a-f]{32}\b"), "<id>"),  # ledger entries, release ids
    (re.compile(r"\b\d{8}T\d{6}Z-[0-9a-f]{6}\b"), "<run>"),  # ingest run ids
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)?(?=\W*(recorded|at|$))"), "<now>"),
]
_NUMBER = re.compile(r"-?\d[\d,]*(\.\d+)?(e[-+]?\d+)?")


@dataclass
class Observation:
    exit_code: int
    stdout: str
    stderr: str
    files: dict[str, bytes]

    def json(self):
        return json.loads(self.stdout)


def observe(store: Path, *args: object, out: Path | None = None, stores: tuple[Path, ...] = ()) -> Observation:
    """Run ``dplogs ARGS`` with noise off; ``{store}`` / ``{out}`` in ARGS are filled in. Files the
    run writes under ``out`` are collected by relative name."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    filled = [str(a).replace("{store}", str(store)).replace("{out}", str(out)) for a in args]
    with exact_mode():
        res = CliRunner().invoke(cli, filled)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    files = {}
    if out is not None and out.exists():
        for f in sorted(out.rglob("*")):
            if f.is_file():
                files[str(f.relative_to(out))] = f.read_bytes()
    return Observation(res.exit_code, _scrub(res.stdout, store, out), _scrub(res.stderr, store, out), files)


def _scrub(text: str, store: Path, out: Path | None) -> str:
    text = text.replace(str(store), "<store>")
    if out is not None:
        text = text.replace(str(out), "<out>")
    for pattern, repl in _VOLATILE:
        text = pattern.sub(repl, text)
    return text


def mask_numbers(text: str, *, unordered: bool = False) -> str:
    """Every number replaced by ``#`` and runs of padding squeezed: for texts whose numbers are
    noisy values (tables), whose column widths follow the digits. The structure (lines, cells,
    words, keys) is still compared; ``unordered`` sorts the lines, for rows ORDER BY a noisy value."""
    lines = [re.sub(r"[ ─━]+", " ", _NUMBER.sub("#", line)) for line in text.splitlines()]
    return "\n".join(sorted(lines) if unordered else lines)


# --- masking a release's JSON: only the noisy values ----------------------------------------------

# privacy-metadata entries that are DP outputs themselves (their values may differ; their presence
# and shape may not): the bound choice's noisy histogram and what it chose, the ledger entry id
_NOISY_META = {("bound_choice", "detail"), ("bound_choice", "values"), ("ledger_entry",),
               ("protection", "digest")}  # the policy's digest covers its creation time: public, not data


NOISY_COLUMNS = ("value", "ci_low", "ci_high")


def mask_rows(rows: list[dict]) -> list[dict]:
    """Released rows (long format: keys, ``aggregate``, ``value``, ``mechanism``, ``scale``, CI)
    with only the noisy value and its interval masked, sorted by everything else (ORDER BY a noisy
    value may reorder them). A null value is masked too: a ratio or mean is null when its noisy
    interval is too wide (or, noise off, when its bounded denominator is 0). The width of a plain
    mechanism's interval is kept: it comes from the noise scale, never from the data."""
    out = []
    for row in rows:
        masked = {k: ("<value>" if k in NOISY_COLUMNS else v) for k, v in row.items()}
        if isinstance(masked.get("mechanism"), str):  # the null's reason goes with the (masked) null
            masked["mechanism"] = re.sub(r"; not enough data[^)]*", "", masked["mechanism"])
        low, high = row.get("ci_low"), row.get("ci_high")
        if "post-processed" not in str(row.get("mechanism")) and low is not None and high is not None:
            masked["ci_width"] = round(high - low, 9)
        out.append(masked)
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def mask_privacy(privacy: dict, *, chosen_bounds: bool = False) -> dict:
    """A release's privacy metadata with only its DP outputs masked (with ``chosen_bounds``, the
    bounds the DP choice set and what follows from them: scales, bias note)."""
    privacy = json.loads(json.dumps(privacy))
    for path in _NOISY_META:
        _drop(privacy, path)
    if chosen_bounds:
        for path in (("bounds", "max_groups"), ("bounds", "max_rows_per_group"), ("bounds", "effective_max_groups"),
                     ("columns",), ("bias_note",), ("clamps",), ("bins",)):
            _drop(privacy, path)
    return privacy


def mask_release(doc: dict, *, chosen_bounds: bool = False) -> dict:
    """A release (``--format json``) with its noisy values masked (:func:`mask_rows`,
    :func:`mask_privacy`)."""
    rows = mask_rows(doc["data"])
    if chosen_bounds:  # the scales follow the chosen bounds
        rows = [{k: v for k, v in r.items() if k not in ("scale", "ci_width")} for r in rows]
    return {"data": rows, "privacy": mask_privacy(doc.get("privacy", {}), chosen_bounds=chosen_bounds)}


def mask_report(doc: dict) -> dict:
    """A report's JSON with its noisy values masked: each section as a release; what stands out
    is computed from released values, so only how it is built is compared, not what it says."""
    doc = json.loads(json.dumps(doc))
    doc["summary"]["standouts"] = "<from released values>"
    doc["summary"]["anomaly_sections"] = "<from released values>"
    for section in doc.get("sections", []):
        if "data" in section:
            section["data"] = mask_rows(section["data"])
        if isinstance(section.get("privacy"), dict):
            section["privacy"] = mask_privacy(section["privacy"])
    return doc


def tokens(html: str) -> list[str]:
    """An HTML/SVG document as its sorted tags and texts with numbers masked: bars and table rows
    ordered by a noisy value, and chart coordinates, compare equal; the elements drawn do not."""
    return sorted(mask_numbers(t) for t in re.findall(r"<[^>]*>|[^<]+", html))


def _kind(v: object) -> str:
    return "null" if v is None else type(v).__name__


def _drop(doc: dict, path: tuple[str, ...]) -> None:
    for k in path[:-1]:
        doc = doc.get(k) if isinstance(doc, dict) else None
        if doc is None:
            return
    if isinstance(doc, dict) and path[-1] in doc:
        doc[path[-1]] = "<dp>"


def diff(a: object, b: object, path: str = "") -> list[str]:
    """Readable differences between two JSON-like values (empty when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only on {'D' if k in a else 'D_prime'}")
            else:
                out += diff(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items on D, {len(b)} on D_prime: {a!r:.300} vs {b!r:.300}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r:.300} on D vs {b!r:.300} on D_prime"]
