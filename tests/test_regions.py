"""Regions: rasterising boxes and masks, compared with a per-pixel reference written from the definition."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from cam_audit.errors import CamAuditError
from cam_audit.metrics.functional import area_fraction
from cam_audit.regions import boxes_to_mask, target_regions


def reference_boxes_to_mask(boxes: list[list[float]], height: int, width: int) -> torch.Tensor:
    """Pixel (i, j) is inside when its centre (j + 0.5, i + 0.5) is in [x0, x1) x [y0, y1) of some box."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    for i in range(height):
        for j in range(width):
            for x0, y0, x1, y1 in boxes:
                if x0 <= j + 0.5 < x1 and y0 <= i + 0.5 < y1:
                    mask[i, j] = True
    return mask


def test_boxes_to_mask_matches_pixel_centre_reference_on_random_boxes():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        k = int(torch.randint(0, 4, (1,), generator=generator))
        corners = torch.rand(k, 2, 2, generator=generator) * torch.tensor([13.0, 9.0])
        boxes = torch.cat([corners.min(dim=1).values, corners.max(dim=1).values], dim=1)
        expected = reference_boxes_to_mask(boxes.tolist(), 9, 13)
        assert torch.equal(boxes_to_mask(boxes, (9, 13)), expected)


def test_boxes_to_mask_integer_box_covers_exactly_its_area():
    mask = boxes_to_mask(torch.tensor([[2.0, 1.0, 6.0, 4.0]]), (8, 10))
    assert mask.sum().item() == 4 * 3
    assert mask[1:4, 2:6].all()


def test_boxes_to_mask_half_open_edges():
    # the centre of column 2 is 2.5: a box ending at x = 2.5 excludes it, one starting at 2.5 includes it
    assert boxes_to_mask(torch.tensor([[0.0, 0.0, 2.5, 1.0]]), (1, 4)).tolist() == [
        [True, True, False, False]
    ]
    assert boxes_to_mask(torch.tensor([[2.5, 0.0, 4.0, 1.0]]), (1, 4)).tolist() == [
        [False, False, True, True]
    ]


def test_boxes_to_mask_without_boxes_is_all_false():
    mask = boxes_to_mask(torch.zeros(0, 4), (5, 7))
    assert mask.shape == (5, 7) and mask.dtype == torch.bool and not mask.any()


def test_boxes_to_mask_converts_other_box_formats():
    cxcywh = tv_tensors.BoundingBoxes([[4.0, 3.0, 4.0, 2.0]], format="CXCYWH", canvas_size=(6, 8))
    xyxy = torch.tensor([[2.0, 2.0, 6.0, 4.0]])
    assert torch.equal(boxes_to_mask(cxcywh, (6, 8)), boxes_to_mask(xyxy, (6, 8)))


def test_boxes_to_mask_rejects_wrong_shape():
    with pytest.raises(CamAuditError, match=r"\[K, 4\]"):
        boxes_to_mask(torch.zeros(2, 3), (4, 4))


def test_target_regions_is_union_of_boxes_and_masks():
    mask = torch.zeros(2, 5, 6, dtype=torch.bool)
    mask[0, 4, 5] = True
    mask[1, 0, 0] = True
    target = {"label": 1, "boxes": torch.tensor([[1.0, 1.0, 3.0, 2.0]]), "masks": mask}
    expected = reference_boxes_to_mask([[1.0, 1.0, 3.0, 2.0]], 5, 6) | mask[0] | mask[1]
    assert torch.equal(target_regions(target, (5, 6), "object"), expected)
    assert not target_regions(target, (5, 6), "spurious").any()


def test_target_regions_spurious_role_and_two_dimensional_mask():
    spurious_mask = torch.zeros(4, 4, dtype=torch.bool)
    spurious_mask[3, 3] = True
    target = {
        "label": 0,
        "boxes": torch.tensor([[0.0, 0.0, 1.0, 1.0]]),
        "spurious_boxes": torch.tensor([[0.0, 3.0, 2.0, 4.0]]),
        "spurious_masks": spurious_mask,
    }
    region = target_regions(target, (4, 4), "spurious")
    assert region.sum().item() == 3
    assert region[3, 0] and region[3, 1] and region[3, 3]


def test_target_regions_without_regions_is_all_false():
    assert not target_regions({"label": 0}, (3, 3), "object").any()


def test_target_regions_rejects_unknown_role_and_mask_of_wrong_size():
    with pytest.raises(CamAuditError, match="role"):
        target_regions({"label": 0}, (3, 3), "background")  # type: ignore[arg-type]
    with pytest.raises(CamAuditError, match="match the image"):
        target_regions({"label": 0, "masks": torch.ones(1, 4, 3, dtype=torch.bool)}, (3, 3), "object")


def test_area_fraction_counts_pixels():
    regions = torch.zeros(3, 4, 5, dtype=torch.bool)
    regions[1, :2, :] = True
    regions[2] = True
    assert torch.allclose(area_fraction(regions), torch.tensor([0.0, 10 / 20, 1.0]))


def test_area_fraction_rejects_missing_batch_dimension():
    with pytest.raises(CamAuditError, match=r"\[N, H, W\]"):
        area_fraction(torch.ones(4, 4, dtype=torch.bool))


def test_boxes_to_mask_matches_reference_on_edges_outside_inverted_and_non_finite_corners():
    # corners on pixel centres and edges, off the canvas, inverted (empty), infinite and NaN
    values = [-3.0, -0.5, 0.0, 0.25, 0.5, 1.0, 1.4999999, 1.5, 1.5000001, 3.5, 4.0, 6.5, 7.0, 9.0]
    special = [float("inf"), float("-inf"), float("nan")]
    generator = torch.Generator().manual_seed(1)
    pool = torch.tensor(values + special, dtype=torch.float64)
    for _ in range(300):
        k = int(torch.randint(1, 3, (1,), generator=generator))
        boxes = pool[torch.randint(0, len(pool), (k, 4), generator=generator)]
        expected = reference_boxes_to_mask(boxes.tolist(), 5, 7)
        assert torch.equal(boxes_to_mask(boxes, (5, 7)), expected), boxes.tolist()
    float32 = torch.tensor([[0.1, 0.7, 3.3, 2.5000002]], dtype=torch.float32)
    assert torch.equal(boxes_to_mask(float32, (5, 7)), reference_boxes_to_mask(float32.tolist(), 5, 7))
