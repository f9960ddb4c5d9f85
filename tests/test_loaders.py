"""ProbeSet.from_csv and ProbeSet.from_mask_dir: regions, lazy images, and one test per error case."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cam_audit.errors import ProbeError
from cam_audit.probe import ProbeSet
from cam_audit.probe.sources import CsvProbe
from cam_audit.regions import boxes_to_mask
from fault_files import COLOUR16, GRAY16, HALO, OBJECT, mask_via_dir, png, unit
from fault_files import csv as manifest

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


def test_csv_rows_of_one_image_with_two_labels_give_a_sample_per_class(probe_dir):
    cat_mask = np.zeros((12, 16), dtype=bool)
    cat_mask[6:11, 1:4] = True
    write_mask(probe_dir / "masks" / "cat.png", cat_mask)
    rows = [
        "images/a.png,dog,object,8,0,12,5,",
        "images/a.png,cat,,1,1,4,3,",
        "images/a.png,cat,,,,,,masks/cat.png",
        "images/a.png,,spurious,12,8,16,12,",
        "images/a.png,dog,spurious,0,11,2,12,",  # a labelled spurious row also goes to every sample
        "images/b.png,dog,,0,0,4,4,",
    ]
    probe = ProbeSet.from_csv(write_csv(probe_dir / "probe.csv", rows))
    assert probe.sample_ids == ["images/a.png#cat", "images/a.png#dog", "images/b.png"]
    assert probe.labels.tolist() == [0, 1, 1] and probe.classes == ["cat", "dog"]
    assert [probe[i][1]["image_id"] for i in range(3)] == ["images/a.png", "images/a.png", "images/b.png"]
    batch = next(probe.batches(3))
    cat = boxes_to_mask(torch.tensor([[1.0, 1.0, 4.0, 3.0]]), (12, 16)) | torch.from_numpy(cat_mask)
    dog = boxes_to_mask(torch.tensor([[8.0, 0.0, 12.0, 5.0]]), (12, 16))
    spurious = boxes_to_mask(torch.tensor([[12.0, 8.0, 16.0, 12.0], [0.0, 11.0, 2.0, 12.0]]), (12, 16))
    assert torch.equal(batch.regions[0], cat) and torch.equal(batch.regions[1], dog)
    assert torch.equal(batch.spurious[0], spurious) and torch.equal(batch.spurious[1], spurious)
    assert batch.has_spurious.tolist() == [True, True, False]
    assert torch.equal(batch.images[0], batch.images[1])  # one image, two samples
    single = ProbeSet.from_csv(write_csv(probe_dir / "single.csv", rows[5:]))
    assert single.sample_ids == ["images/b.png"] and single[0][1]["image_id"] == "images/b.png"


def test_csv_fingerprint_changes_only_for_images_of_several_classes(probe_dir):
    write_image(probe_dir / "images" / "copy.png", seed=1)  # the bytes of a.png under another name
    rows = ["images/a.png,0,,0,0,4,4,", "images/b.png,1,,4,4,8,8,"]
    single = ProbeSet.from_csv(write_csv(probe_dir / "single.csv", rows))
    assert single.fingerprint() == old_fingerprint(single)  # reports of such probes stay comparable
    one_image = ProbeSet.from_csv(
        write_csv(probe_dir / "one.csv", ["images/a.png,0,,0,0,4,4,", "images/a.png,1,,4,4,8,8,"])
    )
    two_images = ProbeSet.from_csv(
        write_csv(probe_dir / "two.csv", ["images/a.png,0,,0,0,4,4,", "images/copy.png,1,,4,4,8,8,"])
    )
    assert old_fingerprint(one_image) == old_fingerprint(two_images)  # same labels, regions and bytes...
    assert one_image.fingerprint() != two_images.fingerprint()  # ...but one image shows both classes
    assert one_image.fingerprint() != old_fingerprint(one_image)


def old_fingerprint(probe: ProbeSet) -> str:
    """The fingerprint as it was before images of several classes: labels, sizes, regions, image bytes."""
    digest = hashlib.sha256()
    digest.update(repr(probe.classes).encode())
    for sample in probe.samples:
        digest.update(f"|{sample.label}|{sample.size}|".encode())
        for key in ("boxes", "masks", "spurious_boxes", "spurious_masks"):
            value = getattr(sample, key)
            digest.update(key.encode())
            if value is not None:
                digest.update(repr(tuple(value.shape)).encode())
                digest.update(value.detach().cpu().contiguous().numpy())
        assert isinstance(sample.image, Path)
        digest.update(sample.image.read_bytes())
    return digest.hexdigest()[:16]


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


def test_the_sixteen_bit_image_keeps_its_mean(tmp_path: Path) -> None:
    png(tmp_path / "images" / "a.png", GRAY16)
    image = ProbeSet.from_csv(manifest(tmp_path, ["images/a.png,0,,0,0,4,4,"]))[0][0]
    assert abs(float(image.mean()) - float(GRAY16.mean()) / 65535) < 1e-3
    assert abs(float(GRAY16.mean()) / 65535 - 0.47) < 0.01


def test_sixteen_bit_pngs_without_the_torchvision_decoder_are_read_by_pillow(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision.io", None)  # as in a torchvision without image decoders
    png(tmp_path / "images" / "a.png", GRAY16)
    png(tmp_path / "images" / "b.png", COLOUR16[..., :3])
    probe = ProbeSet.from_csv(manifest(tmp_path, ["images/a.png,0,,0,0,4,4,", "images/b.png,0,,0,0,4,4,"]))
    gray, colour = probe[0][0], probe[1][0]
    torch.testing.assert_close(gray, unit(GRAY16, 65535), atol=1e-6, rtol=0, check_dtype=False)  # exact
    torch.testing.assert_close(colour, unit(COLOUR16, 65535), atol=1 / 255, rtol=0, check_dtype=False)
    halo = (OBJECT * 65535 + HALO * 300).astype(np.uint16)  # 300 keeps a non-zero high byte
    png(tmp_path / "masks" / "a.png", np.dstack([halo] * 3))
    assert torch.equal(mask_via_dir(tmp_path, "a.png"), torch.from_numpy(OBJECT))  # still at half range


def test_one_channel_of_a_colour_file_is_its_luminance_as_pillow_computes_it(probe_dir):
    pixels = write_image(probe_dir / "images" / "c.png", seed=4)
    csv = write_csv(probe_dir / "probe.csv", ["images/c.png,0,,0,0,4,4,"])
    image = ProbeSet.from_csv(csv, channels=1)[0][0]
    pillow = np.asarray(Image.fromarray(pixels).convert("L"), dtype=np.float64) / 255  # rounded to 8 bits
    assert image.shape == (1, 12, 16) and image.dtype == torch.float32
    assert np.abs(image[0].numpy() - pillow).max() <= 0.5 / 255 + 1e-6
    assert torch.equal(ProbeSet.from_csv(csv, channels=3)[0][0], ProbeSet.from_csv(csv)[0][0])
    assert ProbeSet.from_csv(csv, channels=1).fingerprint() != ProbeSet.from_csv(csv).fingerprint()
    with pytest.raises(ProbeError, match=r"channels must be None .* got True"):
        CsvProbe(csv, channels=True)


def test_mask_dir_lists_each_image_once_and_reads_grayscale(probe_dir):
    write_mask(probe_dir / "masks" / "a.png", np.ones((12, 16), dtype=bool))
    labels = write_csv(probe_dir / "labels.csv", ["a.png,cat", "b.png,dog"], header="image,label\n")
    probe = ProbeSet.from_mask_dir(probe_dir / "images", probe_dir / "masks", labels, channels=1)
    assert probe.sample_ids == ["a.png", "b.png"] and [probe[i][1]["image_id"] for i in range(2)] == [
        "a.png",
        "b.png",
    ]
    assert probe[1][0].shape == (1, 12, 16)
    twice = write_csv(
        probe_dir / "twice.csv", ["a.png,cat", "b.png,dog", "a.png,dog"], header="image,label\n"
    )
    with pytest.raises(
        ProbeError, match=r"row 3 of .*: image 'a.png' is already listed in row 1; .*from_csv"
    ):
        ProbeSet.from_mask_dir(probe_dir / "images", probe_dir / "masks", twice)
