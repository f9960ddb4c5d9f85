"""Writers of probe files, good and bad, for the loader fault-injection tests (no binary fixtures).

Every probe here is 48x64 (H x W). ``png`` writes PNGs byte by byte, because Pillow cannot write 16-bit
colour or gray+alpha PNGs; the rest use Pillow.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as coco_mask
from torchvision.transforms import v2

from cam_audit.probe import ProbeSet

H, W = 48, 64
CSV_HEADER = "image,label,role,x_min,y_min,x_max,y_max,mask\n"
PNG_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)


def png(path: Path, values: np.ndarray) -> Path:
    """Write ``values`` (uint8 or uint16, ``[H, W]`` or ``[H, W, C]``) as a PNG of that bit depth."""
    values = values if values.ndim == 3 else values[..., None]
    height, width, channels = values.shape
    depth = 16 if values.dtype == np.uint16 else 8
    rows = values.astype(">u2" if depth == 16 else "u1")
    raw = b"".join(b"\x00" + rows[r].tobytes() for r in range(height))  # filter 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, PNG_COLOUR_TYPE[channels], 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def save(path: Path, image: Image.Image, **options: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def rgb_image(path: Path, seed: int = 0, size: tuple[int, int] = (H, W)) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    save(path, Image.fromarray(pixels))
    return pixels


def disc(radius: float = 9.0, centre: tuple[float, float] = (22.0, 30.0)) -> np.ndarray:
    """A bool ``[H, W]`` disc, the ground-truth object of the mask cases."""
    rows, cols = np.mgrid[:H, :W]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < radius**2


def csv(tmp: Path, rows: list[str], header: str = CSV_HEADER) -> Path:
    path = tmp / "probe.csv"
    path.write_text(header + "".join(row + "\n" for row in rows))
    return path


def image_via_csv(tmp: Path, name: str) -> Any:
    """The decoded image ``images/<name>`` as a probe returns it (float ``[3, H, W]``)."""
    return ProbeSet.from_csv(csv(tmp, [f"images/{name},0,,0,0,4,4,"]))[0][0].as_subclass(torch.Tensor)


def mask_via_dir(tmp: Path, mask_name: str, image_name: str = "a.png") -> Any:
    """The object mask a probe reads from ``masks/<mask_name>`` for the image ``images/<image_name>``."""
    rgb_image(tmp / "images" / image_name)
    labels = csv(tmp, [f"{image_name},0"], header="image,label\n")
    probe = ProbeSet.from_mask_dir(tmp / "images", tmp / "masks", labels)
    return probe[0][1]["masks"][0]


def coco_data() -> dict[str, Any]:
    """Two images: 'one.png' with a 'cat' (box + polygon) and a watermark, 'two.png' with a 'dog'."""
    return {
        "images": [
            {"id": 7, "file_name": "one.png", "height": H, "width": W},
            {"id": 9, "file_name": "two.png", "height": H, "width": W},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 3,
                "bbox": [2, 3, 6, 4],
                "segmentation": [[2, 3, 8, 3, 8, 7]],
            },
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [20, 10, 5, 4]},
            {"id": 3, "image_id": 7, "category_id": 99, "bbox": [0, 40, 10, 8]},
            {"id": 4, "image_id": 9, "category_id": 5, "bbox": [10, 5, 10, 10]},
        ],
        "categories": [{"id": 5, "name": "dog"}, {"id": 3, "name": "cat"}, {"id": 99, "name": "watermark"}],
    }


def coco(tmp: Path, change: Callable[[dict[str, Any]], Any] | None = None, **options: Any) -> ProbeSet:
    """Write the two COCO images and ``coco_data()`` after ``change(data)``, then load it."""
    for seed, name in enumerate(("one.png", "two.png")):
        rgb_image(tmp / name, seed)
    data = coco_data()
    if change is not None:
        change(data)
    path = tmp / "instances.json"
    path.write_text(json.dumps(data))
    return ProbeSet.from_coco(path, tmp, **options)


def coco_text(tmp: Path, text: str) -> ProbeSet:
    """Load an annotation file holding ``text`` exactly."""
    path = tmp / "instances.json"
    path.write_text(text)
    return ProbeSet.from_coco(path, tmp)


# --- what the fault cases write and load ----------------------------------------------------------------

OBJECT = disc()
OTHER = disc(centre=(30.0, 40.0))
HALO = disc(radius=11.0) & ~OBJECT
_RNG = np.random.default_rng(7)
GRAY16 = (_RNG.uniform(0.2, 0.74, (H, W)) * 65535).astype(np.uint16)  # mean 0.47
COLOUR16 = _RNG.integers(0, 65536, (H, W, 4), dtype=np.uint16)
COLOUR8 = _RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
INDEX = _RNG.integers(0, 3, (H, W)).astype(np.uint8)
PALETTE = np.array([[0, 0, 0], [200, 30, 10], [20, 250, 90]], dtype=np.uint8)


def unit(values: np.ndarray, maximum: int) -> torch.Tensor:
    """Independent reference: stored ``[H, W, C]`` values to float ``[3, H, W]``, alpha dropped."""
    values = values if values.ndim == 3 else values[..., None]
    colour = values[..., :3] if values.shape[-1] >= 3 else values[..., :1]
    return torch.from_numpy(colour / maximum).permute(2, 0, 1).expand(3, -1, -1)


def image_case(values: np.ndarray, maximum: int, write: Callable[[Path], Any]) -> Callable[[Path], Any]:
    """Write ``images/a.png`` with ``write``; compare the probe's image with ``values / maximum``."""

    def run(tmp: Path) -> tuple[torch.Tensor, torch.Tensor]:
        write(tmp / "images" / "a.png")
        return image_via_csv(tmp, "a.png"), unit(values, maximum)

    return run


def mask_case(write: Callable[[Path], Any], name: str = "a.png") -> Callable[[Path], Any]:
    """Write ``masks/<name>`` with ``write``; compare the mask read for ``images/a.png`` with OBJECT."""

    def run(tmp: Path) -> tuple[torch.Tensor, torch.Tensor]:
        write(tmp / "masks" / name)
        return mask_via_dir(tmp, name), torch.from_numpy(OBJECT)

    return run


def rgba(colour: np.ndarray, alpha: np.ndarray) -> Image.Image:
    return Image.fromarray(np.dstack([colour] * 3 + [alpha]).astype(np.uint8), "RGBA")


def palette_image(index: np.ndarray, palette: np.ndarray) -> Image.Image:
    image = Image.fromarray(index, "P")
    image.putpalette(palette.ravel().tolist())
    return image


def jpeg_mask(tmp: Path, value: int) -> Any:
    """A JPEG mask of OBJECT drawn in ``value``: (area, overlap with OBJECT) and OBJECT's area twice."""
    save(tmp / "masks" / "a.jpg", Image.fromarray((OBJECT * value).astype(np.uint8)), quality=50)
    mask = mask_via_dir(tmp, "a.jpg")
    area, overlap = int(mask.sum()), int((mask & torch.from_numpy(OBJECT)).sum())
    return (float(area), float(overlap)), (float(OBJECT.sum()),) * 2


def literal_names(tmp: Path) -> Any:
    png(tmp / "masks" / "cat 1.png", OTHER.astype(np.uint8) * 255)  # what the glob "cat [1].*" matches
    png(tmp / "masks" / "cat [1].png", OBJECT.astype(np.uint8) * 255)
    return mask_via_dir(tmp, "cat [1].png", image_name="cat [1].png"), torch.from_numpy(OBJECT)


def png_and_jpeg_masks(path: Path) -> None:
    save(path.with_suffix(".jpg"), Image.fromarray(OTHER.astype(np.uint8) * 255))
    png(path, OBJECT.astype(np.uint8))


def mask_of_another_image(tmp: Path) -> Any:
    png(tmp / "masks" / "b.png", OBJECT.astype(np.uint8))
    return mask_via_dir(tmp, "a.png")


def images_and_csv(tmp: Path, rows: list[str], **options: Any) -> ProbeSet:
    rgb_image(tmp / "images" / "a.png")
    return ProbeSet.from_csv(csv(tmp, rows), **options)


def float_tiff(tmp: Path) -> Any:
    save(tmp / "images" / "f.tif", Image.fromarray(GRAY16.astype(np.float32) / 65535))
    return images_and_csv(tmp, ["images/f.tif,0,,0,0,4,4,"])


def not_an_image(tmp: Path) -> Any:
    (tmp / "x.png").write_bytes(b"not a png")
    return images_and_csv(tmp, ["x.png,0,,0,0,4,4,"])


def positional(tmp: Path, loader: str) -> Any:
    """Call a loader with DESIGN.md's positional arguments, transform last; the image shape it gives."""
    resize = v2.Resize((24, 32))
    if loader == "coco":
        coco(tmp)
        probe = ProbeSet.from_coco(tmp / "instances.json", tmp, ("watermark",), resize)
    elif loader == "csv":
        rgb_image(tmp / "images" / "a.png")
        probe = ProbeSet.from_csv(csv(tmp, ["images/a.png,0,,0,0,8,8,"]), resize)
    else:
        png(tmp / "masks" / "a.png", OBJECT.astype(np.uint8))
        mask_via_dir(tmp, "a.png")
        probe = ProbeSet.from_mask_dir(tmp / "images", tmp / "masks", tmp / "probe.csv", resize)
    return tuple(probe[0][0].shape), (3, 24, 32)


def no_watermark(tmp: Path) -> Any:
    probe = coco(tmp, lambda data: (data["categories"].pop(2), data["annotations"].pop(2)))
    return (probe.classes, probe.has_spurious), (["cat", "dog"], False)


def drop(section: str, index: int, field: str) -> Callable[[dict[str, Any]], Any]:
    return lambda data: data[section][index].pop(field)


def put(section: str, index: int, **fields: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda data: data[section][index].update(fields)


def rle(height: int, width: int) -> dict[str, Any]:
    encoded = coco_mask.encode(np.asfortranarray(np.ones((height, width), dtype=np.uint8)))
    return {"size": encoded["size"], "counts": encoded["counts"].decode("ascii")}
