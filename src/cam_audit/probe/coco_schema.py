"""Check the structure of a COCO instances file before any of it is used.

Every fault is a :class:`ProbeError` that names the entry (``images[2]``, ``annotations[3] (id 12)``,
``categories[0]``), the field and the fix, instead of a ``KeyError`` or ``TypeError`` from deep inside
the loader. What is checked: the three top-level lists; every image has an integer ``id`` (unique) and a
``file_name`` (unique), and optional positive integer ``width``/``height``; every category has a unique
integer ``id`` and a ``name``; every annotation has an ``image_id`` listed in ``images`` and a
``category_id`` listed in ``categories``, a ``bbox`` of four numbers and/or a ``segmentation`` that is a
list of polygons (six or more numbers each, an even count) or an RLE object with ``size`` and ``counts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cam_audit.errors import ProbeError

SECTIONS = ("images", "annotations", "categories")
_EXAMPLES = {
    "images": '[{"id": 1, "file_name": "a.png", "height": 480, "width": 640}]',
    "annotations": '[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [x, y, width, height]}]',
    "categories": '[{"id": 1, "name": "cat"}]',
}


@dataclass(frozen=True)
class CocoImage:
    """One entry of ``images``; ``entry`` names it in errors (``"images[2]"``)."""

    entry: str
    id: int
    file_name: str
    height: int | None
    width: int | None


@dataclass(frozen=True)
class CocoAnnotation:
    """One entry of ``annotations``; ``name`` is ``"annotation <id>"``, or ``"annotations[i]"`` without id."""

    name: str
    image_id: int
    category_id: int
    bbox: list[float] | None
    segmentation: list[list[float]] | dict[str, Any] | None


@dataclass(frozen=True)
class CocoFile:
    """A COCO instances file whose structure has been checked."""

    images: list[CocoImage]
    annotations: list[CocoAnnotation]
    categories: dict[int, str]


def check_coco(data: Any, path: Path) -> CocoFile:
    """Check ``data`` (the parsed JSON of ``path``) and return its images, annotations and categories.

    Raises:
        ProbeError: naming the entry and field of the first structural fault.
    """
    if not isinstance(data, dict):
        raise ProbeError(
            f"annotation file {path} holds {_kind(data)}; a COCO file is a JSON object with images, "
            "annotations and categories."
        )
    missing = [key for key in SECTIONS if key not in data]
    if missing:
        raise ProbeError(
            f"annotation file {path} lacks the COCO keys {missing}; it needs images, annotations, categories."
        )
    for key in SECTIONS:
        if not isinstance(data[key], list):
            raise ProbeError(
                f"annotation file {path}: '{key}' must be a list of objects, got {_kind(data[key])}; "
                f"write it as {_EXAMPLES[key]}."
            )
    categories = _categories(data["categories"], path)
    images = _images(data["images"], path)
    image_ids = {image.id for image in images}
    annotations = [
        _annotation(i, entry, path, image_ids, categories) for i, entry in enumerate(data["annotations"])
    ]
    return CocoFile(images=images, annotations=annotations, categories=categories)


def _categories(entries: list[Any], path: Path) -> dict[int, str]:
    names: dict[int, str] = {}
    first: dict[int, int] = {}
    for i, entry in enumerate(entries):
        at = f"categories[{i}] of {path}"
        record = _record(entry, at, "categories")
        cid = _integer(record, "id", at, "give every category an integer id")
        names[cid] = _text(record, "name", at, "give every category a name")
        if cid in first:
            raise ProbeError(
                f"{at}: id {cid} is already used by categories[{first[cid]}]; ids must be unique."
            )
        first[cid] = i
    return names


def _images(entries: list[Any], path: Path) -> list[CocoImage]:
    images: list[CocoImage] = []
    by_id: dict[int, str] = {}
    by_file: dict[str, str] = {}
    for i, entry in enumerate(entries):
        at = f"images[{i}] of {path}"
        record = _record(entry, at, "images")
        image = CocoImage(
            entry=f"images[{i}]",
            id=_integer(record, "id", at, "give every image an integer id"),
            file_name=_text(record, "file_name", at, "give the image's path relative to the image folder"),
            height=_size(record, "height", at),
            width=_size(record, "width", at),
        )
        if image.id in by_id:
            raise ProbeError(f"{at}: id {image.id} is already used by {by_id[image.id]}; ids must be unique.")
        if image.file_name in by_file:
            raise ProbeError(
                f"{at}: file_name {image.file_name!r} is already listed as {by_file[image.file_name]}; list "
                "each image once and give all its annotations that image's id."
            )
        by_id[image.id] = by_file[image.file_name] = image.entry
        images.append(image)
    return images


def _annotation(
    index: int, entry: Any, path: Path, image_ids: set[int], categories: dict[int, str]
) -> CocoAnnotation:
    record = _record(entry, f"annotations[{index}] of {path}", "annotations")
    has_id = record.get("id") is not None
    at = (
        f"annotations[{index}] (id {record['id']}) of {path}" if has_id else f"annotations[{index}] of {path}"
    )
    image_id = _integer(record, "image_id", at, "give the id of the image the annotation belongs to")
    if image_id not in image_ids:
        ids = sorted(image_ids)
        listed = ", ".join(str(v) for v in ids[:20]) + (", ..." if len(ids) > 20 else "")
        raise ProbeError(
            f"{at}: image_id {image_id} is not listed in 'images' (ids: {listed}); add the image or remove "
            "the annotation."
        )
    category_id = _integer(record, "category_id", at, f"use one of the categories {_known(categories)}")
    if category_id not in categories:
        raise ProbeError(
            f"{at}: category_id {category_id} is not listed in 'categories' {_known(categories)}; add the "
            "category or fix the id."
        )
    bbox = _bbox(record.get("bbox"), at)
    segmentation = _segmentation(record.get("segmentation"), at)
    if bbox is None and segmentation is None:
        raise ProbeError(f"{at}: has neither a 'bbox' nor a 'segmentation'; give it one or remove it.")
    name = f"annotation {record['id']}" if has_id else f"annotations[{index}]"
    return CocoAnnotation(name, image_id, category_id, bbox, segmentation)


def _bbox(value: Any, at: str) -> list[float] | None:
    if value is None or value == []:
        return None
    if not isinstance(value, list) or len(value) != 4 or not all(_is_number(v) for v in value):
        raise ProbeError(
            f"{at}: 'bbox' must be 4 numbers [x, y, width, height] in pixels, got {_short(value)}; fix it or "
            "remove the field."
        )
    return [float(v) for v in value]


def _segmentation(value: Any, at: str) -> list[list[float]] | dict[str, Any] | None:
    if value is None or value == [] or value == {}:
        return None
    if isinstance(value, list):
        for k, polygon in enumerate(value):
            if (
                not isinstance(polygon, list)
                or len(polygon) < 6
                or len(polygon) % 2
                or not all(_is_number(v) for v in polygon)
            ):
                raise ProbeError(
                    f"{at}: 'segmentation' polygon {k} must be a list of 6 or more numbers [x1, y1, x2, y2, "
                    f"x3, y3, ...] (an even count), got {_short(polygon)}; a polygon segmentation is a list "
                    "of such lists."
                )
        return [[float(v) for v in polygon] for polygon in value]
    if isinstance(value, dict):
        size = value.get("size")
        counts = value.get("counts")
        size_ok = isinstance(size, list) and len(size) == 2 and all(_is_count(v) for v in size)
        counts_ok = isinstance(counts, str) or (
            isinstance(counts, list) and all(_is_count(v) for v in counts)
        )
        if size_ok and counts_ok:
            return value
        raise ProbeError(
            f"{at}: an RLE 'segmentation' needs 'size' [height, width] and 'counts' (a string or a list of "
            f"integers), got {_short(value)}."
        )
    raise ProbeError(f"{at}: 'segmentation' must be a list of polygons or an RLE object, got {_kind(value)}.")


def _record(entry: Any, at: str, section: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ProbeError(f"{at}: must be an object such as {_EXAMPLES[section][1:-1]}, got {_kind(entry)}.")
    return entry


def _integer(record: dict[str, Any], field: str, at: str, fix: str) -> int:
    if field not in record:
        raise ProbeError(f"{at}: '{field}' is missing; {fix}.")
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProbeError(f"{at}: '{field}' must be an integer, got {value!r}; {fix}.")
    return value


def _text(record: dict[str, Any], field: str, at: str, fix: str) -> str:
    if field not in record:
        raise ProbeError(f"{at}: '{field}' is missing; {fix}.")
    value = record[field]
    if not isinstance(value, str) or value == "":
        raise ProbeError(f"{at}: '{field}' must be a non-empty string, got {value!r}; {fix}.")
    return value


def _size(record: dict[str, Any], field: str, at: str) -> int | None:
    if record.get(field) is None:
        return None
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProbeError(
            f"{at}: '{field}' must be a positive integer (pixels), got {value!r}; fix it or remove the field."
        )
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _kind(value: Any) -> str:
    """The JSON type of ``value`` with its article, e.g. ``"a dict"``."""
    if value is None:
        return "null"
    names = {
        dict: "a dict",
        list: "a list",
        str: "a string",
        bool: "a bool",
        int: "a number",
        float: "a number",
    }
    return names.get(type(value), f"a {type(value).__name__}")


def _known(categories: dict[int, str]) -> str:
    return "{" + ", ".join(f"{cid}: {name!r}" for cid, name in sorted(categories.items())) + "}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["CocoAnnotation", "CocoFile", "CocoImage", "check_coco"]
