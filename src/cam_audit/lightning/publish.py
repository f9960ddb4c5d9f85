"""What an audit leaves behind during training: logged numbers, overlay images, reports and history."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytorch_lightning as pl

from cam_audit.lightning.overlays import OverlayCollector
from cam_audit.lightning.scalars import log_scalars, log_scalars_to_loggers, log_vs_baseline
from cam_audit.lightning.sinks import log_audit_media, write_reports
from cam_audit.pipeline import AuditRun
from cam_audit.report import AuditReport


def publish_audit(
    trainer: pl.Trainer,
    report: AuditReport,
    run: AuditRun,
    drawn: OverlayCollector,
    prefix: str,
    write: bool,
    is_best: bool,
    final: bool,
    deltas: Mapping[str, float] | None = None,
) -> None:
    """Log the report's numbers on every rank, then (on rank 0) its images (the overlays of ``drawn`` and,
    after a discovery audit, the galleries of the cues ``run`` found) and, when ``write``, its files.

    ``final``: the audit runs in ``on_train_end``, where ``LightningModule.log`` is not allowed, so the
    numbers go straight to the loggers. ``deltas``: the paired differences from the champion's report,
    logged as ``<prefix>/vs_baseline/<score>``. A failure while drawing or writing raises on every rank
    (``run.collectives.run_step``) instead of leaving the others waiting.
    """
    with_counterfactual = bool(report.meta.get("counterfactual", True))
    if final:
        log_scalars_to_loggers(trainer, report, prefix, with_counterfactual, deltas or {})
    else:
        log_scalars(trainer.lightning_module, report, prefix, with_counterfactual)
        log_vs_baseline(trainer.lightning_module, deltas or {}, prefix)

    def media_and_files() -> None:
        # Trainer.log_dir is a broadcast: every rank asks for it, only rank 0 writes
        log_dir = Path(trainer.log_dir or trainer.default_root_dir) if write else None
        if not trainer.is_global_zero:
            return
        cues = drawn.cue_sheet(run, report) if trainer.loggers else None  # galleries cost engine calls
        log_audit_media(trainer, report, drawn.grid(), prefix, cues=cues, discover=run.discover)
        if log_dir is not None:
            write_reports(log_dir, report, prefix, is_best=is_best)

    run.collectives.run_step("logging images and writing reports", media_and_files)


__all__ = ["publish_audit"]
