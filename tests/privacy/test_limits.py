"""The arithmetic limits of dplogs/privacy/limits.py: noise scales that could wrap int64 are refused
at calibration (from the parameters alone), a discrete draw never wraps, and budget windows are
counted without enumerating them."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dplogs.errors import InternalError, PrivacyParameterError
from dplogs.privacy.charge import Charge
from dplogs.privacy.limits import MAX_EXACT_SUM_UNITS, MAX_NOISE_SCALE_UNITS
from dplogs.privacy.mechanisms import add_noise, calibrate
from dplogs.privacy.sensitivity import Sensitivity
from dplogs.privacy.windows import window_count, windows_for


@pytest.mark.parametrize("mechanism,budget", [("laplace", {"epsilon": 1.0}), ("gaussian", {"rho": 0.5})])
def test_sum_noise_scale_limit_is_in_grid_units(mechanism, budget):
    grid = 2.0**-10
    at_limit = MAX_NOISE_SCALE_UNITS * grid  # scale = sensitivity at ε = 1, ρ = ½
    ok = calibrate(mechanism=mechanism, sensitivity=Sensitivity(at_limit, at_limit), integer=False, grid=grid, **budget)
    assert ok.scale / grid == MAX_NOISE_SCALE_UNITS
    over = math.nextafter(at_limit, math.inf)
    with pytest.raises(PrivacyParameterError, match="above the limit of 2\\^48"):
        calibrate(mechanism=mechanism, sensitivity=Sensitivity(over, over), integer=False, grid=grid, **budget)


def test_count_noise_scale_limit_and_float_columns_unlimited():
    big = Sensitivity(2.0**49, 2.0**49)
    with pytest.raises(PrivacyParameterError, match="noise scale"):
        calibrate(mechanism="laplace", sensitivity=big, integer=True, epsilon=1.0)
    # continuous float noise cannot wrap an integer: no limit there (OpenDP's float mechanism)
    assert calibrate(mechanism="laplace", sensitivity=big, integer=False, epsilon=1.0).scale == 2.0**49


def test_a_draw_cannot_wrap_int64():
    """Regression: draws onto values near ±2^63 wrapped silently. Values beyond the saturation
    bound (which the backend never produces) stop the draw as a bug."""
    plan = calibrate(mechanism="laplace", sensitivity=Sensitivity(1.0, 1.0), integer=True, epsilon=1.0)
    charge = Charge.for_audit(plan.loss)
    with pytest.raises(InternalError, match="overflow"):
        add_noise(np.array([2**63 - 2], dtype=np.int64), plan, charge=charge)
    grid_plan = calibrate(mechanism="laplace", sensitivity=Sensitivity(1.0, 1.0), integer=False, epsilon=1.0, grid=1.0)
    ok = add_noise(np.array([float(MAX_EXACT_SUM_UNITS)]), grid_plan, charge=Charge.for_audit(grid_plan.loss))
    assert abs(ok[0] - MAX_EXACT_SUM_UNITS) < 2**20  # the saturated value itself is a valid input


def test_largest_scale_draws_stay_far_inside_int64():
    plan = calibrate(mechanism="laplace", sensitivity=Sensitivity(MAX_NOISE_SCALE_UNITS, 1.0), integer=True, epsilon=1.0)
    out = add_noise(np.full(20_000, MAX_EXACT_SUM_UNITS, dtype=np.int64), plan, charge=Charge.for_audit(plan.loss))
    noise = out - MAX_EXACT_SUM_UNITS
    assert np.all(np.abs(noise) < 2**61) and np.abs(noise).max() > 2**48  # the scale is really 2^48


_times = st.datetimes(min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9000, 1, 1))


@settings(max_examples=300, deadline=None)
@given(_times, st.integers(min_value=1, max_value=400 * 86_400 * 10**6), st.sampled_from(["day", "week", "month"]))
def test_window_count_is_the_length_of_windows_for(start, span_us, policy):
    end = start + dt.timedelta(microseconds=span_us)
    assert window_count(start, end, policy) == len(windows_for(start, end, policy))


def test_window_count_of_three_centuries_is_instant():
    assert window_count(dt.datetime(2024, 3, 1), dt.datetime(2325, 3, 1), "month") == 3612
    assert window_count(dt.datetime(1000, 1, 1), dt.datetime(9999, 1, 1), "day") == (dt.date(9999, 1, 1) - dt.date(1000, 1, 1)).days
