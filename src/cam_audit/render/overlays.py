"""Heatmap overlays and grids, as tensors (for TensorBoard) and PNG files.

Maps are scored raw; only here are they scaled for display, each by its own maximum so that zero stays
black-blue and the hottest pixel is red. The object region is outlined in green, the spurious region in
magenta. One-channel (grayscale) images are drawn as gray: their channel is repeated to three.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as nnf
from PIL import Image, ImageDraw
from torch import Tensor
from torchvision.utils import make_grid

from cam_audit.errors import CamAuditError
from cam_audit.report.atomic import write_atomic

OBJECT_COLOUR = (0.1, 1.0, 0.2)
SPURIOUS_COLOUR = (1.0, 0.1, 0.9)


def colormap(values: Tensor) -> Tensor:
    """Map values in [0, 1] to RGB with the classic "jet" ramp (blue, cyan, yellow, red).

    Args:
        values: float tensor [N, H, W] in [0, 1].

    Returns:
        float tensor [N, 3, H, W] in [0, 1].

    >>> colormap(torch.tensor([[[0.0, 1.0]]]))[0, :, 0, 1].tolist()
    [0.5, 0.0, 0.0]
    """
    x = values.clamp(0, 1).unsqueeze(1)
    centres = torch.tensor([0.75, 0.5, 0.25], device=values.device).view(1, 3, 1, 1)
    return (1.5 - (4 * (x - centres)).abs()).clamp(0, 1)


def as_rgb(images: Tensor) -> Tensor:
    """Images ``[..., C, H, W]`` with three channels: a one-channel (grayscale) image repeated as gray.

    Raises:
        CamAuditError: the channel dimension (third from the end) is neither 1 nor 3.

    Example:
        >>> as_rgb(torch.full((2, 1, 4, 4), 0.5)).shape, as_rgb(torch.full((1, 4, 4), 0.5))[:, 0, 0].tolist()
        (torch.Size([2, 3, 4, 4]), [0.5, 0.5, 0.5])
    """
    channels = images.shape[-3] if images.ndim >= 3 else 0
    if channels == 3:
        return images
    if channels == 1:
        return images.expand(*images.shape[:-3], 3, *images.shape[-2:])
    raise CamAuditError(
        f"images to draw must be [..., 3, H, W] (colour) or [..., 1, H, W] (grayscale), got "
        f"{tuple(images.shape)}."
    )


def scale_for_display(maps: Tensor) -> Tensor:
    """Divide each map by its maximum (all-zero maps stay zero); float [N, H, W] in [0, 1]."""
    peak = maps.flatten(1).amax(dim=1).clamp_min(torch.finfo(maps.dtype).tiny)
    return maps / peak.view(-1, 1, 1)


def outline(regions: Tensor, width: int = 1) -> Tensor:
    """The boundary pixels of bool regions [N, H, W] (region minus its erosion), bool [N, H, W]."""
    r = regions.float().unsqueeze(1)
    eroded = -nnf.max_pool2d(-r, kernel_size=2 * width + 1, stride=1, padding=width)
    return (r.bool() & ~eroded.bool()).squeeze(1)


def overlay(
    images: Tensor,
    maps: Tensor,
    regions: Tensor | None = None,
    spurious: Tensor | None = None,
    alpha: float = 0.5,
) -> Tensor:
    """Blend heatmaps onto images and draw the region outlines.

    Args:
        images: float [N, 3, H, W] in [0, 1], or [N, 1, H, W] (grayscale, drawn as gray).
        maps: float [N, H, W] >= 0, raw.
        regions: bool [N, H, W] object regions, outlined in green.
        spurious: bool [N, H, W] spurious regions, outlined in magenta.
        alpha: weight of the heatmap.

    Returns:
        float [N, 3, H, W] in [0, 1].
    """
    heat = colormap(scale_for_display(maps.float()))
    out = ((1 - alpha) * as_rgb(images.float().clamp(0, 1)) + alpha * heat).clamp(0, 1)
    for mask, colour in ((regions, OBJECT_COLOUR), (spurious, SPURIOUS_COLOUR)):
        if mask is not None and bool(mask.any()):
            edge = outline(mask.to(out.device)).unsqueeze(1)
            out = torch.where(edge, torch.tensor(colour, device=out.device).view(1, 3, 1, 1), out)
    return out


def colour_bar(height: int, width: int = 8) -> Tensor:
    """A vertical colour bar, hottest at the top; float [3, height, width]."""
    ramp = torch.linspace(1, 0, height).view(1, height, 1).expand(1, height, width)
    return colormap(ramp)[0]


def overlay_grid(
    images: Tensor,
    maps: Tensor,
    regions: Tensor | None = None,
    spurious: Tensor | None = None,
    captions: Sequence[str] | None = None,
    ncol: int = 4,
    scale: int = 2,
) -> Tensor:
    """A grid of (image, overlay) pairs with a colour bar, ready for ``SummaryWriter.add_image``.

    Args:
        images, maps, regions, spurious: as in :func:`overlay`.
        captions: one short text per sample, written under its pair.
        ncol: pairs per row.
        scale: integer upscaling (nearest) so small probe images stay readable.

    Returns:
        float tensor [3, H', W'] in [0, 1].
    """
    blended = overlay(images, maps, regions, spurious)
    pairs = torch.cat([as_rgb(images.float().clamp(0, 1)), blended], dim=3)
    if scale > 1:
        pairs = nnf.interpolate(pairs, scale_factor=scale, mode="nearest")
    if captions is not None:
        pairs = torch.stack([_caption(p, c) for p, c in zip(pairs, captions, strict=True)])
    grid = make_grid(pairs, nrow=ncol, padding=4, pad_value=1.0)
    bar = colour_bar(grid.shape[1] - 8, width=10)
    bar = nnf.pad(bar, (4, 4, 4, 4), value=1.0)
    return torch.cat([grid, bar], dim=2)


# zlib level 3 instead of PIL's 6: a heatmap grid encodes about 4x faster and comes out about 10% larger
PNG_COMPRESS_LEVEL = 3


def png_bytes(image: Tensor) -> bytes:
    """A float [3, H, W] (or grayscale [1, H, W]) image in [0, 1] encoded as an RGB PNG.

    Example:
        >>> png_bytes(torch.ones(3, 2, 2))[:8]
        b'\\x89PNG\\r\\n\\x1a\\n'
    """
    buffer = io.BytesIO()
    Image.fromarray(hwc_uint8(image)).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def save_png(image: Tensor, path: str | os.PathLike) -> Path:
    """Write a float [3, H, W] (or grayscale [1, H, W]) image in [0, 1] as an RGB PNG; returns the path.

    The file is replaced whole: no reader sees half a PNG."""
    return write_atomic(path, png_bytes(image))


def hwc_uint8(image: Tensor) -> Any:
    """A float [3, H, W] image in [0, 1] as a uint8 [H, W, 3] array, the pixels :func:`save_png` writes.

    A grayscale [1, H, W] image comes out as a gray [H, W, 3]. Weights & Biases stores float arrays
    without scaling them to 0-255 (a white grid came out black), so loggers are given bytes, not floats.

    Example:
        >>> hwc_uint8(torch.ones(1, 2, 2)).shape
        (2, 2, 3)
    """
    rgb = as_rgb(image.detach())
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def text_strip(text: str, width: int, height: int = 12) -> Tensor:
    """A white strip [3, height, width] in [0, 1] with ``text`` written in black from its left edge; a text
    wider than the strip loses its end, marked by ``..``."""
    strip = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(strip)
    if draw.textlength(text) > width - 4:
        while text and draw.textlength(text + "..") > width - 4:
            text = text[:-1]
        text += ".."
    draw.text((2, 0), text, fill="black")
    pixels = torch.frombuffer(bytearray(strip.tobytes()), dtype=torch.uint8).view(height, width, 3)
    return pixels.permute(2, 0, 1).float() / 255


def _caption(pair: Tensor, text: str) -> Tensor:
    """Append a 12-pixel white strip with ``text`` below ``pair`` [3, H, W]."""
    return torch.cat([pair, text_strip(text, pair.shape[-1]).to(pair.device)], dim=1)


__all__ = [
    "as_rgb",
    "colormap",
    "colour_bar",
    "hwc_uint8",
    "outline",
    "overlay",
    "overlay_grid",
    "png_bytes",
    "save_png",
    "scale_for_display",
    "text_strip",
]
