"""Write synthetic probe scenes as PNG files plus a COCO instances.json, to try ProbeSet.from_coco end to end.

Usage:
    python scripts/make_coco_probe.py --out probe --n 60 [--watermark correlated] [--seed 0]

Writes ``OUT/images/scene_0000.png, ...`` and ``OUT/instances.json`` with one category per shape
(``disc``, ``square``, ...) and a ``watermark`` category. Each object annotation has its tight ``bbox``
(COCO xywh) and its mask as compressed RLE; each watermark annotation has its box and a rectangle
polygon. Load the result with::

    ProbeSet.from_coco("OUT/instances.json", "OUT/images")
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as coco_mask

from cam_audit.synthetic import CLASS_NAMES, make_scenes

WATERMARK = "watermark"


def coco_instances(scenes: Any, file_names: list[str]) -> dict[str, Any]:
    """COCO instances dict for ``scenes`` (a SceneData): category ``k + 1`` is shape ``k``."""
    num_classes = scenes.num_classes
    height, width = scenes.images.shape[-2:]
    categories = [{"id": k + 1, "name": CLASS_NAMES[k], "supercategory": "shape"} for k in range(num_classes)]
    watermark_id = num_classes + 1
    categories.append({"id": watermark_id, "name": WATERMARK, "supercategory": "spurious"})
    images, annotations = [], []
    for i, file_name in enumerate(file_names):
        images.append({"id": i + 1, "file_name": file_name, "height": int(height), "width": int(width)})
        x0, y0, x1, y1 = scenes.object_boxes[i].tolist()
        rle = coco_mask.encode(np.asfortranarray(scenes.object_masks[i].numpy().astype(np.uint8)))
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": i + 1,
                "category_id": int(scenes.labels[i]) + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": int(scenes.object_masks[i].sum()),
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "iscrowd": 0,
            }
        )
        if bool(scenes.has_watermark[i]):
            x0, y0, x1, y1 = scenes.watermark_boxes[i].tolist()
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": watermark_id,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": "cam_audit synthetic probe scenes"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--n", type=int, default=60, help="number of scenes (default 60)")
    parser.add_argument("--num-classes", type=int, default=3, help=f"1..{len(CLASS_NAMES)} (default 3)")
    parser.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument(
        "--watermark",
        choices=("none", "correlated", "random"),
        default="correlated",
        help="default correlated",
    )
    parser.add_argument("--correlation", type=float, default=1.0, help="default 1.0")
    parser.add_argument("--seed", type=int, default=0, help="default 0")
    args = parser.parse_args(argv)

    scenes = make_scenes(
        args.n,
        num_classes=args.num_classes,
        image_size=args.image_size,
        watermark=args.watermark,
        correlation=args.correlation,
        seed=args.seed,
    )
    image_dir = args.out / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    pixels = (scenes.images * 255).round().to(torch.uint8)
    file_names = [f"scene_{i:04d}.png" for i in range(len(scenes))]
    for file_name, image in zip(file_names, pixels, strict=True):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(image_dir / file_name)
    annotation_file = args.out / "instances.json"
    annotation_file.write_text(json.dumps(coco_instances(scenes, file_names)), encoding="utf-8")
    print(f"wrote {len(file_names)} images to {image_dir} and {annotation_file}")
    print(f'load with: ProbeSet.from_coco("{annotation_file}", "{image_dir}")')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
