"""Discovery: cues nobody annotated, found from object regions alone, confirmed against matched controls.

Trained scene CNNs (a few seconds each) give the cases that matter: a model that reads the class from a
tag's corner or from a tag's presence gets a confirmed cue where the tag is, a model trained with tags
that carry no information gets none, and a model that reads the background gets a large ``bg_gap``.
The pieces are tested on hand-made tensors: candidates never touch the grown object, controls are
matched, and the cue table round-trips through JSON.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from cam_audit import ShortcutPolicy, audit
from cam_audit.counterfactual.matched import inpaint, object_holes
from cam_audit.counterfactual.spots import control_offsets, grow, hot_spots, shift_each
from cam_audit.errors import CamAuditError, ReportError
from cam_audit.probe import ProbeSet
from cam_audit.report import AuditReport
from cam_audit.report.cues import CUE_COLUMNS, confirm, exceedance_p
from cam_audit.report.jsonio import frame_to_json
from cam_audit.synthetic import make_scenes
from helpers.models import trained_scene_net

SIZE = 32


def _object_only(scenes) -> ProbeSet:
    """The scenes as a probe with object masks and no spurious annotation: nobody marked the tag."""
    return ProbeSet.from_tensors(scenes.images, scenes.labels, masks=scenes.object_masks)


@pytest.fixture(scope="module")
def corner_model():
    """A model trained on scenes whose tag corner gives the label away (it reads the corner)."""
    return trained_scene_net(make_scenes(1200, image_size=SIZE, watermark="correlated", seed=1), "avg")


@pytest.fixture(scope="module")
def clean_model():
    """A model trained on scenes with a tag in a random corner of every image (no information in it)."""
    return trained_scene_net(make_scenes(1200, image_size=SIZE, watermark="random", seed=1), "avg")


def test_a_corner_shortcut_is_confirmed_where_the_tag_is(corner_model):
    scenes = make_scenes(96, image_size=SIZE, watermark="correlated", seed=2)
    report = audit(corner_model, _object_only(scenes), target_layer="features", discover=True)
    confirmed = report.cues[report.cues["confirmed"]]
    assert len(confirmed) >= 1 and not report.verdict.passed
    assert report.summary["n_cues_confirmed"] == len(confirmed)
    for row in confirmed.to_dict("records"):
        tags = scenes.watermark_boxes[scenes.labels == row["label"]]
        tag_x = float((tags[:, 0] + tags[:, 2]).median() / 2)
        tag_y = float((tags[:, 1] + tags[:, 3]).median() / 2)
        assert row["x_min"] <= tag_x <= row["x_max"] and row["y_min"] <= tag_y <= row["y_max"], row
        assert row["paste_rate"] - row["control_paste_rate"] >= 0.3
        assert row["where"].split(",")[0].endswith("corner")
    cue_flags = [f for f in report.verdict.findings if f.rule == "min_cue_excess"]
    assert len(cue_flags) == len(confirmed) and "unannotated cue" in cue_flags[0].message
    assert report.meta["discovery_seconds"] > 0


def test_a_tag_whose_presence_is_the_cue_is_one_cue_at_four_places():
    """The tag sits in a random corner on class 0 only: the places are joined by the model's features."""
    train = make_scenes(1200, image_size=SIZE, watermark="correlated", cue_classes=(0,), seed=1)
    model = trained_scene_net(train, "avg")
    scenes = make_scenes(96, image_size=SIZE, watermark="correlated", cue_classes=(0,), seed=2)
    report = audit(model, _object_only(scenes), target_layer="features", discover=True)
    confirmed = report.cues[report.cues["confirmed"]]
    assert confirmed["label"].tolist() == [0]
    (row,) = confirmed.to_dict("records")
    assert row["n_samples"] > (scenes.labels == 0).sum() / 2  # most of the class, not one corner's share
    assert "other place" in row["where"]
    assert row["flip_rate"] - row["control_flip_rate"] >= 0.3


class _PulledAway(torch.nn.Module):
    """Green pixels are evidence for class 0, red ones (ten times stronger per pixel) for class 1, and class
    2 wins on a plain image: a red tag turns a green object's image into class 1."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Conv2d(3, 2, 1)
        self.head = torch.nn.Linear(2, 3)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.bias.zero_()
            self.features.weight[0, 1] = 1.0  # channel 0: green
            self.features.weight[1, 0] = 1.0  # channel 1: red
            self.head.weight.copy_(torch.tensor([[4.0, 0.0], [0.0, 40.0], [0.0, 0.0]]))
            self.head.bias.copy_(torch.tensor([0.0, 0.0, 0.2]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.features(images)).mean(dim=(2, 3)))


def _pulled_away_probe(classes: list[str]) -> ProbeSet:
    """16 green objects of class 0 on black, every other one with a red tag in the top-left corner."""
    images = torch.zeros(16, 3, SIZE, SIZE)
    images[:, 1, 10:22, 10:22] = 1.0
    images[::2, 0, 1:7, 1:7] = 1.0
    masks = torch.zeros(16, SIZE, SIZE, dtype=torch.bool)
    masks[:, 10:22, 10:22] = True
    return ProbeSet.from_tensors(images, [0] * 16, masks=masks, classes=classes)


def test_a_cue_that_pulls_away_from_the_label_is_found_in_the_map_of_the_decided_class():
    """Every sample is a green object of class 0; half carry a red tag in the top-left corner, which the
    model decides as class 1. The label's map lies on the object only (no candidate off it), so the tag is
    found in the map of the class the model decided, and belongs to that class."""
    probe = _pulled_away_probe(["object", "tag", "plain"])
    model = _PulledAway().eval()
    assert model(next(probe.batches(16)).images).argmax(dim=1).tolist() == [1, 0] * 8
    report = audit(model, probe, target_layer="features", discover=True)
    (cue,) = report.cues.to_dict("records")
    assert cue["class"] == "tag" and cue["n_samples"] == 8 and bool(cue["confirmed"])
    assert (cue["x_min"], cue["y_min"], cue["x_max"], cue["y_max"]) == (1.0, 1.0, 7.0, 7.0)
    assert cue["where"].startswith("top-left corner")
    # pasted into the untagged images (decided as the label), the tag moves them all; its control none
    assert (cue["n_paste"], cue["paste_rate"], cue["control_paste_rate"]) == (8, 1.0, 0.0)


@pytest.mark.parametrize("target", ["label", "predicted"])
def test_a_decision_outside_the_probes_classes_names_no_cue(target):
    """A model of more classes than the probe (three logits, one probe class, as a 1000-class model
    audited on a few): a sample decided as a class the probe lacks keeps the label's map, and a map that
    explains such a class gives no candidate, so no cue is named after it."""
    report = audit(_PulledAway().eval(), _pulled_away_probe(["object"]), target_layer="features",
                   discover=True, target=target)  # fmt: skip
    assert set(report.cues["class"]) <= {"object"} and report.summary["n_cues_confirmed"] == 0


def test_a_clean_model_gets_no_confirmed_cue_and_no_background_gap(clean_model):
    scenes = make_scenes(96, image_size=SIZE, watermark="random", seed=2)
    report = audit(clean_model, _object_only(scenes), target_layer="features", discover=True)
    assert report.summary["accuracy"] > 0.8
    assert len(report.cues) > 0  # candidates were found and tested ...
    assert report.summary["n_cues_confirmed"] == 0  # ... and none holds up against its control
    assert abs(report.summary["bg_gap"]) < 0.1
    assert report.verdict.passed, report.verdict.flags


def test_a_model_that_reads_the_background_has_a_large_bg_gap():
    """Backgrounds tinted by class: moved onto another class's background, the objects are misread."""
    tint = torch.tensor([[0.25, -0.15, -0.15], [-0.15, 0.25, -0.15], [-0.15, -0.15, 0.25]])

    def tinted(n: int, seed: int):
        scenes = make_scenes(n, image_size=SIZE, seed=seed)
        background = ~scenes.object_masks[:, None]
        images = (scenes.images + background * tint[scenes.labels][:, :, None, None]).clamp(0, 1)
        return scenes, images

    train, train_images = tinted(1200, 1)
    model = trained_scene_net(type(train)(**{**train.__dict__, "images": train_images}), "avg")
    scenes, images = tinted(96, 2)
    probe = ProbeSet.from_tensors(images, scenes.labels, masks=scenes.object_masks)
    report = audit(model, probe, target_layer="features", discover=True)
    assert report.summary["bg_acc_same"] > 0.8
    assert report.summary["bg_gap"] > 0.3
    assert any(f.rule == "max_bg_gap" for f in report.verdict.findings)
    gaps = report.samples["bg_same"] - report.samples["bg_other"]
    assert report.summary["bg_gap"] == pytest.approx(gaps.mean())


def test_discovery_needs_object_regions():
    scenes = make_scenes(6, image_size=SIZE, watermark="random", seed=0)
    probe = ProbeSet.from_tensors(scenes.images, scenes.labels, spurious_masks=scenes.watermark_masks)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with pytest.raises(CamAuditError, match="discover=True needs object regions.*boxes= or masks="):
        audit(model, probe, discover=True)


def test_boxes_work_as_object_regions(corner_model):
    scenes = make_scenes(96, image_size=SIZE, watermark="correlated", seed=2)
    boxes = [box[None] for box in scenes.object_boxes]
    report = audit(corner_model, ProbeSet.from_tensors(scenes.images, scenes.labels, boxes=boxes),
                   target_layer="features", discover=True)  # fmt: skip
    assert report.summary["n_cues_confirmed"] >= 1
    assert math.isfinite(report.summary["bg_gap"])


def test_without_discovery_the_cue_table_is_empty_and_its_numbers_are_nan(corner_model):
    scenes = make_scenes(12, image_size=SIZE, watermark="correlated", seed=2)
    report = audit(corner_model, _object_only(scenes), target_layer="features")
    assert report.cues.empty and list(report.cues.columns) == list(CUE_COLUMNS)
    assert all(math.isnan(report.summary[k]) for k in ("bg_gap", "n_cues", "n_cues_confirmed"))
    assert report.meta["discover"] is False


# -- the pieces, on hand-made tensors -------------------------------------------------------------------


def test_a_hot_spot_touching_the_grown_object_is_refused():
    """Mass one map cell from the object is the object's own (bilinear upsampling spreads it)."""
    regions = torch.zeros(1, 32, 32, dtype=torch.bool)
    regions[0, 10:20, 10:20] = True
    maps = torch.zeros(1, 32, 32)
    maps[0, 12:18, 12:18] = 1.0
    maps[0, 20:23, 14:17] = 2.0  # the hottest pixels, but within 4 px (the stride) of the object
    assert not hot_spots(maps, regions, stride=4).any()
    maps[0, 27:30, 27:30] = 1.5  # farther than the stride: a candidate, and only those pixels
    spot = hot_spots(maps, regions, stride=4)[0]
    assert spot.nonzero().tolist() == [[y, x] for y in range(27, 30) for x in range(27, 30)]
    assert not (spot & grow(regions, 4)[0]).any()


def test_a_weak_off_object_peak_is_no_candidate():
    regions = torch.zeros(1, 16, 16, dtype=torch.bool)
    regions[0, 2:6, 2:6] = True
    maps = torch.zeros(1, 16, 16)
    maps[0, 2:6, 2:6] = 1.0
    maps[0, 12, 12] = 0.2  # below a quarter of the map's peak
    assert not hot_spots(maps, regions, stride=1).any()


def test_controls_have_the_spots_shape_touch_neither_object_nor_spot_and_match_its_distance():
    torch.manual_seed(0)
    regions = torch.zeros(20, 40, 40, dtype=torch.bool)
    spots = torch.zeros_like(regions)
    for i in range(20):
        top, left = torch.randint(5, 25, (2,)).tolist()
        regions[i, top : top + 10, left : left + 10] = True
        spots[i, 0:3, 0:5] = bool(i % 2)  # a spot in the top-left corner, or one near the bottom
        spots[i, 36:40, 30:33] = not i % 2
        spots[i] &= ~grow(regions[i : i + 1], 3)[0]
    stride = 3
    for i, offset in enumerate(control_offsets(spots, regions, stride)):
        if offset is None:
            continue
        control = shift_each(spots[i : i + 1], torch.tensor([offset]))[0]
        assert control.sum() == spots[i].sum()  # the same shape, wholly inside the image
        assert not (control & grow(regions[i : i + 1], stride)[0]).any()
        assert not (control & grow(spots[i : i + 1], stride)[0]).any()
        edge = regions[i].nonzero().double()
        own = torch.cdist(spots[i].nonzero().double().mean(0, keepdim=True), edge).min()
        moved = torch.cdist(control.nonzero().double().mean(0, keepdim=True), edge).min()
        assert abs(float(own - moved)) <= 2.0 * stride, (i, offset)


def _reference_offset(spot, region, edge, table, stride):
    """The control search written out per spot on tensors: every free box on the grid, the centre's
    distance from the object's edge, the one nearest the spot's own (first in raster order)."""
    height, width = spot.shape
    ys, xs = spot.nonzero(as_tuple=True)
    top, left = int(ys.min()), int(xs.min())
    box_h, box_w = int(ys.max()) + 1 - top, int(xs.max()) + 1 - left
    step = max(1, stride // 2)
    tops = torch.arange(0, height - box_h + 1, step)[:, None]
    lefts = torch.arange(0, width - box_w + 1, step)[None, :]
    inside = (
        table[tops + box_h, lefts + box_w]
        - table[tops, lefts + box_w]
        - table[tops + box_h, lefts]
        + table[tops, lefts]
    )
    free = (inside == 0).nonzero()
    if free.numel() == 0:
        return None
    centre_y, centre_x = ys.double().mean(), xs.double().mean()
    boundary = (edge if bool(edge.any()) else region).nonzero().double()
    places = torch.stack(
        [tops[free[:, 0], 0] + (centre_y - top), lefts[0, free[:, 1]] + (centre_x - left)], 1
    )
    reach = torch.cdist(places.double(), boundary).amin(dim=1)
    own = torch.cdist(torch.stack([centre_y, centre_x])[None], boundary).amin()
    best = int(torch.argmin((reach - own).abs()))
    return int(tops[free[best, 0], 0]) - top, int(lefts[0, free[best, 1]]) - left


def test_controls_are_a_per_spot_search_to_the_last_bit():
    generator = torch.Generator().manual_seed(0)
    regions = torch.rand(64, 24, 24, generator=generator) < 0.04  # ragged objects, with and without edges
    regions[::2, 8:16, 6:14] = True
    spots = torch.zeros_like(regions)
    for i in range(64):
        top, left = torch.randint(0, 21, (2,), generator=generator).tolist()
        patch = torch.rand(3, 4, generator=generator) < 0.8
        spots[i, top : top + 3, left : left + 4] = patch[: 24 - top, : 24 - left]
    spots &= ~grow(regions, 2)
    found = control_offsets(spots, regions, stride=2)
    tables = torch.nn.functional.pad(grow(regions | spots, 2).int().cumsum(1).cumsum(2), (1, 0, 1, 0))
    edges = regions & grow(~regions, 1)
    for i in range(64):
        if spots[i].any() and regions[i].any():
            assert found[i] == _reference_offset(spots[i], regions[i], edges[i], tables[i], 2), i
    assert sum(offset is not None for offset in found) > 20


def test_grow_is_a_square_dilation_at_every_radius():
    regions = torch.rand(3, 17, 23, generator=torch.Generator().manual_seed(0)) < 0.05
    for radius in range(0, 30):
        square = torch.nn.functional.max_pool2d(regions[:, None].float(), 2 * radius + 1, 1, radius)[:, 0] > 0
        assert torch.equal(grow(regions, radius), square), radius


def _shifted(mask: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """One mask moved by slicing: what leaves the image is dropped, what enters is 0."""
    out = torch.zeros_like(mask)
    height, width = mask.shape[-2:]
    out[..., max(0, dy) : min(height, height + dy), max(0, dx) : min(width, width + dx)] = mask[
        ..., max(0, -dy) : min(height, height - dy), max(0, -dx) : min(width, width - dx)
    ]
    return out


def test_shift_each_moves_every_mask_as_slicing_moves_one():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(12, 3, 10, 14, generator=generator)
    offsets = torch.stack([torch.randint(-9, 10, (12,), generator=generator),
                           torch.randint(-13, 14, (12,), generator=generator)], 1)  # fmt: skip
    for masks in (images, images[:, 0] > 0.5):
        moves = offsets.tolist()
        one_by_one = torch.stack([_shifted(m, dy, dx) for m, (dy, dx) in zip(masks, moves, strict=True)])
        assert torch.equal(shift_each(masks, offsets), one_by_one)


def test_removing_an_object_leaves_no_trace_of_it():
    images = torch.full((1, 3, 32, 32), 0.4)
    regions = torch.zeros(1, 32, 32, dtype=torch.bool)
    regions[0, 10:20, 12:18] = True
    images[:, :, 10:20, 12:18] = 1.0  # a bright object on a flat background
    hole = object_holes(regions, 2)
    cleared = inpaint(images, hole)
    assert hole[0, 8:22, 10:20].all() and hole.sum() == 14 * 10  # a box two pixels wider, not the outline
    torch.testing.assert_close(cleared, torch.full_like(images, 0.4))


def test_confirmation_needs_excess_significance_and_samples():
    row = {"cue": 0, "class": "cat", "label": 0, "n_samples": 20, "x_min": 0, "y_min": 0, "x_max": 4,
           "y_max": 4, "where": "top-left corner, about 4x4 px", "flip_rate": 0.9, "control_flip_rate": 0.05,
           "paste_rate": math.nan, "control_paste_rate": math.nan, "confirmed": False, "n_fill": 20,
           "fill_only": 17, "control_fill_only": 0, "fill_p_value": exceedance_p(17, 0), "n_paste": 0,
           "paste_only": 0, "control_paste_only": 0, "paste_p_value": math.nan}  # fmt: skip
    cues = pd.DataFrame([row])
    assert confirm(cues, 0.3, 0.01, 5).tolist() == [True]
    assert confirm(cues, None, 0.01, 5).tolist() == [False]  # switched off
    assert confirm(cues, 0.3, 0.01, 21).tolist() == [False]  # too few samples
    assert confirm(cues, 0.9, 0.01, 5).tolist() == [False]  # excess 0.85 below the threshold
    weak = cues.assign(fill_only=3, fill_p_value=exceedance_p(3, 0))  # p = 0.125
    assert confirm(weak, 0.3, 0.01, 5).tolist() == [False]
    # Bonferroni: among 40 tests the same p-value of 7.6e-6 still passes, 0.001 does not
    many = pd.concat([cues] * 20, ignore_index=True).assign(n_paste=1)
    assert confirm(many, 0.3, 0.01, 5).all()
    assert not confirm(many.assign(fill_p_value=0.001), 0.3, 0.01, 5).any()


def test_the_exact_test_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for only, control_only in [(9, 1), (5, 5), (20, 0), (0, 4), (13, 6)]:
        expected = stats.binomtest(only, only + control_only, 0.5, alternative="greater").pvalue
        assert exceedance_p(only, control_only) == pytest.approx(expected, rel=1e-9)


def test_the_cue_table_round_trips_and_a_format_1_report_still_loads(corner_model, tmp_path):
    scenes = make_scenes(48, image_size=SIZE, watermark="correlated", seed=2)
    report = audit(corner_model, _object_only(scenes), target_layer="features", discover=True)
    assert len(report.cues) > 0
    path = report.to_json(tmp_path / "report.json")
    back = AuditReport.from_json(path)
    pd.testing.assert_frame_equal(back.cues, report.cues)
    assert back.verdict == report.verdict
    data = json.loads(path.read_text())
    data["format"] = "cam_audit.report/1"
    del data["cues"]
    old = AuditReport.from_dict(data)
    assert old.cues.empty and list(old.cues.columns) == list(CUE_COLUMNS)
    data["cues"] = frame_to_json(pd.DataFrame({"cue": [0]}))
    with pytest.raises(ReportError, match="cue table lacks the columns"):
        AuditReport.from_dict({**data, "format": "cam_audit.report/2"})


def test_another_policy_rejudges_the_cues(corner_model):
    scenes = make_scenes(96, image_size=SIZE, watermark="correlated", seed=2)
    report = audit(corner_model, _object_only(scenes), target_layer="features", discover=True)
    assert report.cues["confirmed"].any()
    lenient = report.with_verdict(ShortcutPolicy(min_cue_excess=None, max_bg_gap=None, min_focus_lift=None))
    assert not lenient.cues["confirmed"].any()
    assert not any(f.rule in ("min_cue_excess", "max_bg_gap") for f in lenient.verdict.findings)
    np.testing.assert_array_equal(lenient.cues["flip_rate"], report.cues["flip_rate"])


def test_discovery_without_the_counterfactual_tests_is_refused(corner_model):
    scenes = make_scenes(6, image_size=SIZE, watermark="correlated", seed=2)
    with pytest.raises(CamAuditError, match="discover=True needs counterfactual=True"):
        audit(corner_model, _object_only(scenes), "features", discover=True, counterfactual=False)


def test_no_target_layer_features_are_held_after_an_audit(corner_model):
    from cam_audit.cam import CamEngine
    from cam_audit.pipeline import AuditRun

    engine = CamEngine(corner_model, "features")
    probe = _object_only(make_scenes(12, image_size=SIZE, seed=2))
    run = AuditRun(engine, probe, ShortcutPolicy(), discover=True)
    run()
    assert engine.keep_features and engine.last_features is None
    run.galleries()
    assert engine.last_features is None
