"""Release paths for the auditor, and the one shortcut it may take.

Running a full path (bounding with a fresh secret seed, aggregation, noise) tens of thousands of
times is slow. :func:`vectorised` takes the shortcut only when it is provably the same
distribution: a path's output is its bounded pre-noise aggregate plus noise drawn independently
per :class:`~dplogs.privacy.NoisePlan`. If ``checks`` full runs with fresh seeds under
:func:`~dplogs.privacy.testing.exact_mode` give the same aggregate (the worst-case neighbours the
audits use make bounding deterministic: the unit is cut to exactly L∞ rows in each of its ≤ L0
groups whatever the seed), noise is drawn once per trial on that aggregate in one vectorised call.
Otherwise every trial is a full run (:func:`~dplogs.audit.auditor.repeat`).

>>> import numpy as np
>>> from dplogs.privacy import Sensitivity, calibrate
>>> plan = calibrate(mechanism="laplace", sensitivity=Sensitivity(l1=1, l2=1), epsilon=1.0, integer=True)
>>> run = vectorised(lambda d: np.array([d]), plan)
>>> run(5, 3).shape
(3, 1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dplogs.audit.auditor import ReleasePath, repeat
from dplogs.privacy.charge import Charge
from dplogs.privacy.mechanisms import NoisePlan, add_noise
from dplogs.privacy.testing import exact_mode


def vectorised(run_once: Callable[[Any], np.ndarray], plan: NoisePlan, *, checks: int = 8) -> ReleasePath:
    """A release path that draws ``plan``'s noise vectorised on the pre-noise aggregate of
    ``run_once`` when that aggregate does not depend on the bounding seed, else runs it in full.

    ``run_once(dataset)`` must be the full path, noising with ``plan``."""
    if checks < 2:
        raise ValueError("checks must be >= 2: determinism is verified across fresh seeds")

    def run(dataset: Any, trials: int) -> np.ndarray:
        with exact_mode():
            aggs = [np.atleast_1d(np.asarray(run_once(dataset))) for _ in range(checks)]
        if any(a.shape != aggs[0].shape or not np.array_equal(a, aggs[0]) for a in aggs[1:]):
            return repeat(run_once)(dataset, trials)
        agg = np.rint(aggs[0]).astype(np.int64) if plan.integer else aggs[0]  # a release may hold counts as floats
        tiled = np.tile(agg, trials)
        noisy = add_noise(tiled, plan, charge=Charge.for_audit(plan.loss))
        return noisy.reshape(trials, agg.size).astype(np.float64)

    return run
