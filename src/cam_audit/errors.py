"""Errors raised by cam_audit.

Every error is a :class:`CamAuditError` (a ``ValueError``), so ``except ValueError`` keeps working for
callers that do not know this library. Messages name the sample, file, layer or argument at fault and
say how to fix it.
"""

from __future__ import annotations


class CamAuditError(ValueError):
    """Bad input to cam_audit: the message names what is wrong and how to fix it."""


class TargetLayerError(CamAuditError):
    """The target layer does not exist, never runs, or has no spatial output."""


class ProbeError(CamAuditError):
    """A probe sample, annotation file or region is invalid."""


class ReportError(CamAuditError):
    """A report file cannot be read or does not match the expected schema."""


__all__ = ["CamAuditError", "ProbeError", "ReportError", "TargetLayerError"]
