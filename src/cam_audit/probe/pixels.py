"""Decode image and mask files at their real bit depth, and read a mask out of the decoded pixels.

Pillow alone misreads two kinds of files that probe sets contain: it clips 16-bit grayscale to 255 when
converting to RGB (most pixels of a 16-bit photograph come out white) and keeps only the high byte of
16-bit colour PNGs. So 16-bit PNGs are decoded by ``torchvision.io`` and everything else by Pillow, and every
file is scaled by the largest value of its own depth (1 for bilevel, 255 for 8 bit, 65535 for 16 bit).

Mask rule (:func:`mask_from_pixels`), also in the README:

* The mask is read from the colour: the value of a grayscale file, the luminance
  ``0.299 R + 0.587 G + 0.114 B`` of an RGB one (palette files through their palette).
* A file with an alpha channel (RGBA, gray + alpha, a palette with transparency) carries its mask in the
  alpha channel when the alpha varies and every colour channel is constant. When both vary they must
  mark the same pixels, else the file is refused; a constant alpha (an opaque RGBA export) is ignored.
* Lossless 8-bit and bilevel files: every non-zero pixel is inside. Lossy files (JPEG, WebP) and 16-bit
  files: a pixel is inside when its value exceeds half the range (``> 127.5`` of 255, ``> 32767.5`` of
  65535), so compression noise around the object is outside. A lossy or 16-bit file with non-zero
  pixels but none above half the range is refused instead of read as an empty mask.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cam_audit.errors import ProbeError

#: Formats whose compression changes pixel values; masks in them are thresholded at half range.
LOSSY_FORMATS = frozenset({"JPEG", "MPO", "WEBP", "JPEG2000"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Pillow modes converted before reading (a palette to RGBA when it has transparency, else to RGB); the
#: others are read as they are.
_CONVERT = {
    "P": None,
    "PA": "RGBA",
    "La": "LA",
    "RGBa": "RGBA",
    "RGBX": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_LAYOUT = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class Pixels:
    """A decoded file.

    Attributes:
        values: integer array ``[H, W, C]`` as stored in the file (``uint8`` or ``uint16``).
        maximum: the largest value ``values`` can take (1, 255 or 65535): what they are divided by.
        layout: ``"L"``, ``"LA"``, ``"RGB"`` or ``"RGBA"``: what the ``C`` channels are.
        lossy: whether the file's format compresses with loss (its values carry noise).
        depth: bits per sample in the file (1, 8 or 16); 16 with ``maximum`` 255 where a 16-bit file
            could only be decoded to 8 bits.
    """

    values: np.ndarray
    maximum: int
    layout: str
    lossy: bool
    depth: int = 8

    @property
    def colour(self) -> np.ndarray:
        """The colour channels ``[H, W, 1 or 3]`` (alpha removed)."""
        return self.values[..., : 3 if self.layout.startswith("RGB") else 1]

    @property
    def alpha(self) -> np.ndarray | None:
        """The alpha channel ``[H, W]``, or ``None`` when the file has none."""
        return self.values[..., -1] if self.layout.endswith("A") else None


def decode_pixels(path: Path, what: str = "image", where: str = "") -> Pixels:
    """Decode ``path`` to its stored values and bit depth.

    Args:
        path: the file.
        what: ``"image"`` or ``"mask"``, for the error message.
        where: the row, annotation or sample to name at the front of the error message.

    Raises:
        ProbeError: the file is missing or cannot be decoded, or holds 32-bit integer or float pixels,
            whose range no file format states.
    """
    prefix = f"{where}: " if where else ""
    if not path.is_file():
        raise ProbeError(f"{prefix}{what} file {path} does not exist; check the path and the folder.")
    sixteen_bit = _png_bit_depth(path) == 16
    if sixteen_bit:
        pixels = _decode_png16(path, prefix + what)
        if pixels is not None:
            return pixels
    try:
        with Image.open(path) as img:
            img.load()
            pixels = _from_pillow(img, path, prefix + what)
            return replace(pixels, depth=16) if sixteen_bit else pixels
    except ProbeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ProbeError(f"{prefix}{what} file {path} cannot be decoded ({err}); re-save it as PNG.") from err


def to_unit(pixels: Pixels, channels: int = 3) -> np.ndarray:
    """Float32 ``[H, W, channels]`` in ``[0, 1]``: the colour divided by the depth's maximum, alpha dropped.

    The colour channels are taken as stored, not composited over a background, so a transparent pixel
    shows the colour the file keeps under it. ``channels=3``: grayscale is repeated to three channels.
    ``channels=1``: a grayscale file as it is, a colour file as its luminance ``0.299 R + 0.587 G + 0.114 B``
    (ITU-R BT.601, the weights of the mask rule and of Pillow's ``convert("L")``, without its rounding).

    Example:
        >>> red = Pixels(np.array([[[255, 0, 0]]], dtype=np.uint8), 255, "RGB", lossy=False)
        >>> round(float(to_unit(red, channels=1)[0, 0, 0]), 3), to_unit(red).tolist()
        (0.299, [[[1.0, 0.0, 0.0]]])
    """
    maximum = np.float32(pixels.maximum)
    if channels == 1:
        return (_luminance(pixels.colour) / float(maximum)).astype(np.float32)[..., None]
    colour = pixels.colour.astype(np.float32) / maximum
    return np.repeat(colour, 3, axis=-1) if colour.shape[-1] == 1 else colour


def to_image(pixels: Pixels, channels: int = 3) -> torch.Tensor:
    """Float32 ``[channels, H, W]`` in ``[0, 1]``: :func:`to_unit` laid out as a torch image.

    Example:
        >>> red = Pixels(np.array([[[255, 0, 0]]], dtype=np.uint8), 255, "RGB", lossy=False)
        >>> to_image(red).flatten().tolist()
        [1.0, 0.0, 0.0]
    """
    return torch.from_numpy(np.ascontiguousarray(to_unit(pixels, channels).transpose(2, 0, 1)))


def mask_from_pixels(pixels: Pixels, path: Path, where: str) -> np.ndarray:
    """Bool ``[H, W]``: the pixels inside the mask, by the rule in this module's docstring.

    Raises:
        ProbeError: colour and alpha both vary and disagree, or a lossy or 16-bit file has non-zero
            pixels but none above half its range.

    Example:
        >>> opaque = np.zeros((2, 3, 4), dtype=np.uint8)  # an RGBA mask: black, fully opaque...
        >>> opaque[..., 3] = 255
        >>> opaque[0, 0, :3] = 255  # ...with one white pixel
        >>> mask_from_pixels(Pixels(opaque, 255, "RGBA", lossy=False), Path("m.png"), "row 1").tolist()
        [[True, False, False], [False, False, False]]
    """
    half = pixels.lossy or pixels.depth == 16
    colour = _luminance(pixels.colour)
    source, channel = colour, "colour"
    alpha = pixels.alpha
    if alpha is not None and alpha.min() != alpha.max():
        colour_constant = bool((pixels.colour == pixels.colour[:1, :1]).all())
        if colour_constant or np.array_equal(
            _inside(colour, pixels.maximum, half), _inside(alpha, pixels.maximum, half)
        ):
            source, channel = alpha.astype(np.float64), "alpha"
        else:
            raise ProbeError(
                f"{where}: mask file {path} has both a varying colour and a varying alpha channel, and "
                "they mark different pixels, so which one is the mask is unclear; save the mask as a "
                "grayscale PNG (white inside, black outside)."
            )
    inside = _inside(source, pixels.maximum, half)
    if half and not inside.any() and source.max() > 0:
        kind = "a lossy format" if pixels.lossy else "16-bit"
        raise ProbeError(
            f"{where}: mask file {path} is {kind}, so a pixel is inside only above half the range "
            f"({pixels.maximum / 2:g}), but its {channel} peaks at {source.max():g}; save the mask as an "
            "8-bit PNG (any non-zero pixel is inside) or scale it to the full range."
        )
    return inside


def check_known_range(mode: str, file_format: str | None, path: Path, what: str) -> None:
    """Refuse Pillow modes ``"I"`` (32-bit integers, except 16-bit PGM) and ``"F"`` (floats): no file states
    their range, so no scaling to ``[0, 1]`` would be right.

    Example:
        >>> check_known_range("I;16", "PNG", Path("a.png"), "image")
    """
    if mode == "F" or (mode == "I" and file_format != "PPM"):
        kind = "32-bit integer" if mode == "I" else "floating-point"
        raise ProbeError(
            f"{what} file {path} holds {kind} pixels, whose range the file does not state; save it as an "
            "8- or 16-bit PNG scaled to that depth's full range."
        )


def _inside(values: np.ndarray, maximum: int, half: bool) -> np.ndarray:
    return values > maximum / 2 if half else values > 0


def _luminance(colour: np.ndarray) -> np.ndarray:
    if colour.shape[-1] == 1:
        return colour[..., 0].astype(np.float64)
    weights = np.array([0.299, 0.587, 0.114])
    return colour.astype(np.float64) @ weights


def _png_bit_depth(path: Path) -> int | None:
    """The bit depth in a PNG's header (byte 24), or ``None`` when the file is not a PNG."""
    with open(path, "rb") as file:
        head = file.read(26)
    if len(head) < 26 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24]


def _decode_png16(path: Path, what: str) -> Pixels | None:
    """A 16-bit PNG at full precision through ``torchvision.io``; ``None`` where that decoder is missing.

    Pillow, used then, reads 16-bit grayscale exactly but 16-bit colour at 8-bit precision (scaled right).
    """
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders; Pillow takes over without
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from torchvision.io import ImageReadMode, decode_image
        except ImportError:
            return None
        try:
            decoded = decode_image(str(path), mode=ImageReadMode.UNCHANGED)
        except RuntimeError as err:
            raise ProbeError(f"{what} file {path} cannot be decoded ({err}); re-save it as PNG.") from err
    # torchvision before 0.21 returns 16-bit PNGs reduced to uint8
    maximum = 255 if decoded.dtype == torch.uint8 else 65535
    values = decoded.permute(1, 2, 0).to(torch.int32).numpy().astype(np.uint16 if maximum > 255 else np.uint8)
    return Pixels(values=values, maximum=maximum, layout=_LAYOUT[values.shape[-1]], lossy=False, depth=16)


def _from_pillow(img: Image.Image, path: Path, what: str) -> Pixels:
    lossy = img.format in LOSSY_FORMATS
    mode = img.mode
    if mode in _CONVERT:
        target = _CONVERT[mode] or ("RGBA" if "transparency" in img.info else "RGB")
        img, mode = img.convert(target), target
    if mode == "1":
        return Pixels(np.asarray(img, dtype=np.uint8)[..., None], 1, "L", lossy, depth=1)
    if mode in _SIXTEEN_BIT or (mode == "I" and img.format == "PPM"):
        values = np.asarray(img)
        if values.min() < 0 or values.max() > 65535:
            raise ProbeError(f"{what} file {path} has values outside 0..65535; save it as a 16-bit PNG.")
        return Pixels(values.astype(np.uint16)[..., None], 65535, "L", lossy, depth=16)
    check_known_range(mode, img.format, path, what)
    if mode not in ("L", "LA", "RGB", "RGBA"):
        img, mode = img.convert("RGB"), "RGB"
    values = np.asarray(img, dtype=np.uint8)
    return Pixels(values if values.ndim == 3 else values[..., None], 255, mode, lossy)


__all__ = [
    "LOSSY_FORMATS",
    "Pixels",
    "check_known_range",
    "decode_pixels",
    "mask_from_pixels",
    "to_image",
    "to_unit",
]
