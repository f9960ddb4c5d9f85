"""Read probe samples from a region manifest CSV or from folders of images and masks.

Images are only checked here (they exist, their header can be read, regions fit their size); their
pixels are read when a sample is accessed. Errors name the CSV row, the image or the mask file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from cam_audit.errors import ProbeError
from cam_audit.probe.image_regions import ImageRegions, RegionKind, check_unique_ids
from cam_audit.probe.pixels import decode_pixels, mask_from_pixels
from cam_audit.probe.sample import ProbeSample, image_size
from cam_audit.probe.validation import check_boxes, check_channels, check_label, check_masks

BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")
ROLES = ("object", "spurious")


def read_table(path: str | Path, required: Sequence[str]) -> pd.DataFrame:
    """A CSV file as a table of stripped strings (``""`` where empty), checking the required columns.

    Raises:
        ProbeError: the file is missing or empty, or a required column is absent.
    """
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"CSV file {path} does not exist; check the path.")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError as err:
        raise ProbeError(f"CSV file {path} is empty; it needs a header row and one row per region.") from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ProbeError(f"CSV file {path} cannot be parsed ({err}).") from err
    table.columns = [str(column).strip() for column in table.columns]
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise ProbeError(
            f"CSV file {path} lacks the column(s) {missing}; it has {list(table.columns)} and needs "
            f"{list(required)}."
        )
    if table.empty:
        raise ProbeError(f"CSV file {path} has a header but no rows; add one row per region.")
    return table.apply(lambda column: column.str.strip())


def label_mapping(
    values: Sequence[str], classes: Sequence[str] | None
) -> tuple[dict[str, int], list[str] | None]:
    """Map label texts to class indices: integers as they are, names through ``classes``.

    Without ``classes``, names are sorted alphabetically to ``0..K-1`` (integers and names cannot be mixed).

    Raises:
        ProbeError: a name not in ``classes``, or names mixed with integers without ``classes``.

    Example:
        >>> label_mapping(["dog", "cat", "dog"], None)
        ({'cat': 0, 'dog': 1}, ['cat', 'dog'])
    """
    texts = sorted({value for value in values if value != ""})
    names = [text for text in texts if not _is_int(text)]
    if classes is None and names and len(names) < len(texts):
        raise ProbeError(
            f"labels mix class indices and names ({texts}); use one kind, or pass classes=[...] to map names."
        )
    if classes is None and names:
        return {name: k for k, name in enumerate(names)}, names
    mapping = {text: int(text) for text in texts if _is_int(text)}
    if classes is not None:
        for name in names:
            if name not in classes:
                raise ProbeError(f"unknown label {name!r}; known classes are {list(classes)}.")
            mapping[name] = list(classes).index(name)
    return mapping, list(classes) if classes is not None else None


def load_csv(
    manifest_csv: str | Path, classes: Sequence[str] | None = None, channels: int | None = None
) -> tuple[list[ProbeSample], list[str] | None]:
    """Probe samples from a manifest with one row per region (see ``ProbeSet.from_csv``).

    The rows of an image with objects of several classes give one sample per class
    (:mod:`cam_audit.probe.image_regions`); ``image_id`` is the ``image`` column.

    Returns:
        ``(samples, classes)``; samples in order of each image's first row, an image's samples in class
        order.
    """
    path = Path(manifest_csv)
    channels = check_channels(channels) or 3
    table = read_table(path, ("image", "label"))
    has_boxes = all(column in table.columns for column in BOX_COLUMNS)
    if not has_boxes and "mask" not in table.columns:
        raise ProbeError(
            f"CSV file {path} has neither box columns {list(BOX_COLUMNS)} nor a 'mask' column; add one."
        )
    mapping, classes = label_mapping(list(table["label"]), classes)
    manifest = _Manifest(path, table, mapping, classes, has_boxes)
    rows_of: dict[str, list[int]] = {}
    for row, image in enumerate(table["image"]):
        rows_of.setdefault(image, []).append(row)

    samples = []
    for image, rows in rows_of.items():
        first = f"row {rows[0] + 1} of {path}"
        if image == "":
            raise ProbeError(
                f"{first}: the 'image' column is empty; give the image path relative to the CSV."
            )
        file_path = path.parent / image
        size = image_size(file_path, first)
        regions = _image_regions(manifest, image, [_read_row(manifest, row, size) for row in rows])
        samples.extend(regions.samples(image, image, file_path, size, classes, channels))
    check_unique_ids(samples, f"CSV file {path}")
    return samples, classes


@dataclass(frozen=True)
class _Manifest:
    path: Path
    table: pd.DataFrame
    mapping: dict[str, int]
    classes: list[str] | None
    has_boxes: bool

    def name(self, label: int) -> str:
        return repr(self.classes[label]) if self.classes is not None else str(label)


@dataclass(frozen=True)
class _Row:
    """One manifest row, checked: its role, label (``None`` when empty) and regions."""

    where: str
    role: str
    label: int | None
    regions: list[tuple[RegionKind, Tensor]]


def _read_row(manifest: _Manifest, row: int, size: tuple[int, int]) -> _Row:
    where = f"row {row + 1} of {manifest.path}"
    record = manifest.table.iloc[row]
    role = record["role"] if "role" in manifest.table.columns and record["role"] != "" else "object"
    if role not in ROLES:
        raise ProbeError(f"{where}: role {role!r} must be one of {list(ROLES)} (empty means object).")
    label = None
    if record["label"] != "":
        label = check_label(manifest.mapping[record["label"]], manifest.classes, where)
    box = [record[column] for column in BOX_COLUMNS] if manifest.has_boxes else ["", "", "", ""]
    mask = record["mask"] if "mask" in manifest.table.columns else ""
    regions: list[tuple[RegionKind, Tensor]] = []
    if any(box):
        if not all(box):
            raise ProbeError(f"{where}: give all of {list(BOX_COLUMNS)} or none of them, got {box}.")
        regions.append(("boxes", check_boxes([_number(v, where) for v in box], size, where)))
    if mask:
        regions.append(("masks", read_mask(manifest.path.parent / mask, size, where)))
    if not regions:
        raise ProbeError(f"{where}: the row has neither a box nor a mask; fill one or remove the row.")
    return _Row(where, role, label, regions)


def _image_regions(manifest: _Manifest, image: str, rows: list[_Row]) -> ImageRegions:
    """The regions of one image by class: its object rows' labels are its classes.

    An object row without a label belongs to the image's one class; a spurious row goes to every sample
    of the image, and its label, when given, must be one of the image's classes (or, in an image without
    object rows, is its class).
    """
    first = rows[0].where
    labels = sorted({row.label for row in rows if row.role == "object" and row.label is not None})
    if not labels:
        labels = sorted({row.label for row in rows if row.label is not None})
        if len(labels) != 1:
            found = ", ".join(manifest.name(label) for label in labels) or "none"
            raise ProbeError(
                f"image {image!r} ({first}) needs a label on its object rows, got {found}; give each object "
                "row its class (an image without object rows takes the one label of its spurious rows)."
            )
    names = ", ".join(manifest.name(label) for label in labels)
    regions = ImageRegions()
    for label in labels:
        regions.add_class(label)
    for row in rows:
        if row.role == "spurious" and row.label is not None and row.label not in labels:
            raise ProbeError(
                f"{row.where}: the spurious row is labelled {manifest.name(row.label)}, a class no object "
                f"row of image {image!r} has ({names}); a spurious region goes to every sample of its "
                "image, so leave its label empty or give one of the image's classes."
            )
        if row.role == "object" and row.label is None and len(labels) > 1:
            raise ProbeError(
                f"{row.where}: the object row has no label, and image {image!r} has objects of several "
                f"classes ({names}); fill in the row's label."
            )
        for kind, region in row.regions:
            if row.role == "spurious":
                regions.add_spurious(kind, region)
            else:
                regions.add_object(labels[0] if row.label is None else row.label, kind, region)
    return regions


def load_mask_dir(
    image_dir: str | Path,
    mask_dir: str | Path,
    labels_csv: str | Path,
    spurious_mask_dir: str | Path | None = None,
    classes: Sequence[str] | None = None,
    channels: int | None = None,
) -> tuple[list[ProbeSample], list[str] | None]:
    """Probe samples from an image folder, a mask folder (same file stems) and a ``image,label`` CSV.

    Every image needs an object mask; a spurious mask (same stem in ``spurious_mask_dir``) is optional.
    An image has one mask, so it has one class: ``labels_csv`` lists each image once.
    """
    channels = check_channels(channels) or 3
    table = read_table(labels_csv, ("image", "label"))
    mapping, classes = label_mapping(list(table["label"]), classes)
    masks = _MaskFolder(Path(mask_dir), "mask_dir")
    spurious_masks = _MaskFolder(Path(spurious_mask_dir), "spurious_mask_dir") if spurious_mask_dir else None
    samples = []
    first_row: dict[str, int] = {}
    for row, (image, label) in enumerate(zip(table["image"], table["label"], strict=True)):
        where = f"row {row + 1} of {labels_csv}"
        if image == "" or label == "":
            raise ProbeError(f"{where}: both 'image' and 'label' must be filled.")
        if image in first_row:
            raise ProbeError(
                f"{where}: image {image!r} is already listed in row {first_row[image] + 1}; a mask folder "
                "holds one mask per image, so an image has one class. For an image with objects of several "
                "classes, use ProbeSet.from_csv with one mask per class (rows of the same image, each with "
                "its label and mask) or from_coco."
            )
        first_row[image] = row
        file_path = Path(image_dir) / image
        size = image_size(file_path, where)
        mask_path = masks.find(file_path.stem)
        if mask_path is None:
            raise ProbeError(
                f"{where}: no mask for {image!r} in {mask_dir}; masks share the image's file stem "
                f"(e.g. {Path(mask_dir) / (file_path.stem + '.png')})."
            )
        spurious_path = spurious_masks.find(file_path.stem) if spurious_masks else None
        samples.append(
            ProbeSample(
                sample_id=image,
                label=check_label(mapping[label], classes, where),
                size=size,
                image=file_path,
                masks=read_mask(mask_path, size, where),
                spurious_masks=read_mask(spurious_path, size, where) if spurious_path else None,
                image_id=image,
                channels=channels,
            )
        )
    return samples, classes


def read_mask(path: Path, size: tuple[int, int], where: str) -> Tensor:
    """A mask file as bool ``[1, H, W]``, checked against the image size.

    Which pixels are inside (the rule is in :mod:`cam_audit.probe.pixels` and the README): the value of a
    grayscale file or the luminance of a colour one, or the alpha channel when only the alpha varies;
    non-zero is inside in lossless 8-bit and bilevel files, above half the range in lossy (JPEG, WebP) and
    16-bit files.

    Raises:
        ProbeError: the file is missing, cannot be decoded, does not have the image's size, or its colour and
            alpha disagree (see :func:`~cam_audit.probe.pixels.mask_from_pixels`).
    """
    pixels = decode_pixels(path, "mask", where)
    mask = torch.from_numpy(mask_from_pixels(pixels, path, where))
    return check_masks(mask, size, f"{where} (mask {path.name})")


class _MaskFolder:
    """The files of a mask folder by stem, listed once; names are compared literally, never as patterns."""

    def __init__(self, folder: Path, argument: str) -> None:
        if not folder.is_dir():
            raise ProbeError(f"{argument} {folder} is not a folder; check the path.")
        self.folder = folder
        self.by_stem: dict[str, list[Path]] = {}
        for path in sorted(folder.iterdir()):
            if path.is_file():
                self.by_stem.setdefault(path.stem, []).append(path)

    def find(self, stem: str) -> Path | None:
        """The file named ``stem`` plus one suffix, a ``.png`` first (``None`` when there is none)."""
        candidates = self.by_stem.get(stem, [])
        pngs = [p for p in candidates if p.suffix.lower() == ".png"]
        return next(iter(pngs or candidates), None)


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError as err:
        raise ProbeError(f"{where}: {text!r} is not a number; box columns hold pixel coordinates.") from err


__all__ = ["BOX_COLUMNS", "label_mapping", "load_csv", "load_mask_dir", "read_mask", "read_table"]
