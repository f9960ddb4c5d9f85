"""The fill of the counterfactual tests: a Gaussian blur of large sigma at a fraction of its cost."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as nnf
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from cam_audit.cam.resize import linear_weights


def coarse_blur(images: Tensor, sigma: float) -> Tensor:
    """A Gaussian blur of large ``sigma`` at a fraction of the cost.

    The image is area-downsampled by ``factor = sigma // 2`` (so the Gaussian keeps a sigma of at least
    2 pixels), blurred with sigma / factor (reflecting at the border), and upsampled bilinearly. For
    sigma = 8 on 64x64 images this is a 9-tap blur of a 16x16 image instead of a 33-tap blur of the full
    one. Each step is linear along each axis, so the three together are two matrix products down to the
    small grid and two back up, in float32 (float64 for float64 images), on any device; on a CPU this
    takes a fraction of the time of pooling, convolving and interpolating (``scripts/bench_audit.py`` times
    both), and each image's result does not depend on the others in its batch.

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
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    factor = max(1, int(sigma // 2))
    down_h, up_h = (m.to(images.device) for m in _axis(images.shape[-2], factor, sigma / factor, dtype))
    down_w, up_w = (m.to(images.device) for m in _axis(images.shape[-1], factor, sigma / factor, dtype))
    small = torch.matmul(down_h, torch.matmul(images.to(dtype), down_w.T))
    return torch.matmul(up_h, torch.matmul(small, up_w.T)).to(images.dtype)


@lru_cache(maxsize=32)
def _axis(size: int, factor: int, small_sigma: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The blur of one axis of ``size`` pixels as ``(down [small, size], up [size, small])``: ``down`` pools
    by ``factor`` (``ceil_mode``: the last window may be shorter) and blurs on the small grid, ``up``
    resamples bilinearly back (the identity where ``factor`` is 1). Shared by every call: never modify."""
    units = torch.eye(size, dtype=dtype)[:, None, :]  # [size, 1, size]: one unit signal per row
    pooled = nnf.avg_pool1d(units, factor, ceil_mode=True) if factor > 1 else units
    kernel = 2 * int(2 * small_sigma) + 1
    # blurred along the width only: a one-row image, and a kernel one tap high
    blurred = TF.gaussian_blur(pooled[:, :, None, :], [kernel, 1], [small_sigma, small_sigma])
    down = blurred[:, 0, 0, :].T.contiguous()
    small = down.shape[0]
    up = linear_weights(small, size, dtype) if factor > 1 else torch.eye(size, dtype=dtype)
    return down, up


__all__ = ["coarse_blur"]
