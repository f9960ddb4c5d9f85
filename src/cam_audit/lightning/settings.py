"""The callback's arguments, checked once when it is built, and the Callback bases it derives from."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from cam_audit.cam.tasks import check_task
from cam_audit.errors import CamAuditError, check_choice, check_positive_int
from cam_audit.probe import ProbeSet
from cam_audit.probe.sources import ProbeSource


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


__all__ = ["callback_bases", "check_arguments", "load_probe"]
