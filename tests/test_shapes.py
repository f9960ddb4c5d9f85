"""Every classifier shape: one logit (binary), one sigmoid per class (multi-label), any floating dtype,
a forward that takes a dict, and NumPy labels; each checked against an independent computation."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cam_audit import CamEngine, audit
from cam_audit.counterfactual import fill_scores, paste_moves
from cam_audit.errors import CamAuditError
from cam_audit.render import overlay_grid
from cam_audit.synthetic import SceneNet
from helpers.models import hook_count
from helpers.probes import tiny_probe
from helpers.shapes import (
    BLUE,
    RED,
    SIDE,
    BothSides,
    DictSceneNet,
    Squeezed,
    TwoColourNet,
    binary_scene_probe,
    centred_binary_net,
    image_dict_forward,
    probe_images,
    square,
    two_colour_probe,
)

SAME_PER_SAMPLE = ["target", "prediction", "correct", "focus", "focus_lift", "pointing_game", "spurious_mass",
                   "cf_flip", "cf_paste"]


def _audit_with_maps(model, probe, **kwargs):
    maps: dict[int, torch.Tensor] = {}

    def keep(batch, batch_maps, rows):
        maps.update(zip(batch.indices.tolist(), batch_maps.detach().clone(), strict=True))

    report = audit(model, probe, batch_size=5, on_batch=keep, **kwargs)
    return report, torch.stack([maps[i] for i in sorted(maps)])


@pytest.fixture(scope="module")
def binary_probe():
    return binary_scene_probe()


@pytest.fixture(scope="module")
def binary_model(binary_probe):
    return centred_binary_net(binary_probe)


@pytest.mark.parametrize("target", ["label", "predicted"])
def test_binary_audit_equals_the_multiclass_audit_of_minus_z_and_z(binary_model, binary_probe, target):
    report, maps = _audit_with_maps(binary_model, binary_probe, target_layer="features", target=target)
    wrapped, wrapped_maps = _audit_with_maps(
        BothSides(binary_model), binary_probe, target_layer="binary.features", target=target
    )
    assert report.meta["task"] == "binary" and wrapped.meta["task"] == "multiclass"
    assert set(report.samples["prediction"]) == {0, 1}  # the model predicts both classes
    torch.testing.assert_close(maps, wrapped_maps)
    pd.testing.assert_frame_equal(report.samples[SAME_PER_SAMPLE], wrapped.samples[SAME_PER_SAMPLE])
    for key in ("accuracy", "focus_lift", "spurious_lift", "cf_flip_rate", "cf_paste_rate"):
        assert report.summary[key] == pytest.approx(wrapped.summary[key], nan_ok=True), key


def test_binary_prediction_and_confidence_are_the_sign_and_sigmoid_of_the_logit(binary_model, binary_probe):
    report = audit(binary_model, binary_probe, target_layer="features", counterfactual=False)
    with torch.no_grad():
        z = binary_model(probe_images(binary_probe))[:, 0].double()
    labels = torch.tensor(report.samples["label"].to_numpy())
    np.testing.assert_array_equal(report.samples["prediction"], (z > 0).long().numpy())
    expected = torch.where(labels == 1, torch.sigmoid(z), torch.sigmoid(-z)).numpy()
    np.testing.assert_allclose(report.samples["confidence"], expected, rtol=1e-5)
    assert report.summary["accuracy"] == pytest.approx(float(((z > 0).long() == labels).double().mean()))


def test_a_model_returning_one_logit_per_image_as_n_is_read_as_n_by_1(binary_model, binary_probe):
    flat = audit(Squeezed(binary_model), binary_probe, target_layer="binary.features", batch_size=5)
    column = audit(binary_model, binary_probe, target_layer="features", batch_size=5)
    assert flat.meta["task"] == "binary"
    pd.testing.assert_frame_equal(flat.samples[SAME_PER_SAMPLE], column.samples[SAME_PER_SAMPLE])


def test_the_task_must_fit_the_number_of_outputs(binary_model, binary_probe):
    with pytest.raises(CamAuditError, match="task='binary' needs one output logit, but SceneNet returns 2"):
        CamEngine(SceneNet(num_classes=2, width=4), "features", task="binary")(torch.rand(2, 3, 32, 32))
    with pytest.raises(CamAuditError, match="a one-logit model is binary: pass task='binary'"):
        audit(binary_model, binary_probe, target_layer="features", task="multiclass")
    with pytest.raises(CamAuditError, match="task must be None .* or one of 'multiclass', 'multilabel'"):
        audit(binary_model, binary_probe, target_layer="features", task="sigmoid")
    with pytest.raises(CamAuditError, match=r"targets\[1\] = 2 is not a class index of a binary model"):
        CamEngine(binary_model, "features")(torch.rand(2, 3, 32, 32), [1, 2])


def test_a_binary_model_refuses_a_probe_of_three_classes(binary_model):
    with pytest.raises(CamAuditError, match=r"\(task 'binary'\) but the probe has 3 classes"):
        audit(binary_model, tiny_probe(), target_layer="features", target="predicted")


def test_multilabel_accuracy_and_confidence_are_each_labels_own_sigmoid():
    model, probe = TwoColourNet(), two_colour_probe()
    report = audit(model, probe, target_layer="features", task="multilabel", counterfactual=False)
    with torch.no_grad():
        probabilities = torch.sigmoid(model(probe_images(probe)).double())
    labels = torch.tensor(probe.labels.tolist())
    own = probabilities[torch.arange(len(labels)), labels]
    np.testing.assert_allclose(report.samples["confidence"], own.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(report.samples["correct"], (own > 0.5).double().numpy())
    assert report.summary["accuracy"] == pytest.approx(float((own > 0.5).double().mean()))
    assert 0.2 < report.summary["accuracy"] < 0.9  # some colours are too small to be on
    # read as softmax classes, exactly one of each image's two samples would count as correct
    multiclass = audit(model, probe, target_layer="features", counterfactual=False)
    assert multiclass.meta["task"] == "multiclass" and report.meta["task"] == "multilabel"
    assert multiclass.summary["accuracy"] == pytest.approx(0.5)


def test_multilabel_maps_fall_on_the_labels_own_object():
    model = TwoColourNet()
    options = dict(target_layer="features", task="multilabel", counterfactual=False)
    true = audit(model, two_colour_probe(), **options)
    swapped = audit(model, two_colour_probe(swap_boxes=True), **options)
    assert true.summary["focus"] > 0.99 and swapped.summary["focus"] < 0.01
    assert (true.samples["focus"] > swapped.samples["focus"]).all()


def test_multilabel_fill_flips_only_the_decision_on_the_filled_colour():
    model = TwoColourNet().eval()
    image = torch.zeros(3, SIDE, SIDE)
    square(image, RED, 2, 2, 8)
    square(image, BLUE, 2, 14, 8)
    images = torch.stack([image, image])
    red_region = torch.zeros(2, SIDE, SIDE, dtype=torch.bool)
    red_region[:, 2:10, 2:10] = True
    targets = torch.tensor([RED, BLUE])
    with torch.no_grad():
        out = fill_scores(model, images, red_region, targets, model(images), "mean", task="multilabel")
    assert out["cf_flip"].tolist() == [1.0, 0.0]  # red turned off; blue stayed on
    # the mean fill adds a little blue, so blue's probability moves by a hair only
    assert out["cf_confidence_drop"][0] > 0.9 and abs(float(out["cf_confidence_drop"][1])) < 0.01


def test_multilabel_paste_moves_when_the_cue_turns_its_label_on():
    model = TwoColourNet().eval()
    sources, partners = torch.zeros(3, 3, SIDE, SIDE), torch.zeros(3, 3, SIDE, SIDE)
    cues = torch.zeros(3, SIDE, SIDE, dtype=torch.bool)
    for i, side in enumerate((7, 4, 7)):  # a red cue big enough, one too small to count, a big one again
        square(sources[i], RED, 2, 2, side)
        cues[i, 2 : 2 + side, 2 : 2 + side] = True
        square(partners[i], BLUE, 12, 14, 8)  # a bigger blue square: blue keeps the highest logit
    square(partners[2], RED, 14, 2, 7)  # this partner shows red already: no move can be seen
    no_regions = torch.zeros_like(cues)
    labels = torch.full((3,), RED)
    with torch.no_grad():
        moved = paste_moves(model, sources, cues, labels, partners, no_regions, "mean", task="multilabel")
        as_softmax = paste_moves(model, sources, cues, labels, partners, no_regions, "mean")
    assert moved[:2].tolist() == [1.0, 0.0] and math.isnan(moved[2])
    # read as softmax, one red cue never beats the bigger blue square, and the partner whose own red
    # square adds to the cue's "moves" although its red was on before the paste
    assert as_softmax.tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_a_model_in_another_dtype_gives_float32_maps_close_to_float32(binary_model, binary_probe, dtype):
    reference, reference_maps = _audit_with_maps(binary_model, binary_probe, target_layer="features")
    converted = copy.deepcopy(binary_model).to(dtype)
    report, maps = _audit_with_maps(converted, binary_probe, target_layer="features")
    assert maps.dtype == torch.float32 and reference_maps.dtype == torch.float32
    tolerance = 1e-6 if dtype == torch.float64 else 0.03
    np.testing.assert_allclose(report.samples["focus"], reference.samples["focus"], atol=tolerance)
    if dtype == torch.float64:
        torch.testing.assert_close(maps, reference_maps, rtol=1e-5, atol=1e-7)


def test_the_engine_casts_images_to_the_model_dtype_and_returns_its_logits():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    images = torch.rand(2, 3, 8, 8)
    result = CamEngine(copy.deepcopy(model).double(), "1")(images, [0, 2])
    reference = CamEngine(model, "1")(images.double().float(), [0, 2])
    assert result.logits.dtype == torch.float64 and result.maps.dtype == torch.float32
    torch.testing.assert_close(result.maps, reference.maps, rtol=1e-5, atol=1e-7)
    assert images.dtype == torch.float32  # the caller's tensor is not converted in place


def test_a_dict_forward_gives_the_plain_models_audit():
    probe = binary_scene_probe()
    torch.manual_seed(0)
    plain = centred_binary_net(probe)
    wrapped = DictSceneNet(num_classes=1, width=4)
    wrapped.load_state_dict(plain.state_dict())
    hooks = hook_count(wrapped)
    report, maps = _audit_with_maps(wrapped, probe, target_layer="features", forward=image_dict_forward)
    reference, reference_maps = _audit_with_maps(plain, probe, target_layer="features")
    assert hook_count(wrapped) == hooks
    torch.testing.assert_close(maps, reference_maps)
    pd.testing.assert_frame_equal(report.samples, reference.samples)
    auto = audit(wrapped, probe, forward=image_dict_forward, counterfactual=False)  # layer found by a trace
    assert auto.meta["target_layer"] == "features"


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence")  # the model indexing a tensor with a str
def test_a_dict_model_without_forward_fails_before_the_audit_with_the_fix():
    wrapped = DictSceneNet(num_classes=1, width=4)
    with pytest.raises(CamAuditError, match=r"failed on probe sample .* pass forward=\(model, images\)"):
        audit(wrapped, binary_scene_probe(), target_layer="features")
    with pytest.raises(CamAuditError, match="forward must be a callable"):
        CamEngine(wrapped, "features", forward="image_dict_forward")


def test_numpy_labels_are_class_indices_like_ints():
    model = TwoColourNet()
    images = probe_images(two_colour_probe())[:3]
    expected = CamEngine(model, "features", task="multilabel")(images, torch.tensor([0, 1, 1]))
    for targets in (np.array([0, 1, 1]), [np.int64(0), np.int32(1), 1], np.array([0, 1, 1], dtype=np.uint8)):
        result = CamEngine(model, "features", task="multilabel")(images, targets)
        assert result.targets.tolist() == [0, 1, 1]
        torch.testing.assert_close(result.maps, expected.maps)
    with pytest.raises(CamAuditError, match="targets must hold integer class indices, got a torch.float64"):
        CamEngine(model, "features")(images, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(CamAuditError, match="targets must be integer class indices, got "):
        CamEngine(model, "features")(images, [np.bool_(True), 0, 1])


def test_the_engine_reports_its_task_once_decided():
    model = TwoColourNet()
    engine = CamEngine(model, "features")
    with pytest.raises(CamAuditError, match="task=None is decided by the model's first logits"):
        _ = engine.task
    engine(torch.rand(1, 3, 8, 8))
    assert engine.task == "multiclass"
    assert CamEngine(model, "features", task="multilabel").task == "multilabel"


def test_a_one_channel_model_is_explained_and_its_overlays_drawn_in_grey():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    images = torch.rand(2, 1, 8, 8)
    result = CamEngine(model, "1")(images, [0, 1])
    assert result.maps.shape == (2, 8, 8)
    grid = overlay_grid(images, result.maps, ncol=2, scale=1)
    assert grid.shape[0] == 3
    first_image = grid[:, 4:12, 4:12]  # make_grid pads by 4 pixels
    for channel in first_image:
        torch.testing.assert_close(channel, images[0, 0])
