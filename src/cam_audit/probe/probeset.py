"""ProbeSet: a small validated data set whose images carry ground-truth object and spurious regions."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from cam_audit.errors import CamAuditError, ProbeError
from cam_audit.probe.batch import ProbeBatch, collate
from cam_audit.probe.fingerprint import FingerprintCache
from cam_audit.probe.image_cache import IMAGE_CACHE_BYTES, ImageCache
from cam_audit.probe.sample import ProbeSample
from cam_audit.probe.validation import check_images, check_labels, check_transform, split_boxes, split_masks
from cam_audit.regions import target_regions

Transform = Callable[[Any, Any], tuple[Any, Any]]

#: Bytes of rasterised regions a probe set keeps between audits (1 byte per pixel and role: 256 images of
#: 224x224 take 25 MiB). Rasterising every sample again took a tenth of each audit of the demo model.
REGION_CACHE_BYTES = 64 * 2**20


class ProbeSet(Dataset):
    """Probe images with labels and ground-truth regions, validated once at construction.

    Build one with :meth:`from_tensors` (or ``from_coco`` / ``from_csv`` / ``from_mask_dir``).
    ``probe[i]`` returns ``(image, target)``: ``image`` is a ``tv_tensors.Image`` float ``[C, H, W]`` (``C``
    is 3, or 1 for grayscale) and ``target`` a dict with ``"label"`` (int), ``"sample_id"`` (str),
    ``"image_id"`` (shared by the samples of an image of several classes: the COCO image id, the file name,
    the index of a tensor image) and, where the sample has them,
    ``"boxes"`` (``tv_tensors.BoundingBoxes`` XYXY), ``"masks"`` (``tv_tensors.Mask`` bool ``[K, H, W]``),
    ``"spurious_boxes"`` / ``"spurious_masks"`` (omitted for samples without a spurious region).
    The optional ``transform`` (``torchvision.transforms.v2``) is applied jointly to ``(image, target)``.
    Image files are decoded on first access and kept, before any transform, up to ``cache_bytes``
    (keyword only; default :data:`~cam_audit.probe.image_cache.IMAGE_CACHE_BYTES`, 256 MiB; ``0``
    decodes at every access) while each file keeps its size and modification time
    (:mod:`cam_audit.probe.image_cache`): later audits do not decode them again.

    Example:
        >>> probe = ProbeSet.from_tensors(torch.rand(4, 3, 8, 8), [0, 1, 0, 1],
        ...                               boxes=torch.tensor([[0.0, 0.0, 4.0, 4.0]]).repeat(4, 1))
        >>> image, target = probe[1]
        >>> image.shape, target["label"], target["sample_id"]
        (torch.Size([3, 8, 8]), 1, '1')
        >>> batch = next(probe.batches(3))
        >>> batch.regions.shape, batch.regions[0].sum().item()
        (torch.Size([3, 8, 8]), 16)
    """

    def __init__(
        self,
        samples: Sequence[ProbeSample],
        classes: Sequence[str] | None = None,
        transform: Transform | None = None,
        *,
        cache_bytes: int = IMAGE_CACHE_BYTES,
    ) -> None:
        if len(samples) == 0:
            raise ProbeError("the probe set is empty; give at least one image with a label and a region.")
        check_transform(transform)
        self.samples: list[ProbeSample] = list(samples)
        self.classes: list[str] | None = list(classes) if classes is not None else None
        self.transform = transform
        # rasterised (object, spurious) regions by sample position, reused by later audits; only without a
        # transform (a random one moves the regions at each call) and up to REGION_CACHE_BYTES
        self._regions: dict[int, tuple[Tensor, Tensor]] = {}
        self._region_bytes = 0
        self._fingerprint = FingerprintCache()
        self._images = ImageCache(cache_bytes)

    @classmethod
    def from_tensors(
        cls,
        images: Tensor,
        labels: Tensor | np.ndarray | Sequence[int],
        boxes: Tensor | Sequence[Tensor] | None = None,
        masks: Tensor | Sequence[Tensor] | None = None,
        spurious_boxes: Tensor | Sequence[Tensor] | None = None,
        spurious_masks: Tensor | Sequence[Tensor] | None = None,
        classes: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> ProbeSet:
        """Build a probe set from in-memory tensors.

        Args:
            images: float ``[N, 3, H, W]`` or, grayscale, ``[N, 1, H, W]`` (uint8 is scaled to ``[0, 1]``).
            labels: long ``[N]``, an integer numpy array ``[N]``, or a list of ``N`` ints (Python or numpy
                integers, 0-d integer tensors).
            boxes: a list of ``N`` float ``[K_i, 4]`` xyxy pixel tensors (``K_i`` may be 0) or a ``[N, 4]``
                tensor (one box per image).
            masks: bool ``[N, H, W]`` (one mask per image) or a list of ``N`` bool ``[K_i, H, W]`` tensors.
            spurious_boxes: like ``boxes``, for spurious cues.
            spurious_masks: like ``masks``, for spurious cues.
            classes: class names; labels must then be in ``0..len(classes) - 1``.
            transform: a ``torchvision.transforms.v2`` transform applied to ``(image, target)``.

        Raises:
            ProbeError: naming the sample index, for mismatched lengths, wrong dtypes, images of another
                channel count than 3 or 1, NaN images, labels that are not integers, negative or out-of-range
                labels, boxes outside the image or of zero area, masks of the wrong size.
        """
        images = check_images(images).clone()
        num_samples, size = images.shape[0], (int(images.shape[2]), int(images.shape[3]))
        label_list = check_labels(labels, num_samples, classes)
        object_boxes = split_boxes(boxes, num_samples, size, "boxes")
        object_masks = split_masks(masks, num_samples, size, "masks")
        cue_boxes = split_boxes(spurious_boxes, num_samples, size, "spurious_boxes")
        cue_masks = split_masks(spurious_masks, num_samples, size, "spurious_masks")
        samples = [
            ProbeSample(
                sample_id=str(i),
                label=label_list[i],
                size=size,
                image=images[i],
                boxes=object_boxes[i],
                masks=object_masks[i],
                spurious_boxes=cue_boxes[i],
                spurious_masks=cue_masks[i],
                image_id=i,
            )
            for i in range(num_samples)
        ]
        return cls(samples, classes=classes, transform=transform)

    @classmethod
    def from_coco(
        cls,
        annotation_json: str | Path,
        image_dir: str | Path,
        spurious_categories: Sequence[str | int] = ("watermark",),
        transform: Transform | None = None,
        *,
        categories: Mapping[str | int, int] | None = None,
        channels: int | None = None,
        cache_bytes: int = IMAGE_CACHE_BYTES,
    ) -> ProbeSet:
        """Build a probe set from a COCO instances file; images are read lazily from ``image_dir``.

        An annotation's region is the mask of its ``segmentation`` (polygons or RLE), or its ``bbox`` (xywh,
        converted to xyxy) where it has no segmentation or that covers no pixel; a box is not added to a
        mask. An image may have several objects. Annotations of ``spurious_categories`` (names or ids,
        matched exactly) are spurious regions; each must be a category of the file, except the default
        ``("watermark",)``, which marks nothing in a file without it. ``categories`` (keyword only) maps
        ``{category id or name: class index}``; by default the non-spurious categories sorted by id become
        classes ``0..K-1``, named after the categories. An image gives one sample per class among its
        objects, with that class's objects as its object region and the image's spurious regions; the
        samples share ``target["image_id"]`` (the COCO image id) and are named ``"<file_name>#<class>"``
        (an image of one class keeps its ``file_name``). Images are scaled by their bit depth (see
        :meth:`from_csv`); ``channels`` and ``cache_bytes`` as there.

        Raises:
            ProbeError: naming the file, entry (``annotations[3]``) and field for a malformed structure;
                the image or annotation for a missing or undecodable image, a box or polygon outside the
                image, a box of zero area, a mask of the wrong size, an unknown category, no object.
        """
        from cam_audit.probe.coco import load_coco

        samples, classes = load_coco(annotation_json, image_dir, spurious_categories, categories, channels)
        return cls(samples, classes=classes, transform=transform, cache_bytes=cache_bytes)

    @classmethod
    def from_csv(
        cls,
        manifest_csv: str | Path,
        transform: Transform | None = None,
        *,
        classes: Sequence[str] | None = None,
        channels: int | None = None,
        cache_bytes: int = IMAGE_CACHE_BYTES,
    ) -> ProbeSet:
        """Build a probe set from a manifest CSV with one row per region.

        Columns: ``image`` (path relative to the CSV), ``label`` (class index or name), optional ``role``
        (``object`` or ``spurious``; empty means object), and ``x_min, y_min, x_max, y_max`` (pixels) and/or
        ``mask`` (path of a mask image relative to the CSV). The object rows of an image give one sample per
        label, named ``"<image>#<class>"`` when there are several (else ``image``) and sharing
        ``target["image_id"]`` (the ``image`` text); its spurious rows go to every one of them (their label
        may be empty). Class names are looked up in ``classes`` (keyword only); without it they are sorted
        alphabetically to ``0..K-1``.

        Images are scaled by their file's bit depth to ``[0, 1]``, alpha dropped; ``channels`` (keyword
        only): ``None`` or 3 for RGB (grayscale repeated), 1 for one channel (the luminance
        ``0.299 R + 0.587 G + 0.114 B`` of colour files). A mask is read from its colour, or from its alpha
        channel when only the alpha varies; non-zero is inside in lossless 8-bit files, above half the range
        in lossy (JPEG, WebP) and 16-bit ones (:mod:`cam_audit.probe.pixels`). ``cache_bytes`` (keyword
        only): bytes of decoded images kept between audits (see the class docstring).

        Raises:
            ProbeError: naming the file and row (missing column, empty file, missing or undecodable image,
                box outside the image or of zero area, mask of the wrong size, unknown or missing label).
        """
        from cam_audit.probe.loaders import load_csv

        samples, classes = load_csv(manifest_csv, classes, channels)
        return cls(samples, classes=classes, transform=transform, cache_bytes=cache_bytes)

    @classmethod
    def from_mask_dir(
        cls,
        image_dir: str | Path,
        mask_dir: str | Path,
        labels_csv: str | Path,
        transform: Transform | None = None,
        *,
        spurious_mask_dir: str | Path | None = None,
        classes: Sequence[str] | None = None,
        channels: int | None = None,
        cache_bytes: int = IMAGE_CACHE_BYTES,
    ) -> ProbeSet:
        """Build a probe set from an image folder and a folder of object masks with the same file stems.

        ``labels_csv`` has columns ``image`` (file name in ``image_dir``) and ``label`` (index or name, as in
        :meth:`from_csv`). A mask is the file in ``mask_dir`` whose name is the image's stem plus one suffix
        (a ``.png`` first), compared literally (``cat [1].png`` finds ``cat [1].png``); it is read by the
        rule of :meth:`from_csv`. One mask per image has one class, so ``labels_csv`` lists each image once
        (for images with objects of several classes use :meth:`from_csv` with a mask per class, or
        :meth:`from_coco`). ``spurious_mask_dir`` (keyword only, like ``classes``, ``channels`` and
        ``cache_bytes``, which are as in :meth:`from_csv`) optionally holds spurious-cue masks for some of
        the images.

        Raises:
            ProbeError: naming the row or file (missing folder, image or mask, mask of the wrong size, an
                image listed twice, ...).
        """
        from cam_audit.probe.loaders import load_mask_dir

        samples, classes = load_mask_dir(
            image_dir, mask_dir, labels_csv, spurious_mask_dir, classes, channels
        )
        return cls(samples, classes=classes, transform=transform, cache_bytes=cache_bytes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        sample = self.samples[index]
        image = tv_tensors.Image(self._images.load(sample))
        target: dict[str, Any] = {
            "label": sample.label,
            "sample_id": sample.sample_id,
            "image_id": sample.shared_image_id,
        }
        for key in ("boxes", "spurious_boxes"):
            value = getattr(sample, key)
            if value is not None and (key == "boxes" or value.shape[0] > 0):
                target[key] = tv_tensors.BoundingBoxes(value, format="XYXY", canvas_size=sample.size)
        for key in ("masks", "spurious_masks"):
            value = getattr(sample, key)
            if value is not None and (key == "masks" or bool(value.any())):
                target[key] = tv_tensors.Mask(value)
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target

    @property
    def num_classes(self) -> int:
        """``len(classes)`` when class names were given, else the largest label + 1."""
        if self.classes is not None:
            return len(self.classes)
        return max(sample.label for sample in self.samples) + 1

    def class_names(self) -> list[str]:
        """The class names, or ``"0"``, ``"1"``, ... up to :attr:`num_classes` when the probe has none.

        Example:
            >>> ProbeSet.from_tensors(torch.rand(2, 3, 4, 4), [0, 2]).class_names()
            ['0', '1', '2']
        """
        if self.classes is not None:
            return [str(name) for name in self.classes]
        return [str(k) for k in range(self.num_classes)]

    @property
    def has_spurious(self) -> bool:
        """Whether any sample carries a spurious region."""
        return any(sample.has_spurious for sample in self.samples)

    @property
    def labels(self) -> Tensor:
        """Long ``[N]``, the label of every sample."""
        return torch.tensor([sample.label for sample in self.samples], dtype=torch.long)

    @property
    def sample_ids(self) -> list[str]:
        """The id of every sample, in order."""
        return [sample.sample_id for sample in self.samples]

    def subset(self, indices: Sequence[int] | Tensor) -> ProbeSet:
        """A probe set of the samples at ``indices`` (same classes, transform and cache limit, ids kept)."""
        positions = self._positions(indices)
        samples = [self.samples[i] for i in positions]
        return type(self)(samples, self.classes, self.transform, cache_bytes=self._images.max_bytes)

    def stratified(self, n_per_class: int, seed: int = 0) -> ProbeSet:
        """A class-balanced subset: ``n_per_class`` samples of every class, chosen reproducibly by ``seed``.

        Classes with no sample at all (possible when ``classes`` lists more names than occur) are skipped;
        samples keep their original order.

        Raises:
            ProbeError: ``n_per_class < 1`` or a class present in the set has fewer samples.

        Example:
            >>> probe = ProbeSet.from_tensors(torch.rand(6, 3, 4, 4), [0, 0, 0, 1, 1, 1])
            >>> probe.stratified(2).labels.tolist()
            [0, 0, 1, 1]
        """
        if n_per_class < 1:
            raise ProbeError(f"n_per_class must be >= 1, got {n_per_class}.")
        labels = self.labels
        generator = torch.Generator().manual_seed(seed)
        chosen: list[int] = []
        for label in range(self.num_classes):
            members = (labels == label).nonzero().flatten()
            if members.numel() == 0:
                continue
            if members.numel() < n_per_class:
                name = self.classes[label] if self.classes is not None else str(label)
                raise ProbeError(
                    f"class {name!r} has only {members.numel()} samples, fewer than "
                    f"n_per_class={n_per_class}; lower n_per_class or add samples of that class."
                )
            order = torch.randperm(members.numel(), generator=generator)[:n_per_class]
            chosen.extend(members[order].tolist())
        return self.subset(sorted(chosen))

    def batches(self, batch_size: int, indices: Sequence[int] | Tensor | None = None) -> Iterator[ProbeBatch]:
        """Yield the samples at ``indices`` (default: all), in order, as :class:`ProbeBatch` es.

        Raises:
            CamAuditError: ``batch_size < 1``, an index out of range, or images of different sizes in one
                batch (resize them with ``transform=v2.Resize((H, W))``).
        """
        if batch_size < 1:
            raise CamAuditError(f"batch_size must be >= 1, got {batch_size}.")
        positions = self._positions(range(len(self)) if indices is None else indices)
        for start in range(0, len(positions), batch_size):
            yield self._collate(positions[start : start + batch_size])

    def fingerprint(self) -> str:
        """A short hash of the labels, regions and image content, stable across runs and machines.

        The ids of the samples of an image of several classes are hashed too; those of other samples are
        not (see :mod:`cam_audit.probe.fingerprint`).
        Hashed once and kept while the samples, their tensors and their image files stay as they were
        (:class:`~cam_audit.probe.fingerprint.FingerprintCache`), so later audits do not hash it again.

        Example:
            >>> images = torch.zeros(2, 3, 4, 4)
            >>> first = ProbeSet.from_tensors(images, [0, 1]).fingerprint()
            >>> first == ProbeSet.from_tensors(images.clone(), [0, 1]).fingerprint(), len(first)
            (True, 16)
        """
        return self._fingerprint.get(self.samples, self.classes)

    def _positions(self, indices: Sequence[int] | Tensor | range) -> list[int]:
        positions = indices.tolist() if isinstance(indices, Tensor) else list(indices)
        for position in positions:
            if not -len(self) <= int(position) < len(self):
                raise CamAuditError(
                    f"index {position} is out of range for a probe set of {len(self)} samples."
                )
        return [int(p) % len(self) for p in positions]

    def _keep_regions(self, position: int, pair: tuple[Tensor, Tensor]) -> None:
        size = sum(region.numel() * region.element_size() for region in pair)
        if self.transform is None and self._region_bytes + size <= REGION_CACHE_BYTES:
            self._regions[position] = pair
            self._region_bytes += size

    def _collated_sample(self, position: int) -> tuple[Tensor, int, str, tuple[Tensor, Tensor]]:
        """Image, label, id and (object, spurious) regions of one sample, as a batch holds them."""
        sample, pair = self.samples[position], self._regions.get(position)
        if pair is not None:
            # kept regions mean no transform: the stored image is what probe[position] would give, without
            # wrapping every box and mask in a tv_tensor on the way
            return self._images.load(sample), sample.label, sample.sample_id, pair
        image, target = self[position]
        size = (int(image.shape[-2]), int(image.shape[-1]))
        pair = (target_regions(target, size, "object"), target_regions(target, size, "spurious"))
        self._keep_regions(position, pair)
        return image.as_subclass(Tensor), int(target["label"]), str(target["sample_id"]), pair

    def _collate(self, positions: list[int]) -> ProbeBatch:
        items = []
        for position in positions:
            image, label, sample_id, pair = self._collated_sample(position)
            items.append((image, {"label": label, "sample_id": sample_id}, pair))
        return collate(items, positions)


__all__ = ["ProbeBatch", "ProbeSet"]
