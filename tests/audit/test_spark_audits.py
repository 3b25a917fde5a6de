"""The engine's release path on the Spark backend, audited like the polars one: Spark bounds with
its own code (spark_rows.bounding_unit, SparkBackend.bounded_aggregate), so its per-window
bounding gets the per-window neighbour across a month end, and a Spark path that skips the bound
is caught. Every seed check is a Spark job (seconds each on a loaded CI box), so the runs use two
of them instead of eight (the neighbours make bounding seed-independent; two fresh seeds agreeing
is what is checked, and a disagreement would make every trial a full run, not a wrong one).
The Spark paths whose pre-noise aggregates the shared tests show equal to polars' (the
protection policy's parts, the bound choice profile, the detector's features and sums) rely on
those polars audits."""

from __future__ import annotations

import numpy as np
import pytest

from dplogs.audit.auditor import audit, audit_outputs
from dplogs.audit.engine import engine_path
from dplogs.engine import time_bucket
from dplogs.engine.api import Engine
from dplogs.engine.plan import Aggregation
from dplogs.privacy.bounds import ContributionBounds
from tests.audit.audit_paths import assert_within_claim
from tests.audit.engine_data import TWO_WINDOWS, WINDOW, neighbours, window_neighbours
from tests.backends.conftest import spark_session  # noqa: F401 (the session fixture)

ENGINE = Engine(scan=lambda: None, privacy_unit="user.name", budget_window="month", ledger=None)
FEB27, MAR1 = 2, 4


@pytest.fixture(scope="module")
def spark(spark_session):  # noqa: F811
    from dplogs.backends.spark import SparkBackend

    return SparkBackend()


def test_spark_count_across_a_month_end_holds_for_the_window_neighbour(spark):
    d, d_prime = window_neighbours()
    plan = ENGINE.build(Aggregation.count(), keys=[time_bucket("day")], max_groups=1, max_rows_per_group=1,
                        epsilon=1.0, **TWO_WINDOWS).plan
    run = engine_path(plan, spark, checks=2)
    on_d, on_d_prime = run(d, 50_000), run(d_prime, 50_000)
    quadrant = lambda out: np.minimum(out[:, MAR1] - 2, 1 - out[:, FEB27])  # noqa: E731 (see test_engine_audits)
    for statistic, what in ((None, "projection"), (quadrant, "Feb 27 low and Mar 1 high")):
        r = audit_outputs(on_d, on_d_prime, claimed_epsilon=1.0, statistic=statistic,
                          name=f"Spark: count by day across a month end ({what})")
        assert_within_claim(r)
    assert r.epsilon_lb >= 0.8, r.summary()


class _Unbounded:
    """The planted bug: a Spark backend that hands its aggregation no real bound."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name

    def frame(self, source):
        return self.inner.frame(source)

    def bounded_aggregate(self, *args, bounds, **kwargs):
        return self.inner.bounded_aggregate(*args, bounds=ContributionBounds(max_groups=10**6, max_rows_per_group=10**6), **kwargs)


def test_an_unbounded_spark_path_is_caught(spark):
    d, d_prime = neighbours(victim_rows=12)
    plan = ENGINE.build(Aggregation.count(), keys=["event.outcome"], epsilon=1.0, max_groups=1, max_rows_per_group=2,
                        **WINDOW).plan
    r = audit(engine_path(plan, _Unbounded(spark), checks=2), d, d_prime, trials=5_000, claimed_epsilon=1.0,
              name="BROKEN: Spark without the per-unit bound (victim 12 rows, L∞ = 2)")
    assert r.violated, r.summary()
