"""Counterfactual tests: does the model's decision depend on the spurious region?

Attribution maps can miss a shortcut (a max-pooling head, for one, can route a decision through a few
pixels that carry little mass), so a suspected shortcut is tested causally:

- **fill**: replace the spurious region of each image by a neutral fill (a blur of the image by
  default) and measure how far the probability of the explained class falls (``cf_confidence_drop``)
  and how often the model's decision changes (``cf_flip``).
- **paste**: copy the spurious region of an image of class *c* into an image of another class whose
  own spurious region was filled, and record whether the model now decides for *c* (``cf_paste``).

Probabilities and decisions follow the classifier's task (:mod:`cam_audit.cam.tasks`): the softmax and
the argmax of a multiclass model, ``sigmoid(+-z)`` and ``z > 0`` of a binary one, and for a multi-label
model the class's own sigmoid, "on" above 0.5. Every function here is batched and runs where the images
are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

from cam_audit.cam import tasks
from cam_audit.cam.tasks import Task
from cam_audit.counterfactual.blur import coarse_blur
from cam_audit.errors import CamAuditError

FillFn = Callable[[Tensor, Tensor], Tensor]
Fill = Literal["blur", "mean"] | FillFn


def fill_region(images: Tensor, regions: Tensor, fill: Fill = "blur") -> Tensor:
    """Replace the pixels of ``regions`` by a neutral fill.

    Args:
        images: float tensor [N, C, H, W].
        regions: bool tensor [N, H, W]; pixels to replace.
        fill: ``"blur"`` (a Gaussian blur of the image with sigma = max(H, W) / 8, so the region takes
            the colours around it; computed on a downsampled copy, see :func:`coarse_blur`), ``"mean"``
            (each image's mean colour outside the region), or a callable
            ``fill(images, regions) -> images`` that returns the filled batch.

    Returns:
        A new float tensor [N, C, H, W]; ``images`` is not modified.

    >>> images = torch.zeros(1, 3, 8, 8); images[:, :, :2, :2] = 1.0
    >>> region = torch.zeros(1, 8, 8, dtype=torch.bool); region[:, :2, :2] = True
    >>> fill_region(images, region, "mean")[0, :, 0, 0].tolist()
    [0.0, 0.0, 0.0]
    """
    return fill_regions(images, [regions], fill)[0]


def fill_regions(images: Tensor, regions: Sequence[Tensor], fill: Fill = "blur") -> list[Tensor]:
    """:func:`fill_region` of the same ``images`` with each of several region sets (bool [N, H, W]); the
    blur, which does not depend on the region, is computed once for all of them.

    >>> images = torch.rand(2, 3, 8, 8); top = torch.zeros(2, 8, 8, dtype=torch.bool); top[:, :2] = True
    >>> first, second = fill_regions(images, [top, ~top])
    >>> torch.equal(first, fill_region(images, top)), torch.equal(second, fill_region(images, ~top))
    (True, True)
    """
    for region in regions:
        if images.ndim != 4 or region.shape != (images.shape[0], *images.shape[2:]):
            raise CamAuditError(
                f"fill_region expects images [N,C,H,W] and regions [N,H,W]; got {tuple(images.shape)} and "
                f"{tuple(region.shape)}"
            )
    if fill == "blur":
        blurred = coarse_blur(images, sigma=max(images.shape[-2:]) / 8).to(images.dtype)
        return [torch.where(region.to(torch.bool).unsqueeze(1), blurred, images) for region in regions]
    return [_filled(images, region, fill) for region in regions]


def _filled(images: Tensor, regions: Tensor, fill: Fill) -> Tensor:
    """:func:`fill_region` with a ``"mean"`` or callable fill."""
    mask = regions.to(torch.bool).unsqueeze(1)
    if callable(fill):
        filled = fill(images.clone(), regions.clone())
        if not isinstance(filled, Tensor) or filled.shape != images.shape:
            raise CamAuditError(
                f"the fill callable must return a tensor of shape {tuple(images.shape)}, got "
                f"{getattr(filled, 'shape', type(filled).__name__)}"
            )
    elif fill == "mean":
        keep = (~mask).to(images.dtype)
        mean = (images * keep).sum(dim=(2, 3), keepdim=True) / keep.sum(dim=(2, 3), keepdim=True).clamp_min(1)
        filled = mean.expand_as(images)
    else:
        raise CamAuditError(f"fill must be 'blur', 'mean' or a callable(images, regions), got {fill!r}")
    return torch.where(mask, filled.to(images.dtype), images)


def paste_region(destination: Tensor, source: Tensor, regions: Tensor) -> Tensor:
    """Copy the pixels of ``regions`` from ``source`` into ``destination``.

    Args:
        destination: float tensor [N, C, H, W].
        source: float tensor [N, C, H, W].
        regions: bool tensor [N, H, W]; where ``source`` wins.

    Returns:
        A new tensor [N, C, H, W].
    """
    return torch.where(regions.to(torch.bool).unsqueeze(1), source, destination)


def paste_partners(labels: Tensor, has_cue: Tensor, predictions: Tensor) -> Tensor:
    """For each sample carrying a cue, pick an image of another class to paste the cue into.

    The partner of sample ``i`` is the first sample after ``i`` (cyclically) whose label and
    prediction both differ from ``labels[i]``: only then can a move to the cue's class be observed.
    The audit applies this to every scored sample of the probe in probe order, so the partners do not
    depend on the batch size or on how the probe is split across processes.

    Args:
        labels: long tensor [N].
        has_cue: bool tensor [N].
        predictions: long tensor [N], the model's predictions on the original images.

    Returns:
        Long tensor [N]: the partner's index, or -1 where there is none.

    >>> paste_partners(torch.tensor([0, 0, 1]), torch.tensor([True, False, True]), torch.tensor([0, 0, 1]))
    tensor([ 2, -1,  0])
    """
    labels, predictions = labels.long(), predictions.long().to(labels.device)
    has_cue = has_cue.to(device=labels.device, dtype=torch.bool)
    partner = torch.full_like(labels, -1)
    for cls in labels[has_cue].unique().tolist():
        # the samples a cue of class `cls` can be pasted into, in order; each source takes the first one
        # after itself, wrapping round to the first of all
        eligible = ((labels != cls) & (predictions != cls)).nonzero().flatten()
        if eligible.numel() == 0:
            continue
        sources = (has_cue & (labels == cls)).nonzero().flatten()
        after = torch.searchsorted(eligible, sources, right=True)
        partner[sources] = eligible[after % eligible.numel()]
    return partner


@torch.no_grad()
def fill_scores(
    forward: Callable[[Tensor], Tensor],
    images: Tensor,
    spurious: Tensor,
    targets: Tensor,
    logits: Tensor,
    fill: Fill = "blur",
    task: Task = "multiclass",
) -> dict[str, Tensor]:
    """The fill test for one batch; NaN for samples without a spurious region.

    Args:
        forward: the model in eval mode, ``images -> logits``.
        images: float [N, C, H, W], the original images.
        spurious: bool [N, H, W], the spurious regions (all False where a sample has none).
        targets: long [N], the class whose probability is tracked.
        logits: [N, K], the model's logits on the original images.
        fill: see :func:`fill_region`.
        task: how the logits are read (see the module docstring).

    Returns:
        ``cf_confidence_drop`` (probability of the target before minus after filling) and ``cf_flip``
        (1.0 where the decision changed: the prediction, or for a multi-label model whether the target
        class is on): float tensors [N].

    >>> bright = lambda x: x.mean(dim=(1, 2, 3))[:, None] * 8 - 1   # one logit: bright images are class 1
    >>> images = torch.zeros(1, 3, 4, 4); images[:, :, :2] = 1.0
    >>> cue = torch.zeros(1, 4, 4, dtype=torch.bool); cue[:, :2] = True
    >>> out = fill_scores(bright, images, cue, torch.tensor([1]), bright(images), "mean", task="binary")
    >>> out["cf_flip"].tolist()
    [1.0]
    """
    has_cue = spurious.flatten(1).any(dim=1)
    nan = torch.full((images.shape[0],), float("nan"), dtype=torch.float32, device=images.device)
    out = {"cf_confidence_drop": nan.clone(), "cf_flip": nan.clone()}
    if not bool(has_cue.any()):
        return out
    cue = has_cue.nonzero().squeeze(1)
    before = logits[cue]
    after = forward(fill_region(images[cue], spurious[cue], fill)).to(before.device)
    tracked = targets[cue].to(before.device)
    drop = tasks.confidence(before, tracked, task) - tasks.confidence(after, tracked, task)
    out["cf_confidence_drop"][cue] = drop.to(out["cf_confidence_drop"].device)
    flipped = tasks.decision_changed(before, after, tracked, task).float()
    out["cf_flip"][cue] = flipped.to(out["cf_flip"].device)
    return out


@torch.no_grad()
def paste_moves(
    forward: Callable[[Tensor], Tensor],
    sources: Tensor,
    source_regions: Tensor,
    source_labels: Tensor,
    partners: Tensor,
    partner_regions: Tensor,
    fill: Fill = "blur",
    task: Task = "multiclass",
) -> Tensor:
    """The paste test: does a source's cue, pasted into its partner, move the partner to the source's class?

    Each partner's own spurious region is filled first (see :func:`fill_region`), so only the pasted cue
    is left to decide. A move is a prediction of the source's class (multiclass, binary); for a
    multi-label model it is the source's class turning on (``sigmoid(logit) > 0.5``) where it was off
    in the filled partner without the cue, and NaN where it was on already (no move can be seen).

    Args:
        forward: the model in eval mode, ``images -> logits``.
        sources: float [M, C, H, W], images carrying a cue.
        source_regions: bool [M, H, W], their spurious regions (the cue to paste).
        source_labels: long [M], their classes.
        partners: float [M, C, H, W], the images of other classes to paste into.
        partner_regions: bool [M, H, W], the partners' own spurious regions.
        fill: see :func:`fill_region`.
        task: how the logits are read (see the module docstring).

    Returns:
        float tensor [M]: 1.0 where the pasted image is decided for the source's class, else 0.0 (NaN
        where a multi-label partner had that class on before the paste).
    """
    filled = fill_region(partners, partner_regions, fill)
    pasted = paste_region(filled, sources, source_regions)
    labels = source_labels.to(pasted.device)
    if task != "multilabel":
        return tasks.decides_for(forward(pasted), labels, task).float().to(pasted.device)
    logits = forward(torch.cat([filled, pasted]))
    labels = labels.to(logits.device)
    was_on = tasks.decides_for(logits[: len(labels)], labels, task)
    moved = tasks.decides_for(logits[len(labels) :], labels, task).float()
    return torch.where(was_on, torch.full_like(moved, float("nan")), moved).to(pasted.device)


__all__ = [
    "fill_region",
    "fill_regions",
    "fill_scores",
    "paste_moves",
    "paste_partners",
    "paste_region",
]
