"""Bilinear resizing (``align_corners=False``) as two small matrix products.

Resizing a map or an image bilinearly is a linear map along each axis: ``out = U_h · x · U_wᵀ`` with
``U [target, source]`` holding two non-zero weights per row. On a CPU these two matrix products take less
time than ``F.interpolate(mode="bilinear")`` (``scripts/bench_audit.py`` times both on the audit's shapes),
and each sample's result does not depend on the others in its batch.
The weights are those ``F.interpolate`` computes, so the results differ from it by float rounding only
(about 1e-7 of the values), and values ``>= 0`` stay ``>= 0`` (the weights are).

Elsewhere (CUDA, where ``F.interpolate`` is fast and matrix products may run in TF32) and for dtypes
other than float32 and float64, ``F.interpolate`` does the work.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

_MATRIX_DTYPES = (torch.float32, torch.float64)


def resize_bilinear(values: Tensor, size: tuple[int, int]) -> Tensor:
    """``F.interpolate(values, size, mode="bilinear", align_corners=False)`` for ``[N, C, h, w]`` tensors.

    Args:
        values: float tensor ``[N, C, h, w]``.
        size: ``(H, W)``, the output's height and width.

    Returns:
        tensor ``[N, C, H, W]`` of the input's dtype.

    Example:
        >>> x = torch.tensor([[[[0.0, 4.0]]]])
        >>> resize_bilinear(x, (1, 4))
        tensor([[[[0., 1., 3., 4.]]]])
    """
    height, width = int(size[0]), int(size[1])
    if values.device.type != "cpu" or values.dtype not in _MATRIX_DTYPES or values.ndim != 4:
        return F.interpolate(values, size=(height, width), mode="bilinear", align_corners=False)
    rows = values
    if values.shape[-1] != width:
        rows = torch.matmul(values, linear_weights(values.shape[-1], width, values.dtype).T)
    if values.shape[-2] != height:
        rows = torch.matmul(linear_weights(values.shape[-2], height, values.dtype), rows)
    return rows if rows is not values else values.clone()


@lru_cache(maxsize=64)
def linear_weights(source: int, target: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The matrix ``[target, source]`` that resamples one axis as ``F.interpolate(mode="linear",
    align_corners=False)`` does, on the CPU (shared by every call with these arguments: never modify it)."""
    identity = torch.eye(source, dtype=dtype)[:, None, :]  # [source, 1, source]: each row one unit signal
    return F.interpolate(identity, size=target, mode="linear", align_corners=False)[:, 0, :].T.contiguous()


__all__ = ["linear_weights", "resize_bilinear"]
