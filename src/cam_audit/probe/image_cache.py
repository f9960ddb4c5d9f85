"""Decoded image files kept between audits, up to a memory limit, so a probe read from files is decoded once.

An audit reads every probe image, and the Lightning callback audits again at every validation end: a probe
of PNG or JPEG files was decoded in full each time, serially, while the model waited. :class:`ImageCache`
keeps what a file decodes to, at the file's own depth (``uint8`` for 8-bit files, a quarter of the float32
image; ``uint16`` for 16-bit ones), and turns it into the float image on each access exactly as a fresh
decode would (:func:`pixels_to_image`), so the images, and everything computed from them, are the same
with or without it.

What is kept is the file, not what a transform makes of it: a probe's ``transform`` (random or not) runs
after the cache on every access, as before.

A kept image is used while its file has the size and modification time (nanoseconds) it had when it was
decoded; a file that changes is decoded again, and one that disappears raises as before. A file rewritten
in place with the same size within one tick of the file system's clock would not be noticed: that is the
rule :class:`~cam_audit.probe.fingerprint.FingerprintCache` follows too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from torch import Tensor

from cam_audit.errors import CamAuditError
from cam_audit.probe.pixels import Pixels, decode_pixels, to_image
from cam_audit.probe.sample import ProbeSample

#: Bytes of decoded pixels a probe read from files keeps between audits by default: 1,700 RGB images of
#: 224x224 at 8 bits, or 20,000 of 64x64. Images past the limit are decoded at every access.
IMAGE_CACHE_BYTES = 256 * 2**20


def check_cache_bytes(cache_bytes: object) -> int:
    """``cache_bytes`` as an int when it is a non-negative integer; a :class:`CamAuditError` otherwise.

    Example:
        >>> check_cache_bytes(0)
        0
    """
    is_integer = isinstance(cache_bytes, (int, np.integer)) and not isinstance(cache_bytes, (bool, np.bool_))
    if not is_integer or int(cache_bytes) < 0:  # type: ignore[call-overload]
        raise CamAuditError(
            f"cache_bytes must be a non-negative int (bytes of decoded images kept between audits), got "
            f"{cache_bytes!r}; pass 0 to decode every image at every access, or e.g. {IMAGE_CACHE_BYTES} "
            "(the default, 256 MiB)."
        )
    return int(cache_bytes)  # type: ignore[call-overload]


@dataclass(frozen=True)
class _Kept:
    stamp: tuple[int, int]
    pixels: Pixels


class ImageCache:
    """Decoded image files by path, each used while its file keeps its size and modification time.

    Args:
        max_bytes: the most bytes of decoded pixels held; an image that does not fit is decoded at every
            access (the images kept first stay). ``0`` keeps nothing.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> path = Path(tempfile.mkdtemp()) / "red.png"
        >>> Image.new("RGB", (2, 1), (255, 0, 0)).save(path)
        >>> cache = ImageCache(max_bytes=1024)
        >>> cache.image(path, channels=3)[:, 0, 0].tolist(), cache.kept_bytes
        ([1.0, 0.0, 0.0], 6)
    """

    def __init__(self, max_bytes: int = IMAGE_CACHE_BYTES) -> None:
        self.max_bytes = check_cache_bytes(max_bytes)
        self._kept: dict[Path, _Kept] = {}
        self.kept_bytes = 0

    def image(self, path: Path, channels: int) -> Tensor:
        """The file at ``path`` as float32 ``[channels, H, W]`` in ``[0, 1]``, decoded now or kept.

        Raises:
            ProbeError: the file is missing or cannot be decoded (see
                :func:`~cam_audit.probe.pixels.decode_pixels`).
        """
        stamp = _stamp(path)
        kept = self._kept.get(path)
        if kept is not None and kept.stamp == stamp:
            return to_image(kept.pixels, channels)
        if kept is not None:  # the file changed (or went): forget what it was
            del self._kept[path]
            self.kept_bytes -= kept.pixels.values.nbytes
        pixels = _colour_only(decode_pixels(path, "image"))
        if stamp is not None and self.kept_bytes + pixels.values.nbytes <= self.max_bytes:
            self._kept[path] = _Kept(stamp, pixels)
            self.kept_bytes += pixels.values.nbytes
        return to_image(pixels, channels)

    def load(self, sample: ProbeSample) -> Tensor:
        """The sample's image as :meth:`ProbeSample.load_image` gives it, files through the cache."""
        if isinstance(sample.image, Tensor):
            return sample.image
        return self.image(sample.image, sample.channels)

    def __len__(self) -> int:
        return len(self._kept)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _colour_only(pixels: Pixels) -> Pixels:
    """The pixels without their alpha channel, which no image reads (only masks do)."""
    if pixels.alpha is None:
        return pixels
    return replace(pixels, values=np.ascontiguousarray(pixels.colour), layout=pixels.layout.removesuffix("A"))


__all__ = ["IMAGE_CACHE_BYTES", "ImageCache", "check_cache_bytes"]
