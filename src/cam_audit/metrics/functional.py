"""Per-sample localisation scores of saliency maps against ground-truth regions.

Pure functions: tensors in, tensors out, no state. Every function is batched and takes

- ``maps``: float tensor ``[N, H, W]``, every value finite and ``>= 0`` (a CAM after its ReLU), raw
  (never min-max normalised: the scores are ratios of mass, so any positive scale gives the same score);
- ``regions``: bool tensor ``[N, H, W]`` of the same shape, ``True`` on the object (or on the spurious cue).

and returns a float32 tensor ``[N]`` with one score per sample. Each image row is summed in the maps'
precision and the row sums in float64; every input is checked once, by one helper, in the same passes
that compute the sums.

A score that has no meaning for a sample is ``NaN``, never ``0`` or ``1``: an empty region (nothing to
find) or an all-zero map (nothing was pointed at). Callers count these as degenerate samples; the
torchmetrics classes in :mod:`cam_audit.metrics.scores` do so.

Signed maps are refused with :class:`~cam_audit.errors.CamAuditError`: a mass ratio over values of
both signs can leave ``[0, 1]`` and stops meaning "share of the evidence". Choose explicitly what the
sign means before scoring (``maps.clamp(min=0)`` keeps the positive evidence, ``maps.abs()`` counts both).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from cam_audit.errors import CamAuditError

#: Bytes of work space a score takes at most, whatever the batch size (a float mask of the regions).
WORK_BYTES = 8 * 2**20

__all__ = ["area_fraction", "mass_lift", "pointing_game", "relevance_mass", "relevance_rank"]


def _check_regions(regions: object, caller: str) -> Tensor:
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


def _check_maps(maps: object, regions: object, caller: str) -> tuple[Tensor, Tensor, Tensor]:
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
    regions = _check_regions(regions, caller)
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
    total = _mass(maps)
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
        total = _mass(maps)
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


def _mass(values: Tensor) -> Tensor:
    """``Σ_ij values_ij`` per sample, float64 ``[N]``, of a float tensor ``[N, H, W]``.

    Each image row is summed in the values' precision (at least float32) and the row sums in float64: a
    float64 copy of the maps would cost more than the sums themselves.
    """
    rows = values.sum(dim=2, dtype=torch.promote_types(values.dtype, torch.float32))
    return rows.to(torch.float64).sum(dim=1)


def _count(regions: Tensor) -> Tensor:
    """``True`` pixels per sample, int64 ``[N]``, of a bool tensor ``[N, H, W]``.

    Counted as int8 bytes summed along each image row into int16 (int32 for rows longer than int16
    holds): summing bools directly converts every pixel to int64 first, which takes several times longer.
    """
    row_type = torch.int16 if regions.shape[2] <= torch.iinfo(torch.int16).max else torch.int32
    rows = regions.view(torch.int8).sum(dim=2, dtype=row_type)
    return rows.sum(dim=1, dtype=torch.int64)


def _masked(maps: Tensor, regions: Tensor, reduce: Callable[[Tensor], Tensor]) -> Tensor:
    """``reduce(maps · regions)``: a per-sample reduction ``[N, H, W] -> [N]`` of the maps with every pixel
    outside the regions set to 0.

    The regions become a float mask in one work buffer of at most :data:`WORK_BYTES`, reused slice by
    slice of the batch: a bool select (``torch.where``) runs several times slower on a CPU than a copy
    and a multiply, and a buffer as large as a big batch costs fresh pages at every call.
    """
    n, h, w = maps.shape
    step = max(1, WORK_BYTES // max(h * w * maps.element_size(), 1))
    buffer = torch.empty((min(step, n), h, w), dtype=maps.dtype, device=maps.device)
    parts = []
    for start in range(0, n, step):
        stop = min(start + step, n)
        mask = buffer[: stop - start].copy_(regions[start:stop].view(torch.uint8))
        parts.append(reduce(mask.mul_(maps[start:stop])))
    return torch.cat(parts) if parts else reduce(maps)


def _amax(values: Tensor) -> Tensor:
    return values.amax(dim=(1, 2))


def area_fraction(regions: Tensor) -> Tensor:
    """Share of the image covered by each region.

    ``area_fraction = Σ_ij region_ij / (H·W)``

    Args:
        regions: bool tensor ``[N, H, W]``.

    Returns:
        float32 tensor ``[N]`` in ``[0, 1]``.

    Raises:
        CamAuditError: ``regions`` is not a bool tensor of three dimensions.

    Example:
        >>> import torch
        >>> regions = torch.zeros(2, 4, 4, dtype=torch.bool)
        >>> regions[0, :2, :2] = True
        >>> area_fraction(regions)
        tensor([0.2500, 0.0000])
    """
    regions = _check_regions(regions, "area_fraction")
    pixels = regions.shape[1] * regions.shape[2]
    if pixels == 0:
        return torch.full((regions.shape[0],), float("nan"), dtype=torch.float32, device=regions.device)
    return (_count(regions).to(torch.float64) / pixels).to(torch.float32)


def _relevance_mass(maps: Tensor, regions: Tensor, total: Tensor) -> tuple[Tensor, Tensor]:
    """Relevance mass (float64 ``[N]``) of checked inputs, and the regions' pixel counts."""
    inside = _masked(maps, regions, _mass)
    area = _count(regions)
    mass = torch.where((total > 0) & (area > 0), inside / total, float("nan"))
    return mass, area


def relevance_mass(maps: Tensor, regions: Tensor) -> Tensor:
    """Share of each map's mass that falls inside its region (the *focus*; energy-based pointing game).

    ``relevance_mass = Σ_ij map_ij·region_ij / Σ_ij map_ij``

    Equals Quantus' ``RelevanceMassAccuracy`` and ``AttributionLocalisation`` on maps ``>= 0``. It is
    invariant to the scale of the map. A uniform map scores the region's area fraction.

    Args:
        maps: float tensor ``[N, H, W]``, finite and ``>= 0``.
        regions: bool tensor ``[N, H, W]``.

    Returns:
        float32 tensor ``[N]`` in ``[0, 1]``; ``NaN`` where the region is empty or the map is all zero.

    Raises:
        CamAuditError: wrong type, dtype, number of dimensions or mismatched shapes; a negative or
            non-finite map value (the message names the sample).

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[3.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
        >>> regions = torch.tensor([[[True, False], [False, False]]]).expand(2, 2, 2)
        >>> relevance_mass(maps, regions)
        tensor([0.7500,    nan])
    """
    mass, _ = _relevance_mass(*_check_maps(maps, regions, "relevance_mass"))
    return mass.to(torch.float32)


def mass_lift(maps: Tensor, regions: Tensor) -> Tensor:
    """Relevance mass relative to what a uniform map would score: the *focus lift*.

    ``mass_lift = relevance_mass / area_fraction = (Σ map·region / Σ map) / (Σ region / (H·W))``

    ``1.0`` is chance (a uniform map), ``> 1`` means the map concentrates on the region, and the upper
    bound ``1 / area_fraction`` is reached when all mass is inside. This makes regions of different sizes
    comparable, which the raw relevance mass does not.

    Args:
        maps: float tensor ``[N, H, W]``, finite and ``>= 0``.
        regions: bool tensor ``[N, H, W]``.

    Returns:
        float32 tensor ``[N]`` in ``[0, 1 / area_fraction]``; ``NaN`` where the region is empty or the
        map is all zero.

    Raises:
        CamAuditError: as :func:`relevance_mass`.

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[3.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])
        >>> regions = torch.tensor([[[True, False], [False, False]]]).expand(2, 2, 2)
        >>> mass_lift(maps, regions)
        tensor([3., 1.])
    """
    mass, area = _relevance_mass(*_check_maps(maps, regions, "mass_lift"))
    fraction = area.to(torch.float64) / max(regions.shape[1] * regions.shape[2], 1)
    return (mass / fraction).to(torch.float32)


def _dilate(regions: Tensor, radius: int) -> Tensor:
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


def pointing_game(maps: Tensor, regions: Tensor, tolerance: int = 0) -> Tensor:
    """Whether each map's maximum falls inside its region.

    ``pointing_game = 1 if any(map_ij == max(map) and dilate(region, tolerance)_ij) else 0``

    The region is first dilated by ``tolerance`` pixels with a square (Chebyshev) structuring element:
    a pixel counts as inside when some region pixel is at most ``tolerance`` rows *and* columns away.
    Ties: when several pixels share the maximum it is a hit if **any** of them is inside (as Quantus'
    ``PointingGame`` does); a map that is flat over the whole image therefore hits any non-empty region.
    The maximum is taken on the exact values given (no normalisation, no smoothing).

    Args:
        maps: float tensor ``[N, H, W]``, finite and ``>= 0``.
        regions: bool tensor ``[N, H, W]``.
        tolerance: non-negative number of pixels by which to grow each region before testing.

    Returns:
        float32 tensor ``[N]`` of ``0.0`` / ``1.0``; ``NaN`` where the region is empty (nothing to point
        at) or the map is all zero (nothing was pointed at).

    Raises:
        CamAuditError: as :func:`relevance_mass`, or a ``tolerance`` that is not a non-negative int.

    Example:
        >>> import torch
        >>> maps = torch.zeros(1, 5, 5)
        >>> maps[0, 0, 0] = 1.0
        >>> regions = torch.zeros(1, 5, 5, dtype=torch.bool)
        >>> regions[0, 2:, 2:] = True
        >>> pointing_game(maps, regions), pointing_game(maps, regions, tolerance=2)
        (tensor([0.]), tensor([1.]))
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise CamAuditError(
            f"pointing_game: tolerance must be a non-negative int (pixels); got {tolerance!r}."
        )
    maps, regions, total = _check_maps(maps, regions, "pointing_game")
    if maps.shape[1] * maps.shape[2] == 0:
        return torch.full((maps.shape[0],), float("nan"), dtype=torch.float32, device=maps.device)
    grown = _dilate(regions, tolerance) if tolerance > 0 else regions
    peak = _amax(maps)
    # maps are >= 0: where the peak is > 0 (the score is defined), the largest value left inside the
    # region equals it exactly when some maximum lies inside
    hit = (_masked(maps, grown, _amax) == peak).to(torch.float32)
    return torch.where((total > 0) & (_count(regions) > 0), hit, float("nan"))


def relevance_rank(maps: Tensor, regions: Tensor) -> Tensor:
    """Share of the map's top-``K`` pixels that lie inside the region, with ``K`` the region's pixel count.

    ``relevance_rank = |top_K(map) ∩ region| / K``,  ``K = Σ_ij region_ij``

    Equals Quantus' ``RelevanceRankAccuracy`` on maps without ties. Ties at the ``K``-th largest value
    are shared out in proportion (the expected score over a random order of the tied pixels) rather
    than broken by pixel position: with ``G`` pixels strictly above the ``K``-th value (``G_in`` of them
    in the region) and ``E`` pixels equal to it (``E_in`` in the region),
    ``relevance_rank = (G_in + (K - G)·E_in / E) / K``. A uniform map therefore scores the area
    fraction, as it does for :func:`relevance_mass`; Quantus' position-dependent tie order can give
    anything from 0 to 1 there.

    Args:
        maps: float tensor ``[N, H, W]``, finite and ``>= 0``.
        regions: bool tensor ``[N, H, W]``.

    Returns:
        float32 tensor ``[N]`` in ``[0, 1]``; ``NaN`` where the region is empty or the map is all zero.

    Raises:
        CamAuditError: as :func:`relevance_mass`.

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])
        >>> regions = torch.tensor([[[True, False], [True, False]]])
        >>> relevance_rank(maps, regions)  # top-2 pixels are 4 (in) and 3 (out)
        tensor([0.5000])
    """
    maps, regions, total = _check_maps(maps, regions, "relevance_rank")
    if maps.numel() == 0:
        return torch.full((maps.shape[0],), float("nan"), dtype=torch.float32, device=maps.device)
    k = _count(regions)
    kth = _kth_largest(maps.flatten(1), k.clamp(min=1))[:, None, None]
    above, equal = maps > kth, maps == kth
    slots_left = (k - _count(above)).to(torch.float64)
    hits = _count(above & regions) + slots_left * _count(equal & regions) / _count(equal)
    k64 = k.to(torch.float64)
    defined = (k > 0) & (total > 0)
    return torch.where(defined, hits / k64.clamp(min=1), float("nan")).to(torch.float32)


def _kth_largest(values: Tensor, k: Tensor) -> Tensor:
    """The ``k[i]``-th largest value of each row of ``values`` ``[N, P]`` (``1 <= k[i] <= P``), ``[N]``.

    A selection, not a sort. On a CPU each row goes through NumPy's introselect (``torch.topk`` and
    ``torch.kthvalue`` carry an index with every value there and take about ten times longer); on other
    devices ``torch.topk`` reads rows whose ``k`` lies in the upper half from their largest values and the
    others as the ``(P - k + 1)``-th smallest, so neither selection is longer than half a row.
    """
    pixels = values.shape[1]
    if values.device.type == "cpu" and values.dtype in (torch.float16, torch.float32, torch.float64):
        rows, ranks = values.numpy(), (pixels - k).tolist()
        kth = [np.partition(row, rank)[rank] for row, rank in zip(rows, ranks, strict=True)]
        return torch.from_numpy(np.array(kth, dtype=rows.dtype).reshape(len(ranks)))
    kth = torch.empty(values.shape[0], dtype=values.dtype, device=values.device)
    from_bottom = k > pixels // 2
    for rows_here, largest, rank in ((~from_bottom, True, k), (from_bottom, False, pixels - k + 1)):
        if not bool(rows_here.any()):
            continue
        chosen, wanted = (values, rank) if bool(rows_here.all()) else (values[rows_here], rank[rows_here])
        best = chosen.topk(int(wanted.max()), dim=1, largest=largest, sorted=True).values
        kth[rows_here] = best.gather(1, (wanted - 1)[:, None])[:, 0]
    return kth
