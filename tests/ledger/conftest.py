"""Fixtures for ledger tests: a fresh ledger with month caps in a temporary store directory."""

from __future__ import annotations

import pytest

from dplogs.privacy.ledger import Ledger


@pytest.fixture
def ledger_path(tmp_path):
    return tmp_path / "ledger.sqlite"


@pytest.fixture
def ledger(ledger_path):
    led = Ledger.open(ledger_path, create=True)
    led.set_caps(window_policy="month", epsilon=1.0, delta=1e-6)
    yield led
    led.close()
