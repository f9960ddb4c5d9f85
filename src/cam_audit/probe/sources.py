"""Probe sets declared by their arguments, so a YAML config can name one.

A :class:`~cam_audit.probe.ProbeSet` holds decoded images and cannot be written in a config file; a
``ProbeSource`` can. Each subclass takes the arguments of one loader, in the same order (the loader's
options after ``transform`` by keyword only), and :meth:`ProbeSource.load` builds the probe set.
``CamAudit(probe=...)`` and ``cam-audit audit`` accept either, so in a LightningCLI or ``cam-audit audit``
config a probe reads::

    probe:
      class_path: cam_audit.probe.sources.CocoProbe
      init_args:
        annotation_json: probe/instances.json
        image_dir: probe/images
        transform:                      # optional: any torchvision.transforms.v2 transform
          class_path: torchvision.transforms.v2.Resize
          init_args: {size: [224, 224]}

Relative paths are relative to the working directory the command runs in. The ``transform`` is applied
jointly to each image and its regions, as ``ProbeSet(transform=...)`` does: images of different sizes
need a ``Resize`` to share a batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cam_audit.probe.image_cache import IMAGE_CACHE_BYTES, check_cache_bytes
from cam_audit.probe.probeset import ProbeSet
from cam_audit.probe.validation import check_channels, check_transform

#: How a config names a transform: anything called as ``transform(image, target)``, e.g. a
#: ``torchvision.transforms.v2`` transform given by ``class_path`` and ``init_args``.
Transform = Callable[..., Any]


class ProbeSource(ABC):
    """A probe set described by arguments; :meth:`load` reads or draws it."""

    @abstractmethod
    def load(self) -> ProbeSet:
        """Build the probe set (reads files or draws scenes; validates every sample)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]  # mutable argument holders


class CocoProbe(ProbeSource):
    """A probe set from a COCO instances file (see :meth:`ProbeSet.from_coco`).

    Args:
        annotation_json: path of the COCO instances JSON.
        image_dir: folder the images' ``file_name`` are relative to.
        spurious_categories: category names or ids whose annotations are spurious regions.
        transform: a ``torchvision.transforms.v2`` transform applied to each image and its regions.
        categories: ``{category id or name: class index}``; default: the other categories, by id.
        channels: ``None`` or 3: images decoded to RGB; 1: to one channel (grayscale, or the luminance of
            colour files).
        cache_bytes: bytes of decoded images kept between audits (default 256 MiB; 0: decode at every
            audit).
    """

    def __init__(
        self,
        annotation_json: str | Path,
        image_dir: str | Path,
        spurious_categories: Sequence[str | int] = ("watermark",),
        transform: Transform | None = None,
        *,
        categories: dict[str | int, int] | None = None,
        channels: int | None = None,
        cache_bytes: int = IMAGE_CACHE_BYTES,
    ) -> None:
        check_transform(transform)
        channels = check_channels(channels)
        self.cache_bytes = check_cache_bytes(cache_bytes)
        self.annotation_json = annotation_json
        self.image_dir = image_dir
        self.spurious_categories = (
            (spurious_categories,) if isinstance(spurious_categories, str) else tuple(spurious_categories)
        )
        self.transform = transform
        self.categories = categories
        self.channels = channels

    def load(self) -> ProbeSet:
        return ProbeSet.from_coco(
            self.annotation_json,
            self.image_dir,
            spurious_categories=self.spurious_categories,
            transform=self.transform,
            categories=self.categories,
            channels=self.channels,
            cache_bytes=self.cache_bytes,
        )


class CsvProbe(ProbeSource):
    """A probe set from a manifest CSV with one row per region (see :meth:`ProbeSet.from_csv`).

    Args:
        manifest_csv: path of the CSV; image and mask paths in it are relative to it.
        transform: a ``torchvision.transforms.v2`` transform applied to each image and its regions.
        classes: class names in index order; default: the names in the CSV, sorted.
        channels: ``None`` or 3: images decoded to RGB; 1: to one channel (grayscale, or the luminance of
            colour files).
        cache_bytes: bytes of decoded images kept between audits (default 256 MiB; 0: decode at every
            audit).
    """

    def __init__(
        self,
        manifest_csv: str | Path,
        transform: Transform | None = None,
        *,
        classes: list[str] | None = None,
        channels: int | None = None,
        cache_bytes: int = IMAGE_CACHE_BYTES,
    ) -> None:
        check_transform(transform)
        channels = check_channels(channels)
        self.cache_bytes = check_cache_bytes(cache_bytes)
        self.manifest_csv = manifest_csv
        self.transform = transform
        self.classes = classes
        self.channels = channels

    def load(self) -> ProbeSet:
        return ProbeSet.from_csv(
            self.manifest_csv,
            transform=self.transform,
            classes=self.classes,
            channels=self.channels,
            cache_bytes=self.cache_bytes,
        )


class MaskDirProbe(ProbeSource):
    """A probe set from an image folder and a folder of masks (see :meth:`ProbeSet.from_mask_dir`).

    Args:
        image_dir: folder of images.
        mask_dir: folder of object masks with the images' file stems.
        labels_csv: CSV with columns ``image`` and ``label``.
        transform: a ``torchvision.transforms.v2`` transform applied to each image and its regions.
        spurious_mask_dir: optional folder of spurious-cue masks.
        classes: class names in index order.
        channels: ``None`` or 3: images decoded to RGB; 1: to one channel (grayscale, or the luminance of
            colour files).
        cache_bytes: bytes of decoded images kept between audits (default 256 MiB; 0: decode at every
            audit).
    """

    def __init__(
        self,
        image_dir: str | Path,
        mask_dir: str | Path,
        labels_csv: str | Path,
        transform: Transform | None = None,
        *,
        spurious_mask_dir: str | Path | None = None,
        classes: list[str] | None = None,
        channels: int | None = None,
        cache_bytes: int = IMAGE_CACHE_BYTES,
    ) -> None:
        check_transform(transform)
        channels = check_channels(channels)
        self.cache_bytes = check_cache_bytes(cache_bytes)
        self.image_dir = image_dir
        self.mask_dir = mask_dir
        self.labels_csv = labels_csv
        self.transform = transform
        self.spurious_mask_dir = spurious_mask_dir
        self.classes = classes
        self.channels = channels

    def load(self) -> ProbeSet:
        return ProbeSet.from_mask_dir(
            self.image_dir,
            self.mask_dir,
            self.labels_csv,
            transform=self.transform,
            spurious_mask_dir=self.spurious_mask_dir,
            classes=self.classes,
            channels=self.channels,
            cache_bytes=self.cache_bytes,
        )


__all__ = ["CocoProbe", "CsvProbe", "MaskDirProbe", "ProbeSource"]
