"""Validation of privacy parameters and the numbers they are made of, done before anything is
reserved or charged. A number must be a real number: ``True`` is not 1 and ``"0.1"`` is not 0.1
(a query file or API call that writes either gets a clear error, not a silent conversion).

>>> check_epsilon(0.5)
0.5
>>> check_epsilon(float("nan"))
Traceback (most recent call last):
...
dplogs.errors.PrivacyParameterError: epsilon must be a finite number > 0, got nan
>>> check_epsilon(True)
Traceback (most recent call last):
...
dplogs.errors.PrivacyParameterError: epsilon must be a number, got True
>>> check_integer("max_groups", 3, lo=1, hi=10)
3
"""

from __future__ import annotations

import math
import numbers

from dplogs.errors import PrivacyParameterError


def check_number(name: str, value: object) -> float:
    """``value`` as a float if it is a real number (not a bool, not text); NaN and ±inf pass."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PrivacyParameterError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # an int beyond float's range (copysign would convert it too, and overflow)
        return math.inf if value > 0 else -math.inf


def check_integer(name: str, value: object, *, lo: int, hi: int) -> int:
    """``value`` if it is an integer (not a bool) in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise PrivacyParameterError(f"{name} must be an integer >= {lo} and <= {hi:,}, got {value!r}")
    return int(value)


def _finite_positive(name: str, value: object) -> float:
    x = check_number(name, value)
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
