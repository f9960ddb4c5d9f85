"""CamEngine on resnet18: the maps against the float64 reference, target errors, and that a call
leaves no trace on the model, the input or the random state."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from cam_audit.cam import CamEngine, CamResult, resolve_target_layer, spatial_layers
from cam_audit.errors import CamAuditError, TargetLayerError
from test_cam_reference import assert_maps_close, reference_maps


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return resnet18(num_classes=5)


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 64, 64)


# --- maps --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["gradcam++", "gradcam"])
def test_maps_match_float64_reference(resnet: nn.Module, images: torch.Tensor, method: str) -> None:
    targets = torch.tensor([3, 1])
    res = CamEngine(resnet, target_layer="layer4", method=method)(images, targets)
    assert isinstance(res, CamResult)
    assert res.maps.shape == (2, 64, 64) and res.maps.dtype == torch.float32
    assert (res.maps >= 0).all()
    assert res.targets.tolist() == [3, 1] and res.targets.dtype == torch.long
    assert_maps_close(res.maps, reference_maps(resnet, images, "layer4", targets, method))


def test_maps_are_raw_not_normalised(resnet: nn.Module, images: torch.Tensor) -> None:
    maps = CamEngine(resnet, "layer3")(images, [0, 0]).maps
    ref = reference_maps(resnet, images, "layer3", torch.tensor([0, 0]))
    torch.testing.assert_close(maps.amax(dim=(1, 2)).double(), ref.amax(dim=(1, 2)), rtol=1e-3, atol=0)


def test_default_target_is_the_predicted_class(resnet: nn.Module, images: torch.Tensor) -> None:
    engine = CamEngine(resnet, "layer4")
    res = engine(images)
    with torch.no_grad():
        logits = resnet.eval()(images)
    torch.testing.assert_close(res.logits, logits)
    assert res.targets.tolist() == logits.argmax(1).tolist()
    torch.testing.assert_close(engine(images, "predicted").maps, res.maps)


def test_targets_pick_the_explained_class(resnet: nn.Module, images: torch.Tensor) -> None:
    engine = CamEngine(resnet, "layer4")
    as_list, as_tensor = engine(images, [4, 2]), engine(images, torch.tensor([4, 2], dtype=torch.int32))
    torch.testing.assert_close(as_list.maps, as_tensor.maps)
    assert not torch.allclose(engine(images, [0, 0]).maps, as_list.maps)


def test_compute_returns_every_method_from_one_pass(resnet: nn.Module, images: torch.Tensor) -> None:
    engine = CamEngine(resnet, "layer4")
    maps = engine.compute(images, [1, 2])
    assert set(maps) == {"gradcam++", "gradcam"}
    torch.testing.assert_close(maps["gradcam++"], engine(images, [1, 2]).maps)
    torch.testing.assert_close(
        maps["gradcam"], CamEngine(resnet, "layer4", method="gradcam")(images, [1, 2]).maps
    )


def test_auto_layer_is_the_last_spatial_block(resnet: nn.Module, images: torch.Tensor) -> None:
    engine = CamEngine(resnet)
    with pytest.raises(TargetLayerError, match="first call"):
        _ = engine.layer_name
    auto = engine(images, [0, 1])
    assert engine.layer_name == "layer4"
    torch.testing.assert_close(auto.maps, CamEngine(resnet, "layer4")(images, [0, 1]).maps)


def test_target_layer_may_be_a_module(resnet: nn.Module, images: torch.Tensor) -> None:
    engine = CamEngine(resnet, resnet.layer3)
    assert engine.layer_name == "layer3"
    torch.testing.assert_close(engine(images, [0, 1]).maps, CamEngine(resnet, "layer3")(images, [0, 1]).maps)


def test_no_graph_is_built_below_the_target_layer(resnet: nn.Module, images: torch.Tensor) -> None:
    grad_mode = {}

    def record(name: str):
        def hook(_module, _args) -> None:
            grad_mode.setdefault(name, torch.is_grad_enabled())

        return hook

    handles = [
        module.register_forward_pre_hook(record(name)) for name, module in resnet.named_modules() if name
    ]
    try:
        CamEngine(resnet, "layer4")(images)
    finally:
        for handle in handles:
            handle.remove()
    below = [
        name for name in grad_mode if name.split(".")[0] in {"conv1", "bn1", "maxpool", "layer1", "layer4"}
    ]
    assert below and not any(grad_mode[name] for name in below)  # layer4 itself runs without grad
    assert grad_mode["avgpool"] and grad_mode["fc"]  # the head builds the only graph


# --- state of the model, the input and the process ------------------------------------------------------


def _snapshot(model: nn.Module, images: torch.Tensor) -> dict:
    hook_dicts = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_hooks_always_called",
        "_forward_pre_hooks_with_kwargs",
        "_backward_pre_hooks",
    )
    return {
        "training": [(name, m.training) for name, m in model.named_modules()],
        "grads": {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()},
        "state": {name: t.clone() for name, t in model.state_dict().items()},
        "rng": torch.get_rng_state(),
        "hooks": [
            (name, attr, dict(getattr(m, attr))) for name, m in model.named_modules() for attr in hook_dicts
        ],
        "version": images._version,
        "images": images.clone(),
        "grad_enabled": torch.is_grad_enabled(),
    }


def _assert_unchanged(before: dict, after: dict) -> None:
    assert after["training"] == before["training"]
    assert after["grads"].keys() == before["grads"].keys()
    for name, grad in before["grads"].items():
        if grad is None:
            assert after["grads"][name] is None, name
        else:
            assert torch.equal(after["grads"][name], grad), name
    for name, tensor in before["state"].items():
        assert torch.equal(after["state"][name], tensor), name
    assert torch.equal(after["rng"], before["rng"])
    assert after["hooks"] == before["hooks"]
    assert after["version"] == before["version"]
    assert torch.equal(after["images"], before["images"])
    assert after["grad_enabled"] == before["grad_enabled"]


@pytest.fixture
def training_resnet() -> nn.Module:
    """A resnet in training mode with mixed flags, some parameter grads set and a user hook."""
    torch.manual_seed(2)
    model = resnet18(num_classes=5).train()
    model.layer2.eval()
    model.layer2[1].bn1.train()
    for index, parameter in enumerate(model.parameters()):
        if index % 3 == 0:
            parameter.grad = torch.randn_like(parameter)
    model.layer1.register_forward_hook(lambda m, a, o: None)
    return model


def test_call_leaves_no_trace(training_resnet: nn.Module, images: torch.Tensor) -> None:
    before = _snapshot(training_resnet, images)
    engine = CamEngine(training_resnet, "layer4")
    res = engine(images)
    engine.compute(images, [0, 1])
    _assert_unchanged(before, _snapshot(training_resnet, images))
    for tensor in (res.maps, res.logits, res.targets):
        assert not tensor.requires_grad and tensor.grad_fn is None


@pytest.mark.parametrize(
    ("layer", "targets", "error"),
    [
        ("layer4", [0, 1, 2], r"len\(targets\) = 3 but images holds N = 2"),
        ("layer4", [0, 9], r"targets\[1\] = 9 is not a class index"),
        ("fc", None, "reshape_transform"),
        ("layer4.1.relu", None, "more than once"),
    ],
)
def test_failing_call_leaves_no_trace(
    training_resnet: nn.Module, images: torch.Tensor, layer: str, targets, error: str
) -> None:
    before = _snapshot(training_resnet, images)
    with pytest.raises(CamAuditError, match=error):
        CamEngine(training_resnet, layer)(images, targets)
    _assert_unchanged(before, _snapshot(training_resnet, images))


def test_model_drawing_random_numbers_does_not_shift_the_caller_stream(images: torch.Tensor) -> None:
    class NoisyHead(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 0.01 * torch.randn_like(x)

    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), NoisyHead(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    torch.manual_seed(4)
    expected = torch.rand(3)
    torch.manual_seed(4)
    CamEngine(model, "0")(images)
    assert torch.equal(torch.rand(3), expected)


def test_works_inside_no_grad(resnet: nn.Module, images: torch.Tensor) -> None:
    expected = CamEngine(resnet, "layer4")(images, [0, 1]).maps
    with torch.no_grad():
        res = CamEngine(resnet, "layer4")(images, [0, 1])
        assert not torch.is_grad_enabled()
    torch.testing.assert_close(res.maps, expected)


def test_works_inside_inference_mode(resnet: nn.Module) -> None:
    torch.manual_seed(1)
    expected_images = torch.rand(2, 3, 64, 64)
    expected = CamEngine(resnet, "layer4")(expected_images, [0, 1]).maps
    with torch.inference_mode():
        images = expected_images.clone()  # an inference tensor
        res = CamEngine(resnet, "layer4")(images, [0, 1])
        assert torch.is_inference_mode_enabled()
    torch.testing.assert_close(res.maps, expected)


def test_in_place_ops_after_the_layer_still_work(images: torch.Tensor) -> None:
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    res = CamEngine(model, "0")(images, [2, 0])
    assert_maps_close(res.maps, reference_maps(model, images, "0", torch.tensor([2, 0])))


# --- errors -------------------------------------------------------------------------------------------


def test_unknown_layer_lists_the_candidate_layers(resnet: nn.Module, images: torch.Tensor) -> None:
    found = "target_layer 'layer5' not found in ResNet; "
    with pytest.raises(TargetLayerError) as from_structure:
        CamEngine(resnet, "layer5")
    with pytest.raises(TargetLayerError) as from_trace:
        resolve_target_layer(resnet, "layer5", images)
    # without an input nothing has run, so the message names what it can know: blocks holding convolutions
    blocks = "layer1, layer2, layer3, layer4"
    assert str(from_structure.value).startswith(found + "blocks holding convolutions: " + blocks)
    assert str(from_trace.value).startswith(found + "layers with a spatial output: " + blocks)


def test_spatial_layers_are_listed_in_execution_order(resnet: nn.Module, images: torch.Tensor) -> None:
    names = spatial_layers(resnet, images)
    assert names[:5] == ["conv1", "bn1", "relu", "maxpool", "layer1.0.conv1"]
    assert names[-3:] == ["layer4.1.bn2", "layer4.1", "layer4"]
    assert "layer4.1.relu" not in names  # called twice inside its block
    assert "avgpool" not in names  # 1x1: nothing to localise


def test_layer_that_never_runs_is_reported(images: torch.Tensor) -> None:
    torch.manual_seed(6)

    class WithUnusedBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = resnet18(num_classes=3)
            self.unused = nn.Conv2d(512, 8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.backbone(x)

    with pytest.raises(TargetLayerError, match="'unused' never runs in WithUnusedBranch.forward"):
        CamEngine(WithUnusedBranch(), "unused")(images)


def test_non_spatial_layer_suggests_reshape_transform(resnet: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(TargetLayerError, match=r"outputs shape \(2, 5\).*reshape_transform"):
        CamEngine(resnet, "fc")(images)


def test_module_outside_the_model_is_rejected(resnet: nn.Module) -> None:
    with pytest.raises(TargetLayerError, match="not a submodule of ResNet"):
        CamEngine(resnet, nn.Conv2d(3, 3, 1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"method": "scorecam"},
            "method must be one of 'gradcam\\+\\+', 'gradcam'; got 'scorecam'",
        ),
        ({"target_layer": 3}, "target_layer must be a dotted layer name"),
        ({"reshape_transform": "vit"}, "reshape_transform must be a callable"),
    ],
)
def test_bad_constructor_arguments_are_named(resnet: nn.Module, kwargs: dict, match: str) -> None:
    with pytest.raises(CamAuditError, match=match):
        CamEngine(resnet, **kwargs)


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        ("label", "targets='label' is not understood"),
        (torch.tensor([0.0, 1.0]), "targets must hold integer class indices"),
        (torch.tensor([[0, 1]]), r"targets must be a 1-D tensor \[N\]"),
        ([0, 1.5], "targets must be integer class indices, got 1.5"),
        (torch.tensor([-1, 0]), r"targets\[0\] = -1 is not a class index of a model with 5 outputs"),
    ],
)
def test_bad_targets_are_named(resnet: nn.Module, images: torch.Tensor, targets, match: str) -> None:
    with pytest.raises(CamAuditError, match=match):
        CamEngine(resnet, "layer4")(images, targets)


def test_bad_images_are_named(resnet: nn.Module) -> None:
    with pytest.raises(CamAuditError, match=r"images must be a non-empty float tensor \[N, C, H, W\]"):
        CamEngine(resnet, "layer4")(torch.rand(3, 64, 64))
