"""dplogs: differentially private SIEM log analytics.

Ingest security logs into a columnar store, then answer aggregate questions about them only through
differentially private releases charged to a durable privacy-budget ledger.
"""

__version__ = "0.1.0"
