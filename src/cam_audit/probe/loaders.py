"""Read probe samples from a region manifest CSV or from folders of images and masks.

Images are only checked here (they exist, their header can be read, regions fit their size); their
pixels are read when a sample is accessed. Errors name the CSV row, the image or the mask file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from cam_audit.errors import ProbeError
from cam_audit.probe.pixels import decode_pixels, mask_from_pixels
from cam_audit.probe.sample import ProbeSample, image_size
from cam_audit.probe.validation import check_boxes, check_label, check_masks

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
    manifest_csv: str | Path, classes: Sequence[str] | None = None
) -> tuple[list[ProbeSample], list[str] | None]:
    """Probe samples from a manifest with one row per region (see ``ProbeSet.from_csv``).

    Returns:
        ``(samples, classes)``; samples in order of each image's first row.
    """
    path = Path(manifest_csv)
    table = read_table(path, ("image", "label"))
    has_boxes = all(column in table.columns for column in BOX_COLUMNS)
    if not has_boxes and "mask" not in table.columns:
        raise ProbeError(
            f"CSV file {path} has neither box columns {list(BOX_COLUMNS)} nor a 'mask' column; add one."
        )
    mapping, classes = label_mapping(list(table["label"]), classes)
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
        regions: dict[str, list[Tensor]] = {
            "boxes": [],
            "masks": [],
            "spurious_boxes": [],
            "spurious_masks": [],
        }
        labels: dict[int, int] = {}  # label -> first row that gave it
        for row in rows:
            where = f"row {row + 1} of {path}"
            record = table.iloc[row]
            role = record["role"] if "role" in table.columns and record["role"] != "" else "object"
            if role not in ROLES:
                raise ProbeError(f"{where}: role {role!r} must be one of {list(ROLES)} (empty means object).")
            if record["label"] != "":
                labels.setdefault(check_label(mapping[record["label"]], classes, where), row)
            prefix = "spurious_" if role == "spurious" else ""
            box = [record[column] for column in BOX_COLUMNS] if has_boxes else ["", "", "", ""]
            mask = record["mask"] if "mask" in table.columns else ""
            if any(box):
                if not all(box):
                    raise ProbeError(f"{where}: give all of {list(BOX_COLUMNS)} or none of them, got {box}.")
                regions[prefix + "boxes"].append(check_boxes([_number(v, where) for v in box], size, where))
            if mask:
                regions[prefix + "masks"].append(read_mask(path.parent / mask, size, where))
            if not any(box) and not mask:
                raise ProbeError(
                    f"{where}: the row has neither a box nor a mask; fill one or remove the row."
                )
        if len(labels) != 1:
            found = {f"row {row + 1}": label for label, row in labels.items()}
            raise ProbeError(
                f"image {image!r} ({first}) needs exactly one label across its rows, got {found or 'none'}; "
                "give every row of an image the same label."
            )
        stacked = {key: torch.cat(values) if values else None for key, values in regions.items()}
        samples.append(
            ProbeSample(sample_id=image, label=next(iter(labels)), size=size, image=file_path, **stacked)
        )
    return samples, classes


def load_mask_dir(
    image_dir: str | Path,
    mask_dir: str | Path,
    labels_csv: str | Path,
    spurious_mask_dir: str | Path | None = None,
    classes: Sequence[str] | None = None,
) -> tuple[list[ProbeSample], list[str] | None]:
    """Probe samples from an image folder, a mask folder (same file stems) and a ``image,label`` CSV.

    Every image needs an object mask; a spurious mask (same stem in ``spurious_mask_dir``) is optional.
    """
    table = read_table(labels_csv, ("image", "label"))
    mapping, classes = label_mapping(list(table["label"]), classes)
    masks = _MaskFolder(Path(mask_dir), "mask_dir")
    spurious_masks = _MaskFolder(Path(spurious_mask_dir), "spurious_mask_dir") if spurious_mask_dir else None
    samples = []
    for row, (image, label) in enumerate(zip(table["image"], table["label"], strict=True)):
        where = f"row {row + 1} of {labels_csv}"
        if image == "" or label == "":
            raise ProbeError(f"{where}: both 'image' and 'label' must be filled.")
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
        return (pngs or candidates or [None])[0]


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError as err:
        raise ProbeError(f"{where}: {text!r} is not a number; box columns hold pixel coordinates.") from err


__all__ = ["BOX_COLUMNS", "label_mapping", "load_csv", "load_mask_dir", "read_mask", "read_table"]
