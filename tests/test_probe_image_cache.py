"""Decoded image files kept between audits: same images, decoded once, within the memory limit, fresh when
the file changes, fingerprints untouched."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from cam_audit.errors import CamAuditError, ProbeError
from cam_audit.probe import ProbeSet, image_cache
from cam_audit.probe.image_cache import IMAGE_CACHE_BYTES, ImageCache
from cam_audit.probe.sources import CocoProbe, CsvProbe, MaskDirProbe

SIDE = 8


@pytest.fixture
def csv_probe_dir(tmp_path: Path) -> Path:
    """Six 8x8 files of every kind an image cache keeps: RGB, RGBA, 16-bit grayscale, palette, JPEG."""
    generator = np.random.default_rng(0)
    colour = generator.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "rgb.png")
    rgba = np.concatenate([colour, generator.integers(0, 256, (SIDE, SIDE, 1), dtype=np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(generator.integers(0, 65536, (SIDE, SIDE)).astype(np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(colour).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(colour).save(tmp_path / "photo.jpg", quality=80)
    Image.fromarray(colour[..., 0]).save(tmp_path / "gray.png")
    rows = [f"{name},{k % 2},1,1,6,5" for k, name in enumerate(IMAGES)]
    (tmp_path / "probe.csv").write_text("image,label,x_min,y_min,x_max,y_max\n" + "\n".join(rows) + "\n")
    return tmp_path


IMAGES = ("rgb.png", "rgba.png", "deep.png", "palette.png", "photo.jpg", "gray.png")


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths the image cache decodes from now on, in order."""
    decoded: list[Path] = []
    real = image_cache.decode_pixels

    def counting(path, *args, **kwargs):
        decoded.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(image_cache, "decode_pixels", counting)
    return decoded


def images_of(probe: ProbeSet) -> torch.Tensor:
    return torch.cat([batch.images for batch in probe.batches(4)])


@pytest.mark.parametrize("channels", [3, 1])
def test_kept_images_are_the_images_a_fresh_decode_gives(csv_probe_dir, channels):
    kept = ProbeSet.from_csv(csv_probe_dir / "probe.csv", channels=channels)
    fresh = ProbeSet.from_csv(csv_probe_dir / "probe.csv", channels=channels, cache_bytes=0)
    expected = torch.stack([sample.load_image() for sample in fresh.samples])
    for _ in range(3):  # first pass decodes, later passes read what was kept
        assert torch.equal(images_of(kept), expected)
        assert torch.equal(images_of(fresh), expected)
        assert all(torch.equal(kept[i][0], expected[i]) for i in range(len(kept)))
    assert len(kept._images) == len(IMAGES) and len(fresh._images) == 0


def test_later_passes_decode_nothing(csv_probe_dir, monkeypatch):
    probe = ProbeSet.from_csv(csv_probe_dir / "probe.csv")
    decoded = count_decodes(monkeypatch)
    images_of(probe)
    assert [path.name for path in decoded] == list(IMAGES)
    images_of(probe)
    probe[2]
    assert len(decoded) == len(IMAGES)


def test_pixels_are_kept_at_the_files_depth_without_alpha(csv_probe_dir):
    probe = ProbeSet.from_csv(csv_probe_dir / "probe.csv")
    images_of(probe)
    # 8-bit colour: 3 bytes a pixel (the alpha of rgba.png dropped); 16-bit gray: 2; 8-bit gray: 1
    per_pixel = {"rgb.png": 3, "rgba.png": 3, "deep.png": 2, "palette.png": 3, "photo.jpg": 3, "gray.png": 1}
    assert probe._images.kept_bytes == sum(per_pixel.values()) * SIDE * SIDE


def test_images_past_the_limit_are_decoded_at_every_pass(csv_probe_dir, monkeypatch):
    # the two RGB images fit, the 16-bit, palette and JPEG ones after them do not, the 8-bit gray one does
    limit = 2 * 3 * SIDE * SIDE + SIDE * SIDE
    probe = ProbeSet.from_csv(csv_probe_dir / "probe.csv", cache_bytes=limit)
    expected = torch.stack([sample.load_image() for sample in probe.samples])
    decoded = count_decodes(monkeypatch)
    for passes in (1, 2, 3):
        assert torch.equal(images_of(probe), expected)
        assert len(decoded) == len(IMAGES) + (passes - 1) * 3
    assert probe._images.kept_bytes == limit and len(probe._images) == 3
    assert {path.name for path in decoded[len(IMAGES) :]} == {"deep.png", "palette.png", "photo.jpg"}


def test_no_cache_decodes_every_image_at_every_pass(csv_probe_dir, monkeypatch):
    probe = ProbeSet.from_csv(csv_probe_dir / "probe.csv", cache_bytes=0)
    decoded = count_decodes(monkeypatch)
    images_of(probe)
    images_of(probe)
    assert len(decoded) == 2 * len(IMAGES) and probe._images.kept_bytes == 0


def test_a_changed_file_is_decoded_again(csv_probe_dir):
    probe = ProbeSet.from_csv(csv_probe_dir / "probe.csv")
    before, print_before = images_of(probe), probe.fingerprint()
    path = csv_probe_dir / "rgb.png"
    stamp = path.stat().st_mtime_ns
    Image.fromarray(np.zeros((SIDE, SIDE, 3), dtype=np.uint8)).save(path)
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))  # a new time even on a coarse clock
    after = images_of(probe)
    assert float(after[0].abs().sum()) == 0.0 and float(before[0].abs().sum()) > 0
    assert torch.equal(after[1:], before[1:])
    assert probe.fingerprint() != print_before
    assert probe._images.kept_bytes == 3 * SIDE * SIDE * 4 + 2 * SIDE * SIDE + SIDE * SIDE


def test_a_removed_file_raises_as_before(csv_probe_dir):
    probe = ProbeSet.from_csv(csv_probe_dir / "probe.csv")
    images_of(probe)
    (csv_probe_dir / "gray.png").unlink()
    with pytest.raises(ProbeError, match="gray.png does not exist"):
        images_of(probe)
    assert "gray" not in " ".join(path.name for path in probe._images._kept)


def test_fingerprints_do_not_depend_on_the_cache(csv_probe_dir):
    kept = ProbeSet.from_csv(csv_probe_dir / "probe.csv")
    fresh = ProbeSet.from_csv(csv_probe_dir / "probe.csv", cache_bytes=0)
    first = kept.fingerprint()
    images_of(kept)
    assert kept.fingerprint() == first == fresh.fingerprint()


def test_a_random_transform_still_runs_at_every_access(csv_probe_dir):
    flips = iter([1.0, 0.0, 1.0])

    def flip_sometimes(image, target):
        return v2.RandomHorizontalFlip(p=next(flips))(image, target)

    probe = ProbeSet.from_csv(csv_probe_dir / "probe.csv", transform=flip_sometimes)
    first, second, third = (next(probe.batches(1)) for _ in range(3))
    assert torch.equal(first.images, second.images.flip(-1)) and torch.equal(first.images, third.images)
    assert torch.equal(first.regions, second.regions.flip(-1))


def test_subsets_keep_the_limit(csv_probe_dir):
    probe = ProbeSet.from_csv(csv_probe_dir / "probe.csv", cache_bytes=123)
    assert probe.subset([0, 2])._images.max_bytes == 123
    assert probe.stratified(1)._images.max_bytes == 123
    assert ProbeSet.from_csv(csv_probe_dir / "probe.csv")._images.max_bytes == IMAGE_CACHE_BYTES


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1000", None])
def test_a_bad_limit_names_the_argument_and_the_fix(csv_probe_dir, bad):
    with pytest.raises(CamAuditError, match=r"cache_bytes must be a non-negative int .* pass 0 to decode"):
        ProbeSet.from_csv(csv_probe_dir / "probe.csv", cache_bytes=bad)
    with pytest.raises(CamAuditError, match="cache_bytes must be a non-negative int"):
        CsvProbe(csv_probe_dir / "probe.csv", cache_bytes=bad)
    with pytest.raises(CamAuditError, match="cache_bytes must be a non-negative int"):
        ImageCache(bad)  # type: ignore[arg-type]


def test_sources_pass_the_limit_on(csv_probe_dir, tmp_path):
    assert CsvProbe(csv_probe_dir / "probe.csv", cache_bytes=77).load()._images.max_bytes == 77
    assert CocoProbe("a.json", "images", cache_bytes=5).cache_bytes == 5
    assert MaskDirProbe("images", "masks", "labels.csv").cache_bytes == IMAGE_CACHE_BYTES
