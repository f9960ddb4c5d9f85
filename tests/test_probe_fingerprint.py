"""The probe's fingerprint is hashed once and hashed again exactly when the probe's content changes."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch
from PIL import Image

from cam_audit import ProbeSet
from cam_audit.probe import fingerprint


@pytest.fixture
def counted(monkeypatch):
    """Counts the content hashes the probe computes."""
    calls = []
    real = fingerprint.content_hash

    def counting(samples, classes):
        calls.append(len(samples))
        return real(samples, classes)

    monkeypatch.setattr(fingerprint, "content_hash", counting)
    return calls


def _probe() -> ProbeSet:
    generator = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0]]).repeat(4, 1)
    return ProbeSet.from_tensors(torch.rand(4, 3, 8, 8, generator=generator), [0, 1, 0, 1], boxes=boxes)


def test_an_unchanged_probe_is_hashed_once(counted):
    probe = _probe()
    first = probe.fingerprint()
    assert [probe.fingerprint() for _ in range(3)] == [first] * 3
    assert counted == [4]


def test_an_in_place_change_to_an_image_or_a_box_is_seen(counted):
    probe = _probe()
    first = probe.fingerprint()
    image = probe.samples[2].image
    pixel = float(image[0, 0, 0])
    image[0, 0, 0] = pixel + 0.5
    changed = probe.fingerprint()
    assert changed != first
    image[0, 0, 0] = pixel
    assert probe.fingerprint() == first  # the same content hashes the same again
    probe.samples[1].boxes[0, 2] = 6.0
    assert probe.fingerprint() not in (first, changed)
    assert counted == [4, 4, 4, 4]


def test_a_replaced_or_relabelled_sample_is_seen():
    probe = _probe()
    first = probe.fingerprint()
    probe.samples[3] = replace(probe.samples[3], label=0)
    relabelled = probe.fingerprint()
    assert relabelled != first
    probe.samples.pop()
    assert probe.fingerprint() not in (first, relabelled)


def test_a_rewritten_image_file_is_seen(tmp_path, counted):
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / name)
    (tmp_path / "probe.csv").write_text(
        "image,label,x_min,y_min,x_max,y_max\na.png,0,0,0,4,4\nb.png,1,2,2,6,6\n"
    )
    probe = ProbeSet.from_csv(tmp_path / "probe.csv")
    first = probe.fingerprint()
    assert probe.fingerprint() == first and len(counted) == 1
    Image.new("RGB", (8, 8), (10, 20, 31)).save(tmp_path / "b.png")
    stat = (tmp_path / "b.png").stat()
    os.utime(tmp_path / "b.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert probe.fingerprint() != first
    assert len(counted) == 2
