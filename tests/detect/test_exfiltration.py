"""Issue 17: the planted exfiltration of ``sample_logs`` (omar.haddad downloads 120 exports of
50–400 MB between 2024-03-14 23:00 and 03-15 03:00) is among the 5 most anomalous user-days of
the store at ε = 1, through the product path: ingest, ``dplogs train`` (DP k-means, defaults),
``dplogs score --top 5``.

Statistical: each run draws fresh noise, so the test asks for NEEDED of RUNS runs. Measured on this
code: the exfiltration was in the top 5 in MEASURED_HITS of MEASURED_RUNS runs; the false-failure
rate below uses P_LOW, the 99.9 % Clopper–Pearson lower bound of that rate. Before scoring used
unclipped rows, the same runs hit in 4 of 40 (p ≈ 0.1): that code passes with probability ≈ 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy.stats import beta, binom

REPO = Path(__file__).resolve().parents[2]
RUNS, NEEDED = 20, 10
MEASURED_HITS, MEASURED_RUNS = 96, 100
MAX_FALSE_FAILURE = 1e-4


def _p_low() -> float:
    return float(beta.ppf(0.001, MEASURED_HITS, MEASURED_RUNS - MEASURED_HITS + 1))


def test_the_run_count_keeps_false_failures_below_1e_4():
    assert binom.cdf(NEEDED - 1, RUNS, _p_low()) <= MAX_FALSE_FAILURE
    assert binom.sf(NEEDED - 1, RUNS, 4 / 40) < 1e-4  # the old, clipped scoring fails it


@pytest.mark.slow
def test_planted_exfiltration_is_in_the_top_5_user_days_at_epsilon_1(tmp_path):
    from dplogs.detect.train import TrainRequest, default_max_windows, top_windows, train_from_store
    from dplogs.ingest.base import IngestOptions
    from dplogs.ingest.ingest import ingest
    from dplogs.privacy.ledger import Ledger

    store = tmp_path / "store"
    ingest([REPO / "sample_logs"], store, options=IngestOptions(year=2024))
    Ledger.open(store / "ledger.sqlite", create=True).set_caps(window_policy="month", epsilon=RUNS * 1.0, delta=1e-3)
    request = TrainRequest(detector="kmeans", epsilon=1.0, delta=1e-6, start="2024-03-04", end="2024-03-18",
                           max_windows_per_unit=default_max_windows("day"), clip_norm=1.0)
    hits = 0
    for run in range(RUNS):
        model = tmp_path / f"m{run}.json"
        train_from_store(store, request, output=model)
        top = top_windows(store, model, n=5)
        hits += any(w["user.name"] == "omar.haddad" and w["window_start"].startswith("2024-03-1") for w in top)
    assert hits >= NEEDED, f"the exfiltration was in the top 5 in {hits} of {RUNS} runs at epsilon 1"
