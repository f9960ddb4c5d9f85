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

from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

_MATRIX_DTYPES = (torch.float32, torch.float64)


def _on_matrices(values: Tensor) -> bool:
    """Whether ``values`` are resampled by matrix products here: 4-D float32 or float64 on a CPU."""
    return values.device.type == "cpu" and values.dtype in _MATRIX_DTYPES and values.ndim == 4


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
    if not _on_matrices(values):
        return F.interpolate(values, size=(height, width), mode="bilinear", align_corners=False)
    rows = values
    if values.shape[-1] != width:
        rows = torch.matmul(values, linear_weights(values.shape[-1], width, values.dtype).T)
    if values.shape[-2] != height:
        rows = torch.matmul(linear_weights(values.shape[-2], height, values.dtype), rows)
    return rows if rows is not values else values.clone()


@lru_cache(maxsize=64)
def linear_weights(source: int, target: int, dtype: torch.dtype) -> Tensor:
    """The matrix ``[target, source]`` that resamples one axis as ``F.interpolate(mode="linear",
    align_corners=False)`` does, on the CPU (shared by every call with these arguments: never modify it)."""
    return axis_matrix(
        lambda units: F.interpolate(units, size=target, mode="linear", align_corners=False), source, dtype
    )


def axis_matrix(operator: Callable[[Tensor], Tensor], size: int, dtype: torch.dtype) -> Tensor:
    """The matrix ``[out, size]`` of a linear ``operator`` on signals ``[B, 1, size] -> [B, 1, out]``: its
    response to each unit signal, on the CPU, as a plain tensor whatever the caller's grad or inference
    mode (it is cached and shared)."""
    with torch.inference_mode(False), torch.no_grad():
        units = torch.eye(size, dtype=dtype, device="cpu")[:, None, :]  # [size, 1, size]: one unit each
        return operator(units)[:, 0, :].T.contiguous()


__all__ = ["axis_matrix", "linear_weights", "resize_bilinear"]
