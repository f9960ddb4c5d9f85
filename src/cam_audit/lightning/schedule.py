"""When the callback audits, and which audits run the counterfactual tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl


@dataclass(frozen=True)
class AuditSchedule:
    """Which epochs are audited, and which audits carry the counterfactual tests.

    Attributes:
        every_n_epochs: audit every this many epochs; the last epoch of a fit is always audited.
        counterfactual: run the fill and paste tests at all.
        counterfactual_every_n_audits: run them in the first audit of a fit, every this many after it,
            and in the last epoch's audit; ``trainer.validate()`` and ``trainer.test()`` always run them.
    """

    every_n_epochs: int = 1
    counterfactual: bool = True
    counterfactual_every_n_audits: int = 1

    def due(self, trainer: pl.Trainer) -> bool:
        """Whether this epoch of a fit is audited."""
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0 or last_epoch(trainer)

    def counterfactual_due(self, trainer: pl.Trainer, n_audits: int) -> bool:
        """Whether the audit after ``n_audits`` earlier ones runs the counterfactual tests (the same
        answer on every rank: it reads only the trainer's epoch and the synced history)."""
        if not self.counterfactual:
            return False
        if trainer.state.fn != "fit":
            return True
        return n_audits % self.counterfactual_every_n_audits == 0 or last_epoch(trainer)


@dataclass
class FitProgress:
    """A fit's epochs as the callback sees them.

    Attributes:
        epoch: the epoch now running (-1 before the first, and after a ``validate``/``test`` call, so
            an audit of theirs does not count for the fit).
        decided: whether this epoch's audit was decided (audited or skipped); an epoch is decided once,
            at the end of its first validation or, without one, at the end of its training.
        full_epoch: the last epoch audited in full (counterfactual tests included where enabled).
    """

    epoch: int = -1
    decided: bool = False
    full_epoch: int = -1

    def start(self, epoch: int) -> None:
        self.epoch, self.decided = epoch, False

    def needs_final_audit(self) -> bool:
        """Whether the fit ended without a full audit of its last epoch (it stopped early, or that
        epoch's audit was skipped or cheap)."""
        return self.epoch >= 0 and self.full_epoch != self.epoch


def last_epoch(trainer: pl.Trainer) -> bool:
    """Whether the trainer is in the last epoch ``max_epochs`` allows."""
    return trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs


__all__ = ["AuditSchedule", "FitProgress", "last_epoch"]
