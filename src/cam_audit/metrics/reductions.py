"""The per-sample reductions every score is built from, and the one check of their input.

Each takes ``[N, H, W]`` tensors and returns one value per sample; :func:`batch_sums` computes, in one pass
over a batch, what the scores it is asked for share, and checks the values on the way. They avoid what
makes scores slow on a CPU: a float64 copy of the maps, reductions over bools (which convert every pixel
to int64 first), bool selects (``torch.where`` runs several times slower than a multiply), batch-sized
temporaries and passes that only check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from cam_audit.errors import CamAuditError

#: Bytes of work space a reduction takes at most, whatever the batch size (a float mask of the regions).
WORK_BYTES = 16 * 2**20
#: Pixels from which an image is worth a call of its own on a CPU (NumPy counts and selections per image).
ROW_PIXELS = 1024


def check_regions(regions: object, caller: str) -> Tensor:
    """``regions`` if it is a bool tensor ``[N, H, W]``; otherwise a :class:`CamAuditError` naming ``caller``
    and the fix."""
    if not isinstance(regions, Tensor):
        raise CamAuditError(
            f"{caller}: regions must be a bool torch.Tensor [N, H, W]; got {type(regions).__name__}."
        )
    if regions.dtype != torch.bool:
        raise CamAuditError(
            f"{caller}: regions must be a bool tensor [N, H, W]; got dtype {regions.dtype}. "
            "Convert 0/1 masks with `regions > 0.5` or `regions.bool()`."
        )
    if regions.ndim != 3:
        raise CamAuditError(
            f"{caller}: regions must be batched [N, H, W]; got shape {tuple(regions.shape)} "
            f"({regions.ndim}-D). For a single sample pass regions[None]."
        )
    return regions


def check_maps(maps: object, regions: object, caller: str) -> tuple[Tensor, Tensor]:
    """The maps (detached, not copied) and the regions, when both are tensors of one shape ``[N, H, W]`` on
    one device, the maps floating point and the regions bool; otherwise a :class:`CamAuditError` naming
    ``caller`` and the fix. The values are checked by :func:`batch_sums`, in the passes that sum them."""
    if not isinstance(maps, Tensor):
        raise CamAuditError(
            f"{caller}: maps must be a float torch.Tensor [N, H, W]; got {type(maps).__name__}."
        )
    if not maps.is_floating_point():
        raise CamAuditError(
            f"{caller}: maps must be a floating-point tensor [N, H, W]; got dtype {maps.dtype}. "
            "Convert with maps.float()."
        )
    if maps.ndim != 3:
        raise CamAuditError(
            f"{caller}: maps must be batched [N, H, W]; got shape {tuple(maps.shape)} ({maps.ndim}-D). "
            "For a single map pass maps[None]; for [N, 1, H, W] pass maps.squeeze(1)."
        )
    regions = check_regions(regions, caller)
    if maps.shape != regions.shape:
        raise CamAuditError(
            f"{caller}: maps and regions must have the same shape [N, H, W]; got maps {tuple(maps.shape)} "
            f"and regions {tuple(regions.shape)}. Resize the regions to the map resolution (the CamEngine "
            "returns maps at input resolution)."
        )
    if maps.device != regions.device:
        raise CamAuditError(
            f"{caller}: maps are on {maps.device} but regions are on {regions.device}; "
            "move both to one device."
        )
    return maps.detach(), regions


@dataclass(frozen=True)
class Wanted:
    """What :func:`batch_sums` computes besides each region's size: ``total`` (``Σ map``), ``inside``
    (``Σ map·region``), ``peak`` (``max map``), ``peak_inside`` (``max map·region``)."""

    total: bool = False
    inside: bool = False
    peak: bool = False
    peak_inside: bool = False


@dataclass(frozen=True)
class BatchSums:
    """What the scores of one batch share, one value per sample; ``None`` where not :class:`Wanted`.

    Attributes:
        maps: the maps, detached; a float64 copy only where a row sum overflows the maps' precision.
        area: int64 ``[N]``, ``Σ region`` (pixels).
        nonzero: bool ``[N]``, whether the map has a value above 0 (the scores are undefined where not).
        total: float64 ``[N]``, ``Σ map``.
        inside: float64 ``[N]``, ``Σ map·region``.
        peak: ``[N]`` in the maps' dtype, ``max map``.
        peak_inside: ``[N]``, ``max map·region`` (0 for an empty region).
    """

    maps: Tensor
    area: Tensor
    nonzero: Tensor
    total: Tensor | None = None
    inside: Tensor | None = None
    peak: Tensor | None = None
    peak_inside: Tensor | None = None


def batch_sums(maps: object, regions: object, caller: str, wanted: Wanted) -> BatchSums:
    """Check a batch and compute what its scores share, in one pass over it slice by slice.

    The values are checked without a pass of their own: the total (or, when it is not wanted, the peak)
    is NaN or infinite when a value is, and the per-map minimum (which propagates NaN) shows negative
    values. On maps ``>= 0`` the total is above 0 exactly when the peak is.

    Raises:
        CamAuditError: as :func:`check_maps`; a NaN, infinite or negative map value, naming the sample.
    """
    maps, regions = check_maps(maps, regions, caller)
    sums, low = _batch_pass(maps, regions, wanted)
    checked = sums.total if sums.total is not None else sums.peak
    if checked is not None and not bool(torch.isfinite(checked + low).all()):
        not_finite = ~torch.isfinite(maps).flatten(1).all(dim=1)
        if not_finite.any():
            first = int(not_finite.nonzero()[0, 0])
            raise CamAuditError(
                f"{caller}: maps[{first}] has NaN or infinite values ({int(not_finite.sum())} of "
                f"{len(maps)} maps are affected); no mass ratio exists. Check the model's gradients for "
                "that sample."
            )
        # finite values so large that a row sum overflows: score a float64 copy (the only case that makes one)
        sums, low = _batch_pass(maps.to(torch.float64), regions, wanted)
    negative = low < 0
    if negative.any():
        first = int(negative.nonzero()[0, 0])
        raise CamAuditError(
            f"{caller}: maps[{first}] has negative values (min {float(low[first]):.4g}; "
            f"{int(negative.sum())} of {len(maps)} maps are signed). Mass ratios are meaningless on signed "
            "maps. Pass maps >= 0 (CamEngine maps are): maps.clamp(min=0) keeps the positive evidence, "
            "maps.abs() counts both signs."
        )
    return sums


def _batch_pass(maps: Tensor, regions: Tensor, wanted: Wanted) -> tuple[BatchSums, Tensor]:
    """:class:`BatchSums` and the per-map minimum.

    Each reduction of the maps is one call over the whole batch (on a CPU shared with other work, every
    parallel call waits for both threads to be scheduled, so fewer, larger calls cost less); the sums and
    peaks inside the regions come slice by slice of at most :data:`WORK_BYTES` of maps, the regions made a
    float mask in one reused work buffer (a bool select, ``torch.where``, runs several times slower on a CPU
    than a copy and a multiply, and a buffer as large as a big batch costs fresh pages at every call).
    """
    n, h, w = maps.shape
    if not wanted.total:  # the peak then carries the check, and tells the maps that are all zero
        wanted = replace(wanted, peak=True)
    total = mass(maps) if wanted.total else None
    peak = amax(maps) if wanted.peak else None
    low = maps.amin(dim=(1, 2)) if maps.numel() else maps.new_zeros(n)
    insides: list[Tensor] = []
    peaks_inside: list[Tensor] = []
    if wanted.inside or wanted.peak_inside:
        step = max(1, WORK_BYTES // max(1, h * w * maps.element_size()))
        buffer = maps.new_empty((min(step, n), h, w))
        for start in range(0, n, step):
            chunk = maps[start : start + step]
            mask = buffer[: len(chunk)].copy_(regions[start : start + step].view(torch.uint8)).mul_(chunk)
            if wanted.inside:
                insides.append(mass(mask))
            if wanted.peak_inside:
                peaks_inside.append(amax(mask))
    nonzero = total > 0 if total is not None else peak > 0 if peak is not None else low > 0
    sums = BatchSums(
        maps,
        count(regions),
        nonzero,
        total,
        _joined(insides, maps, torch.float64) if wanted.inside else None,
        peak,
        _joined(peaks_inside, maps, maps.dtype) if wanted.peak_inside else None,
    )
    return sums, low


def _joined(parts: list[Tensor], maps: Tensor, dtype: torch.dtype) -> Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype, device=maps.device)


def mass(values: Tensor) -> Tensor:
    """``Σ_ij values_ij`` per sample, float64 ``[N]``, of a float tensor ``[N, H, W]``.

    Each image row is summed in the values' precision (at least float32) and the row sums in float64: a
    float64 copy of the maps would cost more than the sums themselves (``sum(dtype=torch.float64)`` makes
    one).
    """
    rows = values.sum(dim=2, dtype=torch.promote_types(values.dtype, torch.float32))
    return rows.sum(dim=1, dtype=torch.float64)


def count(regions: Tensor) -> Tensor:
    """``True`` pixels per sample, int64 ``[N]``, of a bool tensor ``[N, H, W]``.

    On a CPU each image of at least :data:`ROW_PIXELS` pixels is counted by NumPy (bytes tested eight at a
    time), the others together as int8 summed along each image row into int16 (int32 for rows longer
    than int16 holds): summing bools directly converts every pixel to int64 first, which takes several
    times longer.
    """
    n, h, w = regions.shape
    if regions.device.type == "cpu" and h * w >= ROW_PIXELS:
        images = regions.reshape(n, h * w).numpy()
        return torch.tensor([np.count_nonzero(image) for image in images], dtype=torch.int64).reshape(n)
    row_type = torch.int16 if w <= torch.iinfo(torch.int16).max else torch.int32
    rows = regions.view(torch.int8).sum(dim=2, dtype=row_type)
    return rows.sum(dim=1, dtype=torch.int64)


def masked(maps: Tensor, regions: Tensor, *reductions: Callable[[Tensor], Tensor]) -> list[Tensor]:
    """``[reduce(maps · regions) for reduce in reductions]``: per-sample reductions ``[N, H, W] -> [N]`` of
    the maps with every pixel outside the regions set to 0, all from one pass.

    The regions become a float mask in one work buffer of at most :data:`WORK_BYTES`, reused slice by
    slice of the batch: a bool select (``torch.where``) runs several times slower on a CPU than a copy
    and a multiply, and a buffer as large as a big batch costs fresh pages at every call.
    """
    n, h, w = maps.shape
    if n == 0:
        return [reduce(maps) for reduce in reductions]
    step = max(1, WORK_BYTES // max(h * w * maps.element_size(), 1))
    buffer = torch.empty((min(step, n), h, w), dtype=maps.dtype, device=maps.device)
    parts: list[list[Tensor]] = [[] for _ in reductions]
    for start in range(0, n, step):
        stop = min(start + step, n)
        mask = buffer[: stop - start].copy_(regions[start:stop].view(torch.uint8)).mul_(maps[start:stop])
        for part, reduce in zip(parts, reductions, strict=True):
            part.append(reduce(mask))
    return [torch.cat(part) if len(part) > 1 else part[0] for part in parts]


def amax(values: Tensor) -> Tensor:
    """The largest value of each sample, ``[N]`` (0 for samples without pixels)."""
    return values.amax(dim=(1, 2)) if values.numel() else values.new_zeros(len(values))


def dilate(regions: Tensor, radius: int) -> Tensor:
    """Grow bool regions ``[N, H, W]`` by ``radius`` pixels with a square structuring element.

    A pixel is in the grown region when the ``(2·radius+1)²`` window around it (cut at the image border)
    holds a region pixel; window sums come from an integral image, so the cost does not depend on radius.
    """
    n, h, w = regions.shape
    integral = torch.zeros(n, h + 1, w + 1, dtype=torch.int64, device=regions.device)
    integral[:, 1:, 1:] = regions.to(torch.int64).cumsum(dim=1).cumsum(dim=2)
    rows = torch.arange(h, device=regions.device)
    cols = torch.arange(w, device=regions.device)
    top, bottom = (rows - radius).clamp(min=0)[:, None], (rows + radius + 1).clamp(max=h)[:, None]
    left, right = (cols - radius).clamp(min=0)[None, :], (cols + radius + 1).clamp(max=w)[None, :]
    window = (
        integral[:, bottom, right]
        - integral[:, top, right]
        - integral[:, bottom, left]
        + integral[:, top, left]
    )
    return window > 0


__all__ = [
    "ROW_PIXELS",
    "WORK_BYTES",
    "BatchSums",
    "Wanted",
    "amax",
    "batch_sums",
    "check_maps",
    "check_regions",
    "count",
    "dilate",
    "mass",
    "masked",
]
