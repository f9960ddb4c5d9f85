"""The per-sample reductions every score is built from, and the one check of their input.

Each takes ``[N, H, W]`` tensors and returns one value per sample. They avoid what makes scores slow on a
CPU: a float64 copy of the maps, reductions over bools (which convert every pixel to int64 first), bool
selects (``torch.where`` runs several times slower than a multiply) and batch-sized temporaries.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from cam_audit.errors import CamAuditError

#: Bytes of work space a reduction takes at most, whatever the batch size (a float mask of the regions).
WORK_BYTES = 8 * 2**20


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


def check_maps(maps: object, regions: object, caller: str) -> tuple[Tensor, Tensor, Tensor]:
    """The one check of every score's input.

    Returns the maps (detached, not copied), the regions and each map's total mass ``Σ map`` (float64
    ``[N]``). The values are checked without a pass of their own: the total is NaN or infinite when a
    value is, and the per-map minimum (which propagates NaN) shows negative values.
    """
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
    maps = maps.detach()
    if maps.numel() == 0:
        return maps, regions, torch.zeros(maps.shape[0], dtype=torch.float64, device=maps.device)
    total = mass(maps)
    low = maps.amin(dim=(1, 2))
    if not bool(torch.isfinite(total + low).all()):
        not_finite = ~torch.isfinite(maps).flatten(1).all(dim=1)
        if not_finite.any():
            first = int(not_finite.nonzero()[0, 0])
            raise CamAuditError(
                f"{caller}: maps[{first}] has NaN or infinite values ({int(not_finite.sum())} of "
                f"{len(maps)} maps are affected); no mass ratio exists. Check the model's gradients for "
                "that sample."
            )
        # finite values so large that a row sum overflows: score a float64 copy (the only case that makes one)
        maps = maps.to(torch.float64)
        total = mass(maps)
    negative = low < 0
    if negative.any():
        first = int(negative.nonzero()[0, 0])
        raise CamAuditError(
            f"{caller}: maps[{first}] has negative values (min {float(low[first]):.4g}; "
            f"{int(negative.sum())} of {len(maps)} maps are signed). Mass ratios are meaningless on signed "
            "maps. Pass maps >= 0 (CamEngine maps are): maps.clamp(min=0) keeps the positive evidence, "
            "maps.abs() counts both signs."
        )
    return maps, regions, total


def mass(values: Tensor) -> Tensor:
    """``Σ_ij values_ij`` per sample, float64 ``[N]``, of a float tensor ``[N, H, W]``.

    Each image row is summed in the values' precision (at least float32) and the row sums in float64: a
    float64 copy of the maps would cost more than the sums themselves.
    """
    rows = values.sum(dim=2, dtype=torch.promote_types(values.dtype, torch.float32))
    return rows.to(torch.float64).sum(dim=1)


def count(regions: Tensor) -> Tensor:
    """``True`` pixels per sample, int64 ``[N]``, of a bool tensor ``[N, H, W]``.

    Counted as int8 bytes summed along each image row into int16 (int32 for rows longer than int16
    holds): summing bools directly converts every pixel to int64 first, which takes several times longer.
    """
    row_type = torch.int16 if regions.shape[2] <= torch.iinfo(torch.int16).max else torch.int32
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
    """The largest value of each sample, ``[N]``."""
    return values.amax(dim=(1, 2))


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


def kth_largest(values: Tensor, k: Tensor) -> Tensor:
    """The ``k[i]``-th largest value of each row of ``values`` ``[N, P]`` (``1 <= k[i] <= P``), ``[N]``.

    A selection, not a sort. On a CPU each row goes through NumPy's introselect (``torch.topk`` and
    ``torch.kthvalue`` carry an index with every value there and take about ten times longer); on other
    devices ``torch.topk`` reads rows whose ``k`` lies in the upper half from their largest values and the
    others as the ``(P - k + 1)``-th smallest, so neither selection is longer than half a row.
    """
    pixels = values.shape[1]
    if values.device.type == "cpu" and values.dtype in (torch.float16, torch.float32, torch.float64):
        rows, ranks = values.numpy(), (pixels - k).tolist()
        chosen_values = [np.partition(row, rank)[rank] for row, rank in zip(rows, ranks, strict=True)]
        return torch.from_numpy(np.array(chosen_values, dtype=rows.dtype).reshape(len(ranks)))
    kth = torch.empty(values.shape[0], dtype=values.dtype, device=values.device)
    from_bottom = k > pixels // 2
    for rows_here, largest, rank in ((~from_bottom, True, k), (from_bottom, False, pixels - k + 1)):
        if not bool(rows_here.any()):
            continue
        chosen, wanted = (values, rank) if bool(rows_here.all()) else (values[rows_here], rank[rows_here])
        best = chosen.topk(int(wanted.max()), dim=1, largest=largest, sorted=True).values
        kth[rows_here] = best.gather(1, (wanted - 1)[:, None])[:, 0]
    return kth


__all__ = [
    "WORK_BYTES",
    "amax",
    "check_maps",
    "check_regions",
    "count",
    "dilate",
    "kth_largest",
    "mass",
    "masked",
]
