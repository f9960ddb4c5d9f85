"""One probe sample as stored by a :class:`~cam_audit.probe.ProbeSet`: validated regions, lazy image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torch import Tensor

from cam_audit.errors import ProbeError
from cam_audit.probe.pixels import check_known_range, decode_pixels, to_image


@dataclass(frozen=True)
class ProbeSample:
    """A validated probe sample.

    Attributes:
        sample_id: name used in reports and errors (a file name or the index as text; ``"<file>#<class>"``
            for each class of an image whose objects belong to several classes).
        label: class index.
        size: ``(H, W)`` of the image before any transform.
        image: float tensor ``[C, H, W]`` (``C`` is 3 or 1) or the path of an image file read on access.
        boxes: float ``[K, 4]`` xyxy object boxes, or ``None`` when the sample has no object boxes.
        masks: bool ``[K, H, W]`` object masks, or ``None``.
        spurious_boxes: like ``boxes`` for spurious cues (watermarks, rulers, tags).
        spurious_masks: like ``masks`` for spurious cues.
        image_id: the image the sample shows, shared by the samples of one image (a COCO image id, a file
            name, an index); ``None``: the image is the sample's alone and ``sample_id`` names it.
        image_classes: the classes of the objects in the image, in order, when it holds objects of several
            classes (and so gives one sample per class); empty for an image of one class.
        channels: what an image file is decoded to: 3 (RGB) or 1 (luminance); a tensor image keeps its own.
    """

    sample_id: str
    label: int
    size: tuple[int, int]
    image: Tensor | Path
    boxes: Tensor | None = None
    masks: Tensor | None = None
    spurious_boxes: Tensor | None = None
    spurious_masks: Tensor | None = None
    image_id: int | str | None = None
    image_classes: tuple[int, ...] = ()
    channels: int = 3

    @property
    def has_spurious(self) -> bool:
        """Whether the sample carries at least one spurious box or a non-empty spurious mask."""
        has_boxes = self.spurious_boxes is not None and self.spurious_boxes.shape[0] > 0
        has_masks = self.spurious_masks is not None and bool(self.spurious_masks.any())
        return has_boxes or has_masks

    @property
    def shared_image_id(self) -> int | str:
        """The id shared by the samples of this sample's image: ``image_id``, else ``sample_id``."""
        return self.sample_id if self.image_id is None else self.image_id

    def load_image(self) -> Tensor:
        """The image as float32 ``[C, H, W]`` (files are decoded to ``channels`` channels in ``[0, 1]``)."""
        if isinstance(self.image, Tensor):
            return self.image
        return read_image(self.image, self.channels)


def read_image(path: Path, channels: int = 3) -> Tensor:
    """Decode an image file to float32 ``[channels, H, W]`` in ``[0, 1]``, scaled by the file's bit depth.

    8-bit files are divided by 255 and 16-bit ones (PNG at full precision, 16-bit grayscale TIFF and PGM)
    by 65535; bilevel files become 0 and 1; palette files are looked up in their palette. With
    ``channels=3`` grayscale is repeated to three channels; with ``channels=1`` colour becomes its
    luminance ``0.299 R + 0.587 G + 0.114 B``. An alpha channel is dropped: the colour channels are taken
    as stored, not composited over a background.

    Raises:
        ProbeError: the file is missing or cannot be decoded, or holds 32-bit integer or float pixels.
    """
    return to_image(decode_pixels(path, "image"), channels)


def image_size(path: Path, where: str) -> tuple[int, int]:
    """``(H, W)`` of an image file read from its header, checking that it exists and can be decoded.

    Raises:
        ProbeError: missing, empty or undecodable file, or one of 32-bit integer or float pixels, whose
            range is unknown (``where`` names the row or annotation).
    """
    if not path.is_file():
        raise ProbeError(
            f"{where}: image file {path} does not exist; check the path and the image directory."
        )
    try:
        with Image.open(path) as img:
            mode, file_format = img.mode, img.format
            img.verify()
            width, height = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ProbeError(
            f"{where}: image file {path} cannot be decoded ({err}); re-save it as PNG or JPEG."
        ) from err
    check_known_range(mode, file_format, path, f"{where}: image")
    return height, width


__all__ = ["ProbeSample", "image_size", "read_image"]
