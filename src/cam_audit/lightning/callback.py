"""``CamAudit``: audit the model on a probe set while it trains, and log it like any other metric.

A thin shell over :class:`~cam_audit.pipeline.AuditRun`: each hook is a guard and one call. The steps
around the pipeline live beside this module: when to audit (``schedule``), the Trainer's processes as
collectives (``distributed``), what is remembered across resume (``history``), what is logged and written
(``scalars``, ``overlays``, ``sinks``) and what a failed verdict does (``verdict``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pytorch_lightning as pl
from torch import Tensor, nn

from cam_audit.counterfactual import Fill
from cam_audit.lightning.history import AuditHistory, HistoryField
from cam_audit.lightning.overlays import OverlayCollector
from cam_audit.lightning.scalars import log_scalars, log_vs_baseline
from cam_audit.lightning.schedule import AuditSchedule
from cam_audit.lightning.settings import (
    build_run,
    callback_bases,
    check_arguments,
    check_probe_batches,
    check_strategy,
    load_baseline,
    load_probe,
)
from cam_audit.lightning.sinks import publish, report_dir
from cam_audit.lightning.verdict import OnShortcut, act_on_verdict
from cam_audit.pipeline import AuditRun, rank_indices
from cam_audit.probe import ProbeSet
from cam_audit.probe.sources import ProbeSource
from cam_audit.report import AuditReport, ShortcutPolicy, paired_deltas


class CamAudit(*callback_bases()):  # type: ignore[misc]
    """Grad-CAM++ focus and shortcut audit of the model, every ``every_n_epochs`` epochs.

    Audits run at the end of validation (or of the training epoch when there is no validation), never
    during the sanity check, and also under ``trainer.validate()`` and ``trainer.test()``. Under
    ``fast_dev_run`` one batch is audited as a smoke test and nothing is logged or written.

    Args:
        probe: images with object (and optionally spurious) regions, or a
            :class:`~cam_audit.probe.sources.ProbeSource` (how a YAML config declares one), loaded here.
        target_layer: dotted module name, or None for the last layer with a spatial output.
        every_n_epochs: audit every this many epochs (the last epoch of a fit is always audited).
        method: ``"gradcam++"`` or ``"gradcam"``.
        target: explain the ground-truth ``"label"`` or the ``"predicted"`` class.
        batch_size: probe samples per forward pass.
        policy: the :class:`~cam_audit.report.ShortcutPolicy` that judges each audit.
        counterfactual: run the fill and paste tests on samples with spurious regions.
        counterfactual_every_n_audits: run those tests in the first audit of a fit, every this many
            after it, and in the last epoch's audit; the other audits log no ``cf_*`` point.
            ``trainer.validate()`` and ``trainer.test()`` always run them.
        fill: how spurious regions are filled: ``"blur"``, ``"mean"`` or a callable
            ``(images, regions) -> images``, as in :func:`~cam_audit.audit`.
        on_shortcut: what a failed verdict does: ``"warn"``, ``"stop"`` (``trainer.should_stop``, agreed
            across ranks) or ``"raise"`` (:class:`~cam_audit.errors.ShortcutDetected`).
        log_images: log a grid of overlays (image, heatmap, object and spurious outlines).
        max_images: probe samples in the overlay grid.
        write_reports: write ``report.json`` and ``samples.csv`` under ``<log_dir>/cam_audit/``.
        reshape_transform: turns a token layer's output into [N, C, h, w] (ViTs).
        task: how the logits are read: ``"multiclass"``, ``"multilabel"`` or ``"binary"`` (one logit), or
            None (binary for one output, else multiclass), as in :func:`~cam_audit.audit`.
        forward: ``forward(model, images) -> logits`` for a LightningModule whose ``forward`` takes a dict
            or extra inputs (a YAML config names a module-level function by its import path).
        prefix: prefix of every logged name.
        baseline: a report (``report.json``) of the model this one would replace, audited on the same
            probe: every audit also logs ``<prefix>/vs_baseline/<score>``, the mean paired difference of
            each score, sample by sample; a report of another probe, target or method is refused in
            ``setup``.

    The model runs in the Trainer's precision: under ``bf16-true``, ``16-true`` and ``64-true`` the
    probe images are cast to the model's dtype, under the mixed precisions its autocast is on; the maps
    are float32 either way. ``setup`` runs one probe sample through the model the same way, so a model
    the audit cannot run fails before training starts.

    >>> from cam_audit.synthetic import make_scenes
    >>> CamAudit(make_scenes(8).to_probe(), target_layer="features", every_n_epochs=2).every_n_epochs
    2
    """

    best_focus_lift = HistoryField()
    best_epoch = HistoryField()
    first_flag_epoch = HistoryField()
    n_audits = HistoryField()
    last_summary = HistoryField()

    def __init__(
        self,
        probe: ProbeSet | ProbeSource,
        target_layer: str | None = None,
        every_n_epochs: int = 1,
        method: Literal["gradcam++", "gradcam"] = "gradcam++",
        target: Literal["label", "predicted"] = "label",
        batch_size: int = 64,
        policy: ShortcutPolicy | None = None,
        counterfactual: bool = True,
        counterfactual_every_n_audits: int = 1,
        fill: Fill = "blur",
        on_shortcut: OnShortcut = "warn",
        log_images: bool = True,
        max_images: int = 16,
        write_reports: bool = True,
        reshape_transform: Callable[[Tensor], Tensor] | None = None,
        task: Literal["multiclass", "multilabel", "binary"] | None = None,
        forward: Callable[[nn.Module, Tensor], Tensor] | None = None,
        prefix: str = "cam_audit",
        baseline: str | None = None,
    ) -> None:
        super().__init__()
        self.probe = load_probe(probe)
        check_arguments(locals())
        self.target_layer = target_layer
        self.every_n_epochs = every_n_epochs
        self.method = method
        self.target = target
        self.batch_size = batch_size
        self.policy = policy if policy is not None else ShortcutPolicy()
        self.counterfactual = counterfactual
        self.counterfactual_every_n_audits = counterfactual_every_n_audits
        self.fill = fill
        self.on_shortcut = on_shortcut
        self.log_images = log_images
        self.max_images = max_images
        self.write_reports = write_reports
        self.reshape_transform = reshape_transform
        self.task = task
        self.forward = forward
        self.prefix = prefix
        self.baseline = baseline
        self._baseline: AuditReport | None = None
        # hashed once: Lightning reads state_key around every hook call, for every batch
        self.probe_fingerprint = self.probe.fingerprint()
        self.history = AuditHistory()
        self.last_report: AuditReport | None = None
        self._run: AuditRun | None = None
        self._audited_epoch = -1

    @property
    def schedule(self) -> AuditSchedule:
        """When to audit, from the current arguments (a user may change ``every_n_epochs`` after init)."""
        return AuditSchedule(self.every_n_epochs, self.counterfactual, self.counterfactual_every_n_audits)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            probe=self.probe_fingerprint,
            target_layer=self.target_layer,
            method=self.method,
            prefix=self.prefix,
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        check_strategy(trainer)
        check_probe_batches(self.probe, self.batch_size)
        self._baseline = load_baseline(self.baseline, self.probe_fingerprint, self.target, self.method)
        self._run = build_run(self, trainer, pl_module)
        self._run.check_model()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.state.fn == "fit" and not self.schedule.due(trainer)):
            return
        self._audit(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # an audit of the same epoch number by an earlier trainer.validate()/test() does not count
        self._audited_epoch = -1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # without a validation loop this epoch, audit here
        if self._audited_epoch != trainer.current_epoch and self.schedule.due(trainer):
            self._audit(trainer, pl_module)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._audit(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return self.history.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history.load_state_dict(state_dict)

    def _audit(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._run is None:
            self.setup(trainer, pl_module, stage=str(trainer.state.fn))
        assert self._run is not None
        run, smoke, epoch = self._run, bool(getattr(trainer, "fast_dev_run", False)), trainer.current_epoch
        self._audited_epoch = epoch
        indices = rank_indices(len(self.probe), self.batch_size, trainer.global_rank, trainer.world_size)
        drawn = OverlayCollector(self.max_images if trainer.is_global_zero and self.log_images else 0)
        run.to(pl_module.device)
        run.counterfactual = self.schedule.counterfactual_due(trainer, self.history.n_audits)
        run.on_batch = drawn
        meta = {"epoch": epoch, "global_step": trainer.global_step, "stage": str(trainer.state.fn)}
        report = run(
            indices=indices[: self.batch_size] if smoke else indices,
            best_focus_lift=self.history.best,
            meta=meta,
        )
        if smoke:
            return
        is_best = self.history.record(report, epoch)
        log_scalars(pl_module, report, self.prefix, run.counterfactual)
        if self._baseline is not None:
            log_vs_baseline(pl_module, paired_deltas(report.samples, self._baseline), self.prefix)
        log_dir = report_dir(trainer) if self.write_reports else None
        run.collectives.run_step(
            "logging images and writing reports",
            lambda: publish(trainer, report, drawn.grid, self.prefix, log_dir, is_best),
        )
        self.last_report = report
        act_on_verdict(trainer, report, self.on_shortcut)


__all__ = ["CamAudit"]
