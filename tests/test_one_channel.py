"""One-channel (grayscale) probes end to end: an audit of a one-channel model, and overlays drawn gray."""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image
from torch import nn

import cam_audit
from cam_audit.probe import ProbeSet
from cam_audit.render import hwc_uint8, overlay, overlay_grid, png_bytes
from cam_audit.synthetic import make_scenes
from cam_audit.synthetic.model import scene_forward, scene_layers


class GrayNet(nn.Module):
    """The scene CNN on one input channel."""

    def __init__(self) -> None:
        super().__init__()
        scene_layers(self, 3, 8, "avg", in_channels=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return scene_forward(self, images)


def gray_probe(n: int = 12) -> ProbeSet:
    """Synthetic scenes as their channel mean [N, 1, H, W], labels as a numpy array, tags as spurious."""
    scenes = make_scenes(n, watermark="correlated", seed=5)
    has = scenes.has_watermark.tolist()
    return ProbeSet.from_tensors(
        scenes.images.mean(dim=1, keepdim=True),
        scenes.labels.numpy(),
        boxes=scenes.object_boxes,
        masks=scenes.object_masks,
        spurious_boxes=[scenes.watermark_boxes[i : i + int(h)] for i, h in enumerate(has)],
        classes=["disc", "square", "triangle"],
    )


def test_audit_of_a_one_channel_model_on_a_one_channel_probe_gives_a_full_report():
    torch.manual_seed(0)
    model = GrayNet().eval()
    probe = gray_probe()
    report = cam_audit.audit(model, probe, batch_size=5)
    samples = report.samples
    assert len(samples) == 12 and samples["sample_id"].tolist() == [str(i) for i in range(12)]
    assert samples["label"].tolist() == probe.labels.tolist()
    for score in ("focus", "focus_lift", "pointing_game", "spurious_mass", "cf_flip", "cf_confidence_drop"):
        assert samples[score].notna().all(), score
    assert report.summary["n_samples"] == 12 and report.summary["n_spurious"] == 12
    assert all(
        math.isfinite(report.summary[key]) for key in ("focus", "focus_lift", "accuracy", "cf_flip_rate")
    )
    assert 0.0 < report.summary["focus"] < 1.0
    assert report.meta["probe_fingerprint"] == probe.fingerprint()


def test_overlays_draw_a_one_channel_batch_as_gray():
    batch = next(gray_probe(4).batches(4))
    assert batch.images.shape == (4, 1, 64, 64)
    maps = torch.rand(4, 64, 64, generator=torch.Generator().manual_seed(2))
    rgb = batch.images.expand(-1, 3, -1, -1)
    blended = overlay(batch.images, maps, batch.regions, batch.spurious)
    assert blended.shape == (4, 3, 64, 64)
    assert torch.equal(blended, overlay(rgb, maps, batch.regions, batch.spurious))
    grid = overlay_grid(batch.images, maps, batch.regions, captions=["a", "b", "c", "d"], ncol=2)
    assert grid.shape[0] == 3
    assert torch.equal(grid, overlay_grid(rgb, maps, batch.regions, captions=["a", "b", "c", "d"], ncol=2))
    pixels = hwc_uint8(batch.images[0])
    assert pixels.shape == (64, 64, 3)
    want = (batch.images[0, 0] * 255).round().to(torch.uint8).numpy()
    assert all(np.array_equal(pixels[..., c], want) for c in range(3))
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(batch.images[0]))).convert("RGB"))
    assert np.array_equal(decoded, pixels)
