"""Shared fixtures. ``datasets_dir`` is the third-party log collection beside the repo
(``../shared/datasets``); tests that need it skip, saying so, when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI (CI=true) replays a fixed example sequence so a run is reproducible; local runs keep
# exploring new examples, which is how new parser bugs are found.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

DATASETS = (Path(__file__).resolve().parents[1] / "../shared/datasets").resolve()


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"third-party datasets not found at {DATASETS} (clone shared/ beside the repo)")
    return DATASETS
