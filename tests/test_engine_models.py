"""CamEngine on the torchvision families (random init) against the float64 reference, with the layer
chosen automatically."""

from __future__ import annotations

from functools import cache

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from cam_audit.cam import CamEngine, resolve_target_layer
from test_cam_reference import assert_maps_close, reference_maps

# family -> (constructor, the layer target_layer=None must pick, the layer the maps are compared on)
FAMILIES = {
    "resnet18": (tvm.resnet18, "layer4", None),
    "vgg11": (tvm.vgg11, "features", None),
    "densenet121": (tvm.densenet121, "features", None),
    "mobilenet_v3_small": (tvm.mobilenet_v3_small, "features", None),
    "efficientnet_b0": (tvm.efficientnet_b0, "features", None),
    # at random init (layer scale 1e-6, LayerNorm head) every class's Grad-CAM++ map on `features` is all
    # zero, for the float64 reference too; stage 3 gives maps worth comparing
    "convnext_tiny": (tvm.convnext_tiny, "features", "features.5"),
    "regnet_y_400mf": (tvm.regnet_y_400mf, "trunk_output", None),
}
# the big float64 references take several seconds each on a small CPU
_SLOW = {"vgg11", "densenet121", "efficientnet_b0", "convnext_tiny"}


@cache
def _model(family: str) -> nn.Module:
    torch.manual_seed(0)
    return FAMILIES[family][0](num_classes=6).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 64, 64)


def _informative(engine: CamEngine, images: torch.Tensor):
    """Maps for the predicted classes or, if one is all zero (random weights), the first class whose maps
    are not all zero: comparing two all-zero maps would prove nothing."""
    res = engine(images)
    for target in range(res.logits.shape[1]):
        if res.maps.flatten(1).amax(1).gt(0).all():
            return res
        res = engine(images, [target] * len(images))
    pytest.fail("every class has an all-zero map on these images")


@pytest.mark.parametrize("method", ["gradcam++", "gradcam"])
@pytest.mark.parametrize(
    "family", [pytest.param(f, marks=pytest.mark.slow) if f in _SLOW else f for f in FAMILIES]
)
def test_family_matches_float64_reference(family: str, method: str, images: torch.Tensor) -> None:
    model = _model(family)
    _, auto_layer, compared_layer = FAMILIES[family]
    engine = CamEngine(model, target_layer=compared_layer, method=method)
    res = _informative(engine, images)
    if compared_layer is None:
        assert engine.layer_name == auto_layer
    else:
        assert resolve_target_layer(model, None, images)[0] == auto_layer
    assert res.maps.shape == (2, 64, 64) and res.maps.dtype == torch.float32 and (res.maps >= 0).all()
    assert_maps_close(res.maps, reference_maps(model, images, engine.layer_name, res.targets, method))


@pytest.mark.slow
def test_nested_layer_by_dotted_name(images: torch.Tensor) -> None:
    model = _model("vgg11")
    res = CamEngine(model, target_layer="features.18")(images, [2, 3])  # the last conv's ReLU, in place
    assert_maps_close(res.maps, reference_maps(model, images, "features.18", torch.tensor([2, 3])))
