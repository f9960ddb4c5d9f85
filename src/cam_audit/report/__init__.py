"""Audit reports, the shortcut policy and its verdict.

This module imports no torch, so ``cam-audit gate`` runs on any machine that has pandas.

A report is what one audit produced: probe-wide ``summary`` numbers, a ``per_class`` table, one row per
probe sample in ``samples``, the ``verdict`` of a :class:`ShortcutPolicy`, and ``meta`` (epoch, step,
fingerprints, versions). ``AuditReport.to_json``/``from_json`` round-trip it exactly.
``AuditReport.compare`` judges a candidate against the champion it would replace (a :class:`Comparison`).
"""

from cam_audit.report.audit_report import REPORT_FORMAT, SUMMARY_KEYS, AuditReport
from cam_audit.report.compare import Comparison
from cam_audit.report.pairing import paired_deltas
from cam_audit.report.policy import Finding, ShortcutPolicy, Verdict

__all__ = [
    "REPORT_FORMAT",
    "SUMMARY_KEYS",
    "AuditReport",
    "Comparison",
    "Finding",
    "ShortcutPolicy",
    "Verdict",
    "paired_deltas",
]
