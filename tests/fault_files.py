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


# --- several classes in one image; one-channel images ---------------------------------------------------

# annotation 1 of coco_data(): its triangle (2, 3), (8, 3), (8, 7) as pycocotools rasterises it, row by row
# (its bbox is not part of the region); annotation 2: its box
CAT_REGION = [[3.0, 3.0, 8.0, 4.0], [4.0, 4.0, 8.0, 5.0], [6.0, 5.0, 8.0, 6.0], [7.0, 6.0, 8.0, 7.0]]
CAT_REGION += [[20.0, 10.0, 25.0, 14.0]]
WATERMARK_BOX = [[0.0, 40.0, 10.0, 48.0]]


def coco_cat_and_dog(tmp: Path) -> Any:
    """'one.png' gets a dog next to its two cats: two samples, each its class's regions and the watermark."""
    dog = {"id": 5, "image_id": 7, "category_id": 5, "bbox": [30, 20, 12, 9]}
    probe = coco(tmp, lambda data: data["annotations"].append(dog))
    got = [_sample_view(probe, i) for i in range(2)]
    want = [
        ("one.png#cat", 0, 7, _region(CAT_REGION), _region(WATERMARK_BOX)),
        ("one.png#dog", 1, 7, _region([[30.0, 20.0, 42.0, 29.0]]), _region(WATERMARK_BOX)),
    ]
    return got, want


def csv_two_labels(tmp: Path) -> Any:
    """Object rows of two labels and a spurious row: two samples sharing the image and the spurious box."""
    probe = images_and_csv(
        tmp, ["images/a.png,0,,0,0,4,4,", "images/a.png,1,,4,4,8,8,", "images/a.png,,spurious,60,0,64,4,"]
    )
    got = [_sample_view(probe, i) for i in range(len(probe))]
    spurious = _region([[60.0, 0.0, 64.0, 4.0]])
    want = [
        ("images/a.png#0", 0, "images/a.png", _region([[0.0, 0.0, 4.0, 4.0]]), spurious),
        ("images/a.png#1", 1, "images/a.png", _region([[4.0, 4.0, 8.0, 8.0]]), spurious),
    ]
    return got, want


def _sample_view(probe: ProbeSet, index: int) -> tuple[Any, ...]:
    """What a test compares of a sample: id, label, image id and its regions as boolean pixel lists."""
    _, target = probe[index]
    batch = next(probe.batches(1, [index]))
    return (
        target["sample_id"],
        target["label"],
        target["image_id"],
        batch.regions[0].tolist(),
        batch.spurious[0].tolist(),
    )


def _region(boxes: list[list[float]]) -> list[list[bool]]:
    """Independent reference: the pixels whose centre lies in one of ``boxes`` (xyxy), as nested lists."""
    rows, cols = np.mgrid[:H, :W] + 0.5
    inside = np.zeros((H, W), dtype=bool)
    for x_min, y_min, x_max, y_max in boxes:
        inside |= (cols >= x_min) & (cols < x_max) & (rows >= y_min) & (rows < y_max)
    return inside.tolist()


def mask_dir_image_twice(tmp: Path) -> Any:
    rgb_image(tmp / "images" / "a.png")
    png(tmp / "masks" / "a.png", OBJECT.astype(np.uint8))
    labels = csv(tmp, ["a.png,0", "a.png,1"], header="image,label\n")
    return ProbeSet.from_mask_dir(tmp / "images", tmp / "masks", labels)


def id_collision(tmp: Path) -> Any:
    """An image file named like the '#1' sample of another image of two classes."""
    png(tmp / "images" / "a.png#1", COLOUR8[..., :3])
    return images_and_csv(
        tmp, ["images/a.png,0,,0,0,4,4,", "images/a.png,1,,4,4,8,8,", "images/a.png#1,0,,0,0,4,4,"]
    )


def luminance(rgb: np.ndarray, maximum: int) -> torch.Tensor:
    """Independent reference: float ``[1, H, W]`` = (0.299 R + 0.587 G + 0.114 B) / maximum, in float64."""
    weighted = 0.299 * rgb[..., 0].astype(np.float64) + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return torch.from_numpy(weighted / maximum)[None]


def one_channel_case(values: np.ndarray, want: torch.Tensor, channels: int | None = 1) -> Callable[..., Any]:
    """Write ``images/a.png`` of ``values``; compare the image read with ``channels`` to ``want``."""

    def run(tmp: Path) -> tuple[torch.Tensor, torch.Tensor]:
        png(tmp / "images" / "a.png", values)
        probe = ProbeSet.from_csv(csv(tmp, ["images/a.png,0,,0,0,4,4,"]), channels=channels)
        return probe[0][0].as_subclass(torch.Tensor), want

    return run


def sources_with_one_channel(tmp: Path) -> Any:
    """Each ``ProbeSource`` given ``channels=1`` loads images ``[1, H, W]``."""
    from cam_audit.probe.sources import CocoProbe, CsvProbe, MaskDirProbe

    coco(tmp)
    shapes = [CocoProbe(tmp / "instances.json", tmp, channels=1).load()[0][0].shape]
    png(tmp / "masks" / "a.png", OBJECT.astype(np.uint8))
    mask_via_dir(tmp, "a.png")  # writes images/a.png and probe.csv (image,label)
    mask_dir = MaskDirProbe(tmp / "images", tmp / "masks", tmp / "probe.csv", channels=1)
    shapes.append(mask_dir.load()[0][0].shape)
    shapes.append(CsvProbe(csv(tmp, ["images/a.png,0,,0,0,4,4,"]), channels=1).load()[0][0].shape)
    return [tuple(shape) for shape in shapes], [(1, H, W)] * 3


def numpy_labels(tmp: Path) -> Any:
    """Labels as numpy integers, an integer numpy array and 0-d tensors give the same Python ints."""
    images = torch.rand(3, 3, 4, 4)
    given = (
        [np.int64(0), np.int32(2), np.uint8(1)],
        np.array([0, 2, 1], dtype=np.int16),
        [torch.tensor(0), torch.tensor(2), torch.tensor(1)],
    )
    got = []
    for labels in given:
        probe = ProbeSet.from_tensors(images, labels, classes=["a", "b", "c"])
        got.append([(type(probe[i][1]["label"]), probe[i][1]["label"]) for i in range(3)])
    return got, [[(int, 0), (int, 2), (int, 1)]] * 3


def one_channel_tensors(tmp: Path) -> Any:
    """``from_tensors`` of ``[N, 1, H, W]``: items ``[1, H, W]``, batches ``[B, 1, H, W]``, pixels kept."""
    images = torch.rand(3, 1, 6, 8, generator=torch.Generator().manual_seed(0))
    probe = ProbeSet.from_tensors(images, [0, 1, 0], boxes=torch.tensor([[1.0, 1.0, 4.0, 3.0]]).repeat(3, 1))
    batch = next(probe.batches(3))
    return (probe[1][0].as_subclass(torch.Tensor), batch.images), (images[1], images)
