"""Log an audit's numbers through ``LightningModule.log``, so checkpoints and early stopping see them."""

from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl

from cam_audit.keys import PER_CLASS_LOGGED_KEYS, is_counterfactual
from cam_audit.report import AuditReport


def log_scalars(
    pl_module: pl.LightningModule, report: AuditReport, prefix: str, with_counterfactual: bool
) -> None:
    """Log ``<prefix>/<key>`` for every summary key, ``<prefix>/shortcut`` (1 when the verdict failed on
    evidence), ``<prefix>/inconclusive`` (1 when it failed for want of evidence), and the per-class scores.

    The values are already probe-wide on every rank, so under DDP they are logged with
    ``sync_dist=True, reduce_fx="max"``: Lightning knows they are synced (and does not warn), and the
    maximum of equal values is that value exactly. An audit without the counterfactual tests logs no
    ``cf_*`` point rather than a NaN or a stale value.
    """

    def log(name: str, value: float, prog_bar: bool = False) -> None:
        _log_synced(pl_module, f"{prefix}/{name}", value, prog_bar)

    def measured(key: str) -> bool:
        return with_counterfactual or not is_counterfactual(key)

    for key, value in report.summary.items():
        if measured(key):
            log(key, value, prog_bar=key == "focus_lift")
    log("shortcut", float(not report.verdict.passed and not report.verdict.inconclusive))
    log("inconclusive", float(report.verdict.inconclusive))
    keys = [k for k in PER_CLASS_LOGGED_KEYS if measured(k)]
    for name, row in report.per_class.iterrows():
        for key in keys:
            log(f"per_class/{name}/{key}", row[key])


def log_vs_baseline(pl_module: pl.LightningModule, deltas: Mapping[str, float], prefix: str) -> None:
    """Log ``<prefix>/vs_baseline/<score>``: each score's mean paired difference from the champion's report
    (candidate minus champion, over the samples both scored; above 0 is higher than the champion)."""
    for key, delta in deltas.items():
        _log_synced(pl_module, f"{prefix}/vs_baseline/{key}", delta)


def _log_synced(pl_module: pl.LightningModule, name: str, value: float, prog_bar: bool = False) -> None:
    """Log a value that is already the same on every rank (see :func:`log_scalars`)."""
    synced = pl_module.trainer.world_size > 1
    pl_module.log(name, float(value), prog_bar=prog_bar, sync_dist=synced, reduce_fx="max")


__all__ = ["log_scalars", "log_vs_baseline"]
