"""Scheduled private reports: specs, idempotent runs keyed by (report, period), renderers."""

from dplogs.report.render import FORMATS, render
from dplogs.report.run import ReportRun, run_report
from dplogs.report.spec import ReportSpec, Section, load_report_spec

__all__ = ["FORMATS", "ReportRun", "ReportSpec", "Section", "load_report_spec", "render", "run_report"]
