"""One audit of the callback, from the probe slice this process scores to the action on its verdict."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytorch_lightning as pl

from cam_audit.lightning.budget import AuditKind, record_audit
from cam_audit.lightning.overlays import OverlayCollector
from cam_audit.lightning.publish import publish_audit
from cam_audit.lightning.verdict import act_on_verdict
from cam_audit.pipeline import AuditRun, rank_indices
from cam_audit.report import paired_deltas

if TYPE_CHECKING:
    from cam_audit.lightning.callback import CamAudit


def audit_once(
    callback: CamAudit,
    run: AuditRun,
    trainer: pl.Trainer,
    kind: AuditKind = "full",
    final: bool = False,
) -> None:
    """Run ``kind`` of audit (``"full"``: with the counterfactual tests and, when the callback has
    ``discover``, the search for cues nobody annotated; ``"cheap"``: maps only), publish it, price it for
    the budget and act on its verdict. Under ``fast_dev_run`` one batch is audited and nothing is kept.

    ``final``: the audit runs in ``on_train_end`` (its epoch is the fit's last, not ``current_epoch``).
    """
    smoke, started = bool(getattr(trainer, "fast_dev_run", False)), time.perf_counter()
    epoch = callback.progress.epoch if final else trainer.current_epoch
    indices = rank_indices(len(callback.probe), callback.batch_size, trainer.global_rank, trainer.world_size)
    drawing = trainer.is_global_zero and callback.log_images
    drawn = OverlayCollector(callback.max_images if drawing else 0, cues=drawing and callback.discover)
    run.counterfactual = callback.counterfactual and kind == "full"
    run.on_batch = drawn
    meta = {"epoch": epoch, "global_step": trainer.global_step, "stage": str(trainer.state.fn)}
    indices = indices[: callback.batch_size] if smoke else indices
    report = run(indices=indices, best_focus_lift=callback.history.best, meta=meta)
    if smoke:
        return
    is_best = callback.history.record(report, epoch)
    champion = callback.baseline_report
    deltas = {} if champion is None else paired_deltas(report.samples, champion)
    write = callback.write_reports
    publish_audit(trainer, report, run, drawn, callback.prefix, write, is_best, final, deltas)
    callback.last_report = report
    record_audit(callback.progress, callback.budget, kind, epoch, time.perf_counter() - started, report)
    act_on_verdict(trainer, report, callback.on_shortcut)


__all__ = ["audit_once"]
