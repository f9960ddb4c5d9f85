"""Per-sample localisation scores of saliency maps against ground-truth regions.

Pure functions: tensors in, tensors out, no state. Every function is batched and takes

- ``maps``: float tensor ``[N, H, W]``, every value finite and ``>= 0`` (a CAM after its ReLU), raw
  (never min-max normalised: the scores are ratios of mass, so any positive scale gives the same score);
- ``regions``: bool tensor ``[N, H, W]`` of the same shape, ``True`` on the object (or on the spurious cue).

and returns a float32 tensor ``[N]`` with one score per sample. Sums are accumulated in float64.

A score that has no meaning for a sample is ``NaN``, never ``0`` or ``1``: an empty region (nothing to
find) or an all-zero map (nothing was pointed at). Callers count these as degenerate samples; the
torchmetrics classes in :mod:`cam_audit.metrics.scores` do so.

Signed maps are refused with :class:`~cam_audit.errors.CamAuditError`: a mass ratio over values of
both signs can leave ``[0, 1]`` and stops meaning "share of the evidence". Choose explicitly what the
sign means before scoring (``maps.clamp(min=0)`` keeps the positive evidence, ``maps.abs()`` counts both).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cam_audit.errors import CamAuditError

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


def _check_maps_and_regions(maps: object, regions: object, caller: str) -> tuple[Tensor, Tensor]:
    """Validate inputs and return them flattened: float64 maps ``[N, H*W]`` and bool regions ``[N, H*W]``."""
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
    flat = maps.detach().flatten(1).to(torch.float64)
    not_finite = ~torch.isfinite(flat).all(dim=1)
    if not_finite.any():
        first = int(not_finite.nonzero()[0, 0])
        raise CamAuditError(
            f"{caller}: maps[{first}] has NaN or infinite values ({int(not_finite.sum())} of {len(flat)} "
            "maps are affected); no mass ratio exists. Check the model's gradients for that sample."
        )
    negative = (flat < 0).any(dim=1)
    if negative.any():
        first = int(negative.nonzero()[0, 0])
        raise CamAuditError(
            f"{caller}: maps[{first}] has negative values (min {float(flat[first].min()):.4g}; "
            f"{int(negative.sum())} of {len(flat)} maps are signed). Mass ratios are meaningless on signed "
            "maps. Pass maps >= 0 (CamEngine maps are): maps.clamp(min=0) keeps the positive evidence, "
            "maps.abs() counts both signs."
        )
    return flat, regions.flatten(1)


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
    if regions.shape[1] * regions.shape[2] == 0:
        return torch.full((regions.shape[0],), float("nan"), dtype=torch.float32, device=regions.device)
    return regions.flatten(1).to(torch.float64).mean(dim=1).to(torch.float32)


def _relevance_mass64(maps: Tensor, regions: Tensor) -> tuple[Tensor, Tensor]:
    """Relevance mass in float64 on flattened, validated inputs; also returns the region pixel counts."""
    total = maps.sum(dim=1)
    inside = torch.where(regions, maps, 0.0).sum(dim=1)
    area = regions.sum(dim=1)
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
    flat, region = _check_maps_and_regions(maps, regions, "relevance_mass")
    mass, _ = _relevance_mass64(flat, region)
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
    flat, region = _check_maps_and_regions(maps, regions, "mass_lift")
    mass, area = _relevance_mass64(flat, region)
    fraction = area.to(torch.float64) / max(region.shape[1], 1)
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
    flat, region = _check_maps_and_regions(maps, regions, "pointing_game")
    region_for_hit = _dilate(regions, tolerance).flatten(1) if tolerance > 0 else region
    peak = flat.amax(dim=1, keepdim=True) if flat.shape[1] > 0 else flat.sum(dim=1, keepdim=True)
    hit = ((flat == peak) & region_for_hit).any(dim=1).to(torch.float64)
    defined = (peak[:, 0] > 0) & region.any(dim=1)
    return torch.where(defined, hit, float("nan")).to(torch.float32)


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
    flat, region = _check_maps_and_regions(maps, regions, "relevance_rank")
    n = flat.shape[0]
    if n == 0 or flat.shape[1] == 0:
        return torch.full((n,), float("nan"), dtype=torch.float32, device=flat.device)
    k = region.sum(dim=1)
    ordered = flat.sort(dim=1, descending=True).values
    kth = ordered.gather(1, (k - 1).clamp(min=0)[:, None])
    above = flat > kth
    equal = flat == kth
    k64 = k.to(torch.float64)
    slots_left = k64 - above.sum(dim=1)
    hits = (above & region).sum(dim=1) + slots_left * (equal & region).sum(dim=1) / equal.sum(dim=1)
    defined = (k > 0) & (ordered[:, 0] > 0)
    return torch.where(defined, hits / k64.clamp(min=1), float("nan")).to(torch.float32)
