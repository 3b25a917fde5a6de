"""The demo report in a real browser: headless Chromium (Debian's package) renders the nightly
HTML report of the spray day; the screenshot is not blank, the charts are in the DOM and the page
logs no console error. CI installs Chromium through this module when it runs as root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dplogs.cli import cli
from dplogs.privacy.ledger import Ledger

REPO = Path(__file__).resolve().parents[2]


def _chromium() -> str:
    """The chromium binary; installed from Debian's packages when missing and we are root."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if not found:
        pytest.skip("chromium is not installed and cannot be installed here (not root or no apt-get)")
    return found


def _png_pixels(path: Path) -> np.ndarray:
    """Decode a PNG (8-bit RGB/RGBA, the kind Chromium writes) with zlib only."""
    import struct
    import zlib

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, color = header[:4]
    assert depth == 8 and color in (2, 6)
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    out = np.zeros((height, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):  # undo the PNG row filters
        f, row = raw[y * (stride + 1)], np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        cur = row.copy()
        if f == 1:
            for x in range(channels, stride):
                cur[x] = (cur[x] + cur[x - channels]) & 255
        elif f == 2:
            cur = (row + prev) & 255
        elif f == 3:
            for x in range(stride):
                left = cur[x - channels] if x >= channels else 0
                cur[x] = (row[x] + (left + prev[x]) // 2) & 255
        elif f == 4:
            for x in range(stride):
                a = cur[x - channels] if x >= channels else 0
                b, c = prev[x], (prev[x - channels] if x >= channels else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[x] = (row[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out[y], prev = cur, cur
    return out.reshape(height, width, channels)[:, :, :3]


@pytest.mark.slow
def test_demo_report_renders_in_headless_chromium(tmp_path):
    chromium = _chromium()
    store = tmp_path / "st"
    assert CliRunner().invoke(cli, ["ingest", str(REPO / "sample_logs"), "--store", str(store), "--year", "2024"]).exit_code == 0
    Ledger.open(store / "ledger.sqlite", create=True).set_caps(window_policy="month", epsilon=100.0, delta=1e-5)
    html = tmp_path / "nightly.html"
    res = CliRunner().invoke(cli, ["report", str(REPO / "queries" / "reports" / "nightly.toml"), "--store", str(store),
                                   "--date", "2024-03-12", "-o", str(html)])
    assert res.exit_code == 0, res.output
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    run = subprocess.run([chromium, *flags, "--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
                          "--window-size=1280,2400", html.as_uri()], capture_output=True, text=True, timeout=180)
    assert shot.is_file(), run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)]
    assert not console, console
    pixels = _png_pixels(shot)
    assert pixels.std() > 10  # not a blank page
    assert (pixels.reshape(-1, 3).std(axis=1) > 30).mean() > 0.001  # something coloured: the charts
    dom = subprocess.run([chromium, *flags, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=180).stdout
    assert dom.count("<svg") >= 2 and "Nightly SOC summary" in dom
