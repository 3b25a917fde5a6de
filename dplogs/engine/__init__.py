"""The private query engine: logical plans, front-ends (SQL, query files, Python builder), explain,
and :class:`Release`. :class:`Engine` is the facade to embed; see :mod:`dplogs.engine.api`."""

from dplogs.engine.api import Engine, PreparedQuery, time_bucket
from dplogs.engine.explain import Explanation
from dplogs.engine.plan import Aggregation, Bins, KeySpec, Query
from dplogs.engine.release import Release, write_release

__all__ = [
    "Aggregation", "Bins", "Engine", "Explanation", "KeySpec", "PreparedQuery", "Query", "Release",
    "time_bucket", "write_release",
]
