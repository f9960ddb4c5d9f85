"""Reshape transforms that bring a layer's output into the ``[N, C, h, w]`` layout the formulas need."""

from __future__ import annotations

import math

import torch

from cam_audit.errors import CamAuditError


def vit_reshape_transform(tokens: torch.Tensor) -> torch.Tensor:
    """Turn Vision Transformer tokens into a channel-first grid, dropping the class token.

    The patch grid is assumed square: ``h = w = sqrt(T - 1)``.

    Args:
        tokens: tensor [N, 1 + h*w, C] (class token first, then the patches in row-major order), as
            produced by ``torchvision.models.VisionTransformer`` encoder layers.

    Returns:
        tensor [N, C, h, w] in the dtype of ``tokens``.

    Example:
        >>> tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
        >>> grid = vit_reshape_transform(tokens)
        >>> grid.shape
        torch.Size([2, 3, 2, 2])
        >>> bool((grid[0, :, 0, 1] == tokens[0, 2]).all())   # patch 1 sits at row 0, column 1
        True
    """
    if tokens.dim() != 3:
        raise CamAuditError(
            f"vit_reshape_transform expects tokens [N, 1 + h*w, C], got shape {tuple(tokens.shape)}; "
            "pick a transformer block (e.g. 'encoder.layers.encoder_layer_11.ln_1') as target_layer"
        )
    n, count, channels = tokens.shape
    side = math.isqrt(max(count - 1, 0))
    if side == 0 or side * side != count - 1:
        raise CamAuditError(
            f"vit_reshape_transform expects one class token plus a square grid of patches, got {count} "
            "tokens; write a reshape_transform for this layout (e.g. without a class token, or with "
            "register tokens) and pass it to CamEngine"
        )
    patches = tokens[:, 1:, :]
    return patches.reshape(n, side, side, channels).permute(0, 3, 1, 2).contiguous()
