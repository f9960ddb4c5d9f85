"""Per-sample localisation scores of saliency maps against ground-truth regions.

Pure functions: tensors in, tensors out, no state. Every function is batched and takes

- ``maps``: float tensor ``[N, H, W]``, every value finite and ``>= 0`` (a CAM after its ReLU), raw
  (never min-max normalised: the scores are ratios of mass, so any positive scale gives the same score);
- ``regions``: bool tensor ``[N, H, W]`` of the same shape, ``True`` on the object (or on the spurious cue).

and returns a float32 tensor ``[N]`` with one score per sample. :func:`localisation` gives several at
once, sharing the work they have in common. Each image row is summed in the maps' precision and the row
sums in float64; the input is checked by one helper, in the passes that compute the sums
(:mod:`cam_audit.metrics.reductions`).

A score that has no meaning for a sample is ``NaN``, never ``0`` or ``1``: an empty region (nothing to
find) or an all-zero map (nothing was pointed at). Callers count these as degenerate samples; the
torchmetrics classes in :mod:`cam_audit.metrics.scores` do so.

Signed maps are refused with :class:`~cam_audit.errors.CamAuditError`: a mass ratio over values of
both signs can leave ``[0, 1]`` and stops meaning "share of the evidence". Choose explicitly what the
sign means before scoring (``maps.clamp(min=0)`` keeps the positive evidence, ``maps.abs()`` counts both).
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor

from cam_audit.errors import CamAuditError
from cam_audit.metrics import reductions as R
from cam_audit.metrics.ranking import top_k_hits

#: The scores :func:`localisation` computes, by name.
LOCALISATION_SCORES = ("area_fraction", "relevance_mass", "mass_lift", "pointing_game", "relevance_rank")

__all__ = [
    "LOCALISATION_SCORES",
    "area_fraction",
    "localisation",
    "mass_lift",
    "pointing_game",
    "relevance_mass",
    "relevance_rank",
]


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
    regions = R.check_regions(regions, "area_fraction")
    return _area_fraction(R.count(regions), regions)


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
    return _scores(maps, regions, ("relevance_mass",), 0, "relevance_mass")["relevance_mass"]


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
    return _scores(maps, regions, ("mass_lift",), 0, "mass_lift")["mass_lift"]


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
    _check_tolerance(tolerance, "pointing_game")
    return _scores(maps, regions, ("pointing_game",), tolerance, "pointing_game")["pointing_game"]


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
    return _scores(maps, regions, ("relevance_rank",), 0, "relevance_rank")["relevance_rank"]


def localisation(
    maps: Tensor,
    regions: Tensor,
    scores: Collection[str] = LOCALISATION_SCORES,
    tolerance: int = 0,
) -> dict[str, Tensor]:
    """Several scores of one batch at once, each equal to its own function's.

    The input is checked once, and what the scores share (the maps' total mass, the region's pixel
    count, the maps masked by the region) is computed once for all of them.

    Args:
        maps: float tensor ``[N, H, W]``, finite and ``>= 0``.
        regions: bool tensor ``[N, H, W]``.
        scores: names from :data:`LOCALISATION_SCORES`.
        tolerance: as in :func:`pointing_game`.

    Returns:
        ``{name: float32 tensor [N]}`` for each name in ``scores``.

    Raises:
        CamAuditError: as the scores' own functions, or a name that is not a score.

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[3.0, 1.0], [0.0, 0.0]]])
        >>> regions = torch.tensor([[[True, False], [False, False]]])
        >>> localisation(maps, regions, ("relevance_mass", "mass_lift", "pointing_game"))
        {'relevance_mass': tensor([0.7500]), 'mass_lift': tensor([3.]), 'pointing_game': tensor([1.])}
    """
    unknown = [name for name in scores if name not in LOCALISATION_SCORES]
    if unknown:
        raise CamAuditError(
            f"localisation: {unknown[0]!r} is not a score; choose from {', '.join(LOCALISATION_SCORES)}."
        )
    _check_tolerance(tolerance, "localisation")
    return _scores(maps, regions, scores, tolerance, "localisation")


def _check_tolerance(tolerance: object, caller: str) -> None:
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise CamAuditError(f"{caller}: tolerance must be a non-negative int (pixels); got {tolerance!r}.")


def _scores(
    maps: Tensor, regions: Tensor, scores: Collection[str], tolerance: int, caller: str
) -> dict[str, Tensor]:
    """The scores named in ``scores`` (in :data:`LOCALISATION_SCORES` order), from one checked pass."""
    wanted = set(scores)
    mass_wanted = bool({"relevance_mass", "mass_lift"} & wanted)
    pointing = "pointing_game" in wanted
    sums = R.batch_sums(
        maps,
        regions,
        caller,
        R.Wanted(
            total=mass_wanted, inside=mass_wanted, peak=pointing, peak_inside=pointing and tolerance == 0
        ),
    )
    maps, area = sums.maps, sums.area
    defined = sums.nonzero & (area > 0)
    found: dict[str, Tensor] = {}
    if "area_fraction" in wanted:
        found["area_fraction"] = _area_fraction(area, regions)
    if sums.total is not None and sums.inside is not None:
        mass = torch.where(defined, sums.inside / sums.total, float("nan"))
        found["relevance_mass"] = mass.to(torch.float32)
        found["mass_lift"] = (mass / _area_fraction(area, regions, torch.float64)).to(torch.float32)
    if sums.peak is not None and pointing:
        peak_inside = sums.peak_inside
        if peak_inside is None:  # the region grown by the tolerance needs a pass of its own
            peak_inside = R.masked(maps, R.dilate(regions, tolerance), R.amax)[0]
        found["pointing_game"] = _pointing_game(maps, defined, sums.peak, peak_inside)
    if "relevance_rank" in wanted:
        found["relevance_rank"] = _relevance_rank(maps, regions, area, defined)
    return {name: found[name] for name in LOCALISATION_SCORES if name in wanted}


def _area_fraction(area: Tensor, regions: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    pixels = regions.shape[1] * regions.shape[2]
    if pixels == 0:
        return torch.full((regions.shape[0],), float("nan"), dtype=dtype, device=regions.device)
    return (area.to(torch.float64) / pixels).to(dtype)


def _pointing_game(maps: Tensor, defined: Tensor, peak: Tensor, peak_inside: Tensor) -> Tensor:
    if maps.shape[1] * maps.shape[2] == 0:
        return torch.full((maps.shape[0],), float("nan"), dtype=torch.float32, device=maps.device)
    # maps are >= 0: where the peak is > 0 (the score is defined), the largest value left inside the
    # (grown) region equals it exactly when some maximum lies inside
    hit = (peak_inside == peak).to(torch.float32)
    return torch.where(defined, hit, float("nan"))


def _relevance_rank(maps: Tensor, regions: Tensor, area: Tensor, defined: Tensor) -> Tensor:
    if maps.numel() == 0:
        return torch.full((maps.shape[0],), float("nan"), dtype=torch.float32, device=maps.device)
    hits = top_k_hits(maps, regions, torch.where(defined, area, 0))
    return torch.where(defined, hits / area.to(torch.float64).clamp(min=1), float("nan")).to(torch.float32)
