"""Interventions with matched controls: each arm runs beside its control in one forward pass.

- :func:`fill_pairs`: fill a candidate cue, and the same shape at its matched control place.
- :func:`paste_pairs`: paste a candidate's pixels into an image of another class, and paste pixels of
  the same shape from elsewhere in the same source image at the same place.
- :func:`swap_pairs`: the object on a background of its own class, and on one of another class, both
  backgrounds with their own object removed first (Xiao et al. 2020, "Noise or Signal: The Role of
  Image Backgrounds in Object Recognition", the Mixed-Same / Mixed-Rand comparison of ImageNet-9).

Every function returns one pair of outcomes per sample; the caller counts how often the arm and its
control disagree.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from cam_audit.cam import tasks
from cam_audit.cam.tasks import Task
from cam_audit.counterfactual.blur import coarse_blur
from cam_audit.counterfactual.interventions import Fill, fill_region, fill_regions, paste_region
from cam_audit.counterfactual.spots import grow, shift_each

Forward = Callable[[Tensor], Tensor]


def decisions(logits: Tensor, targets: Tensor, task: Task) -> Tensor:
    """long ``[N]``: what a flip is measured on: the predicted class (multiclass, binary), or whether the
    target class is on (multi-label)."""
    if task == "multilabel":
        return tasks.decides_for(logits, targets, task).long()
    return tasks.predictions(logits, task).long()


@torch.no_grad()
def fill_pairs(
    forward: Forward,
    images: Tensor,
    spots: Tensor,
    controls: Tensor,
    before: Tensor,
    targets: Tensor,
    fill: Fill = "blur",
    task: Task = "multiclass",
) -> tuple[Tensor, Tensor]:
    """Fill each candidate, and its control, and see whether the decision changes.

    Args:
        images: float ``[M, C, H, W]``.
        spots, controls: bool ``[M, H, W]``, the candidates and their matched controls (same shapes).
        before: long ``[M]``, :func:`decisions` on the original images.
        targets: long ``[M]``, the classes the maps explain.

    Returns:
        float ``[M]`` twice: 1.0 where filling the candidate (the control) changed the decision.
    """
    m = images.shape[0]
    filled = torch.cat(fill_regions(images, [spots, controls], fill))  # one blur of the images for both
    after = decisions(forward(filled), targets.repeat(2).to(images.device), task).to(before.device)
    changed = (after != before.repeat(2)).float()
    return changed[:m], changed[m:]


@torch.no_grad()
def paste_pairs(
    forward: Forward,
    sources: Tensor,
    spots: Tensor,
    offsets: Tensor,
    classes: Tensor,
    partners: Tensor,
    partner_spots: Tensor,
    fill: Fill = "blur",
    task: Task = "multiclass",
) -> tuple[Tensor, Tensor]:
    """Paste each candidate into its partner, and a control patch of the same shape, at the same place.

    The control patch holds the source's pixels at the candidate's control place (``offsets``, each
    ``(dy, dx)``), so both arms put the same shape at the same place of the same partner and differ only
    in what the patch shows. A partner's own candidate is filled first, in both arms.

    Args:
        sources: float ``[M, C, H, W]``, images of the cue's class.
        spots: bool ``[M, H, W]``, their candidates.
        offsets: long ``[M, 2]``, where each candidate's control lies.
        classes: long ``[M]``, the cue's class.
        partners: float ``[M, C, H, W]``, images of other classes (neither labelled nor predicted as it).
        partner_spots: bool ``[M, H, W]``, the partners' own candidates (empty where none).

    Returns:
        float ``[M]`` twice: 1.0 where the pasted image is decided for the cue's class (NaN for a
        multi-label partner that had the class on before the paste, in both arms).
    """
    m = sources.shape[0]
    patches = shift_each(sources, -offsets)
    base = fill_region(partners, partner_spots, fill)
    batch = [paste_region(base, sources, spots), paste_region(base, patches, spots)]
    if task == "multilabel":
        batch.append(base)
    wanted = classes.to(sources.device)
    decided = tasks.decides_for(forward(torch.cat(batch)), wanted.repeat(len(batch)).to(sources.device), task)
    moved = decided.float().to(sources.device)
    arm, control = moved[:m], moved[m : 2 * m]
    if task == "multilabel":
        was_on = decided[2 * m :].to(sources.device)
        nan = torch.full_like(arm, float("nan"))
        arm, control = torch.where(was_on, nan, arm), torch.where(was_on, nan, control)
    return arm, control


def inpaint(images: Tensor, regions: Tensor) -> Tensor:
    """Fill ``regions`` from the pixels around them only (a normalised blur that ignores the region).

    Unlike a plain blur, nothing of what the region held leaks into the fill, so a removed object
    leaves no ghost of its shape or colour behind.
    """
    keep = (~regions.to(torch.bool)).unsqueeze(1).to(images.dtype)
    sigma = max(images.shape[-2:]) / 8
    weight = coarse_blur(keep, sigma)
    smooth = coarse_blur(images * keep, sigma) / weight.clamp_min(1e-6)
    mean = (images * keep).sum(dim=(2, 3), keepdim=True) / keep.sum(dim=(2, 3), keepdim=True).clamp_min(1)
    smooth = torch.where(weight > 1e-3, smooth, mean.expand_as(images))
    return torch.where(regions.to(torch.bool).unsqueeze(1), smooth, images)


def object_holes(regions: Tensor, margin: int) -> Tensor:
    """The box around each object grown by ``margin`` pixels: what :func:`swap_pairs` removes from a
    background (a box, not the object's outline, so the hole does not show the object's shape)."""
    grown = grow(regions, margin)
    rows, cols = grown.any(dim=2), grown.any(dim=1)
    return _span(rows)[:, :, None] & _span(cols)[:, None, :]


def _span(line: Tensor) -> Tensor:
    """bool ``[N, L]``: True from the first to the last True of each row."""
    seen = line.long().cummax(dim=1).values.bool()
    tail = line.flip(1).long().cummax(dim=1).values.bool().flip(1)
    return seen & tail


@torch.no_grad()
def swap_pairs(
    forward: Forward,
    images: Tensor,
    objects: Tensor,
    labels: Tensor,
    backgrounds: Tensor,
    background_objects: Tensor,
    same: Tensor,
    other: Tensor,
    margin: int,
    task: Task = "multiclass",
) -> tuple[Tensor, Tensor]:
    """Each object on a background of its own class and on one of another class.

    Args:
        images, objects: float ``[M, C, H, W]`` and bool ``[M, H, W]``: the objects to move (their
            pixels, at their own place).
        labels: long ``[M]``.
        backgrounds, background_objects: float ``[B, C, H, W]`` and bool ``[B, H, W]``: the images the
            objects are moved onto, each once (it is cleared once however many objects it takes), and
            their own objects.
        same, other: long ``[M]``: the background of the same class, and the one of another class, of
            each object (rows of ``backgrounds``).
        margin: pixels around each background's object that are removed with it.

    Returns:
        float ``[M]`` twice: 1.0 where the model decides for the label on the same-class (the
        other-class) background.
    """
    m = images.shape[0]
    cleared = inpaint(backgrounds, object_holes(background_objects, margin))
    chosen = cleared[torch.cat([same, other]).to(cleared.device)]
    moved = paste_region(chosen, images.repeat(2, 1, 1, 1), objects.repeat(2, 1, 1))
    correct = tasks.decides_for(forward(moved), labels.repeat(2).to(images.device), task).float()
    correct = correct.to(images.device)
    return correct[:m], correct[m:]


__all__ = ["decisions", "fill_pairs", "inpaint", "object_holes", "paste_pairs", "swap_pairs"]
