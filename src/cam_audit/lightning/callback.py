"""``CamAudit``: audit the model on a probe set while it trains, and log it like any other metric.

The callback is thin: :mod:`cam_audit.pipeline` does the work. It decides when to audit, gives each process
whole batches of the probe, logs ``cam_audit/<key>`` on every rank (so ``ModelCheckpoint`` and
``EarlyStopping`` can monitor it), draws overlays on rank 0, writes reports, keeps its history across
resume, and turns a failed verdict into the action the user chose.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal, TypeVar

import pandas as pd
import pytorch_lightning as pl
import torch
from torch import Tensor

from cam_audit.cam import CamEngine
from cam_audit.errors import CamAuditError, ShortcutDetected, ShortcutWarning
from cam_audit.lightning.sinks import log_audit_media, write_reports
from cam_audit.pipeline import (
    AuditScores,
    build_report,
    class_names,
    model_fingerprint,
    score_pastes,
    score_probe,
    with_pastes,
)
from cam_audit.probe import ProbeSet
from cam_audit.probe.sources import ProbeSource
from cam_audit.report import AuditReport, ShortcutPolicy

OnShortcut = Literal["warn", "stop", "raise"]
T = TypeVar("T")


def _callback_bases() -> tuple[type, ...]:
    """``pytorch_lightning.Callback`` and, when installed, ``lightning.pytorch.Callback``.

    Deriving from both makes one ``CamAudit`` pass the ``isinstance`` check of either Trainer.
    """
    bases: list[type] = [pl.Callback]
    try:
        from lightning.pytorch import Callback as UnifiedCallback
    except ImportError:
        return tuple(bases)
    if UnifiedCallback is not pl.Callback:
        bases.append(UnifiedCallback)
    return tuple(bases)


class CamAudit(*_callback_bases()):  # type: ignore[misc]
    """Grad-CAM++ focus and shortcut audit of the model, every ``every_n_epochs`` epochs.

    Audits run at the end of validation (or of the training epoch when there is no validation), never
    during the sanity check, and also under ``trainer.validate()`` and ``trainer.test()``. Under
    ``fast_dev_run`` one batch is audited as a smoke test and nothing is logged or written.

    Args:
        probe: images with object regions (and optionally spurious regions), or a
            :class:`~cam_audit.probe.sources.ProbeSource` (how a YAML config declares one), loaded here.
        target_layer: dotted module name, or None for the last layer with a spatial output.
        every_n_epochs: audit every this many epochs (the last epoch of a fit is always audited).
        method: ``"gradcam++"`` or ``"gradcam"``.
        target: explain the ground-truth ``"label"`` or the ``"predicted"`` class.
        batch_size: probe samples per forward pass.
        policy: the :class:`~cam_audit.report.ShortcutPolicy` that judges each audit.
        counterfactual: run the fill and paste tests on samples with spurious regions.
        counterfactual_every_n_audits: run those tests in every this many audits of a fit, counting from
            the first (which always runs them), and in the audit of the last epoch, so the final report
            holds all the evidence. Each test costs about one more forward pass over the probe's spurious
            samples; in the other audits ``cf_*`` is not logged and the verdict rests on attribution and
            history. ``trainer.validate()`` and ``trainer.test()`` always run them.
        fill: how spurious regions are filled in the counterfactual test: ``"blur"`` or ``"mean"``.
        on_shortcut: what a failed verdict does: ``"warn"``, ``"stop"`` (``trainer.should_stop``, agreed
            across ranks) or ``"raise"`` (:class:`ShortcutDetected`).
        log_images: log a grid of overlays (image, heatmap, object and spurious outlines).
        max_images: probe samples in the overlay grid.
        write_reports: write ``report.json`` and ``samples.csv`` under ``<log_dir>/cam_audit/``.
        reshape_transform: turns a token layer's output into [N, C, h, w] (ViTs).
        prefix: prefix of every logged name.

    >>> from cam_audit.synthetic import make_scenes
    >>> CamAudit(make_scenes(8).to_probe(), target_layer="features", every_n_epochs=2).every_n_epochs
    2
    """

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
        fill: Literal["blur", "mean"] = "blur",
        on_shortcut: OnShortcut = "warn",
        log_images: bool = True,
        max_images: int = 16,
        write_reports: bool = True,
        reshape_transform: Callable[[Tensor], Tensor] | None = None,
        prefix: str = "cam_audit",
    ) -> None:
        super().__init__()
        if isinstance(probe, ProbeSource):
            probe = probe.load()
        if not isinstance(probe, ProbeSet):
            raise CamAuditError(
                f"probe must be a cam_audit.ProbeSet, got {type(probe).__name__}; build one with "
                "ProbeSet.from_tensors / from_coco / from_csv / from_mask_dir"
            )
        if len(probe) == 0:
            raise CamAuditError("probe is empty; give CamAudit at least one annotated image")
        for name, value in (
            ("every_n_epochs", every_n_epochs),
            ("counterfactual_every_n_audits", counterfactual_every_n_audits),
            ("batch_size", batch_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CamAuditError(f"{name} must be a positive int, got {value!r}")
        for name, value, choices in (
            ("method", method, ("gradcam++", "gradcam")),
            ("target", target, ("label", "predicted")),
            ("fill", fill, ("blur", "mean")),
            ("on_shortcut", on_shortcut, ("warn", "stop", "raise")),
        ):
            if value not in choices:
                raise CamAuditError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
        if max_images < 0:
            raise CamAuditError(f"max_images must be >= 0, got {max_images}")
        self.probe = probe
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
        self.prefix = prefix
        self.class_names = class_names(probe)
        # hashed once: Lightning reads state_key around every hook call, for every batch
        self.probe_fingerprint = probe.fingerprint()
        # history, kept across resume through state_dict
        self.best_focus_lift = math.nan
        self.best_epoch = -1
        self.first_flag_epoch = -1
        self.n_audits = 0
        self.last_summary: dict[str, float] = {}
        self.last_report: AuditReport | None = None
        self._engine: CamEngine | None = None
        self._scores: AuditScores | None = None
        self._audited_epoch = -1

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            probe=self.probe_fingerprint,
            target_layer=self.target_layer,
            method=self.method,
            prefix=self.prefix,
        )

    # ---------------------------------------------------------------- set-up: fail before training starts
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        strategy = type(trainer.strategy).__name__
        if "FSDP" in strategy or "DeepSpeed" in strategy:
            raise CamAuditError(
                f"CamAudit does not support {strategy}: sharded parameters are not whole on any rank, so "
                "Grad-CAM++ cannot run the model; audit a gathered checkpoint offline with "
                "`cam-audit audit --ckpt PATH` instead"
            )
        self._engine = CamEngine(
            pl_module,
            target_layer=self.target_layer,
            method=self.method,
            reshape_transform=self.reshape_transform,
        )
        self._scores = AuditScores(num_classes=len(self.class_names)).to(pl_module.device)
        self._preflight(pl_module)

    def _preflight(self, pl_module: pl.LightningModule) -> None:
        """One probe sample through the engine: a bad layer or a label the model cannot predict fails now."""
        assert self._engine is not None
        batch = next(iter(self.probe.batches(1)))
        logits = self._engine(batch.images.to(pl_module.device), batch.labels.to(pl_module.device)).logits
        if logits.ndim != 2 or logits.shape[1] < len(self.class_names):
            raise CamAuditError(
                f"the model returns logits of shape {tuple(logits.shape)} but the probe has "
                f"{len(self.class_names)} classes ({', '.join(self.class_names)}); the model must return "
                "[N, num_classes] logits covering every probe label"
            )

    # ---------------------------------------------------------------- when to audit
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.state.fn == "fit" and not self._due(trainer):
            return
        self._audit(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # an audit of the same epoch number by an earlier trainer.validate()/test() does not count
        self._audited_epoch = -1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # without a validation loop this epoch, audit here
        if self._audited_epoch != trainer.current_epoch and self._due(trainer):
            self._audit(trainer, pl_module)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._audit(trainer, pl_module)

    def _due(self, trainer: pl.Trainer) -> bool:
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0 or _last_epoch(trainer)

    def _counterfactual_due(self, trainer: pl.Trainer) -> bool:
        """Whether this audit runs the fill and paste tests (the same answer on every rank)."""
        if not self.counterfactual:
            return False
        if trainer.state.fn != "fit":
            return True
        return self.n_audits % self.counterfactual_every_n_audits == 0 or _last_epoch(trainer)

    # ---------------------------------------------------------------- the audit
    def _audit(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._engine is None or self._scores is None:
            self.setup(trainer, pl_module, stage=str(trainer.state.fn))
        assert self._engine is not None and self._scores is not None
        self._audited_epoch = trainer.current_epoch
        smoke = bool(trainer.fast_dev_run)
        world, rank = trainer.world_size, trainer.global_rank
        indices = rank_indices(len(self.probe), self.batch_size, rank, world)
        if smoke:
            indices = indices[: self.batch_size]
        drawn: list[tuple[Tensor, Tensor, Tensor, Tensor, list[str]]] = []

        def keep_for_grid(batch: Any, maps: Tensor, rows: dict[str, Tensor]) -> None:
            have = sum(len(d[4]) for d in drawn)
            if trainer.is_global_zero and self.log_images and have < self.max_images:
                take = slice(0, self.max_images - have)
                captions = [f"lift {v:.2f}" for v in rows["focus_lift"][take].tolist()]
                drawn.append(
                    (
                        batch.images[take].cpu(),
                        maps[take].cpu(),
                        batch.regions[take].cpu(),
                        batch.spurious[take].cpu(),
                        captions,
                    )
                )

        self._scores.to(pl_module.device).reset()
        timings = {"attribution": 0.0, "counterfactual": 0.0}
        with_counterfactual = self._counterfactual_due(trainer)
        precision = getattr(trainer.strategy, "precision_plugin", None)

        def precision_context() -> AbstractContextManager[Any]:  # one per use: it is a generator's context
            return precision.forward_context() if precision is not None else nullcontext()

        def score_my_batches() -> pd.DataFrame:
            with precision_context():
                return score_probe(
                    self._engine,
                    self.probe,
                    self._scores,
                    indices=indices,
                    batch_size=self.batch_size,
                    target=self.target,
                    counterfactual=with_counterfactual,
                    paste=False,  # below, once every rank's predictions are known
                    fill=self.fill,
                    device=pl_module.device,
                    on_batch=keep_for_grid,
                    timings=timings,
                )

        def paste_my_cues(scored: pd.DataFrame) -> dict[int, float]:
            # partners are chosen among all scored samples in probe order, as in a single process
            with precision_context():
                return score_pastes(
                    self._engine,
                    self.probe,
                    self._scores,
                    scored,
                    indices=indices,
                    counterfactual=with_counterfactual,
                    batch_size=self.batch_size,
                    fill=self.fill,
                    device=pl_module.device,
                    timings=timings,
                )

        mine = _on_every_rank(trainer, "scoring its slice of the probe", score_my_batches)
        samples = pd.concat(_gather(mine, world), ignore_index=True)
        pastes = _on_every_rank(
            trainer, "pasting its cues into other samples", lambda: paste_my_cues(samples)
        )
        samples = with_pastes(samples, {k: v for part in _gather(pastes, world) for k, v in part.items()})
        best_before = None if math.isnan(self.best_focus_lift) else self.best_focus_lift
        meta = {
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "stage": str(trainer.state.fn),
            "target_layer": self._engine.layer_name,
            "method": self.method,
            "target": self.target,
            "probe_fingerprint": self.probe_fingerprint,
            "model_fingerprint": model_fingerprint(pl_module),
            "model_class": type(pl_module).__name__,
            "world_size": world,
            "best_focus_lift": best_before,
            "versions": _versions(),
            "attribution_seconds": timings["attribution"],
            "counterfactual_seconds": timings["counterfactual"],
            "counterfactual": with_counterfactual,
        }
        report = build_report(
            self._scores, samples, self.probe, self.policy, best_focus_lift=best_before, meta=meta
        )
        if smoke:
            return
        self._update_history(trainer, report)
        self._log_scalars(pl_module, report, with_counterfactual)
        # Trainer.log_dir is a broadcast: every rank asks for it, only rank 0 writes
        log_dir = Path(trainer.log_dir or trainer.default_root_dir) if self.write_reports else None

        def log_and_write() -> None:  # rank 0 only; the other ranks still hear whether it failed
            if not trainer.is_global_zero:
                return
            log_audit_media(trainer, report, _grid(drawn) if drawn else None, self.prefix)
            if log_dir is not None:
                write_reports(log_dir, report, self.prefix, is_best=self.best_epoch == trainer.current_epoch)

        _on_every_rank(trainer, "logging images and writing reports", log_and_write)
        self.last_report = report
        self._act_on_verdict(trainer, report)

    def _update_history(self, trainer: pl.Trainer, report: AuditReport) -> None:
        self.n_audits += 1
        self.last_summary = dict(report.summary)
        lift = report.summary.get("focus_lift", math.nan)
        if not math.isnan(lift) and (math.isnan(self.best_focus_lift) or lift > self.best_focus_lift):
            self.best_focus_lift = lift
            self.best_epoch = trainer.current_epoch
        if not report.verdict.passed and self.first_flag_epoch < 0:
            self.first_flag_epoch = trainer.current_epoch

    def _log_scalars(
        self, pl_module: pl.LightningModule, report: AuditReport, with_counterfactual: bool
    ) -> None:
        # values are already synced: every rank logs the same number, so no sync_dist. An audit without
        # the counterfactual tests logs no cf_* point rather than a NaN or a stale value.
        def measured(key: str) -> bool:
            return with_counterfactual or not key.startswith("cf_")

        for key, value in report.summary.items():
            if measured(key):
                pl_module.log(
                    f"{self.prefix}/{key}", float(value), prog_bar=key == "focus_lift", sync_dist=False
                )
        pl_module.log(f"{self.prefix}/shortcut", float(not report.verdict.passed), sync_dist=False)
        keys = [
            k
            for k in ("focus_lift", "spurious_mass", "spurious_lift", "cf_flip_rate", "cf_paste_rate")
            if measured(k)
        ]
        for name, row in report.per_class.iterrows():
            for key in keys:
                pl_module.log(f"{self.prefix}/per_class/{name}/{key}", float(row[key]), sync_dist=False)

    def _act_on_verdict(self, trainer: pl.Trainer, report: AuditReport) -> None:
        flagged = not report.verdict.passed
        if self.on_shortcut == "stop" and trainer.strategy.reduce_boolean_decision(flagged, all=False):
            trainer.should_stop = True
        if not flagged:
            return
        message = f"CamAudit epoch {trainer.current_epoch}: " + "; ".join(report.verdict.flags)
        if self.on_shortcut == "raise":
            raise ShortcutDetected(message)
        if trainer.is_global_zero:
            warnings.warn(message, ShortcutWarning, stacklevel=1)

    # ---------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        return {
            "best_focus_lift": self.best_focus_lift,
            "best_epoch": self.best_epoch,
            "first_flag_epoch": self.first_flag_epoch,
            "n_audits": self.n_audits,
            "last_summary": dict(self.last_summary),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_focus_lift = float(state_dict["best_focus_lift"])
        self.best_epoch = int(state_dict["best_epoch"])
        self.first_flag_epoch = int(state_dict["first_flag_epoch"])
        self.n_audits = int(state_dict["n_audits"])
        self.last_summary = dict(state_dict.get("last_summary", {}))


def rank_indices(size: int, batch_size: int, rank: int, world_size: int) -> list[int]:
    """The probe positions one process audits: whole batches ``rank``, ``rank + world_size``, ... of the
    probe's own batching.

    Every batch is then the one a single process forms with the same ``batch_size``, so even the floating
    point of batched kernels matches a single-process audit. A rank left without a batch (a probe of
    fewer than ``world_size`` batches) scores nothing and still joins every collective.

    >>> rank_indices(10, 3, rank=0, world_size=2), rank_indices(10, 3, rank=1, world_size=2)
    ([0, 1, 2, 6, 7, 8], [3, 4, 5, 9])
    """
    starts = range(rank * batch_size, size, world_size * batch_size)
    return [position for start in starts for position in range(start, min(start + batch_size, size))]


def _last_epoch(trainer: pl.Trainer) -> bool:
    return trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs


def _grid(drawn: list[tuple[Tensor, Tensor, Tensor, Tensor, list[str]]]) -> Tensor:
    from cam_audit.render import overlay_grid

    images, maps, regions, spurious = (torch.cat([d[i] for d in drawn]) for i in range(4))
    captions = [c for d in drawn for c in d[4]]
    return overlay_grid(images, maps, regions, spurious, captions=captions)


def _on_every_rank(trainer: pl.Trainer, step: str, work: Callable[[], T]) -> T:
    """``work()``, raising on every rank when it failed on any rank.

    An error on one rank alone would leave the others waiting forever in the next collective (the
    metric sync, the gather of per-sample rows, ``ModelCheckpoint``); so every rank joins one
    all-reduce of "did it fail here" and all of them raise: the failing rank its own error, the others a
    :class:`~cam_audit.errors.CamAuditError` pointing at it.
    """
    failure: Exception | None = None
    try:
        result = work()
    except Exception as error:  # re-raised below, after the other ranks have heard of it
        failure = error
    if trainer.world_size > 1:
        failed_anywhere = trainer.strategy.reduce_boolean_decision(failure is not None, all=False)
    else:
        failed_anywhere = failure is not None
    if failure is not None:
        raise failure
    if failed_anywhere:
        raise CamAuditError(
            f"CamAudit stopped on rank {trainer.global_rank}: another rank failed while {step}; its "
            "traceback (in that rank's output) says why"
        )
    return result


def _gather(value: T, world_size: int) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank (a collective when world_size > 1)."""
    if world_size == 1 or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return [value]
    values: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(values, value)
    return values


def _versions() -> dict[str, str]:
    import torchvision

    import cam_audit

    return {
        "cam_audit": cam_audit.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pytorch_lightning": pl.__version__,
    }


__all__ = ["CamAudit", "ShortcutDetected", "ShortcutWarning"]
