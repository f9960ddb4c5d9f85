"""Log an audit's numbers through ``LightningModule.log``, so checkpoints and early stopping see them."""

from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl

from cam_audit.keys import PER_CLASS_LOGGED_KEYS, is_counterfactual, is_discovery
from cam_audit.report import AuditReport


def scalar_values(report: AuditReport, prefix: str, with_counterfactual: bool) -> dict[str, float]:
    """``<prefix>/<key>`` for every summary key, ``<prefix>/shortcut`` (1 when the verdict failed on
    evidence), ``<prefix>/inconclusive`` (1 when it failed for want of evidence), and the per-class scores.

    An audit without the counterfactual tests has no ``cf_*`` value rather than a NaN or a stale one, and
    one without discovery (``report.meta["discover"]``) no ``bg_*`` or ``n_cues*`` value.
    """
    with_discovery = bool(report.meta.get("discover", False))

    def measured(key: str) -> bool:
        if is_discovery(key):
            return with_discovery
        return with_counterfactual or not is_counterfactual(key)

    values = {f"{prefix}/{key}": float(value) for key, value in report.summary.items() if measured(key)}
    values[f"{prefix}/shortcut"] = float(not report.verdict.passed and not report.verdict.inconclusive)
    values[f"{prefix}/inconclusive"] = float(report.verdict.inconclusive)
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
    for name, value in scalar_values(report, prefix, with_counterfactual).items():
        _log_synced(pl_module, name, value, prog_bar=name == f"{prefix}/focus_lift")


def log_scalars_to_loggers(
    trainer: pl.Trainer,
    report: AuditReport,
    prefix: str,
    with_counterfactual: bool,
    deltas: Mapping[str, float],
) -> None:
    """Send :func:`scalar_values` and the ``deltas`` from the champion straight to every logger, at the
    current step: for hooks in which ``LightningModule.log`` is not allowed (``on_train_end``).
    ``trainer.callback_metrics`` does not see them."""
    values = scalar_values(report, prefix, with_counterfactual)
    values.update({f"{prefix}/vs_baseline/{key}": float(delta) for key, delta in deltas.items()})
    for logger in trainer.loggers:
        logger.log_metrics(values, step=trainer.global_step)


def log_overhead(pl_module: pl.LightningModule, prefix: str, share: float) -> None:
    """Log ``<prefix>/overhead``, the callback's share of the fit's time so far (the largest of the
    ranks' under DDP)."""
    _log_synced(pl_module, f"{prefix}/overhead", share)


def log_vs_baseline(pl_module: pl.LightningModule, deltas: Mapping[str, float], prefix: str) -> None:
    """Log ``<prefix>/vs_baseline/<score>``: each score's mean paired difference from the champion's report
    (candidate minus champion, over the samples both scored; above 0 is higher than the champion)."""
    for key, delta in deltas.items():
        _log_synced(pl_module, f"{prefix}/vs_baseline/{key}", delta)


def _log_synced(pl_module: pl.LightningModule, name: str, value: float, prog_bar: bool = False) -> None:
    """Log a value that is the same on every rank, or whose largest is wanted (see :func:`log_scalars`)."""
    synced = pl_module.trainer.world_size > 1
    pl_module.log(name, float(value), prog_bar=prog_bar, sync_dist=synced, reduce_fx="max")


__all__ = ["log_overhead", "log_scalars", "log_scalars_to_loggers", "log_vs_baseline", "scalar_values"]
