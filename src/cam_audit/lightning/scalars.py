"""Log an audit's numbers through ``LightningModule.log``, so checkpoints and early stopping see them."""

from __future__ import annotations

import pytorch_lightning as pl

from cam_audit.keys import PER_CLASS_LOGGED_KEYS, is_counterfactual
from cam_audit.report import AuditReport


def scalar_values(report: AuditReport, prefix: str, with_counterfactual: bool) -> dict[str, float]:
    """``<prefix>/<key>`` for every summary key, ``<prefix>/shortcut`` and the per-class scores.

    An audit without the counterfactual tests has no ``cf_*`` value rather than a NaN or a stale one.
    """

    def measured(key: str) -> bool:
        return with_counterfactual or not is_counterfactual(key)

    values = {f"{prefix}/{key}": float(value) for key, value in report.summary.items() if measured(key)}
    values[f"{prefix}/shortcut"] = float(not report.verdict.passed)
    keys = [k for k in PER_CLASS_LOGGED_KEYS if measured(k)]
    for name, row in report.per_class.iterrows():
        for key in keys:
            values[f"{prefix}/per_class/{name}/{key}"] = float(row[key])
    return values


def log_scalars(
    pl_module: pl.LightningModule, report: AuditReport, prefix: str, with_counterfactual: bool
) -> None:
    """Log :func:`scalar_values` (``<prefix>/focus_lift`` on the progress bar).

    The values are already probe-wide on every rank, so under DDP they are logged with
    ``sync_dist=True, reduce_fx="max"``: Lightning knows they are synced (and does not warn), and the
    maximum of equal values is that value exactly.
    """
    synced = pl_module.trainer.world_size > 1
    for name, value in scalar_values(report, prefix, with_counterfactual).items():
        prog_bar = name == f"{prefix}/focus_lift"
        pl_module.log(name, value, prog_bar=prog_bar, sync_dist=synced, reduce_fx="max")


def log_scalars_to_loggers(
    trainer: pl.Trainer, report: AuditReport, prefix: str, with_counterfactual: bool
) -> None:
    """Send :func:`scalar_values` straight to every logger, at the current step: for hooks in which
    ``LightningModule.log`` is not allowed (``on_train_end``). ``trainer.callback_metrics`` does not
    see them."""
    values = scalar_values(report, prefix, with_counterfactual)
    for logger in trainer.loggers:
        logger.log_metrics(values, step=trainer.global_step)


def log_overhead(pl_module: pl.LightningModule, prefix: str, share: float) -> None:
    """Log ``<prefix>/overhead``, the callback's share of the fit's time so far (the largest of the
    ranks' under DDP)."""
    synced = pl_module.trainer.world_size > 1
    pl_module.log(f"{prefix}/overhead", float(share), sync_dist=synced, reduce_fx="max")


__all__ = ["log_overhead", "log_scalars", "log_scalars_to_loggers", "scalar_values"]
