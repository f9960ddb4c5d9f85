"""ProbeSet.from_csv and ProbeSet.from_mask_dir: regions, lazy images, and one test per error case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cam_audit.errors import ProbeError
from cam_audit.probe import ProbeSet

HEADER = "image,label,role,x_min,y_min,x_max,y_max,mask\n"


def write_image(path: Path, height: int = 12, width: int = 16, seed: int = 0) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def write_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "".join(row + "\n" for row in rows))
    return path


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    write_image(tmp_path / "images" / "a.png", seed=1)
    write_image(tmp_path / "images" / "b.png", seed=2)
    mask = np.zeros((12, 16), dtype=bool)
    mask[5:9, 10:12] = True
    write_mask(tmp_path / "masks" / "b.png", mask)
    return tmp_path


def test_csv_merges_rows_per_image_with_boxes_masks_and_spurious_regions(probe_dir):
    csv = write_csv(
        probe_dir / "probe.csv",
        [
            "images/a.png,dog,object,1,2,5,6,",
            "images/a.png,dog,,8,0,10,3,",
            "images/a.png,,spurious,12,8,16,12,",
            "images/b.png,cat,object,,,,,masks/b.png",
        ],
    )
    probe = ProbeSet.from_csv(csv)
    assert len(probe) == 2 and probe.classes == ["cat", "dog"]  # names sorted alphabetically
    assert probe.sample_ids == ["images/a.png", "images/b.png"] and probe.labels.tolist() == [1, 0]
    batch = next(probe.batches(2))
    expected_a = torch.zeros(12, 16, dtype=torch.bool)
    expected_a[2:6, 1:5] = True
    expected_a[0:3, 8:10] = True
    expected_b = torch.zeros(12, 16, dtype=torch.bool)
    expected_b[5:9, 10:12] = True
    assert torch.equal(batch.regions, torch.stack([expected_a, expected_b]))
    assert batch.has_spurious.tolist() == [True, False]
    assert batch.spurious[0].sum() == 16 and batch.spurious[0, 8:12, 12:16].all()


def test_csv_images_are_read_lazily_and_exactly(probe_dir):
    csv = write_csv(probe_dir / "probe.csv", ["images/a.png,0,,0,0,4,4,"])
    probe = ProbeSet.from_csv(csv)
    pixels = write_image(probe_dir / "images" / "a.png", seed=9)  # replaced after construction
    image, target = probe[0]
    assert torch.equal((image * 255).round().to(torch.uint8), torch.from_numpy(pixels).permute(2, 0, 1))
    assert image.dtype == torch.float32 and image.max() <= 1.0
    assert probe.classes is None and target["label"] == 0


def test_csv_label_names_use_given_classes(probe_dir):
    csv = write_csv(probe_dir / "probe.csv", ["images/a.png,dog,,0,0,4,4,", "images/b.png,2,,0,0,4,4,"])
    probe = ProbeSet.from_csv(csv, classes=["cat", "dog", "horse"])
    assert probe.labels.tolist() == [1, 2] and probe.num_classes == 3


def test_csv_missing_image_names_the_row_and_file(probe_dir):
    csv = write_csv(probe_dir / "probe.csv", ["images/a.png,0,,0,0,4,4,", "images/missing.png,0,,0,0,4,4,"])
    with pytest.raises(ProbeError, match=r"row 2 of .*probe.csv: image file .*missing.png does not exist"):
        ProbeSet.from_csv(csv)


def test_csv_box_outside_the_image_names_the_row(probe_dir):
    csv = write_csv(probe_dir / "probe.csv", ["images/a.png,0,,0,0,4,4,", "images/a.png,0,,10,4,17,8,"])
    with pytest.raises(
        ProbeError, match=r"row 2 of .*probe.csv: box 0 \(10, 4, 17, 8\) lies outside the 16x12"
    ):
        ProbeSet.from_csv(csv)


def test_csv_zero_area_box_names_the_row(probe_dir):
    csv = write_csv(probe_dir / "probe.csv", ["images/b.png,0,,3,4,3,8,"])
    with pytest.raises(ProbeError, match=r"row 1 of .*probe.csv: box 0 .* zero or negative area"):
        ProbeSet.from_csv(csv)


def test_csv_mask_of_wrong_size_names_the_row_and_mask(probe_dir):
    write_mask(probe_dir / "masks" / "small.png", np.ones((6, 8), dtype=bool))
    csv = write_csv(probe_dir / "probe.csv", ["images/a.png,0,,,,,,masks/small.png"])
    with pytest.raises(
        ProbeError, match=r"row 1 of .*\(mask small.png\): mask of shape \(1, 6, 8\) does not match"
    ):
        ProbeSet.from_csv(csv)


def test_csv_unknown_label_is_rejected(probe_dir):
    csv = write_csv(probe_dir / "probe.csv", ["images/a.png,zebra,,0,0,4,4,"])
    with pytest.raises(ProbeError, match=r"unknown label 'zebra'; known classes are \['cat', 'dog'\]"):
        ProbeSet.from_csv(csv, classes=["cat", "dog"])


def test_csv_label_index_out_of_range_names_the_row(probe_dir):
    csv = write_csv(probe_dir / "probe.csv", ["images/a.png,5,,0,0,4,4,"])
    with pytest.raises(ProbeError, match=r"row 1 of .*: label 5 is out of range for 2 classes"):
        ProbeSet.from_csv(csv, classes=["cat", "dog"])


def test_csv_conflicting_labels_of_one_image(probe_dir):
    csv = write_csv(probe_dir / "probe.csv", ["images/a.png,0,,0,0,4,4,", "images/a.png,1,,4,4,8,8,"])
    with pytest.raises(ProbeError, match=r"image 'images/a.png' .* exactly one label"):
        ProbeSet.from_csv(csv)


def test_csv_unknown_role_names_the_row(probe_dir):
    csv = write_csv(probe_dir / "probe.csv", ["images/a.png,0,background,0,0,4,4,"])
    with pytest.raises(ProbeError, match=r"row 1 of .*: role 'background' must be one of"):
        ProbeSet.from_csv(csv)


def test_csv_row_without_region(probe_dir):
    csv = write_csv(probe_dir / "probe.csv", ["images/a.png,0,,,,,,"])
    with pytest.raises(ProbeError, match=r"row 1 of .*neither a box nor a mask"):
        ProbeSet.from_csv(csv)


def test_empty_csv_file(probe_dir):
    csv = probe_dir / "probe.csv"
    csv.write_text("")
    with pytest.raises(ProbeError, match=r"probe.csv is empty"):
        ProbeSet.from_csv(csv)


def test_csv_missing_a_column(probe_dir):
    csv = write_csv(
        probe_dir / "probe.csv", ["images/a.png,0,0,4,4"], header="image,x_min,y_min,x_max,y_max\n"
    )
    with pytest.raises(ProbeError, match=r"lacks the column\(s\) \['label'\]"):
        ProbeSet.from_csv(csv)


def test_csv_undecodable_image(probe_dir):
    (probe_dir / "images" / "broken.png").write_bytes(b"not a png at all")
    csv = write_csv(probe_dir / "probe.csv", ["images/broken.png,0,,0,0,4,4,"])
    with pytest.raises(ProbeError, match=r"row 1 of .*broken.png cannot be decoded"):
        ProbeSet.from_csv(csv)


def test_missing_csv_file(tmp_path):
    with pytest.raises(ProbeError, match="does not exist"):
        ProbeSet.from_csv(tmp_path / "nope.csv")


# --- from_mask_dir ---------------------------------------------------------------------------------------


def test_mask_dir_reads_masks_by_stem_and_optional_spurious_masks(probe_dir):
    mask_a = np.zeros((12, 16), dtype=bool)
    mask_a[1:3, 2:9] = True
    write_mask(probe_dir / "masks" / "a.png", mask_a)
    tag = np.zeros((12, 16), dtype=bool)
    tag[10:12, 0:4] = True
    write_mask(probe_dir / "tags" / "a.png", tag)
    labels = write_csv(probe_dir / "labels.csv", ["a.png,1", "b.png,0"], header="image,label\n")
    probe = ProbeSet.from_mask_dir(
        probe_dir / "images", probe_dir / "masks", labels, spurious_mask_dir=probe_dir / "tags"
    )
    batch = next(probe.batches(2))
    assert torch.equal(batch.regions[0], torch.from_numpy(mask_a))
    assert batch.regions[1].sum() == 8 and batch.regions[1, 5:9, 10:12].all()
    assert torch.equal(batch.spurious[0], torch.from_numpy(tag)) and batch.has_spurious.tolist() == [
        True,
        False,
    ]
    assert batch.labels.tolist() == [1, 0] and probe.sample_ids == ["a.png", "b.png"]


def test_mask_dir_missing_mask_names_the_image(probe_dir):
    labels = write_csv(probe_dir / "labels.csv", ["b.png,0", "a.png,1"], header="image,label\n")
    with pytest.raises(ProbeError, match=r"row 2 of .*: no mask for 'a.png'"):
        ProbeSet.from_mask_dir(probe_dir / "images", probe_dir / "masks", labels)


def test_mask_dir_mask_of_wrong_size(probe_dir):
    write_mask(probe_dir / "masks" / "a.png", np.ones((12, 15), dtype=bool))
    labels = write_csv(probe_dir / "labels.csv", ["a.png,0"], header="image,label\n")
    with pytest.raises(ProbeError, match=r"row 1 of .*\(mask a.png\): mask of shape \(1, 12, 15\)"):
        ProbeSet.from_mask_dir(probe_dir / "images", probe_dir / "masks", labels)
