"""The callback's arguments and set-up: checked once when it is built, the champion's report and the
pipeline made in ``setup``, and the Callback bases it derives from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl

from cam_audit.cam import CamEngine
from cam_audit.cam.tasks import check_task
from cam_audit.errors import CamAuditError, check_choice, check_positive_int
from cam_audit.lightning.distributed import LightningCollectives, check_strategy, forward_context
from cam_audit.pipeline import AuditRun
from cam_audit.probe import ProbeSet
from cam_audit.probe.sources import ProbeSource
from cam_audit.report import AuditReport
from cam_audit.report.pairing import read_baseline

if TYPE_CHECKING:
    from cam_audit.lightning.callback import CamAudit


def callback_bases() -> tuple[type, ...]:
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


def load_probe(probe: Any) -> ProbeSet:
    """The probe set itself, or loaded from a :class:`~cam_audit.probe.sources.ProbeSource`; never empty."""
    if isinstance(probe, ProbeSource):
        probe = probe.load()
    if not isinstance(probe, ProbeSet):
        raise CamAuditError(
            f"probe must be a cam_audit.ProbeSet, got {type(probe).__name__}; build one with "
            "ProbeSet.from_tensors / from_coco / from_csv / from_mask_dir"
        )
    if len(probe) == 0:
        raise CamAuditError("probe is empty; give CamAudit at least one annotated image")
    return probe


def check_arguments(arguments: dict[str, Any]) -> None:
    """Check ``CamAudit``'s constructor arguments (its ``locals()``), naming the bad one and the choices."""
    for name in ("every_n_epochs", "counterfactual_every_n_audits", "batch_size"):
        check_positive_int(name, arguments[name])
    for name, choices in (
        ("method", ("gradcam++", "gradcam")),
        ("target", ("label", "predicted")),
        ("on_shortcut", ("warn", "stop", "raise")),
    ):
        check_choice(name, arguments[name], choices)
    if not callable(arguments["fill"]):
        check_choice("fill", arguments["fill"], ("blur", "mean"))
    check_task(arguments["task"])
    if arguments["forward"] is not None and not callable(arguments["forward"]):
        raise CamAuditError(
            f"forward must be a callable (model, images) -> logits, got {type(arguments['forward']).__name__}"
        )
    if arguments["max_images"] < 0:
        raise CamAuditError(f"max_images must be >= 0, got {arguments['max_images']}")
    check_discover(arguments["discover"], arguments["counterfactual"])


def check_discover(discover: Any, counterfactual: Any) -> None:
    """``discover`` is a bool, and rides on the counterfactual tests: without them it would never run."""
    if not isinstance(discover, bool):
        raise CamAuditError(f"discover must be true or false, got {discover!r}")
    if discover and not counterfactual:
        raise CamAuditError(
            "discover=True confirms each cue it finds by filling and pasting it, which runs with the "
            "counterfactual tests; set counterfactual=True (counterfactual_every_n_audits sets how often "
            "both run), or discover=False"
        )


def check_probe_batches(probe: ProbeSet, batch_size: int) -> None:
    """Refuse, before training, a probe whose images of one audit batch differ in size (they cannot be
    stacked); with a ``transform`` the sizes are only known after it, so the first audit checks them."""
    if probe.transform is not None:
        return
    for start in range(0, len(probe), batch_size):
        batch = probe.samples[start : start + batch_size]
        first = batch[0]
        for sample in batch[1:]:
            if sample.size != first.size:
                height, width = first.size
                raise CamAuditError(
                    f"probe samples {first.sample_id!r} ({height}x{width}) and {sample.sample_id!r} "
                    f"({sample.size[0]}x{sample.size[1]}) fall in one audit batch of {batch_size} but differ "
                    f"in size; give the probe set transform=v2.Resize(({height}, {width})) (or a "
                    "ProbeSource's transform: in YAML)"
                )


def load_baseline(path: str | None, probe_fingerprint: str, target: str, method: str) -> AuditReport | None:
    """The champion's report named by ``CamAudit(baseline=...)``, refused unless it audited the same probe
    with the same target and method (None without one)."""
    if path is None:
        return None
    mine = {"probe_fingerprint": probe_fingerprint, "target": target, "method": method}
    return read_baseline(path, mine, f"CamAudit(baseline={str(path)!r})")


def setup_run(
    callback: CamAudit, trainer: pl.Trainer, pl_module: pl.LightningModule
) -> tuple[AuditReport | None, AuditRun]:
    """What ``setup`` checks and builds, before any training step: the strategy, the probe's batches, the
    champion's report (None without one) and the pipeline, which runs one probe sample through the model.
    """
    check_strategy(trainer)
    check_probe_batches(callback.probe, callback.batch_size)
    baseline = load_baseline(callback.baseline, callback.probe_fingerprint, callback.target, callback.method)
    run = build_run(callback, trainer, pl_module)
    run.check_model()
    return baseline, run


def build_run(callback: CamAudit, trainer: pl.Trainer, pl_module: pl.LightningModule) -> AuditRun:
    """The pipeline the callback runs: its engine on ``pl_module`` under the Trainer's precision, and the
    Trainer's processes as collectives.

    Raises:
        CamAuditError: ``discover=True`` and no probe sample has an object region (discovery looks off
            the object, so it must know where the object is).
    """
    engine = CamEngine(
        pl_module,
        target_layer=callback.target_layer,
        method=callback.method,
        reshape_transform=callback.reshape_transform,
        task=callback.task,
        forward=callback.forward,
        forward_context=forward_context(trainer),
    )
    return AuditRun(
        engine,
        callback.probe,
        callback.policy,
        target=callback.target,
        batch_size=callback.batch_size,
        fill=callback.fill,
        device=pl_module.device,
        collectives=LightningCollectives(trainer),
        probe_fingerprint=callback.probe_fingerprint,
        discover=callback.discover,
    )


__all__ = [
    "build_run",
    "callback_bases",
    "check_arguments",
    "check_discover",
    "check_probe_batches",
    "load_baseline",
    "load_probe",
    "setup_run",
]
