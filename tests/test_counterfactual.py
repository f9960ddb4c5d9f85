"""Fill and paste interventions and the counterfactual scores."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cam_audit.counterfactual import (
    fill_region,
    fill_scores,
    paste_moves,
    paste_partners,
    paste_region,
)
from cam_audit.errors import CamAuditError


class CornerReader(nn.Module):
    """Predicts class 1 exactly when the top-left 4x4 corner is bright: a pure shortcut."""

    def forward(self, images):
        corner = images[:, :, :4, :4].mean(dim=(1, 2, 3))
        return torch.stack([0.5 - corner, corner - 0.5], dim=1) * 20


def _batch():
    images = torch.full((4, 3, 16, 16), 0.2)
    spurious = torch.zeros(4, 16, 16, dtype=torch.bool)
    images[:2, :, :4, :4] = 1.0  # samples 0 and 1 carry the cue, class 1
    spurious[:2, :4, :4] = True
    labels = torch.tensor([1, 1, 0, 0])
    return images, spurious, labels


@pytest.mark.parametrize("fill", ["blur", "mean", lambda images, regions: torch.zeros_like(images)])
def test_fill_changes_only_the_region_and_never_the_input(fill):
    images, spurious, _ = _batch()
    before = images.clone()
    version = images._version
    filled = fill_region(images, spurious, fill)
    assert torch.equal(images, before) and images._version == version
    assert torch.equal(
        filled[~spurious.unsqueeze(1).expand_as(filled)], images[~spurious.unsqueeze(1).expand_as(images)]
    )
    assert filled[0, :, :4, :4].mean() < 0.9  # the bright cue is gone


def test_mean_fill_uses_the_colour_outside_the_region():
    images, spurious, _ = _batch()
    filled = fill_region(images, spurious, "mean")
    assert torch.allclose(filled[0, :, :4, :4], torch.tensor(0.2))


def test_fill_rejects_bad_shapes_and_modes():
    images, spurious, _ = _batch()
    with pytest.raises(CamAuditError, match="regions"):
        fill_region(images, spurious[:, :8], "blur")
    with pytest.raises(CamAuditError, match="fill must be"):
        fill_region(images, spurious, "inpaint")
    with pytest.raises(CamAuditError, match="callable must return"):
        fill_region(images, spurious, lambda i, r: i[:, :1])


def test_paste_partners_pick_another_class_not_already_predicted():
    labels = torch.tensor([1, 1, 0, 0])
    predictions = torch.tensor([1, 1, 1, 0])  # sample 2 is already predicted as 1: no use as a partner
    partners = paste_partners(labels, torch.tensor([True, True, False, False]), predictions)
    assert partners.tolist() == [3, 3, -1, -1]
    # everything predicted as 1: class-1 cues have no partner, class-0 cues go into sample 0
    assert paste_partners(
        labels, torch.ones(4, dtype=torch.bool), torch.ones(4, dtype=torch.long)
    ).tolist() == [-1, -1, 0, 0]


def _fill_and_paste(model, images, spurious, labels):
    """Both tests on one batch, partners picked inside it."""
    logits = model(images)
    out = fill_scores(model, images, spurious, labels, logits, fill="mean")
    partners = paste_partners(labels, spurious.flatten(1).any(dim=1), logits.argmax(dim=1))
    sources = (partners >= 0).nonzero().flatten()
    moved = paste_moves(
        model,
        images[sources],
        spurious[sources],
        labels[sources],
        images[partners[sources]],
        spurious[partners[sources]],
        fill="mean",
    )
    return out, sources, moved


def test_a_pure_shortcut_flips_and_pastes():
    images, spurious, labels = _batch()
    out, sources, moved = _fill_and_paste(CornerReader(), images, spurious, labels)
    assert out["cf_flip"][:2].tolist() == [1.0, 1.0]
    assert (out["cf_confidence_drop"][:2] > 0.99).all()
    assert sources.tolist() == [0, 1] and moved.tolist() == [1.0, 1.0]  # class-0 images turn into class 1
    assert all(math.isnan(v) for v in out["cf_flip"][2:].tolist())  # no cue, no evidence


def test_a_model_ignoring_the_cue_neither_flips_nor_pastes():
    images, spurious, labels = _batch()

    class BottomReader(nn.Module):
        def forward(self, x):
            v = x[:, :, 8:, 8:].mean(dim=(1, 2, 3))
            return torch.stack([v, -v], dim=1)

    out, sources, moved = _fill_and_paste(BottomReader(), images, spurious, labels)
    assert out["cf_flip"][:2].tolist() == [0.0, 0.0]
    assert sources.tolist() == [0, 1] and moved.tolist() == [0.0, 0.0]
    assert torch.allclose(out["cf_confidence_drop"][:2], torch.zeros(2))


def test_paste_partners_follow_their_definition_on_random_probes():
    def reference(labels, has_cue, predictions):
        n, out = len(labels), []
        for i in range(n):
            found = -1
            for step in range(1, n) if has_cue[i] else ():
                j = (i + step) % n
                if labels[j] != labels[i] and predictions[j] != labels[i]:
                    found = j
                    break
            out.append(found)
        return out

    generator = torch.Generator().manual_seed(0)
    for n in (1, 2, 5, 17, 40):
        for _ in range(10):
            labels = torch.randint(0, 4, (n,), generator=generator)
            predictions = torch.randint(0, 4, (n,), generator=generator)
            has_cue = torch.rand(n, generator=generator) < 0.6
            expected = reference(labels.tolist(), has_cue.tolist(), predictions.tolist())
            assert paste_partners(labels, has_cue, predictions).tolist() == expected


def test_paste_region_takes_source_pixels_inside_the_region():
    dst, src = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    region = torch.zeros(1, 4, 4, dtype=torch.bool)
    region[0, 0, 0] = True
    assert paste_region(dst, src, region).sum() == 3


def test_a_batch_of_one_has_no_paste_partner():
    one = torch.tensor([1])
    assert paste_partners(one, torch.tensor([True]), one).tolist() == [-1]


@pytest.mark.parametrize(("size", "sigma"), [(64, 8.0), (33, 4.125), (100, 12.5), (12, 1.5)])
def test_coarse_blur_is_pooling_then_a_small_gaussian_then_bilinear_upsampling(size, sigma):
    """The matrices do what the three steps do (written out here with torch's own operators), and each
    image's result is the same in any batch."""
    from torchvision.transforms.v2 import functional as TF

    from cam_audit.counterfactual import coarse_blur

    images = torch.rand(6, 3, size, size, generator=torch.Generator().manual_seed(4))
    factor = max(1, int(sigma // 2))
    small = torch.nn.functional.avg_pool2d(images, factor, ceil_mode=True) if factor > 1 else images
    kernel = 2 * int(2 * sigma / factor) + 1
    small = TF.gaussian_blur(small, kernel_size=[kernel, kernel], sigma=[sigma / factor, sigma / factor])
    expected = torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    blurred = coarse_blur(images, sigma)
    assert (blurred - expected).abs().max().item() < 1e-6
    alone = torch.cat([coarse_blur(images[i : i + 1], sigma) for i in range(len(images))])
    assert torch.equal(blurred, alone)


def test_coarse_blur_is_close_to_the_full_gaussian_blur():
    from torchvision.transforms.v2 import functional as TF

    from cam_audit.counterfactual import coarse_blur

    torch.manual_seed(0)
    images = torch.nn.functional.interpolate(torch.rand(8, 3, 8, 8), size=(64, 64), mode="bilinear")
    images[:, :, 2:8, 50:62] = (torch.arange(12) % 2).float()  # a striped tag, the thing to wipe out
    exact = TF.gaussian_blur(images, kernel_size=[33, 33], sigma=[8.0, 8.0])
    fast = coarse_blur(images, sigma=8.0)
    assert fast.shape == images.shape
    assert (exact - fast).abs().mean() < 0.02
    assert (exact - fast)[..., 8:-8, 8:-8].abs().max() < 0.06
    stripes = fast[:, :, 2:8, 51:62] - fast[:, :, 2:8, 50:61]  # 1.0 between neighbours in the tag
    assert stripes.abs().max() < 0.05  # the stripes are gone
