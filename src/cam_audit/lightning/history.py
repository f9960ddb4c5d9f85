"""What the callback remembers between audits and across resume: best focus, first flag, counts."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from cam_audit.report import AuditReport


@dataclass
class AuditHistory:
    """The run's audit history, saved in checkpoints through the callback's ``state_dict``.

    Attributes:
        best_focus_lift: the highest probe-wide ``focus_lift`` so far (NaN before the first audit).
        best_epoch: the epoch it was reached (-1 before).
        first_flag_epoch: the first epoch whose verdict failed on evidence, not for want of it (-1 while
            none has).
        n_audits: audits logged in this run (smoke audits do not count).
        last_summary: the latest audit's summary.
    """

    best_focus_lift: float = math.nan
    best_epoch: int = -1
    first_flag_epoch: int = -1
    n_audits: int = 0
    last_summary: dict[str, float] = field(default_factory=dict)

    @property
    def best(self) -> float | None:
        """``best_focus_lift``, or None before any audit scored it (what a policy's focus-drop rule reads)."""
        return None if math.isnan(self.best_focus_lift) else self.best_focus_lift

    def record(self, report: AuditReport, epoch: int) -> bool:
        """Add an audit of ``epoch``; returns whether it holds the best ``focus_lift`` so far."""
        self.n_audits += 1
        self.last_summary = dict(report.summary)
        lift = report.summary.get("focus_lift", math.nan)
        is_best = not math.isnan(lift) and (math.isnan(self.best_focus_lift) or lift > self.best_focus_lift)
        if is_best:
            self.best_focus_lift = lift
            self.best_epoch = epoch
        flagged = not report.verdict.passed and not report.verdict.inconclusive
        if flagged and self.first_flag_epoch < 0:
            self.first_flag_epoch = epoch
        return is_best

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_focus_lift = float(state["best_focus_lift"])
        self.best_epoch = int(state["best_epoch"])
        self.first_flag_epoch = int(state["first_flag_epoch"])
        self.n_audits = int(state["n_audits"])
        self.last_summary = dict(state.get("last_summary", {}))


class HistoryField:
    """An attribute of the callback that reads and writes the field of the same name of its ``history``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return getattr(instance.history, self.name)

    def __set__(self, instance: Any, value: Any) -> None:
        setattr(instance.history, self.name, value)


__all__ = ["AuditHistory", "HistoryField"]
