"""Turn a failed verdict into the action the user chose: a warning, a stop, or an exception."""

from __future__ import annotations

import warnings
from typing import Literal

import pytorch_lightning as pl

from cam_audit.errors import ShortcutDetected, ShortcutWarning
from cam_audit.report import AuditReport

OnShortcut = Literal["warn", "stop", "raise"]


def act_on_verdict(trainer: pl.Trainer, report: AuditReport, on_shortcut: OnShortcut) -> None:
    """Warn (rank 0), stop the fit (agreed across ranks) or raise :class:`ShortcutDetected` on a failed
    verdict; nothing on a passed one."""
    flagged = not report.verdict.passed
    if on_shortcut == "stop" and trainer.strategy.reduce_boolean_decision(flagged, all=False):
        trainer.should_stop = True
    if not flagged:
        return
    message = f"CamAudit epoch {trainer.current_epoch}: " + "; ".join(report.verdict.flags)
    if on_shortcut == "raise":
        raise ShortcutDetected(message)
    if trainer.is_global_zero:
        warnings.warn(message, ShortcutWarning, stacklevel=1)


__all__ = ["OnShortcut", "act_on_verdict"]
