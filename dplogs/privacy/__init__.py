"""Everything privacy-critical: bounds, sensitivities, mechanisms, selection, accounting, ledger.

The only package that imports ``opendp`` or ``dp_accounting``. Sensitivities are derived in
:mod:`dplogs.privacy.sensitivity` and nowhere else; noise is drawn only by
:func:`dplogs.privacy.mechanisms.add_noise` (and the selection/quantile mechanisms here), always
against a ledger :class:`~dplogs.privacy.charge.Charge`.
"""

from dplogs.privacy.bounds import Clamp, ContributionBounds
from dplogs.privacy.charge import Charge
from dplogs.privacy.loss import PrivacyLoss
from dplogs.privacy.mechanisms import Mechanism, NoisePlan, add_noise, calibrate
from dplogs.privacy.sensitivity import (
    Sensitivity,
    count_sensitivity,
    distinct_units_sensitivity,
    sum_sensitivity,
)

__all__ = [
    "Charge", "Clamp", "ContributionBounds", "Mechanism", "NoisePlan", "PrivacyLoss", "Sensitivity",
    "add_noise", "calibrate", "count_sensitivity", "distinct_units_sensitivity", "sum_sensitivity",
]
