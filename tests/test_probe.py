"""ProbeSet.from_tensors: validation (one test per error), items, batches, subsets and transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from cam_audit.errors import CamAuditError, ProbeError
from cam_audit.probe import ProbeBatch, ProbeSet


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(6, 3, 10, 12, generator=torch.Generator().manual_seed(0))


def one_box_each(n: int) -> torch.Tensor:
    return torch.tensor([[1.0, 2.0, 5.0, 6.0]]).repeat(n, 1)


# --- validation: one error case per test -------------------------------------------------------------


def test_label_out_of_range_names_the_sample(images):
    with pytest.raises(ProbeError, match=r"sample 4: label 3 is out of range for 2 classes"):
        ProbeSet.from_tensors(images, [0, 1, 0, 1, 3, 0], classes=["cat", "dog"])


def test_negative_label_names_the_sample(images):
    with pytest.raises(ProbeError, match=r"sample 2: label -1 is negative"):
        ProbeSet.from_tensors(images, torch.tensor([0, 1, -1, 1, 0, 0]))


def test_float_labels_are_rejected(images):
    with pytest.raises(ProbeError, match="LongTensor"):
        ProbeSet.from_tensors(images, torch.zeros(6))


def test_box_outside_the_image_names_the_sample(images):
    boxes = [torch.zeros(0, 4)] * 6
    boxes[3] = torch.tensor([[2.0, 2.0, 13.0, 5.0]])  # x_max 13 > W = 12
    with pytest.raises(ProbeError, match=r"sample 3 \(boxes\): box 0 .* outside the 12x10"):
        ProbeSet.from_tensors(images, [0] * 6, boxes=boxes)


def test_negative_box_coordinate_is_outside(images):
    boxes = one_box_each(6)
    boxes[0, 1] = -1.0
    with pytest.raises(ProbeError, match=r"sample 0 \(boxes\).*outside"):
        ProbeSet.from_tensors(images, [0] * 6, boxes=boxes)


def test_zero_area_box_names_the_sample(images):
    boxes = one_box_each(6)
    boxes[5] = torch.tensor([4.0, 2.0, 4.0, 6.0])
    with pytest.raises(ProbeError, match=r"sample 5 \(boxes\).*zero or negative area"):
        ProbeSet.from_tensors(images, [0] * 6, boxes=boxes)


def test_nan_box_is_rejected(images):
    boxes = one_box_each(6)
    boxes[1, 2] = float("nan")
    with pytest.raises(ProbeError, match=r"sample 1 \(boxes\).*NaN"):
        ProbeSet.from_tensors(images, [0] * 6, boxes=boxes)


def test_mask_of_wrong_size_names_the_sample(images):
    masks = [torch.ones(1, 10, 12, dtype=torch.bool)] * 6
    masks[2] = torch.ones(1, 12, 10, dtype=torch.bool)
    with pytest.raises(ProbeError, match=r"sample 2 \(masks\): mask of shape \(1, 12, 10\) does not match"):
        ProbeSet.from_tensors(images, [0] * 6, masks=masks)


def test_non_bool_mask_is_rejected(images):
    with pytest.raises(ProbeError, match=r"sample 0 \(spurious_masks\).*bool"):
        ProbeSet.from_tensors(images, [0] * 6, spurious_masks=torch.ones(6, 10, 12))


def test_length_mismatch_between_images_and_labels(images):
    with pytest.raises(ProbeError, match="5 labels for 6 images"):
        ProbeSet.from_tensors(images, [0] * 5)


def test_length_mismatch_between_images_and_boxes(images):
    with pytest.raises(ProbeError, match="boxes has 4 entries for 6 images"):
        ProbeSet.from_tensors(images, [0] * 6, boxes=[torch.zeros(0, 4)] * 4)


def test_length_mismatch_between_images_and_masks(images):
    with pytest.raises(ProbeError, match="masks has 5 entries for 6 images"):
        ProbeSet.from_tensors(images, [0] * 6, masks=torch.ones(5, 10, 12, dtype=torch.bool))


def test_nan_image_names_the_sample(images):
    images[4, 1, 3, 3] = float("nan")
    with pytest.raises(ProbeError, match=r"sample 4: image contains NaN"):
        ProbeSet.from_tensors(images, [0] * 6)


def test_integer_images_other_than_uint8_are_rejected():
    with pytest.raises(ProbeError, match="dtype torch.int64"):
        ProbeSet.from_tensors(torch.zeros(2, 3, 4, 4, dtype=torch.long), [0, 1])


def test_images_of_neither_three_channels_nor_one_are_rejected():
    with pytest.raises(
        ProbeError, match=r"\[N, 3, H, W\] \(colour\) or \[N, 1, H, W\] \(grayscale\), got \(2, 4, 4, 3\)"
    ):
        ProbeSet.from_tensors(torch.zeros(2, 4, 4, 3), [0, 1])


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, True, 1, 0, 0, 0], r"sample 1: label True is not an int"),
        ([0, 1, np.bool_(True), 0, 0, 0], r"sample 2: label np.True_ is not an int"),
        ([0, 1.0, 1, 0, 0, 0], r"sample 1: label 1.0 is not an int"),
        (["0", 1, 1, 0, 0, 0], r"sample 0: label '0' is not an int"),
        ([0, 1, torch.tensor(1.0), 0, 0, 0], r"sample 2: label tensor\(1.\) is not an int"),
        (np.zeros(6), r"labels must be integers .* got dtype float64"),
        (np.zeros((6, 1), dtype=np.int64), r"labels must have shape \[N\], got \(6, 1\)"),
        (np.zeros(5, dtype=np.int64), r"got 5 labels for 6 images"),
        (np.array([0, 1, 2, -1, 0, 0]), r"sample 3: label -1 is negative"),
        (3, r"labels must be an integer tensor \[N\], a numpy array \[N\] or a list of N ints, got int"),
    ],
    ids=[
        "bool",
        "numpy-bool",
        "float",
        "text",
        "float-tensor",
        "float-array",
        "2d-array",
        "length",
        "negative",
        "int",
    ],
)
def test_labels_that_are_not_class_indices_are_rejected(images, labels, message):
    with pytest.raises(ProbeError, match=message):
        ProbeSet.from_tensors(images, labels)


def test_probe_errors_are_value_errors(images):
    with pytest.raises(ValueError):
        ProbeSet.from_tensors(images, [0] * 5)


# --- items ---------------------------------------------------------------------------------------------


def test_uint8_images_become_floats_in_unit_range():
    raw = torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(1, 3, 1, 1).expand(2, 3, 2, 2)
    image, _ = ProbeSet.from_tensors(raw, [0, 0])[1]
    assert image.dtype == torch.float32
    assert torch.allclose(image[:, 0, 0], torch.tensor([0.0, 0.2, 1.0]))


def test_item_carries_tv_tensors_and_the_sample_id(images):
    masks = torch.zeros(6, 10, 12, dtype=torch.bool)
    masks[:, 0, 0] = True
    probe = ProbeSet.from_tensors(images, [0, 1, 2, 0, 1, 2], boxes=one_box_each(6), masks=masks)
    image, target = probe[2]
    assert isinstance(image, tv_tensors.Image) and torch.equal(image, images[2])
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes)
    assert target["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
    assert tuple(target["boxes"].canvas_size) == (10, 12)
    assert isinstance(target["masks"], tv_tensors.Mask) and target["masks"].shape == (1, 10, 12)
    assert target["label"] == 2 and target["sample_id"] == "2"
    assert "spurious_boxes" not in target and "spurious_masks" not in target


def test_numpy_and_tensor_integer_labels_are_python_ints(images):
    given = [np.int64(0), np.int32(2), np.uint8(1), torch.tensor(2), np.array(1), 0]
    for labels in (given, np.array([0, 2, 1, 2, 1, 0]), torch.tensor([0, 2, 1, 2, 1, 0], dtype=torch.int32)):
        probe = ProbeSet.from_tensors(images, labels, classes=["a", "b", "c"])
        assert [probe[i][1]["label"] for i in range(6)] == [0, 2, 1, 2, 1, 0]
        assert all(type(sample.label) is int for sample in probe.samples)
    with pytest.raises(ProbeError, match=r"sample 1: label 2 is out of range for 2 classes"):
        ProbeSet.from_tensors(images[:2], np.array([0, 2]), classes=["a", "b"])


def test_one_channel_images_give_one_channel_items_batches_and_regions():
    images = torch.rand(4, 1, 6, 8, generator=torch.Generator().manual_seed(1))
    probe = ProbeSet.from_tensors(
        images, [0, 1, 0, 1], boxes=torch.tensor([[1.0, 2.0, 5.0, 4.0]]).repeat(4, 1)
    )
    image, target = probe[3]
    assert image.shape == (1, 6, 8) and torch.equal(image, images[3]) and target["image_id"] == 3
    batch = next(probe.batches(4))
    assert torch.equal(batch.images, images) and batch.regions.shape == (4, 6, 8)
    assert batch.regions[0].sum() == 8 and batch.regions[0, 2:4, 1:5].all()
    gray = ProbeSet.from_tensors((images * 255).to(torch.uint8), [0, 1, 0, 1])
    assert gray[0][0].shape == (1, 6, 8) and gray[0][0].max() <= 1.0
    colour = ProbeSet.from_tensors(torch.rand(1, 3, 6, 8), [0])
    with pytest.raises(
        CamAuditError, match=r"samples '0' \(1 channels\) and '0' \(3 channels\) cannot share"
    ):
        next(ProbeSet(probe.samples[:1] + colour.samples).batches(2))


def test_probe_copies_its_inputs(images):
    probe = ProbeSet.from_tensors(images, [0] * 6)
    before = probe.fingerprint()
    images.zero_()
    assert probe.fingerprint() == before


def test_num_classes_and_has_spurious(images):
    probe = ProbeSet.from_tensors(images, [0, 4, 1, 0, 0, 0])
    assert probe.num_classes == 5 and not probe.has_spurious
    spurious = [torch.zeros(0, 4)] * 5 + [torch.tensor([[0.0, 0.0, 2.0, 2.0]])]
    probe = ProbeSet.from_tensors(images, [0] * 6, spurious_boxes=spurious, classes=["a", "b", "c"])
    assert probe.num_classes == 3 and probe.has_spurious
    assert "spurious_boxes" in probe[5][1] and "spurious_boxes" not in probe[0][1]


# --- batches -------------------------------------------------------------------------------------------


def test_batches_cover_all_samples_in_order_with_rasterised_regions(images):
    boxes = [torch.tensor([[0.0, 0.0, float(i + 1), 1.0]]) for i in range(6)]
    spurious = [torch.zeros(0, 4)] * 6
    spurious[4] = torch.tensor([[10.0, 8.0, 12.0, 10.0]])
    probe = ProbeSet.from_tensors(images, [0, 1, 2, 0, 1, 2], boxes=boxes, spurious_boxes=spurious)
    batches = list(probe.batches(4))
    assert [len(b) for b in batches] == [4, 2]
    assert all(isinstance(b, ProbeBatch) for b in batches)
    first, second = batches
    assert first.images.shape == (4, 3, 10, 12) and first.regions.shape == (4, 10, 12)
    assert torch.equal(torch.cat([first.images, second.images]), images)
    assert torch.cat([first.indices, second.indices]).tolist() == list(range(6))
    assert torch.cat([first.labels, second.labels]).tolist() == [0, 1, 2, 0, 1, 2]
    assert [int(r.sum()) for b in batches for r in b.regions] == [1, 2, 3, 4, 5, 6]
    assert second.has_spurious.tolist() == [True, False]
    assert second.spurious[0].sum().item() == 4 and not first.spurious.any()
    assert first.sample_ids == ["0", "1", "2", "3"]


def test_batches_of_selected_indices(images):
    probe = ProbeSet.from_tensors(images, [0, 1, 2, 0, 1, 2])
    (batch,) = probe.batches(8, indices=[5, 1])
    assert batch.indices.tolist() == [5, 1] and batch.labels.tolist() == [2, 1]
    with pytest.raises(CamAuditError, match="out of range"):
        next(probe.batches(2, indices=[6]))


def test_images_of_different_sizes_in_a_batch_suggest_resize():
    small = ProbeSet.from_tensors(torch.rand(1, 3, 8, 8), [0])
    large = ProbeSet.from_tensors(torch.rand(1, 3, 10, 12), [1])
    mixed = ProbeSet(small.samples + large.samples)
    with pytest.raises(CamAuditError, match=r"'0' \(8x8\) and '0' \(10x12\).*v2.Resize\(\(8, 8\)\)"):
        next(mixed.batches(2))
    resized = ProbeSet(mixed.samples, transform=v2.Resize((8, 8)))
    assert next(resized.batches(2)).images.shape == (2, 3, 8, 8)


def test_transform_moves_boxes_and_masks_with_the_image(images):
    masks = torch.zeros(6, 10, 12, dtype=torch.bool)
    masks[:, 2:5, 1:4] = True
    probe = ProbeSet.from_tensors(
        images, [0] * 6, boxes=one_box_each(6), masks=masks, transform=v2.RandomHorizontalFlip(p=1.0)
    )
    image, target = probe[0]
    assert torch.equal(image, images[0].flip(-1))
    assert target["boxes"].tolist() == [[7.0, 2.0, 11.0, 6.0]]
    assert torch.equal(target["masks"][0], masks[0].flip(-1))


def _flip_every_other_call() -> v2.Transform:
    class FlipEveryOther(v2.Transform):
        calls = 0

        def forward(self, *inputs):
            FlipEveryOther.calls += 1
            return v2.RandomHorizontalFlip(p=float(FlipEveryOther.calls % 2 == 0))(*inputs)

    return FlipEveryOther()


def test_batches_are_the_same_on_every_pass_with_regions_kept_or_not(images, monkeypatch):
    from cam_audit.probe import probeset

    spurious = [torch.tensor([[0.0, 0.0, 3.0, 2.0]])] * 3 + [torch.zeros(0, 4)] * 3
    for budget in (probeset.REGION_CACHE_BYTES, 3 * 2 * 10 * 12, 0):  # all kept, three kept, none
        monkeypatch.setattr(probeset, "REGION_CACHE_BYTES", budget)
        probe = ProbeSet.from_tensors(images, [0] * 6, boxes=one_box_each(6), spurious_boxes=spurious)
        first, second = list(probe.batches(4)), list(probe.batches(4))
        for a, b in zip(first, second, strict=True):
            assert torch.equal(a.regions, b.regions) and torch.equal(a.spurious, b.spurious)
            assert torch.equal(a.has_spurious, b.has_spurious)
        assert first[0].regions[0].sum() == 16 and first[0].has_spurious.tolist() == [True] * 3 + [False]


def test_regions_follow_a_random_transform_on_every_pass(images):
    probe = ProbeSet.from_tensors(images, [0] * 6, boxes=one_box_each(6), transform=_flip_every_other_call())
    first, second = next(probe.batches(1)), next(probe.batches(1))
    assert torch.equal(second.regions, first.regions.flip(-1)) and not torch.equal(
        first.regions, second.regions
    )


# --- subsets and fingerprints --------------------------------------------------------------------------


def test_subset_keeps_ids_classes_and_transform(images):
    probe = ProbeSet.from_tensors(
        images, [0, 1, 2, 0, 1, 2], classes=["a", "b", "c"], transform=v2.Identity()
    )
    sub = probe.subset([4, 2])
    assert sub.sample_ids == ["4", "2"] and sub.labels.tolist() == [1, 2]
    assert sub.classes == ["a", "b", "c"] and sub.transform is probe.transform


def test_stratified_is_balanced_deterministic_and_seed_dependent():
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (60,), generator=generator)
    probe = ProbeSet.from_tensors(torch.rand(60, 3, 4, 4, generator=generator), labels)
    chosen = probe.stratified(5, seed=3)
    assert torch.bincount(chosen.labels, minlength=3).tolist() == [5, 5, 5]
    assert chosen.sample_ids == probe.stratified(5, seed=3).sample_ids
    assert chosen.sample_ids != probe.stratified(5, seed=4).sample_ids
    ids = [int(i) for i in chosen.sample_ids]
    assert ids == sorted(ids) and all(labels[i] == probe.labels[i] for i in ids)


def test_stratified_refuses_classes_with_too_few_samples():
    probe = ProbeSet.from_tensors(torch.rand(4, 3, 4, 4), [0, 0, 0, 1], classes=["cat", "dog"])
    with pytest.raises(ProbeError, match="class 'dog' has only 1 samples"):
        probe.stratified(2)


def test_fingerprint_changes_with_labels_regions_and_pixels(images):
    base = ProbeSet.from_tensors(images, [0] * 6, boxes=one_box_each(6)).fingerprint()
    assert base == ProbeSet.from_tensors(images.clone(), [0] * 6, boxes=one_box_each(6)).fingerprint()
    assert base != ProbeSet.from_tensors(images, [0] * 5 + [1], boxes=one_box_each(6)).fingerprint()
    moved = one_box_each(6)
    moved[3, 0] = 0.0
    assert base != ProbeSet.from_tensors(images, [0] * 6, boxes=moved).fingerprint()
    changed = images.clone()
    changed[2, 0, 0, 0] += 0.5
    assert base != ProbeSet.from_tensors(changed, [0] * 6, boxes=one_box_each(6)).fingerprint()
    assert len(base) == 16


def test_class_names_are_the_classes_or_the_indices_as_text() -> None:
    images = torch.rand(3, 3, 4, 4)
    assert ProbeSet.from_tensors(images, [0, 2, 0]).class_names() == ["0", "1", "2"]
    named = ProbeSet.from_tensors(images, [0, 1, 0], classes=["cat", "dog", "fox"])
    assert named.class_names() == ["cat", "dog", "fox"]
