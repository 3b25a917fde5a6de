"""Log records stamped to move a release elsewhere (round 3 of the red-team sweep)."""

from __future__ import annotations

import json
import shutil

from tests.adversarial.conftest import invoke as run


def test_one_record_from_the_future_does_not_move_the_default_window(store, tmp_path):
    # Found: one JSON line stamped 2099-12-31 made every query and training that names no
    # window answer about (and charge) 2099-12, the latest window the coverage reached
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps({"@timestamp": "2099-12-31T10:00:00Z", "user": {"name": "mallory"}}) + "\n")
    assert run("ingest", planted, "--store", copy).exit_code == 0
    res = run("query", "--store", copy, "--sql", "SELECT COUNT(*) FROM logs", "--epsilon", "0.1", "--format", "json")
    assert res.exit_code == 0, res.output
    privacy = json.loads(res.output[res.output.index("{"):])["privacy"]
    assert privacy["budget_windows"] == ["2024-03"], privacy["budget_windows"]
