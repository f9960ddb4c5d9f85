"""Turn a failed verdict into the action the user chose: a warning, a stop, or an exception."""

from __future__ import annotations

import warnings
from typing import Literal

import pytorch_lightning as pl

from cam_audit.errors import InconclusiveWarning, ShortcutDetected, ShortcutWarning
from cam_audit.report import AuditReport

OnShortcut = Literal["warn", "stop", "raise"]


def flagged(report: AuditReport) -> bool:
    """Whether the verdict failed on evidence (a cue, weak focus), not for want of it."""
    return not report.verdict.passed and not report.verdict.inconclusive


def act_on_verdict(trainer: pl.Trainer, report: AuditReport, on_shortcut: OnShortcut) -> None:
    """Warn (rank 0), stop the fit (agreed across ranks) or raise :class:`ShortcutDetected` on a failed
    verdict; nothing on a passed one. An inconclusive verdict (a model still at chance, no scorable map)
    is only warned about (:class:`InconclusiveWarning`): it says nothing about a shortcut."""
    is_flagged = flagged(report)
    if on_shortcut == "stop" and trainer.strategy.reduce_boolean_decision(is_flagged, all=False):
        trainer.should_stop = True
    message = f"CamAudit epoch {trainer.current_epoch}: " + "; ".join(report.verdict.flags)
    if report.verdict.inconclusive and trainer.is_global_zero:
        warnings.warn(message, InconclusiveWarning, stacklevel=1)
    if not is_flagged:
        return
    if on_shortcut == "raise":
        raise ShortcutDetected(message)
    if trainer.is_global_zero:
        warnings.warn(message, ShortcutWarning, stacklevel=1)


__all__ = ["OnShortcut", "act_on_verdict", "flagged"]
