"""Candidate cues off the object: one connected hot spot per map, and a matched control for it.

A model that reads a cue nobody annotated still puts heatmap mass on it. :func:`hot_spots` looks for it
where it cannot be the object: the map is cut to the pixels farther from the object region than one map
cell (the target layer's stride in input pixels: bilinear upsampling spreads the object's own mass that
far), and the connected component around the remaining peak is the sample's candidate, when that peak
is a real part of the map. The candidate is the component's own pixels, never a box around them, so it
cannot straddle the object.

A candidate is only evidence once an intervention on it changes the model more than the same
intervention on a control region: :func:`control_offsets` places the candidate's shape elsewhere in the
same image, at the same distance from the object, touching neither the grown object nor the grown
candidate (a naive control, a random box far from the object, is not matched: a fill next to the object
changes a clean model far more often than one in an empty corner).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as nnf
from scipy import ndimage
from torch import Tensor

from cam_audit.regions import region_boxes

#: A candidate's peak must reach this share of the map's own peak (weaker spots are noise of the map).
MIN_PEAK_SHARE = 0.25
#: The candidate is the connected part of the off-object map above this share of its peak.
SPOT_LEVEL = 0.5
# 8-connectivity within each image, none across the batch dimension
_EIGHT_NEIGHBOURS = np.zeros((3, 3, 3), dtype=bool)
_EIGHT_NEIGHBOURS[1] = True


def grow(regions: Tensor, radius: int) -> Tensor:
    """Dilate bool regions ``[N, H, W]`` by ``radius`` pixels (a square of side ``2 radius + 1``).

    A window along each axis, grown by doubling, so the cost grows with ``log2(radius)`` only.

    >>> region = torch.zeros(1, 5, 5, dtype=torch.bool); region[0, 2, 2] = True
    >>> grow(region, 1)[0].sum().item()
    9
    """
    regions = regions.to(torch.bool)
    if radius <= 0:
        return regions
    if radius == 1:
        return _grow_one(regions)
    return _window_any(_window_any(regions, radius, -1), radius, -2)


def _grow_one(x: Tensor) -> Tensor:
    """:func:`grow` by one pixel: four shifted ORs (the flood fill calls it once per step)."""
    rows = x.clone()
    rows[..., 1:, :] |= x[..., :-1, :]
    rows[..., :-1, :] |= x[..., 1:, :]
    out = rows.clone()
    out[..., :, 1:] |= rows[..., :, :-1]
    out[..., :, :-1] |= rows[..., :, 1:]
    return out


def _window_any(x: Tensor, radius: int, dim: int) -> Tensor:
    """Whether any of the pixels within ``radius`` along ``dim`` is True: ORs of shifted copies, each
    doubling the window, so ``log2(radius)`` steps (cheaper than running sums at the radii of an audit)."""
    length = x.shape[dim]
    radius = min(radius, length - 1)  # a wider window sees the whole axis from everywhere, as this one does
    if radius <= 0:
        return x
    border = x.new_zeros((*x.shape[:dim % x.ndim], radius, *x.shape[dim % x.ndim + 1 :]))
    span, width, size = torch.cat([border, x, border], dim), 1, 2 * radius + 1
    while width < size:  # span[i]: any of the padded pixels i .. i + width - 1
        step = min(width, size - width)
        kept = span.shape[dim] - step
        span = span.narrow(dim, 0, kept) | span.narrow(dim, step, kept)
        width += step
    return span


def stride_of(image_size: tuple[int, int], feature_size: tuple[int, int] | None) -> int:
    """Input pixels per map cell (the larger of the two axes; 1 without a feature size)."""
    if feature_size is None:
        return 1
    return max(1, math.ceil(max(image_size[0] / feature_size[0], image_size[1] / feature_size[1])))


def hot_spots(maps: Tensor, regions: Tensor, stride: int) -> Tensor:
    """Each map's candidate cue: the connected hot spot around its peak off the grown object.

    Args:
        maps: float ``[N, H, W]``, raw maps (>= 0).
        regions: bool ``[N, H, W]``, the object regions.
        stride: input pixels per map cell; the object is grown by this much first.

    Returns:
        bool ``[N, H, W]``: the candidate's pixels (8-connected, all above ``SPOT_LEVEL`` of the
        off-object peak), empty where a sample has no object, an all-zero map, or no off-object peak of
        at least ``MIN_PEAK_SHARE`` of the map's peak.

    >>> maps = torch.zeros(1, 8, 8); maps[0, 1:3, 1:3] = 1.0; maps[0, 6, 6] = 2.0
    >>> obj = torch.zeros(1, 8, 8, dtype=torch.bool); obj[0, 5:, 5:] = True
    >>> hot_spots(maps, obj, stride=1)[0].nonzero().tolist()
    [[1, 1], [1, 2], [2, 1], [2, 2]]
    """
    grown = grow(regions, stride)
    off = maps.masked_fill(grown, 0.0)
    n = maps.shape[0]
    peak = maps.reshape(n, -1).amax(dim=1)
    off_flat = off.reshape(n, -1)
    off_peak, seed_at = off_flat.max(dim=1)
    has = (off_peak > 0) & (off_peak >= MIN_PEAK_SHARE * peak) & regions.reshape(n, -1).any(dim=1)
    hot = (off >= SPOT_LEVEL * off_peak[:, None, None]) & (off > 0) & has[:, None, None]
    # the 8-connected component of the hot pixels that holds the peak, per sample
    labels, _ = ndimage.label(hot.cpu().numpy(), structure=_EIGHT_NEIGHBOURS)
    labels = torch.from_numpy(labels).to(maps.device)
    seed = labels.reshape(n, -1).gather(1, seed_at[:, None].to(labels.device))
    return (labels == seed[:, :, None]) & (seed[:, :, None] > 0) & has[:, None, None]


def spot_geometry(maps: Tensor, spots: Tensor) -> dict[str, Tensor]:
    """Where each candidate lies and how much of its map it holds.

    Returns:
        float64 tensors ``[N]`` (NaN where a sample has no candidate): ``x_min, y_min, x_max, y_max``
        (the spot's pixel box, exclusive maximum), ``cx, cy`` (its map-weighted centre) and ``mass`` (its
        share of the map's mass).
    """
    n, height, width = spots.shape
    weights = (maps * spots).to(torch.float64)
    total = weights.sum(dim=(1, 2))
    has = spots.reshape(n, -1).any(dim=1) & (total > 0)
    ys = torch.arange(height, dtype=torch.float64, device=maps.device)
    xs = torch.arange(width, dtype=torch.float64, device=maps.device)
    cy = (weights.sum(dim=2) * ys).sum(dim=1) / total.clamp_min(1e-300)
    cx = (weights.sum(dim=1) * xs).sum(dim=1) / total.clamp_min(1e-300)
    x_min, y_min, x_max, y_max = region_boxes(spots).to(torch.float64).unbind(dim=1)
    mass = total / maps.to(torch.float64).sum(dim=(1, 2)).clamp_min(1e-300)
    out = {"x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max, "cx": cx, "cy": cy, "mass": mass}
    return {k: torch.where(has, v, torch.full_like(v, math.nan)) for k, v in out.items()}


def control_offsets(spots: Tensor, regions: Tensor, stride: int) -> list[tuple[int, int] | None]:
    """Where to move each spot for its matched control: ``(dy, dx)``, or None when no place fits.

    The shifted spot's box must lie inside the image and hold no pixel of the object grown by ``stride``
    or of the spot grown by ``stride``; among the places that fit (on a grid of ``max(1, stride // 2)``
    pixels), the one whose centre is nearest to the spot's own distance from the object is taken (ties:
    the first in raster order).

    Args:
        spots: bool ``[M, H, W]``, the candidates.
        regions: bool ``[M, H, W]``, the objects.
        stride: input pixels per map cell.

    >>> spot = torch.zeros(1, 8, 8, dtype=torch.bool); spot[0, 0, 0] = True
    >>> obj = torch.zeros(1, 8, 8, dtype=torch.bool); obj[0, 3:5, 3:5] = True
    >>> control_offsets(spot, obj, stride=1)
    [(0, 7)]
    """
    forbidden = grow(regions | spots, stride)  # the object and the spot, each grown by `stride`
    # forbidden pixels in every box, from summed-area tables: a box without any is a place the shifted
    # spot (which lies inside its box) cannot touch them
    tables = nnf.pad(forbidden.to(torch.int32).cumsum(1).cumsum(2), (1, 0, 1, 0))
    edges = regions & grow(~regions, 1)
    fits = (spots.flatten(1).any(dim=1) & regions.flatten(1).any(dim=1)).tolist()
    # the search runs per spot on CPU arrays whatever the device: a few small array operations per spot,
    # where a GPU would wait on a launch for each
    spots_, regions_, edges_, tables_ = (x.cpu().numpy() for x in (spots, regions, edges, tables))
    return _offsets_numpy(spots_, regions_, edges_, tables_, fits, stride)


def _offsets_numpy(spots: np.ndarray, regions: np.ndarray, edges: np.ndarray, tables: np.ndarray,
                   fits: list[bool], stride: int) -> list[tuple[int, int] | None]:  # fmt: skip
    """The control place of every spot that ``fits``, on CPU arrays: the boxes and centres of all spots at
    once, then each spot's places (:func:`_place`)."""
    height, width = spots.shape[1:]
    rows, cols = np.asarray(spots.any(axis=2)), np.asarray(spots.any(axis=1))  # [M, H], [M, W]
    tops, lefts = rows.argmax(axis=1), cols.argmax(axis=1)
    bottoms, rights = height - rows[:, ::-1].argmax(axis=1), width - cols[:, ::-1].argmax(axis=1)
    counts = spots.sum(axis=(1, 2))
    centres_y = (spots.sum(axis=2) * np.arange(height)).sum(axis=1) / np.maximum(counts, 1)  # exact sums
    centres_x = (spots.sum(axis=1) * np.arange(width)).sum(axis=1) / np.maximum(counts, 1)
    out: list[tuple[int, int] | None] = []
    for i, fit in enumerate(fits):
        if not fit:
            out.append(None)
            continue
        box = int(tops[i]), int(lefts[i]), int(bottoms[i] - tops[i]), int(rights[i] - lefts[i])
        boundary = np.argwhere(edges[i] if edges[i].any() else regions[i]).astype(np.float64)
        out.append(_place(tables[i], box, (centres_y[i], centres_x[i]), boundary, max(1, stride // 2)))
    return out


def _place(table: np.ndarray, box: tuple[int, int, int, int], centre: tuple[np.float64, np.float64],
           boundary: np.ndarray, step: int) -> tuple[int, int] | None:  # fmt: skip
    """The search for one spot (``box``: top, left, height, width): the free places on the grid of
    ``step`` pixels, and among them the one whose centre's distance from the object's ``boundary`` is
    nearest to the spot's own (ties: the first in raster order)."""
    top, left, box_h, box_w = box
    last_y, last_x = table.shape[0] - box_h, table.shape[1] - box_w  # one past the last top, left
    # the summed-area table at the corners of every box on the grid, as strided views
    inside = (
        table[box_h::step, box_w::step] - table[:last_y:step, box_w::step]
        - table[box_h::step, :last_x:step] + table[:last_y:step, :last_x:step]
    )  # fmt: skip
    free_y, free_x = (inside == 0).nonzero()
    if not len(free_y):
        return None
    tops, lefts = free_y * step, free_x * step
    places = np.empty((len(tops), 2))
    places[:, 0], places[:, 1] = tops + (centre[0] - top), lefts + (centre[1] - left)
    at = torch.from_numpy(boundary)
    reach = torch.cdist(torch.from_numpy(places), at).amin(dim=1).numpy()
    own = torch.cdist(torch.tensor([[centre[0], centre[1]]], dtype=torch.float64), at).amin().item()
    best = int(np.argmin(np.abs(reach - own)))
    return int(tops[best]) - top, int(lefts[best]) - left


def shift_each(masks: Tensor, offsets: Tensor) -> Tensor:
    """Each of ``masks [M, ..., H, W]`` moved by its own ``offsets[i] = (dy, dx)`` pixels (long ``[M, 2]``),
    in a single gather; what leaves the image is dropped, what enters is False (or 0).

    >>> masks = torch.arange(8.0).reshape(2, 2, 2)
    >>> shift_each(masks, torch.tensor([[0, 1], [-1, 0]])).tolist()
    [[[0.0, 0.0], [0.0, 2.0]], [[6.0, 7.0], [0.0, 0.0]]]
    """
    m, height, width = masks.shape[0], *masks.shape[-2:]
    moves = offsets.to(device=masks.device, dtype=torch.long).reshape(m, 2)
    ys = torch.arange(height, device=masks.device)[None, :] - moves[:, :1]  # the row each row comes from
    xs = torch.arange(width, device=masks.device)[None, :] - moves[:, 1:]
    inside = ((ys >= 0) & (ys < height))[:, :, None] & ((xs >= 0) & (xs < width))[:, None, :]
    source = ys.clamp(0, height - 1)[:, :, None] * width + xs.clamp(0, width - 1)[:, None, :]
    flat = masks.reshape(m, -1, height * width)
    moved = flat.gather(2, source.reshape(m, 1, -1).expand(-1, flat.shape[1], -1)).reshape(masks.shape)
    inside = inside.reshape(m, *([1] * (masks.ndim - 3)), height, width)
    return torch.where(inside, moved, torch.zeros((), dtype=masks.dtype, device=masks.device))


__all__ = ["control_offsets", "grow", "hot_spots", "shift_each", "spot_geometry", "stride_of"]
