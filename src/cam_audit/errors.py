"""Errors and warnings raised by cam_audit.

Bad input is a :class:`CamAuditError` (a ``ValueError``), so ``except ValueError`` keeps working for
callers that do not know this library; its messages name the sample, file, layer or argument at fault and
say how to fix it. A model that fails its audit is not bad input: :class:`ShortcutDetected` and
:class:`ShortcutWarning` derive from :class:`AuditFinding` / ``UserWarning`` instead.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


class CamAuditError(ValueError):
    """Bad input to cam_audit: the message names what is wrong and how to fix it."""


class TargetLayerError(CamAuditError):
    """The target layer does not exist, never runs, or has no spatial output."""


class ProbeError(CamAuditError):
    """A probe sample, annotation file or region is invalid."""


class ReportError(CamAuditError):
    """A report file cannot be read or does not match the expected schema."""


class NonFiniteModelError(CamAuditError):
    """The model's weights or logits hold NaN or infinite values: the model is broken, not its input.

    ``cam-audit audit`` ends with exit code 1 (the model fails) on it, not 2 (bad input): auditing the
    same checkpoint again cannot succeed.
    """


def check_choice(name: str, value: Any, choices: Collection[str]) -> None:
    """Raise a :class:`CamAuditError` listing the valid ``choices`` when ``value`` is not one of them.

    >>> check_choice("method", "gradcam", ("gradcam++", "gradcam"))
    >>> check_choice("method", "gradcam+", ("gradcam++", "gradcam"))
    Traceback (most recent call last):
    ...
    cam_audit.errors.CamAuditError: method must be one of 'gradcam++', 'gradcam'; got 'gradcam+'
    """
    if not isinstance(value, str) or value not in choices:
        raise CamAuditError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_positive_int(name: str, value: Any) -> None:
    """Raise a :class:`CamAuditError` unless ``value`` is an int >= 1 (a bool is not)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CamAuditError(f"{name} must be a positive int, got {value!r}")


class AuditFinding(Exception):
    """The audit ran and judged the model: raised when the user asked a failed verdict to stop the run."""


class ShortcutDetected(AuditFinding):
    """Raised by ``CamAudit(on_shortcut="raise")`` when the verdict fails."""


class ShortcutWarning(UserWarning):
    """Warned by ``CamAudit(on_shortcut="warn")`` when the verdict fails."""


class InconclusiveWarning(UserWarning):
    """Warned by ``CamAudit`` when an audit has too little evidence for a verdict (e.g. a model still at
    chance early in training); it never stops the fit or raises, whatever ``on_shortcut`` says."""


__all__ = [
    "AuditFinding",
    "CamAuditError",
    "InconclusiveWarning",
    "NonFiniteModelError",
    "ProbeError",
    "ReportError",
    "ShortcutDetected",
    "ShortcutWarning",
    "TargetLayerError",
    "check_choice",
    "check_positive_int",
]
