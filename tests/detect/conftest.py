"""A small synthetic store with a budget cap for the detector tests."""

from __future__ import annotations

import pytest
from tests.detect.detect_helpers import synthetic_events


@pytest.fixture
def store(tmp_path):
    from dplogs.ingest.store import Store
    from dplogs.privacy.ledger import Ledger

    s = Store.init(tmp_path / "store", dataset="synthetic")
    s.write_events(synthetic_events(), stem="part0")
    ledger = Ledger.open(s.ledger_path, create=True)
    ledger.set_caps(window_policy="month", epsilon=3.0, delta=1e-5)
    ledger.close()
    return s
