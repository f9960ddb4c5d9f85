"""Ground-truth regions as boolean pixel tensors.

A *region* is a bool tensor ``[H, W]`` (or ``[N, H, W]`` for a batch) at input resolution: ``True`` where
the object (or a spurious cue such as a watermark) is. Boxes and masks of a probe sample are turned into
one region by union, so every score downstream works on the same representation.

Pixel convention: pixel ``(row i, col j)`` covers ``[j, j + 1) x [i, i + 1)`` and belongs to a box
``(x_min, y_min, x_max, y_max)`` when its centre ``(j + 0.5, i + 0.5)`` lies in
``[x_min, x_max) x [y_min, y_max)``. A box with integer corners therefore covers exactly
``(x_max - x_min) * (y_max - y_min)`` pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from cam_audit.errors import CamAuditError

RegionRole = Literal["object", "spurious"]

_ROLE_KEYS: dict[str, tuple[str, str]] = {
    "object": ("boxes", "masks"),
    "spurious": ("spurious_boxes", "spurious_masks"),
}


def _canvas(canvas_size: tuple[int, int] | list[int]) -> tuple[int, int]:
    if len(canvas_size) != 2 or any(int(s) <= 0 for s in canvas_size):
        raise CamAuditError(f"canvas_size must be (H, W) with positive sizes, got {tuple(canvas_size)}.")
    return int(canvas_size[0]), int(canvas_size[1])


def _as_xyxy(boxes: Tensor) -> Tensor:
    if isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format != tv_tensors.BoundingBoxFormat.XYXY:
        boxes = TF.convert_bounding_box_format(boxes, new_format=tv_tensors.BoundingBoxFormat.XYXY)
    return boxes.as_subclass(Tensor) if isinstance(boxes, Tensor) else torch.as_tensor(boxes)


def boxes_to_mask(boxes: Tensor, canvas_size: tuple[int, int]) -> Tensor:
    """Rasterise boxes into one region (union over boxes).

    Args:
        boxes: float tensor ``[K, 4]``, ``(x_min, y_min, x_max, y_max)`` in pixel coordinates
            (a ``tv_tensors.BoundingBoxes`` in another format is converted). ``K`` may be 0.
        canvas_size: ``(H, W)`` of the image.

    Returns:
        bool tensor ``[H, W]``: pixel ``(i, j)`` is ``True`` when its centre ``(j + 0.5, i + 0.5)`` lies in
        ``[x_min, x_max) x [y_min, y_max)`` of at least one box. All ``False`` when ``K == 0``.

    Raises:
        CamAuditError: ``boxes`` is not ``[K, 4]`` or ``canvas_size`` is not ``(H, W)``.

    Example:
        >>> boxes_to_mask(torch.tensor([[1.0, 0.0, 3.0, 2.0]]), (3, 4)).int()
        tensor([[0, 1, 1, 0],
                [0, 1, 1, 0],
                [0, 0, 0, 0]], dtype=torch.int32)
    """
    height, width = _canvas(canvas_size)
    boxes = _as_xyxy(boxes)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise CamAuditError(
            f"boxes must have shape [K, 4] (x_min, y_min, x_max, y_max), got {tuple(boxes.shape)}; "
            "pass one row per box, e.g. boxes.reshape(-1, 4)."
        )
    region = torch.zeros(height, width, dtype=torch.bool, device=boxes.device)
    # a box covers a rectangle of whole pixels, so it is filled as one slice instead of comparing every
    # pixel centre with every box
    for x_min, y_min, x_max, y_max in boxes.to(torch.float64).tolist():
        col_start, col_stop = _centre_span(x_min, x_max, width)
        row_start, row_stop = _centre_span(y_min, y_max, height)
        if col_start < col_stop and row_start < row_stop:
            region[row_start:row_stop, col_start:col_stop] = True
    return region


def _centre_span(low: float, high: float, size: int) -> tuple[int, int]:
    """``(start, stop)``: the pixels ``j`` in ``[0, size)`` whose centre ``j + 0.5`` lies in ``[low, high)``.

    ``j + 0.5 >= low`` holds exactly when ``j >= ceil(low - 0.5)``, and ``j + 0.5 < high`` when
    ``j < ceil(high - 0.5)``; clamping to ``[0, size]`` first keeps infinite corners finite. A NaN corner
    compares false with every centre, so it covers nothing.
    """
    if math.isnan(low) or math.isnan(high):
        return 0, 0
    start = math.ceil(min(max(low - 0.5, 0.0), float(size)))
    stop = math.ceil(min(max(high - 0.5, 0.0), float(size)))
    return start, stop


def masks_to_region(masks: Tensor, canvas_size: tuple[int, int]) -> Tensor:
    """Union of masks ``[K, H, W]`` (or one mask ``[H, W]``) as a bool region ``[H, W]``.

    Raises:
        CamAuditError: the masks do not have the canvas size.

    Example:
        >>> masks_to_region(torch.eye(2, dtype=torch.bool)[None], (2, 2)).tolist()
        [[True, False], [False, True]]
    """
    height, width = _canvas(canvas_size)
    masks = masks.as_subclass(Tensor) if isinstance(masks, Tensor) else torch.as_tensor(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or tuple(masks.shape[-2:]) != (height, width):
        raise CamAuditError(
            f"masks must have shape [K, {height}, {width}] or [{height}, {width}] to match the image, got "
            f"{tuple(masks.shape)}; resize the masks with the image (e.g. transforms.v2 on tv_tensors.Mask)."
        )
    return masks.to(torch.bool).any(dim=0)


def region_boxes(regions: Tensor) -> Tensor:
    """The tight xyxy box of each bool region ``[N, H, W]``, float32 ``[N, 4]`` (maximum edges exclusive,
    NaN for an empty region).

    Example:
        >>> region = torch.zeros(2, 4, 5, dtype=torch.bool); region[0, 1:3, 2:5] = True
        >>> region_boxes(region).tolist()
        [[2.0, 1.0, 5.0, 3.0], [nan, nan, nan, nan]]
    """
    cols, rows = regions.any(dim=1), regions.any(dim=2)  # [N, W], [N, H]
    width, height = cols.shape[1], rows.shape[1]
    x_min = cols.to(torch.uint8).argmax(dim=1)
    y_min = rows.to(torch.uint8).argmax(dim=1)
    x_max = width - cols.flip(1).to(torch.uint8).argmax(dim=1)
    y_max = height - rows.flip(1).to(torch.uint8).argmax(dim=1)
    boxes = torch.stack([x_min, y_min, x_max, y_max], dim=1).to(torch.float32)
    return boxes.masked_fill(~rows.any(dim=1, keepdim=True), math.nan)


def target_regions(target: Mapping[str, Any], canvas_size: tuple[int, int], role: RegionRole) -> Tensor:
    """Union of a probe target's boxes and masks for one role.

    Args:
        target: a probe target dict. Role ``"object"`` reads ``"boxes"`` and ``"masks"``; role
            ``"spurious"`` reads ``"spurious_boxes"`` and ``"spurious_masks"``. Boxes are ``[K, 4]`` xyxy,
            masks ``[K, H, W]`` or ``[H, W]``; absent keys contribute nothing.
        canvas_size: ``(H, W)`` of the image.
        role: ``"object"`` or ``"spurious"``.

    Returns:
        bool tensor ``[H, W]``; all ``False`` when the target has no region of that role.

    Raises:
        CamAuditError: unknown role, boxes not ``[K, 4]`` or masks not of the canvas size.

    Example:
        >>> target = {"label": 0, "boxes": torch.tensor([[0.0, 0.0, 1.0, 1.0]])}
        >>> target_regions(target, (2, 2), "object").tolist()
        [[True, False], [False, False]]
        >>> target_regions(target, (2, 2), "spurious").any().item()
        False
    """
    if role not in _ROLE_KEYS:
        raise CamAuditError(f"role must be one of {sorted(_ROLE_KEYS)}, got {role!r}.")
    height, width = _canvas(canvas_size)
    box_key, mask_key = _ROLE_KEYS[role]
    region = torch.zeros(height, width, dtype=torch.bool)
    if target.get(box_key) is not None:
        boxes = _as_xyxy(target[box_key])
        region = region.to(boxes.device) | boxes_to_mask(boxes, (height, width))
    if target.get(mask_key) is not None:
        masks = masks_to_region(target[mask_key], (height, width))
        region = region.to(masks.device) | masks
    return region


__all__ = ["RegionRole", "boxes_to_mask", "masks_to_region", "region_boxes", "target_regions"]
