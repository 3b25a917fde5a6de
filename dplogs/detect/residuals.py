"""One-sided residuals: how the detectors turn a row's difference from the model into a score.

Some store features are **directional**: a failure ratio, an off-hours share, a rise over the
unit's own history or over its peers, a share of first-seen values, a process's rarity among the
peers. For them only a value ABOVE the model is suspicious; a window that fails less, rises less,
sees nothing new or names no process at all is not an anomaly. A squared residual counts both
sides alike, so on the OTRF PurpleSharp recording the 6 % of windows that name no process
(``process_rarity_vs_peers`` = 0, the mean is 0.34) scored as high as the attack tool's (0.63).
For the directional features the score counts only the part of the residual above the model
(``max(x − model, 0)²``); every other feature counts both sides. Which features are directional is
public (their names, :data:`RISING_FEATURES`); scoring is post-processing of the released model.

>>> rising = rising_mask(("category.web", "failure_ratio"))
>>> rising.tolist()
[False, True]
>>> squared_parts(np.array([[-0.5, -0.5], [0.5, 0.5]]), rising).tolist()
[[0.25, 0.0], [0.25, 0.25]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dplogs.detect.features import NOVELTY_COLUMNS
from dplogs.detect.peers import PEER_FEATURE_NAMES

RISING_FEATURES: frozenset[str] = frozenset({
    "failure_ratio", "http_error_share", "off_hours_share",
    "events_rise_vs_own_history", "bytes_rise_vs_own_history",
    *(name for _, name in NOVELTY_COLUMNS),
    *PEER_FEATURE_NAMES,
})
"""Features where only a value above the model counts towards the score."""


def rising_mask(names: Sequence[str]) -> np.ndarray:
    """Boolean mask over ``names``: True where the feature is directional."""
    return np.array([n in RISING_FEATURES for n in names], dtype=bool)


def squared_parts(residual: np.ndarray, rising: np.ndarray | None) -> np.ndarray:
    """Per-feature parts of the score of ``residual`` = row − model (any leading shape): the
    square, with a directional feature's negative residual counting 0 (``rising`` None: both sides
    everywhere, the score of models trained before this rule)."""
    if rising is not None and rising.any():
        residual = np.where(rising & (residual < 0), 0.0, residual)
    return residual * residual
