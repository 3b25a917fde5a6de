"""Hard limits on what one request may ask for, in one place.

Each is checked on the request alone, before any data is read, any domain is built or anything is
charged, so a refusal is fast, costs nothing and says nothing about the data. docs/privacy.md
(Limits) lists them with their reasons.
"""

from __future__ import annotations

import datetime as dt

EARLIEST_TIME = dt.datetime(1000, 1, 1, tzinfo=dt.timezone.utc)
LATEST_TIME = dt.datetime(9999, 1, 1, tzinfo=dt.timezone.utc)
"""Query and training windows lie in ``[EARLIEST_TIME, LATEST_TIME]``: window keys keep four-digit
years and bucket/window arithmetic never leaves Python's calendar."""

MAX_BUDGET_WINDOWS = 400
"""Budget windows one release may be charged to (a year of day windows, 33 years of months):
the ledger writes one charge row per window."""

MAX_CATCH_UP_PERIODS = 1000
"""Report periods one ``dplogs report --catch-up`` may cover (2.7 years of nights): each writes its
report files (``--since 1000-01-01`` set out to write 372,000 periods of them)."""

MAX_RELEASE_CELLS = 1_000_000
"""Cells of a release over public keys: groups of the public key grid (time buckets × key lists)
times (1 + the histogram bins of each binned column), counted before any grid is built."""

MAX_DECLARED_KEYS = 100_000
"""Values of one declared (public) key list."""

MAX_BINS = 10_000
"""Bins of one histogram or quantile column."""

MAX_CLAMP = 2.0**53
"""Largest |lo| or |hi| of a clamping range or bin edge (2^53 ≈ 9.007e15, where float64 stops
holding every integer): sums, sensitivities and noise stay finite."""

MAX_CONTRIBUTION_BOUND = 1_000_000_000
"""Largest max_groups or max_rows_per_group: L0·L∞ stays an exact int64."""

MAX_NOISE_SCALE_UNITS = 2.0**48
"""Largest noise scale (Laplace b or Gaussian σ) in the units the noise is drawn in (1 for counts,
the clamp's grid for sums). The discrete noise then exceeds 2^61 in magnitude with probability
below 2·e^(-2^13) (Laplace; the Gaussian's tail is lighter still), and exact sums are saturated at
±:data:`MAX_EXACT_SUM_UNITS`, so sum plus noise never leaves int64."""

MAX_EXACT_SUM_UNITS = 2**62
"""Exact per-group sums, in grid units, saturate at ± this (see backends/polars_backend.py)."""

MIN_TRAIN_EPSILON = 1e-3
"""Smallest ε of a training run: below it the accountants' searches take minutes (and the model
would be noise)."""

MAX_TRAIN_ROUNDS = 100_000
"""k-means iterations or DP-SGD steps of one training run."""

MAX_MODEL_WIDTH = 1_000
"""k-means clusters or autoencoder hidden units."""

MAX_FILTER_DEPTH = 100
"""Nesting depth of a WHERE condition (parentheses, NOT, AND inside OR...)."""

MAX_SQL_CHARS = 1_000_000
"""Length of one SQL query text."""

MAX_SPEC_BYTES = 16 * 2**20
"""Size of a query file, report spec or detector model file."""
