"""Execution backends for the bounded aggregation of a plan (see :mod:`dplogs.backends.base`)."""

from dplogs.backends.base import ROWS, SUM_PREFIX, UNITS, Backend, get_backend

__all__ = ["ROWS", "SUM_PREFIX", "UNITS", "Backend", "get_backend"]
