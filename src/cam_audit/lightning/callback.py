"""``CamAudit``: audit the model on a probe set while it trains, and log it like any other metric.

A thin shell over :class:`~cam_audit.pipeline.AuditRun`: each hook is a guard and one call. The steps
around the pipeline live beside this module: when to audit (``schedule``) and within what share of the
fit's time (``budget``), the Trainer's processes as collectives (``distributed``), one audit from start to
end (``step``), what is remembered across resume (``history``), what is logged and written (``scalars``,
``overlays``, ``publish``, ``sinks``) and what a failed verdict does (``verdict``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pytorch_lightning as pl
from torch import Tensor, nn

from cam_audit.counterfactual import Fill
from cam_audit.lightning.budget import AuditKind, CostMeter, FitBudget, epoch_audit, timed
from cam_audit.lightning.history import AuditHistory, HistoryField
from cam_audit.lightning.scalars import log_overhead
from cam_audit.lightning.schedule import AuditSchedule, FitProgress
from cam_audit.lightning.settings import callback_bases, check_arguments, load_probe, setup_run
from cam_audit.lightning.step import audit_once
from cam_audit.lightning.verdict import OnShortcut
from cam_audit.pipeline import AuditRun
from cam_audit.probe import ProbeSet
from cam_audit.probe.sources import ProbeSource
from cam_audit.report import AuditReport, ShortcutPolicy


class CamAudit(*callback_bases()):  # type: ignore[misc]
    """Grad-CAM++ focus and shortcut audit of the model, every ``every_n_epochs`` epochs.

    Audits run at the end of validation (or of the training epoch without one), never in the sanity
    check, and under ``trainer.validate()`` / ``test()``. A fit's last epoch is always audited in full, in
    ``on_train_end`` if the fit stopped early (numbers then go to the loggers directly). Under
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
        counterfactual_every_n_audits: run them in the first audit of a fit, every this many after it
            and in the last epoch's (validate/test: always); the other audits log no ``cf_*`` point.
        discover: in the audits that run the counterfactual tests, also look for cues nobody annotated
            (hot spots off the object regions, confirmed against matched controls, and ``bg_gap``), as
            :func:`~cam_audit.audit` does; logs ``<prefix>/bg_gap``, ``<prefix>/n_cues_confirmed`` and a
            gallery of the cues (``<prefix>/cues``). Needs object regions (refused in ``setup``) and
            ``counterfactual=True``.
        fill: ``"blur"``, ``"mean"`` or ``(images, regions) -> images``, as in :func:`~cam_audit.audit`.
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
        baseline: the champion's ``report.json`` on the same probe: each audit also logs
            ``<prefix>/vs_baseline/<score>``, the mean paired difference (another probe: refused in setup).
        max_overhead: the callback's largest share of the fit's time (``<prefix>/overhead``), e.g. 0.05:
            audits are then cheap (no counterfactual tests) or skipped where a full one does not fit
            (:func:`~cam_audit.lightning.budget.plan_audit`); ``every_n_epochs`` is the densest schedule.

    The model runs in the Trainer's precision (the maps stay float32), and ``setup`` runs one probe
    sample through it the same way, so a model the audit cannot run fails before training starts.

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
        discover: bool = False,
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
        max_overhead: float | None = None,
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
        self.discover = discover
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
        #: the champion's report named by ``baseline``, read and checked in ``setup``
        self.baseline_report: AuditReport | None = None
        # hashed once: Lightning reads state_key around every hook call, for every batch
        self.probe_fingerprint = self.probe.fingerprint()
        self.history = AuditHistory()
        self.last_report: AuditReport | None = None
        self.meter = CostMeter()
        self.max_overhead = max_overhead
        self.budget = FitBudget(max_overhead, self.meter, discover) if max_overhead is not None else None
        self.progress = FitProgress()
        self._run: AuditRun | None = None

    @property
    def schedule(self) -> AuditSchedule:  # read anew: a user may change every_n_epochs after init
        return AuditSchedule(self.every_n_epochs, self.counterfactual, self.counterfactual_every_n_audits)

    @property
    def state_key(self) -> str:
        keys = {"probe": self.probe_fingerprint, "target_layer": self.target_layer, "method": self.method}
        return self._generate_state_key(**keys, prefix=self.prefix)

    @timed
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.meter.start_fit()
        self._setup_run(trainer, pl_module)

    @timed
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn != "fit":
            self._audit(trainer, pl_module)
        elif not trainer.sanity_checking and not self.progress.decided:
            self._audit_epoch(trainer, pl_module)

    @timed
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.progress.start(trainer.current_epoch)

    @timed
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # without a validation loop this epoch, decide here
        if not self.progress.decided:
            self._audit_epoch(trainer, pl_module)

    @timed
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not getattr(trainer, "fast_dev_run", False) and self.progress.needs_final_audit():
            self._audit(trainer, pl_module, final=True)
        self.progress.start(-1)

    @timed
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._audit(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return self.history.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history.load_state_dict(state_dict)

    def _setup_run(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> AuditRun:
        self.baseline_report, self._run = setup_run(self, trainer, pl_module)
        return self._run

    def _audit_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Decide this epoch's audit (the schedule's, within the budget when there is one), run it and
        log the callback's share of the fit so far."""
        self.progress.decided = True
        run = (self._run or self._setup_run(trainer, pl_module)).to(pl_module.device)
        kind = epoch_audit(trainer, self.schedule, self.budget, run, self.history.n_audits)
        if kind != "skip":
            self._audit(trainer, pl_module, kind)
        if not getattr(trainer, "fast_dev_run", False):
            log_overhead(pl_module, self.prefix, self.meter.share())

    def _audit(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        kind: AuditKind = "full",
        final: bool = False,
    ) -> None:
        run = (self._run or self._setup_run(trainer, pl_module)).to(pl_module.device)
        audit_once(self, run, trainer, kind, final)


__all__ = ["CamAudit"]
