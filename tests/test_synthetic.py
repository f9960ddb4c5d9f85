"""Synthetic scenes: determinism, geometry of objects and tags, watermark statistics, tag removal, and the
background cues (a class-specific tint or stripe texture) present, removed and moved."""

from __future__ import annotations

import time

import pytest
import torch

from cam_audit.errors import CamAuditError
from cam_audit.probe import ProbeSet
from cam_audit.regions import boxes_to_mask
from cam_audit.synthetic import CLASS_NAMES, SceneData, make_scenes
from cam_audit.synthetic.backgrounds import DEFAULT_STRENGTH, cue_field, tint_directions

FIELDS = (
    "images",
    "labels",
    "object_masks",
    "object_boxes",
    "watermark_masks",
    "watermark_boxes",
    "has_watermark",
    "background_classes",
)


def corner_of(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Corner index (0 TL, 1 TR, 2 BL, 3 BR) of each tag box, from its centre."""
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    return (centre_x > size / 2).long() + 2 * (centre_y > size / 2).long()


def test_same_seed_gives_identical_scenes_and_other_seeds_differ():
    first = make_scenes(40, watermark="correlated", correlation=0.7, seed=5)
    again = make_scenes(40, watermark="correlated", correlation=0.7, seed=5)
    other = make_scenes(40, watermark="correlated", correlation=0.7, seed=6)
    for name in FIELDS:
        assert torch.equal(getattr(first, name), getattr(again, name)), name
    assert not torch.equal(first.images, other.images)
    assert not torch.equal(first.object_boxes, other.object_boxes)


def test_shapes_dtypes_and_value_range():
    scenes = make_scenes(12, num_classes=6, image_size=48, watermark="random", seed=0)
    assert isinstance(scenes, SceneData) and len(scenes) == 12
    assert scenes.images.shape == (12, 3, 48, 48) and scenes.images.dtype == torch.float32
    assert scenes.images.min() >= 0.0 and scenes.images.max() <= 1.0
    assert scenes.labels.dtype == torch.long and scenes.object_masks.dtype == torch.bool
    assert scenes.object_boxes.shape == (12, 4) and scenes.watermark_boxes.shape == (12, 4)
    assert torch.bincount(scenes.labels, minlength=6).tolist() == [2] * 6


def test_object_box_is_the_tight_box_of_the_mask_and_inside_the_image():
    scenes = make_scenes(60, num_classes=6, watermark="random", seed=1)
    for mask, box in zip(scenes.object_masks, scenes.object_boxes, strict=True):
        rows, cols = mask.nonzero(as_tuple=True)
        assert box.tolist() == [
            cols.min().item(),
            rows.min().item(),
            cols.max().item() + 1,
            rows.max().item() + 1,
        ]
        assert not (mask & ~boxes_to_mask(box[None], (64, 64))).any()
        side = max(box[2] - box[0], box[3] - box[1]).item()
        assert 0.2 * 64 <= side <= 0.46 * 64


def test_watermark_never_overlaps_the_object():
    for mode in ("correlated", "random"):
        scenes = make_scenes(300, num_classes=5, watermark=mode, seed=2)
        assert not (scenes.object_masks & scenes.watermark_masks).any()
        tag_boxes = scenes.watermark_boxes
        object_boxes = scenes.object_boxes
        apart = (
            (object_boxes[:, 2] <= tag_boxes[:, 0])
            | (tag_boxes[:, 2] <= object_boxes[:, 0])
            | (object_boxes[:, 3] <= tag_boxes[:, 1])
            | (tag_boxes[:, 3] <= object_boxes[:, 1])
        )
        assert apart.all()


def test_watermark_mask_matches_its_box_and_is_high_contrast():
    scenes = make_scenes(20, watermark="random", seed=3)
    assert scenes.has_watermark.all()
    for i in range(20):
        assert torch.equal(
            scenes.watermark_masks[i], boxes_to_mask(scenes.watermark_boxes[i][None], (64, 64))
        )
        box = scenes.watermark_boxes[i].long().tolist()
        assert box[2] - box[0] == 12 and box[3] - box[1] == 6
        tag = scenes.images[i][:, scenes.watermark_masks[i]]
        assert set(tag.unique().tolist()) == {0.0, 1.0}


def test_no_watermark_mode_has_none():
    scenes = make_scenes(30, watermark="none", seed=0)
    assert not scenes.has_watermark.any() and not scenes.watermark_masks.any()
    assert not scenes.watermark_boxes.any()
    assert not scenes.to_probe().has_spurious


def test_correlation_statistics_match_the_argument():
    scenes = make_scenes(2000, num_classes=4, watermark="correlated", correlation=0.9, seed=7)
    assert scenes.has_watermark.all()
    in_label_corner = corner_of(scenes.watermark_boxes, 64) == scenes.labels % 4
    assert abs(in_label_corner.float().mean().item() - 0.9) < 0.03


def test_full_correlation_puts_every_tag_in_the_label_corner():
    scenes = make_scenes(200, num_classes=3, watermark="correlated", seed=8)
    assert torch.equal(corner_of(scenes.watermark_boxes, 64), scenes.labels % 4)


def test_random_watermark_corner_is_unrelated_to_the_label():
    scenes = make_scenes(2000, num_classes=4, watermark="random", seed=9)
    in_label_corner = corner_of(scenes.watermark_boxes, 64) == scenes.labels % 4
    assert abs(in_label_corner.float().mean().item() - 0.25) < 0.03


def test_more_than_four_classes_vary_the_tag_pattern():
    scenes = make_scenes(60, num_classes=6, watermark="correlated", seed=10)
    patches = {}
    for i in range(60):
        label = int(scenes.labels[i])
        tag = scenes.images[i, 0][scenes.watermark_masks[i]].reshape(6, 12)
        patches.setdefault(label, tag)
        assert torch.equal(patches[label], tag)
    assert not torch.equal(patches[0], patches[4])  # same corner (0 % 4 == 4 % 4), different pattern
    assert not torch.equal(patches[1], patches[5])


def test_cue_classes_put_watermarks_only_on_those_classes():
    scenes = make_scenes(
        2000, num_classes=2, watermark="correlated", correlation=0.8, cue_classes=(1,), seed=11
    )
    is_cue_class = scenes.labels == 1
    assert not scenes.has_watermark[~is_cue_class].any()
    assert abs(scenes.has_watermark[is_cue_class].float().mean().item() - 0.8) < 0.05  # 4 sigma at n = 1000
    corners = corner_of(scenes.watermark_boxes[scenes.has_watermark], 64)
    assert torch.bincount(corners, minlength=4).min() > 0.15 * len(corners)  # position is not the cue


def test_without_watermark_restores_the_exact_background():
    tagged = make_scenes(200, watermark="correlated", seed=12)
    plain = make_scenes(200, watermark="none", seed=12)  # same seed: same backgrounds, objects moved
    clean = tagged.without_watermark()
    assert not clean.has_watermark.any() and not clean.watermark_masks.any()
    assert torch.equal(clean.labels, tagged.labels) and torch.equal(clean.object_masks, tagged.object_masks)
    objects = tagged.object_masks[:, None].expand(-1, 3, -1, -1)
    assert torch.equal(clean.images[objects], tagged.images[objects])
    outside_tags = ~tagged.watermark_masks[:, None].expand(-1, 3, -1, -1)
    assert torch.equal(clean.images[outside_tags], tagged.images[outside_tags])
    tags = tagged.watermark_masks
    assert (clean.images != tagged.images).any(dim=1)[tags].float().mean() > 0.9  # the tag is gone
    comparable = (tags & ~plain.object_masks)[:, None].expand(-1, 3, -1, -1)
    assert comparable.sum() > 1000
    assert torch.equal(clean.images[comparable], plain.images[comparable])


def test_to_probe_carries_objects_and_tags():
    scenes = make_scenes(9, num_classes=3, watermark="correlated", correlation=1.0, cue_classes=(0,), seed=13)
    probe = scenes.to_probe()
    assert isinstance(probe, ProbeSet) and len(probe) == 9
    assert probe.classes == list(CLASS_NAMES[:3]) and probe.num_classes == 3
    (batch,) = probe.batches(9)
    assert torch.equal(batch.images, scenes.images)
    boxes = torch.stack([boxes_to_mask(box[None], (64, 64)) for box in scenes.object_boxes])
    assert torch.equal(batch.regions, boxes | scenes.object_masks)  # union of box and mask: the box
    assert torch.equal(batch.spurious, scenes.watermark_masks)
    assert torch.equal(batch.has_spurious, scenes.has_watermark)
    assert scenes.to_probe(classes=["a", "b", "c"]).classes == ["a", "b", "c"]


def test_to_probe_can_leave_the_tag_unannotated():
    scenes = make_scenes(9, watermark="correlated", seed=13)
    (marked,) = scenes.to_probe().batches(9)
    unannotated = scenes.to_probe(spurious=False)
    (batch,) = unannotated.batches(9)
    assert not unannotated.has_spurious and not batch.spurious.any() and not batch.has_spurious.any()
    assert torch.equal(batch.images, scenes.images)  # the tag is still in the images
    assert torch.equal(batch.regions, marked.regions) and torch.equal(batch.labels, marked.labels)
    assert unannotated.fingerprint() != scenes.to_probe().fingerprint()


def test_dataset_yields_images_and_labels():
    scenes = make_scenes(5, seed=0)
    image, label = scenes.dataset()[3]
    assert torch.equal(image, scenes.images[3]) and label == scenes.labels[3]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 7}, "num_classes"),
        ({"image_size": 16}, "image_size"),
        ({"watermark": "corner"}, "watermark"),
        ({"watermark": "correlated", "correlation": 1.5}, "correlation"),
        ({"watermark": "random", "cue_classes": (0,)}, "cue_classes"),
        ({"watermark": "correlated", "cue_classes": (3,)}, "cue_classes"),
        ({"background_cue": "stripes"}, "background_cue"),
        ({"background_cue": "colour", "background_correlation": -0.1}, "background_correlation"),
        ({"background_cue": "texture", "background_strength": 0.5}, "background_strength"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(CamAuditError, match=message):
        make_scenes(4, **kwargs)


BACKGROUND_CUES = ("colour", "texture")


@pytest.mark.parametrize("cue", BACKGROUND_CUES)
def test_background_cue_is_deterministic_per_seed(cue):
    first = make_scenes(40, image_size=32, background_cue=cue, background_correlation=0.7, seed=5)
    again = make_scenes(40, image_size=32, background_cue=cue, background_correlation=0.7, seed=5)
    other = make_scenes(40, image_size=32, background_cue=cue, background_correlation=0.7, seed=6)
    for name in FIELDS:
        assert torch.equal(getattr(first, name), getattr(again, name)), name
    assert not torch.equal(first.background_classes, other.background_classes)


@pytest.mark.parametrize("watermark", ["none", "random", "correlated"])
@pytest.mark.parametrize("cue", BACKGROUND_CUES)
def test_background_cue_draws_last_so_scenes_without_it_are_unchanged(cue, watermark):
    plain = make_scenes(60, image_size=32, watermark=watermark, seed=3)
    assert torch.equal(plain.background_classes, torch.full((60,), -1))
    # at strength 0 the cue adds nothing: every other output is that of the scenes without it
    faint = make_scenes(
        60, image_size=32, watermark=watermark, seed=3, background_cue=cue, background_strength=0
    )
    for name in FIELDS[:-1]:
        assert torch.equal(getattr(faint, name), getattr(plain, name)), name
    assert torch.equal(faint.tag_background, plain.tag_background)


@pytest.mark.parametrize("cue", BACKGROUND_CUES)
def test_background_cue_is_on_the_background_only_at_its_strength(cue):
    plain = make_scenes(90, image_size=32, seed=4)  # the cue removed: the same scenes without it
    cued = make_scenes(90, image_size=32, seed=4, background_cue=cue)
    assert torch.equal(cued.background_classes, cued.labels)
    assert torch.equal(cued.object_masks, plain.object_masks) and torch.equal(cued.labels, plain.labels)
    objects = cued.object_masks[:, None].expand(-1, 3, -1, -1)
    assert torch.equal(cued.images[objects], plain.images[objects])  # the object carries no trace of it
    difference = cued.images - plain.images
    # the tint's length in RGB; the stripes' amplitude (the same in every channel)
    shift = difference.norm(dim=1) if cue == "colour" else difference[:, 0].abs()
    shift = shift[~cued.object_masks]
    strength = DEFAULT_STRENGTH[cue]
    assert shift.max() <= strength + 1e-5 and shift.max() > 0.9 * strength


def test_colour_cue_is_one_tint_per_class_on_the_whole_background():
    plain = make_scenes(60, image_size=32, seed=4)
    cued = make_scenes(60, image_size=32, seed=4, background_cue="colour")
    expected = cue_field("colour", cued.labels, torch.zeros(60), 3, 32, DEFAULT_STRENGTH["colour"])
    background = ~cued.object_masks[:, None].expand(-1, 3, -1, -1)
    difference = cued.images - plain.images
    assert torch.allclose(difference[background], expected.expand_as(difference)[background], atol=1e-5)


def test_colour_cue_tints_each_class_its_own_hue_at_constant_brightness():
    plain = make_scenes(300, image_size=32, seed=5)
    cued = make_scenes(300, image_size=32, seed=5, background_cue="colour", background_strength=0.1)
    background = ~cued.object_masks[:, None].expand(-1, 3, -1, -1)
    tint = ((cued.images - plain.images) * background).sum(dim=(2, 3)) / background.sum(dim=(2, 3))  # [N, 3]
    assert torch.allclose(tint, 0.1 * tint_directions(3)[cued.labels], atol=1e-5)
    assert tint.sum(dim=1).abs().max() < 1e-5  # hue, not brightness


def test_texture_cue_has_the_orientation_of_its_class():
    cued = make_scenes(30, image_size=32, seed=6, background_cue="texture", background_strength=0.1)
    plain = make_scenes(30, image_size=32, seed=6)
    stripes = (cued.images - plain.images)[:, 0]
    for i in range(30):
        background = ~cued.object_masks[i]
        along_columns = (stripes[i, 1:] - stripes[i, :-1]).abs()[background[1:] & background[:-1]].mean()
        along_rows = (
            (stripes[i, :, 1:] - stripes[i, :, :-1]).abs()[background[:, 1:] & background[:, :-1]].mean()
        )
        if cued.labels[i] == 0:  # 0 degrees: vertical stripes, constant down each column
            assert along_columns < 1e-5 < along_rows
        else:  # 60 and 120 degrees: they change both ways
            assert along_columns > 0.01 and along_rows > 0.01


@pytest.mark.parametrize("cue", BACKGROUND_CUES)
def test_background_cue_moved_to_other_classes_follows_the_correlation(cue):
    moved = make_scenes(3000, image_size=24, seed=7, background_cue=cue, background_correlation=0.0)
    assert not (moved.background_classes == moved.labels).any()
    assert (moved.background_classes >= 0).all() and (moved.background_classes < 3).all()
    for label in range(3):  # the other two classes equally often
        others = moved.background_classes[moved.labels == label]
        assert abs((others == (label + 1) % 3).float().mean().item() - 0.5) < 0.05
    cued = make_scenes(3000, image_size=24, seed=7, background_cue=cue)
    assert torch.equal(moved.object_masks, cued.object_masks)  # the same scenes, the cue moved
    partly = make_scenes(3000, image_size=24, seed=7, background_cue=cue, background_correlation=0.8)
    assert abs((partly.background_classes == partly.labels).float().mean().item() - 0.8) < 0.03


def test_probe_without_spurious_annotations_keeps_images_and_objects():
    scenes = make_scenes(9, watermark="correlated", seed=13)
    annotated, bare = scenes.to_probe(), scenes.to_probe(spurious=False)
    assert annotated.has_spurious and not bare.has_spurious
    (full,) = annotated.batches(9)
    (objects_only,) = bare.batches(9)
    assert torch.equal(full.images, objects_only.images) and torch.equal(full.regions, objects_only.regions)
    assert not objects_only.has_spurious.any()


def test_without_watermark_keeps_the_background_cue():
    scenes = make_scenes(6, watermark="random", background_cue="colour", seed=2)
    assert torch.equal(scenes.without_watermark().background_classes, scenes.labels)


def test_thousand_scenes_are_fast():
    make_scenes(10)
    start = time.perf_counter()
    make_scenes(1000, watermark="correlated", seed=0)
    assert time.perf_counter() - start < 5.0  # about a second on one free core; generous for shared CI


@pytest.mark.slow
def test_small_cnn_learns_the_correlated_watermark_before_the_shape():
    torch.manual_seed(0)
    train = make_scenes(600, image_size=32, watermark="correlated", seed=0)
    test = make_scenes(300, image_size=32, watermark="correlated", seed=100)

    def block(c_in: int, c_out: int) -> list[torch.nn.Module]:
        return [
            torch.nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            torch.nn.BatchNorm2d(c_out),
            torch.nn.ReLU(),
        ]

    model = torch.nn.Sequential(
        *block(3, 8), torch.nn.MaxPool2d(2), *block(8, 16), torch.nn.MaxPool2d(2), *block(16, 16),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 3),
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(2):
        for batch in torch.randperm(600).split(32):
            loss = torch.nn.functional.cross_entropy(model(train.images[batch]), train.labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        with_tag = (model(test.images).argmax(1) == test.labels).float().mean().item()
        without_tag = (model(test.without_watermark().images).argmax(1) == test.labels).float().mean().item()
    assert with_tag > 0.6 and without_tag < 0.5 and with_tag - without_tag > 0.25
