"""Read a COCO instances file into probe samples, one region per annotation: its mask, else its box.

An annotation's region is the mask of its ``segmentation``; its ``bbox`` is the region only where it has
no segmentation or the segmentation covers no pixel. A box is not added to a mask: regions are unioned
downstream and a polygon lies inside its bbox, so the union would be the box. Each image becomes one probe
sample per class among its objects (see :mod:`cam_audit.probe.image_regions`). Annotations of a
*spurious* category (default: a category named ``"watermark"``) become spurious regions of every sample
of their image; all other annotations are objects of the class their category maps to.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from pycocotools import mask as coco_mask
from torch import Tensor

from cam_audit.errors import ProbeError
from cam_audit.probe.coco_schema import CocoAnnotation, check_coco
from cam_audit.probe.image_regions import ImageRegions, RegionKind, check_unique_ids
from cam_audit.probe.sample import ProbeSample, image_size
from cam_audit.probe.validation import check_boxes, check_channels, check_masks, class_index

#: The default spurious category: a file without it simply has no spurious regions.
DEFAULT_SPURIOUS = ("watermark",)


def load_coco(
    annotation_json: str | Path,
    image_dir: str | Path,
    spurious_categories: Sequence[str | int] = DEFAULT_SPURIOUS,
    categories: Mapping[str | int, int] | None = None,
    channels: int | None = None,
) -> tuple[list[ProbeSample], list[str]]:
    """Probe samples and class names from a COCO instances file.

    Args:
        annotation_json: path of the COCO file (``images``, ``annotations``, ``categories``).
        image_dir: folder the images' ``file_name`` is relative to.
        spurious_categories: names or ids of categories that mark spurious cues; each must be in the
            file, except the default ``("watermark",)``, which marks nothing in a file without it.
        categories: ``{category id or name: class index}`` for the object categories. Default: the
            non-spurious categories sorted by id, mapped to ``0..K-1``.
        channels: ``None`` or 3: images decoded to RGB; 1: to their luminance.

    Returns:
        ``(samples, classes)``, samples in the order of the file's ``images`` list, the samples of one
        image in class order (ids ``"<file_name>#<class name>"`` for an image of several classes, else
        its ``file_name``; ``image_id`` the COCO image id); ``classes[k]`` is the name of the category
        mapped to class ``k`` (``"class_k"`` for an index no category maps to).

    Raises:
        ProbeError: naming the file, image or annotation, for an unreadable file, a malformed structure
            (see :mod:`cam_audit.probe.coco_schema`), a name or id in ``spurious_categories`` or
            ``categories`` that the file lacks, a missing or unreadable image, a box outside its image or
            of zero area, a polygon vertex outside its image, a mask of the wrong size, an image without
            objects.
    """
    channels = check_channels(channels) or 3
    path = Path(annotation_json)
    coco = check_coco(_read_json(path), path)
    spurious_ids = _resolve_spurious(spurious_categories, coco.categories, path)
    class_of, classes = _class_mapping(categories, coco.categories, spurious_ids, path)

    per_image: dict[int, list[CocoAnnotation]] = {image.id: [] for image in coco.images}
    for annotation in coco.annotations:
        per_image[annotation.image_id].append(annotation)

    samples = []
    for image in coco.images:
        file_path = Path(image_dir) / image.file_name
        where = f"image {image.file_name!r} (id {image.id}) of {path}"
        size = image_size(file_path, where)
        declared = (image.height or size[0], image.width or size[1])
        if declared != size:
            raise ProbeError(
                f"{where}: the file is {size[1]}x{size[0]} (W x H) but the annotation file declares "
                f"{declared[1]}x{declared[0]}; fix 'width'/'height' or the image."
            )
        regions = _regions(per_image[image.id], size, where, class_of, spurious_ids)
        samples.extend(regions.samples(image.file_name, image.id, file_path, size, classes, channels))
    check_unique_ids(samples, f"annotation file {path}")
    return samples, classes


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ProbeError(f"annotation file {path} does not exist; check the path.")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ProbeError(f"annotation file {path} is empty; write a COCO instances JSON there.")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ProbeError(f"annotation file {path} is not valid JSON ({err}).") from err


def _resolve_category(key: str | int, names: Mapping[int, str], path: Path, argument: str) -> int:
    if not isinstance(key, str):
        try:  # an id: a Python or numpy integer
            cid: int | None = class_index(key, argument)
        except ProbeError:
            cid = None
        if cid is not None and cid in names:
            return cid
    matches = [cid for cid, name in names.items() if name == key]
    if not matches:
        known = ", ".join(f"{cid}: {name!r}" for cid, name in sorted(names.items()))
        raise ProbeError(
            f"{argument}: unknown category {key!r} in {path}; its categories are {{{known}}} (names match "
            "exactly, case included; ids are integers)."
        )
    return matches[0]


def _resolve_spurious(keys: Sequence[str | int] | str, names: Mapping[int, str], path: Path) -> set[int]:
    """Ids of the categories named (or numbered) in ``keys``.

    Every name or id must be in the file, except the default ``("watermark",)``, which marks nothing in
    a file without such a category; but a category whose name differs from it only in case is an error,
    so that a ``"Watermark"`` category is not taken for a class.
    """
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    if keys == DEFAULT_SPURIOUS and DEFAULT_SPURIOUS[0] not in names.values():
        similar = [name for name in names.values() if name.casefold() == DEFAULT_SPURIOUS[0]]
        if similar:
            raise ProbeError(
                f"spurious_categories: {path} has no category named {DEFAULT_SPURIOUS[0]!r} but has "
                f"{similar[0]!r}; pass spurious_categories=({similar[0]!r},) to mark it as spurious, or "
                "spurious_categories=() to make it a class."
            )
        return set()
    return {_resolve_category(key, names, path, "spurious_categories") for key in keys}


def _class_mapping(
    categories: Mapping[str | int, int] | None, names: Mapping[int, str], spurious_ids: set[int], path: Path
) -> tuple[dict[int, int], list[str]]:
    if categories is None:
        object_ids = sorted(cid for cid in names if cid not in spurious_ids)
        return {cid: k for k, cid in enumerate(object_ids)}, [names[cid] for cid in object_ids]
    class_of: dict[int, int] = {}
    for key, index in categories.items():
        try:
            value = class_index(index, "categories")
        except ProbeError:
            value = -1
        if value < 0:
            raise ProbeError(f"categories: class index {index!r} for {key!r} must be an int >= 0.")
        class_of[_resolve_category(key, names, path, "categories")] = value
    classes = [f"class_{k}" for k in range(max(class_of.values(), default=-1) + 1)]
    for cid in sorted(class_of, reverse=True):  # the smallest category id names a shared class
        classes[class_of[cid]] = names[cid]
    return class_of, classes


def _regions(
    annotations: list[CocoAnnotation],
    size: tuple[int, int],
    where: str,
    class_of: Mapping[int, int],
    spurious_ids: set[int],
) -> ImageRegions:
    """The object regions by class and the spurious regions of one image, from its annotations."""
    regions = ImageRegions()
    for annotation in annotations:
        category = annotation.category_id
        at = f"{annotation.name} ({where})"
        spurious = category in spurious_ids
        if not spurious and category not in class_of:
            raise ProbeError(
                f"{at}: category {category} is not mapped to a class; add it to `categories` or to "
                "`spurious_categories`."
            )
        kind, region = _annotation_region(annotation, size, at)
        if spurious:
            regions.add_spurious(kind, region)
        else:
            regions.add_object(class_of[category], kind, region)
    if not regions.labels:
        raise ProbeError(
            f"{where}: no object annotation, so the image has no label; annotate its object or "
            "remove the image from 'images'."
        )
    return regions


def _annotation_region(
    annotation: CocoAnnotation, size: tuple[int, int], where: str
) -> tuple[RegionKind, Tensor]:
    """The region of one annotation: the mask of its segmentation, or its bbox (xyxy) where it has no
    segmentation or the segmentation decodes to no pixel.

    Both are checked whichever is used, so a bbox outside the image or of zero area is refused even next
    to a segmentation: it says the annotation does not fit its image.
    """
    box = None
    if annotation.bbox is not None:
        x, y, w, h = annotation.bbox
        box = check_boxes([[x, y, x + w, y + h]], size, where)
    mask = None
    if annotation.segmentation is not None:
        mask = check_masks(_decode(annotation.segmentation, size, where), size, where)
    if mask is not None and (box is None or bool(mask.any())):
        return "masks", mask
    if box is None:  # check_coco refuses such an annotation first
        raise ProbeError(f"{where}: has neither a 'bbox' nor a 'segmentation'; give it one or remove it.")
    return "boxes", box


def _decode(segmentation: Any, size: tuple[int, int], where: str) -> Tensor:
    """Decode a polygon list, an uncompressed RLE or a compressed RLE to bool ``[1, h, w]``."""
    height, width = size
    if isinstance(segmentation, list):
        _check_polygons(segmentation, size, where)
    try:
        if isinstance(segmentation, list):
            rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            rle = coco_mask.frPyObjects(segmentation, *segmentation["size"])
        elif isinstance(segmentation, dict):
            rle = dict(segmentation)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
        else:
            raise TypeError(f"unsupported segmentation of type {type(segmentation).__name__}")
        with warnings.catch_warnings():  # pycocotools' numpy-2 copy-keyword notice, not the user's concern
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = coco_mask.decode(rle)
    except (TypeError, ValueError, KeyError, IndexError) as err:
        raise ProbeError(f"{where}: segmentation cannot be decoded ({err}); use polygons or RLE.") from err
    return torch.from_numpy(decoded.astype(bool))[None]


def _check_polygons(polygons: list[list[float]], size: tuple[int, int], where: str) -> None:
    """Refuse a polygon vertex outside the image, which rasterising would clip without a word."""
    height, width = size
    for k, polygon in enumerate(polygons):
        for x, y in zip(polygon[0::2], polygon[1::2], strict=True):
            if not (0 <= x <= width and 0 <= y <= height):
                raise ProbeError(
                    f"{where}: segmentation polygon {k} has the vertex ({x:g}, {y:g}) outside the "
                    f"{width}x{height} (W x H) image; vertices must stay within [0, {width}] x [0, {height}]."
                )


__all__ = ["load_coco"]
