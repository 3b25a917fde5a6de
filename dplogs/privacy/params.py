"""Validation of privacy parameters, done before anything is reserved or charged.

>>> check_epsilon(0.5)
0.5
>>> check_epsilon(float("nan"))
Traceback (most recent call last):
...
dplogs.errors.PrivacyParameterError: epsilon must be a finite number > 0, got nan
"""

from __future__ import annotations

import math

from dplogs.errors import PrivacyParameterError


def _finite_positive(name: str, value: object) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PrivacyParameterError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x) or x <= 0:
        raise PrivacyParameterError(f"{name} must be a finite number > 0, got {value!r}")
    return x


def check_epsilon(value: object) -> float:
    return _finite_positive("epsilon", value)


def check_rho(value: object) -> float:
    return _finite_positive("rho", value)


def check_delta(value: object) -> float:
    x = _finite_positive("delta", value)
    if x >= 1:
        raise PrivacyParameterError(f"delta must be < 1 (typically 1e-6 or smaller), got {value!r}")
    return x
