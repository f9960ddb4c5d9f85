"""ProbeSet.from_coco: bbox and polygon/RLE masks, category mapping, errors, transforms, the COCO script."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask
from torchvision.transforms import v2

from cam_audit.errors import ProbeError
from cam_audit.probe import ProbeSet
from cam_audit.regions import boxes_to_mask
from cam_audit.synthetic import CLASS_NAMES, make_scenes

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_coco_probe.py"


def rle_of(mask: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


@pytest.fixture
def coco(tmp_path: Path) -> dict:
    """Two 20x30 images: one with two 'cat' objects (box + polygon, box + RLE) and a watermark, one 'dog'."""
    for name in ("one.png", "two.png"):
        Image.fromarray(np.full((20, 30, 3), 128, dtype=np.uint8)).save(tmp_path / name)
    blob = np.zeros((20, 30), dtype=bool)
    blob[10:14, 20:25] = True
    return {
        "images": [
            {"id": 7, "file_name": "one.png", "height": 20, "width": 30},
            {"id": 9, "file_name": "two.png", "height": 20, "width": 30},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 3,
                "bbox": [2, 3, 6, 4],
                "segmentation": [[2, 3, 8, 3, 8, 7, 2, 7]],
            },
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [20, 10, 5, 4], "segmentation": rle_of(blob)},
            {"id": 3, "image_id": 7, "category_id": 99, "bbox": [0, 16, 10, 4]},
            {"id": 4, "image_id": 9, "category_id": 5, "bbox": [10, 5, 10, 10]},
        ],
        "categories": [{"id": 5, "name": "dog"}, {"id": 3, "name": "cat"}, {"id": 99, "name": "watermark"}],
    }


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_boxes_masks_labels_and_spurious_regions(tmp_path, coco):
    probe = ProbeSet.from_coco(write(tmp_path, coco), tmp_path)
    assert probe.classes == ["cat", "dog"]  # non-spurious categories sorted by id: 3 -> 0, 5 -> 1
    assert probe.labels.tolist() == [0, 1] and probe.sample_ids == ["one.png", "two.png"]
    _, target = probe[0]
    assert "boxes" not in target  # both annotations have a segmentation, which is their region
    assert target["masks"].shape == (2, 20, 30)
    polygon = torch.zeros(20, 30, dtype=torch.bool)
    polygon[3:7, 2:8] = True
    assert torch.equal(target["masks"][0], polygon)
    assert target["masks"][1].sum() == 20 and target["masks"][1, 10:14, 20:25].all()
    assert target["spurious_boxes"].tolist() == [[0.0, 16.0, 10.0, 20.0]]
    batch = next(probe.batches(2))
    assert torch.equal(batch.regions[1], boxes_to_mask(torch.tensor([[10.0, 5.0, 20.0, 15.0]]), (20, 30)))
    assert batch.has_spurious.tolist() == [True, False] and batch.spurious[0].sum() == 40


def test_coco_explicit_category_mapping_by_name_and_id(tmp_path, coco):
    probe = ProbeSet.from_coco(write(tmp_path, coco), tmp_path, categories={"dog": 0, 3: 4})
    assert probe.labels.tolist() == [4, 0]
    assert probe.classes == ["dog", "class_1", "class_2", "class_3", "cat"] and probe.num_classes == 5


def test_coco_unknown_category_in_mapping(tmp_path, coco):
    with pytest.raises(ProbeError, match=r"categories: unknown category 'horse'.*5: 'dog'"):
        ProbeSet.from_coco(write(tmp_path, coco), tmp_path, categories={"horse": 0})


def test_coco_annotation_of_unmapped_category_names_the_annotation(tmp_path, coco):
    with pytest.raises(
        ProbeError, match=r"annotation 4 \(image 'two.png' \(id 9\).*category 5 is not mapped"
    ):
        ProbeSet.from_coco(write(tmp_path, coco), tmp_path, categories={"cat": 0})


def test_coco_image_of_a_cat_and_a_dog_gives_a_sample_per_class(tmp_path, coco):
    coco["annotations"][0].pop("segmentation")  # boxes only, so each region is its boxes' raster
    coco["annotations"][1].pop("segmentation")
    coco["annotations"].append({"id": 5, "image_id": 7, "category_id": 5, "bbox": [12, 2, 6, 8]})
    coco["annotations"].append({"id": 6, "image_id": 7, "category_id": 5, "bbox": [26, 0, 4, 4]})
    probe = ProbeSet.from_coco(write(tmp_path, coco), tmp_path)
    assert probe.sample_ids == ["one.png#cat", "one.png#dog", "two.png"]
    assert probe.labels.tolist() == [0, 1, 1]
    assert [probe[i][1]["image_id"] for i in range(3)] == [7, 7, 9]  # the COCO image ids
    batch = next(probe.batches(3))
    cat_boxes = torch.tensor([[2.0, 3.0, 8.0, 7.0], [20.0, 10.0, 25.0, 14.0]])  # xywh -> xyxy by hand
    dog_boxes = torch.tensor([[12.0, 2.0, 18.0, 10.0], [26.0, 0.0, 30.0, 4.0]])
    assert torch.equal(batch.regions[0], boxes_to_mask(cat_boxes, (20, 30)))
    assert torch.equal(batch.regions[1], boxes_to_mask(dog_boxes, (20, 30)))
    watermark = boxes_to_mask(torch.tensor([[0.0, 16.0, 10.0, 20.0]]), (20, 30))
    assert torch.equal(batch.spurious[0], watermark) and torch.equal(batch.spurious[1], watermark)
    assert batch.has_spurious.tolist() == [True, True, False]
    assert probe[0][1]["boxes"].tolist() == cat_boxes.tolist()
    assert probe[1][1]["spurious_boxes"].tolist() == [[0.0, 16.0, 10.0, 20.0]]
    assert probe.samples[0].image_classes == probe.samples[1].image_classes == (0, 1)


def test_coco_categories_of_one_class_keep_an_image_one_sample(tmp_path, coco):
    coco["categories"].append({"id": 4, "name": "kitten"})
    coco["annotations"][1]["category_id"] = 4
    probe = ProbeSet.from_coco(write(tmp_path, coco), tmp_path, categories={"cat": 0, "kitten": 0, "dog": 1})
    assert probe.sample_ids == ["one.png", "two.png"] and probe.labels.tolist() == [0, 1]
    assert probe[0][1]["masks"].shape == (2, 20, 30) and probe.samples[0].image_classes == ()


def test_coco_missing_image_names_the_image(tmp_path, coco):
    (tmp_path / "two.png").unlink()
    with pytest.raises(ProbeError, match=r"image 'two.png' \(id 9\).*two.png does not exist"):
        ProbeSet.from_coco(write(tmp_path, coco), tmp_path)


def test_coco_box_outside_the_image_names_the_annotation(tmp_path, coco):
    coco["annotations"][3]["bbox"] = [25, 5, 10, 10]
    with pytest.raises(ProbeError, match=r"annotation 4 .*box 0 \(25, 5, 35, 15\) lies outside the 30x20"):
        ProbeSet.from_coco(write(tmp_path, coco), tmp_path)


def test_coco_zero_area_box_names_the_annotation(tmp_path, coco):
    coco["annotations"][2]["bbox"] = [0, 16, 0, 4]
    with pytest.raises(ProbeError, match=r"annotation 3 .*zero or negative area"):
        ProbeSet.from_coco(write(tmp_path, coco), tmp_path)


def test_coco_mask_of_wrong_size_names_the_annotation(tmp_path, coco):
    coco["annotations"][1]["segmentation"] = rle_of(np.ones((20, 31), dtype=bool))
    with pytest.raises(ProbeError, match=r"annotation 2 .*mask of shape \(1, 20, 31\) does not match"):
        ProbeSet.from_coco(write(tmp_path, coco), tmp_path)


def test_coco_declared_size_must_match_the_file(tmp_path, coco):
    coco["images"][0]["width"] = 32
    with pytest.raises(ProbeError, match=r"image 'one.png' .*the file is 30x20 .* declares 32x20"):
        ProbeSet.from_coco(write(tmp_path, coco), tmp_path)


def test_coco_image_without_objects(tmp_path, coco):
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != 9]
    with pytest.raises(ProbeError, match=r"image 'two.png' .*no object annotation"):
        ProbeSet.from_coco(write(tmp_path, coco), tmp_path)


def test_coco_empty_file(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text("")
    with pytest.raises(ProbeError, match=r"instances.json is empty"):
        ProbeSet.from_coco(path, tmp_path)


def test_coco_undecodable_image(tmp_path, coco):
    (tmp_path / "one.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ProbeError, match=r"image 'one.png' .*cannot be decoded"):
        ProbeSet.from_coco(write(tmp_path, coco), tmp_path)


def test_resize_and_center_crop_move_the_box_with_its_object(tmp_path):
    pixels = np.full((40, 60, 3), 30, dtype=np.uint8)
    pixels[12:22, 30:44] = 230  # a bright 14x10 object
    Image.fromarray(pixels).save(tmp_path / "scene.png")
    data = {
        "images": [{"id": 1, "file_name": "scene.png", "height": 40, "width": 60}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [30, 12, 14, 10]}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    transform = v2.Compose([v2.Resize((80, 120)), v2.CenterCrop((64, 64))])
    probe = ProbeSet.from_coco(write(tmp_path, data), tmp_path, transform=transform)
    image, target = probe[0]
    assert image.shape == (3, 64, 64)
    # independent reference: resize doubles coordinates, the crop removes (120 - 64) / 2 = 28 and 8 pixels
    assert target["boxes"].tolist() == [[60.0 - 28, 24.0 - 8, 88.0 - 28, 44.0 - 8]]
    bright = image[0] > 0.5
    region = next(probe.batches(1)).regions[0]
    assert bright.sum() > 0.9 * region.sum() and not (bright & ~region).any()


def test_script_writes_a_coco_probe_that_loads_back_exactly(tmp_path):
    out = tmp_path / "probe"
    script = runpy.run_path(str(SCRIPT), run_name="make_coco_probe")
    assert script["main"](["--out", str(out), "--n", "12", "--num-classes", "4", "--seed", "3"]) == 0
    scenes = make_scenes(12, num_classes=4, watermark="correlated", seed=3)
    probe = ProbeSet.from_coco(out / "instances.json", out / "images")
    assert probe.classes == list(CLASS_NAMES[:4]) and torch.equal(probe.labels, scenes.labels)
    data = json.loads((out / "instances.json").read_text())
    (watermark,) = [c["id"] for c in data["categories"] if c["name"] == "watermark"]
    bbox = {(a["image_id"], a["category_id"] == watermark): a["bbox"] for a in data["annotations"]}
    for i in range(12):
        image, target = probe[i]
        assert torch.equal(target["masks"][0], scenes.object_masks[i])
        assert torch.equal(target["spurious_masks"][0], scenes.watermark_masks[i])
        assert "boxes" not in target and "spurious_boxes" not in target
        for spurious, box in ((False, scenes.object_boxes[i]), (True, scenes.watermark_boxes[i])):
            x, y, w, h = bbox[i + 1, spurious]  # the tight bbox is still written, the mask is the region
            assert [x, y, x + w, y + h] == box.tolist()
        batch = next(probe.batches(1, [i]))
        assert torch.equal(batch.regions[0], scenes.object_masks[i])
        assert torch.equal(batch.spurious[0], scenes.watermark_masks[i])
        assert (image - scenes.images[i]).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit PNG


def test_coco_uncompressed_rle_as_used_for_crowd_annotations(tmp_path, coco):
    crowd = np.zeros((20, 30), dtype=bool)
    crowd[4:6, 1:3] = True  # column-major: 4 + 20 * 1 zeros, 2 ones, 18 zeros, 2 ones, the rest zeros
    counts = [4 + 20 * 1, 2, 18, 2, 20 * 30 - (4 + 20 + 2 + 18 + 2)]
    coco["annotations"][3].update({"segmentation": {"size": [20, 30], "counts": counts}, "iscrowd": 1})
    probe = ProbeSet.from_coco(write(tmp_path, coco), tmp_path)
    assert torch.equal(probe[1][1]["masks"][0], torch.from_numpy(crowd))
    # a crowd annotation counts like any other: its mask is the region, its bbox [10, 5, 10, 10] is not
    assert torch.equal(next(probe.batches(1, [1])).regions[0], torch.from_numpy(crowd))


# --- which region an annotation gives: its segmentation's mask, else its bbox -----------------------------

L_POLYGON = [2, 3, 8, 3, 8, 5, 5, 5, 5, 7, 2, 7]  # an L inside its bbox [2, 3, 6, 4]
ROLES = ["object", "spurious"]


def l_shape() -> torch.Tensor:
    """Independent reference: the L's pixels, the top two rows of its bbox and the left half of the rest."""
    mask = torch.zeros(20, 30, dtype=torch.bool)
    mask[3:5, 2:8] = True
    mask[5:7, 2:5] = True
    return mask


def bbox_pixels() -> torch.Tensor:
    """Independent reference: the pixels of the bbox [2, 3, 6, 4] (xywh)."""
    mask = torch.zeros(20, 30, dtype=torch.bool)
    mask[3:7, 2:8] = True
    return mask


def load_one(tmp_path: Path, role: str, **fields) -> tuple[ProbeSet, dict, torch.Tensor]:
    """A 20x30 image whose annotation 1 has ``fields``: a 'cat' object, or a watermark next to a boxed cat.

    Returns the probe, the sample's target and the region of annotation 1's role (object or spurious).
    """
    Image.fromarray(np.full((20, 30, 3), 128, dtype=np.uint8)).save(tmp_path / "one.png")
    annotations = [{"id": 1, "image_id": 7, "category_id": 3 if role == "object" else 99, **fields}]
    if role == "spurious":
        annotations.append({"id": 2, "image_id": 7, "category_id": 3, "bbox": [20, 10, 5, 4]})
    data = {
        "images": [{"id": 7, "file_name": "one.png", "height": 20, "width": 30}],
        "annotations": annotations,
        "categories": [{"id": 3, "name": "cat"}, {"id": 99, "name": "watermark"}],
    }
    probe = ProbeSet.from_coco(write(tmp_path, data), tmp_path)
    batch = next(probe.batches(1))
    return probe, probe[0][1], (batch.regions if role == "object" else batch.spurious)[0]


@pytest.mark.parametrize("role", ROLES)
def test_coco_polygon_not_its_bbox_is_the_region(tmp_path, role):
    probe, target, region = load_one(tmp_path, role, bbox=[2, 3, 6, 4], segmentation=[L_POLYGON])
    assert torch.equal(region, l_shape())  # the union with the bbox would be the whole box
    prefix = "" if role == "object" else "spurious_"
    assert f"{prefix}boxes" not in target and torch.equal(target[f"{prefix}masks"][0], l_shape())


@pytest.mark.parametrize("role", ROLES)
def test_coco_bbox_alone_is_the_region(tmp_path, role):
    probe, target, region = load_one(tmp_path, role, bbox=[2, 3, 6, 4])
    assert torch.equal(region, bbox_pixels())
    prefix = "" if role == "object" else "spurious_"
    assert target[f"{prefix}boxes"].tolist() == [[2.0, 3.0, 8.0, 7.0]]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "segmentation",
    [[], rle_of(np.zeros((20, 30), dtype=bool)), [[2, 3, 8, 3, 5, 3]]],
    ids=["no-polygon", "rle-of-zeros", "flat-polygon"],
)
def test_coco_empty_segmentation_leaves_the_bbox_as_the_region(tmp_path, role, segmentation):
    probe, target, region = load_one(tmp_path, role, bbox=[2, 3, 6, 4], segmentation=segmentation)
    assert torch.equal(region, bbox_pixels())
    sample = probe.samples[0]
    masks = sample.masks if role == "object" else sample.spurious_masks
    assert masks is None  # the empty mask is not kept beside the box
    prefix = "" if role == "object" else "spurious_"
    assert target[f"{prefix}boxes"].tolist() == [[2.0, 3.0, 8.0, 7.0]]


def test_coco_bbox_beside_a_segmentation_is_still_checked(tmp_path):
    with pytest.raises(ProbeError, match=r"annotation 1 .*box 0 \(2, 3, 32, 7\) lies outside the 30x20"):
        load_one(tmp_path, "object", bbox=[2, 3, 30, 4], segmentation=[L_POLYGON])
    with pytest.raises(ProbeError, match=r"annotation 1 .*zero or negative area"):
        load_one(tmp_path, "spurious", bbox=[2, 3, 0, 4], segmentation=[L_POLYGON])

