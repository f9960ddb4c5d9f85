"""The fill of the counterfactual tests: a Gaussian blur of large sigma at a fraction of its cost."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as nnf
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from cam_audit.cam.resize import axis_matrix, resize_bilinear


def coarse_blur(images: Tensor, sigma: float) -> Tensor:
    """A Gaussian blur of large ``sigma`` at a fraction of the cost.

    The image is area-downsampled by ``factor = sigma // 2`` (so the Gaussian keeps a sigma of at least
    2 pixels), blurred with sigma / factor (reflecting at the border), and upsampled bilinearly. For
    sigma = 8 on 64x64 images this is a 9-tap blur of a 16x16 image instead of a 33-tap blur of the full
    one. Each step is linear along each axis, so on a CPU the three together are two matrix products down
    to the small grid and two back up, in float32 (float64 for float64 images): a fraction of the time of
    pooling, convolving and interpolating (``scripts/bench_audit.py`` times both), and each image's result
    does not depend on the others in its batch. Elsewhere (CUDA, where matrix products may run in TF32)
    the three steps run as they are.

    Args:
        images: float tensor [N, C, H, W].
        sigma: the blur's standard deviation in pixels of ``images``.

    Returns:
        tensor [N, C, H, W] of the images' dtype.

    Example:
        >>> flat = torch.full((1, 3, 16, 16), 0.5)
        >>> bool((coarse_blur(flat, sigma=4.0) - 0.5).abs().max() < 1e-6)  # a flat image stays flat
        True
    """
    factor = max(1, int(sigma // 2))
    small_sigma, kernel = sigma / factor, 2 * int(2 * sigma / factor) + 1
    if images.device.type != "cpu":
        small = nnf.avg_pool2d(images, factor, ceil_mode=True) if factor > 1 else images
        small = TF.gaussian_blur(small, [kernel, kernel], [small_sigma, small_sigma])
        return resize_bilinear(small, (images.shape[-2], images.shape[-1])) if factor > 1 else small
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    down_h, down_w = (_down(size, factor, small_sigma, dtype) for size in images.shape[-2:])
    small = torch.matmul(down_h, torch.matmul(images.to(dtype), down_w.T))
    if factor > 1:
        small = resize_bilinear(small, (images.shape[-2], images.shape[-1]))
    return small.to(images.dtype)


@lru_cache(maxsize=32)
def _down(size: int, factor: int, small_sigma: float, dtype: torch.dtype) -> Tensor:
    """The way down of one axis of ``size`` pixels, ``[small, size]``: pooled by ``factor`` (``ceil_mode``:
    the last window may be shorter), then blurred on the small grid. Shared by every call: never modify."""
    kernel = 2 * int(2 * small_sigma) + 1

    def operator(units: Tensor) -> Tensor:  # [B, 1, size] -> [B, 1, small]
        pooled = nnf.avg_pool1d(units, factor, ceil_mode=True) if factor > 1 else units
        # blurred along the width only: a one-row image, and a kernel one tap high
        return TF.gaussian_blur(pooled[:, :, None, :], [kernel, 1], [small_sigma, small_sigma])[:, :, 0, :]

    return axis_matrix(operator, size, dtype)


__all__ = ["coarse_blur"]
