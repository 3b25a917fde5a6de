"""Empirical privacy auditing: lower bounds on the ε a release path really has.

The auditor runs a release path — bounding included — many times on neighbouring datasets and
turns the best distinguishing test into a lower bound ε_lb with Clopper–Pearson confidence
(:mod:`dplogs.audit.auditor`); the detector loop gets a one-run canary audit
(:mod:`dplogs.audit.canary`); float samplers get a porous-set test (:mod:`dplogs.audit.porous`).
A lower bound above the claimed ε is a bug in dplogs. Nothing here releases data: every draw is
made under :meth:`dplogs.privacy.Charge.for_audit` and never leaves the process.
"""

from dplogs.audit.auditor import AuditResult, audit, audit_outputs, repeat
from dplogs.audit.stats import clopper_pearson, epsilon_lower_bound

__all__ = ["AuditResult", "audit", "audit_outputs", "clopper_pearson", "epsilon_lower_bound", "repeat"]
