"""``audit()``: the pipeline in one process, for a model outside training (a notebook, a CI job, the CLI)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
from torch import Tensor, nn

from cam_audit.cam import CamEngine, Forward, Task
from cam_audit.counterfactual import Fill
from cam_audit.errors import CamAuditError, check_choice, check_positive_int
from cam_audit.pipeline.run import AuditRun
from cam_audit.pipeline.scoring import Method, OnBatch, Target
from cam_audit.probe import ProbeSet
from cam_audit.report import AuditReport, ShortcutPolicy

#: Called with the cue table and ``{cue number: gallery image [3, H, W]}`` after a discovery audit.
OnCues = Callable[[pd.DataFrame, dict[int, Tensor]], None]


def audit(
    model: nn.Module,
    probe: ProbeSet,
    target_layer: str | nn.Module | None = None,
    method: Method = "gradcam++",
    target: Target = "label",
    batch_size: int = 64,
    policy: ShortcutPolicy | None = None,
    counterfactual: bool = True,
    *,
    task: Task | None = None,
    forward: Forward | None = None,
    fill: Fill = "blur",
    pointing_tolerance: int = 0,
    reshape_transform: Callable[[Tensor], Tensor] | None = None,
    device: torch.device | str | None = None,
    on_batch: OnBatch | None = None,
    discover: bool = False,
    on_cues: OnCues | None = None,
) -> AuditReport:
    """Audit ``model`` on ``probe``: where do its Grad-CAM++ maps fall, and does a spurious cue decide?

    The model is left as it was: each submodule's ``training`` flag, parameters, gradients, buffers and
    the RNG state are untouched (see :class:`~cam_audit.cam.CamEngine`).

    Args:
        model: an image classifier ``images [N,C,H,W] -> logits [N,K]`` (``[N,1]`` or ``[N]`` for one
            logit), in any floating dtype (the images are cast to it; the maps are float32).
        probe: the probe set with object (and optionally spurious) regions.
        target_layer: dotted name, module, or None for the last layer with a spatial output.
        method: ``"gradcam++"`` (default) or ``"gradcam"``.
        target: explain the ground-truth ``"label"`` or the ``"predicted"`` class.
        batch_size: samples per forward pass.
        policy: thresholds for the verdict (default :class:`~cam_audit.report.ShortcutPolicy`).
        counterfactual: run the fill and paste tests on samples with spurious regions.
        task: how the logits are read: ``"multiclass"`` (softmax), ``"multilabel"`` (one sigmoid per
            class: the map explains the sample's label, correct when its sigmoid is above 0.5) or
            ``"binary"`` (one logit ``z``: label 1 explains ``+z``, label 0 ``-z``, predicted 1 when
            ``z > 0``); ``None``: binary for a model with one output, else multiclass. The report's
            ``meta["task"]`` records the task used.
        forward: ``forward(model, images) -> logits`` for a model that takes a dict or extra inputs,
            e.g. ``lambda model, images: model({"image": images})``.
        fill: ``"blur"``, ``"mean"`` or a callable ``(images, regions) -> images`` (the callback takes
            the same).
        pointing_tolerance: pixels of slack for the pointing game.
        reshape_transform: turns a token layer's output into [N, C, h, w] (ViTs).
        device: where to run (default: the model's device).
        on_batch: called with ``(batch, maps, rows)`` after each batch (a progress bar, overlays).
        discover: find cues nobody annotated: hot spots of the maps off the object regions, grouped per
            class by place, each confirmed (``report.cues["confirmed"]``) when filling or pasting it
            changes the model clearly more than the same intervention on a matched control region; and
            ``bg_gap``, how much the background decides (objects moved onto backgrounds of their own
            class and of another). Needs object regions and ``counterfactual=True``. Its
            cost is ``meta["discovery_seconds"]``.
        on_cues: with ``discover``, called once at the end with ``(report.cues, galleries)``: a gallery
            image ``[3, H, W]`` per tested cue, by cue number (crops around the hot spot with their maps,
            and pasted images that moved; :mod:`cam_audit.pipeline.gallery`).

    Returns:
        An :class:`~cam_audit.report.AuditReport`. Its ``meta`` carries the cost: ``seconds`` (the whole
        audit), ``attribution_seconds`` (Grad-CAM++ forward and backward passes) and
        ``counterfactual_seconds`` (the fill and paste forwards).

    Raises:
        CamAuditError: a bad argument, probe, layer, task or model output, named with the fix (one probe
            sample is run through the model first, so these fail before the whole probe is scored).
    """
    if not isinstance(probe, ProbeSet):
        raise CamAuditError(
            f"probe must be a cam_audit.ProbeSet, got {type(probe).__name__}; build one with "
            "ProbeSet.from_tensors / from_coco / from_csv / from_mask_dir"
        )
    check_choice("method", method, ("gradcam++", "gradcam"))
    check_choice("target", target, ("label", "predicted"))
    check_positive_int("batch_size", batch_size)
    if discover and not counterfactual:
        raise CamAuditError(
            "discover=True needs counterfactual=True: a candidate cue is confirmed by filling and pasting "
            "it, which are counterfactual tests; pass counterfactual=True, or discover=False"
        )
    engine = CamEngine(
        model,
        target_layer=target_layer,
        method=method,
        reshape_transform=reshape_transform,
        task=task,
        forward=forward,
    )
    run = AuditRun(
        engine,
        probe,
        policy if policy is not None else ShortcutPolicy(),
        target=target,
        batch_size=batch_size,
        counterfactual=counterfactual,
        fill=fill,
        pointing_tolerance=pointing_tolerance,
        device=device,
        on_batch=on_batch,
        discover=discover,
    )
    run.check_model()
    report = run()
    if on_cues is not None and run.discovering:
        on_cues(report.cues, run.galleries())
    return report


__all__ = ["OnCues", "audit"]
