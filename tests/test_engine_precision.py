"""CamEngine under channels_last, bfloat16 (autocast and a bf16 model) and torch.compile."""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo.testing
from torch import nn
from torchvision.models import resnet18

from cam_audit.cam import CamEngine
from test_cam_reference import assert_maps_close, reference_maps

TARGETS = [1, 2]


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return resnet18(num_classes=5).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 64, 64)


@pytest.fixture(scope="module")
def fp32_maps(resnet: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    return CamEngine(resnet, "layer4").compute(images, TARGETS)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    pairs = zip(a.double(), b.double(), strict=True)
    return [torch.corrcoef(torch.stack([x.flatten(), y.flatten()]))[0, 1].item() for x, y in pairs]


def test_channels_last_model_and_input(resnet: nn.Module, images: torch.Tensor) -> None:
    model = copy.deepcopy(resnet).to(memory_format=torch.channels_last)
    res = CamEngine(model, "layer4")(images.to(memory_format=torch.channels_last), TARGETS)
    assert res.maps.dtype == torch.float32
    assert_maps_close(res.maps, reference_maps(resnet, images, "layer4", torch.tensor(TARGETS)))


@pytest.mark.parametrize("method", ["gradcam++", "gradcam"])
def test_autocast_bfloat16_gives_float32_maps_close_to_float32(
    resnet: nn.Module, images: torch.Tensor, fp32_maps: dict[str, torch.Tensor], method: str
) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        res = CamEngine(resnet, "layer4", method=method)(images, TARGETS)
    assert res.maps.dtype == torch.float32 and res.logits.dtype == torch.bfloat16
    assert min(_pearson(res.maps, fp32_maps[method])) >= 0.99


def test_bfloat16_model_gives_float32_maps(
    resnet: nn.Module, images: torch.Tensor, fp32_maps: dict[str, torch.Tensor]
) -> None:
    model = copy.deepcopy(resnet).to(torch.bfloat16)
    res = CamEngine(model, "layer4")(images.to(torch.bfloat16), TARGETS)
    assert res.maps.dtype == torch.float32 and res.logits.dtype == torch.bfloat16
    assert min(_pearson(res.maps, fp32_maps["gradcam++"])) >= 0.99


def test_compiled_model_is_explained_eagerly_without_recompiling(
    resnet: nn.Module, images: torch.Tensor, fp32_maps: dict[str, torch.Tensor]
) -> None:
    """The engine unwraps ``torch.compile``'s module and runs ``_orig_mod`` eagerly: the caller's
    compiled graph is neither traced with the engine's hook nor invalidated by it."""
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounter()  # a real dynamo trace, without inductor's C++ build
    compiled = torch.compile(resnet, backend=counter)
    expected_logits = compiled(images)
    assert counter.frame_count == 1
    engine = CamEngine(compiled, "_orig_mod.layer4")
    assert engine.model is resnet and engine.layer_name == "layer4"
    res = engine(images, TARGETS)
    torch.testing.assert_close(res.maps, fp32_maps["gradcam++"])
    torch.testing.assert_close(compiled(images), expected_logits)
    assert counter.frame_count == 1, "the engine forced a recompile of the caller's model"


@pytest.mark.slow  # inductor builds C++ kernels: tens of seconds on a small CPU
def test_inductor_compiled_model_is_not_recompiled() -> None:
    torch._dynamo.reset()
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    ).eval()  # fmt: skip
    images = torch.rand(2, 3, 16, 16)
    compiled = torch.compile(model)
    compiled(images)
    before = dict(torch._dynamo.utils.counters["stats"])
    assert before["unique_graphs"] >= 1  # the counter is live
    res = CamEngine(compiled, "3")(images, [0, 2])
    compiled(images)
    assert dict(torch._dynamo.utils.counters["stats"]) == before
    assert_maps_close(res.maps, reference_maps(model, images, "3", torch.tensor([0, 2])))
