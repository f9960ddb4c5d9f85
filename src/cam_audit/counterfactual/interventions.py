"""Counterfactual tests: does the model's decision depend on the spurious region?

Attribution maps can miss a shortcut (a max-pooling head, for one, can route a decision through a few
pixels that carry little mass), so a suspected shortcut is tested causally:

- **fill**: replace the spurious region of each image by a neutral fill (a blur of the image by
  default) and measure how far the probability of the explained class falls (``cf_confidence_drop``)
  and how often the prediction changes (``cf_flip``).
- **paste**: copy the spurious region of an image of class *c* into an image of another class whose
  own spurious region was filled, and record whether the prediction moves to *c* (``cf_paste``).

Every function here is batched and runs where the images are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as nnf
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

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
    if images.ndim != 4 or regions.shape != (images.shape[0], *images.shape[2:]):
        raise CamAuditError(
            f"fill_region expects images [N,C,H,W] and regions [N,H,W]; got {tuple(images.shape)} and "
            f"{tuple(regions.shape)}"
        )
    mask = regions.to(torch.bool).unsqueeze(1)
    if callable(fill):
        filled = fill(images.clone(), regions.clone())
        if not isinstance(filled, Tensor) or filled.shape != images.shape:
            raise CamAuditError(
                f"the fill callable must return a tensor of shape {tuple(images.shape)}, got "
                f"{getattr(filled, 'shape', type(filled).__name__)}"
            )
    elif fill == "blur":
        filled = coarse_blur(images, sigma=max(images.shape[-2:]) / 8)
    elif fill == "mean":
        keep = (~mask).to(images.dtype)
        mean = (images * keep).sum(dim=(2, 3), keepdim=True) / keep.sum(dim=(2, 3), keepdim=True).clamp_min(1)
        filled = mean.expand_as(images)
    else:
        raise CamAuditError(f"fill must be 'blur', 'mean' or a callable(images, regions), got {fill!r}")
    return torch.where(mask, filled.to(images.dtype), images)


def coarse_blur(images: Tensor, sigma: float) -> Tensor:
    """A Gaussian blur of large ``sigma`` at a fraction of the cost.

    The image is area-downsampled by ``factor = sigma // 2`` (so the Gaussian keeps a sigma of at least
    2 pixels), blurred with sigma / factor, and upsampled bilinearly. For sigma = 8 on 64x64 images this
    is a 9-tap blur of a 16x16 image instead of a 33-tap blur of the full one.

    Args:
        images: float tensor [N, C, H, W].
        sigma: the blur's standard deviation in pixels of ``images``.

    Returns:
        float tensor [N, C, H, W].
    """
    factor = max(1, int(sigma // 2))
    small = nnf.avg_pool2d(images, factor, ceil_mode=True) if factor > 1 else images
    small_sigma = sigma / factor
    kernel = 2 * int(2 * small_sigma) + 1
    blurred = TF.gaussian_blur(small, kernel_size=[kernel, kernel], sigma=[small_sigma, small_sigma])
    if factor == 1:
        return blurred
    return nnf.interpolate(blurred, size=images.shape[-2:], mode="bilinear", align_corners=False)


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
) -> dict[str, Tensor]:
    """The fill test for one batch; NaN for samples without a spurious region.

    Args:
        forward: the model in eval mode, ``images -> logits``.
        images: float [N, C, H, W], the original images.
        spurious: bool [N, H, W], the spurious regions (all False where a sample has none).
        targets: long [N], the class whose probability is tracked.
        logits: [N, K], the model's logits on the original images.
        fill: see :func:`fill_region`.

    Returns:
        ``cf_confidence_drop`` (probability of the target before minus after filling) and ``cf_flip``
        (1.0 where the prediction changed): float tensors [N].
    """
    has_cue = spurious.flatten(1).any(dim=1)
    nan = torch.full((images.shape[0],), float("nan"), device=images.device)
    out = {"cf_confidence_drop": nan.clone(), "cf_flip": nan.clone()}
    if not bool(has_cue.any()):
        return out
    cue = has_cue.nonzero().squeeze(1)
    probs = logits[cue].float().softmax(dim=1)
    filled_probs = forward(fill_region(images[cue], spurious[cue], fill)).float().softmax(dim=1)
    tracked = targets[cue, None].to(probs.device)
    out["cf_confidence_drop"][cue] = (probs.gather(1, tracked) - filled_probs.gather(1, tracked)).squeeze(1)
    out["cf_flip"][cue] = (filled_probs.argmax(dim=1) != probs.argmax(dim=1)).float()
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
) -> Tensor:
    """The paste test: does a source's cue, pasted into its partner, move the partner to the source's class?

    Each partner's own spurious region is filled first (see :func:`fill_region`), so only the pasted cue
    is left to decide.

    Args:
        forward: the model in eval mode, ``images -> logits``.
        sources: float [M, C, H, W], images carrying a cue.
        source_regions: bool [M, H, W], their spurious regions (the cue to paste).
        source_labels: long [M], their classes.
        partners: float [M, C, H, W], the images of other classes to paste into.
        partner_regions: bool [M, H, W], the partners' own spurious regions.
        fill: see :func:`fill_region`.

    Returns:
        float tensor [M]: 1.0 where the pasted image is predicted as the source's class.
    """
    pasted = paste_region(fill_region(partners, partner_regions, fill), sources, source_regions)
    return (forward(pasted).argmax(dim=1) == source_labels.to(pasted.device)).float()


__all__ = ["coarse_blur", "fill_region", "fill_scores", "paste_moves", "paste_partners", "paste_region"]
