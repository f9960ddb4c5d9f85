"""CamEngine on torchvision Vision Transformers, through vit_reshape_transform."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import VisionTransformer, vit_b_16

from cam_audit.cam import CamEngine, vit_reshape_transform
from cam_audit.errors import CamAuditError, TargetLayerError
from test_cam_reference import assert_maps_close, reference_maps


def _tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
    """The test's own reshape: drop the class token, patches in row-major order -> [N, C, h, w]."""
    n, count, channels = tokens.shape
    side = round((count - 1) ** 0.5)
    return tokens[:, 1:].transpose(1, 2).reshape(n, channels, side, side)


def _with_random_head(model: VisionTransformer) -> VisionTransformer:
    # torchvision initialises the ViT head to zeros: every logit, gradient and map would be zero
    nn.init.normal_(model.heads.head.weight, std=0.02)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    return _with_random_head(
        VisionTransformer(
            image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=5
        )
    )


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 32, 32)


def test_vit_reshape_transform_matches_a_written_out_reshape() -> None:
    torch.manual_seed(2)
    tokens = torch.randn(2, 1 + 16, 7)
    torch.testing.assert_close(vit_reshape_transform(tokens), _tokens_to_grid(tokens), rtol=0, atol=0)


@pytest.mark.parametrize("method", ["gradcam++", "gradcam"])
def test_tiny_vit_matches_float64_reference(
    tiny_vit: VisionTransformer, images: torch.Tensor, method: str
) -> None:
    layer = "encoder.layers.encoder_layer_1.ln_1"
    engine = CamEngine(tiny_vit, layer, method=method, reshape_transform=vit_reshape_transform)
    res = engine(images, [0, 3])
    assert res.maps.shape == (2, 32, 32) and res.maps.flatten(1).amax(1).gt(0).all()
    reference = reference_maps(
        tiny_vit, images, layer, res.targets, method, reshape_transform=_tokens_to_grid
    )
    assert_maps_close(res.maps, reference)


@pytest.mark.slow  # about 3.5 s on an idle 2-core CPU, mostly the float64 reference
def test_vit_b_16_at_full_size() -> None:
    torch.manual_seed(3)
    model = _with_random_head(vit_b_16(num_classes=10))
    images = torch.rand(1, 3, 224, 224)
    layer = "encoder.layers.encoder_layer_11.ln_1"
    res = CamEngine(model, layer, reshape_transform=vit_reshape_transform)(images)
    assert res.maps.shape == (1, 224, 224)
    reference = reference_maps(model, images, layer, res.targets, reshape_transform=_tokens_to_grid)
    assert_maps_close(res.maps, reference)


def test_token_layer_without_reshape_transform_suggests_one(
    tiny_vit: VisionTransformer, images: torch.Tensor
) -> None:
    with pytest.raises(TargetLayerError, match=r"outputs shape \(2, 17, 32\).*vit_reshape_transform"):
        CamEngine(tiny_vit, "encoder.layers.encoder_layer_1.ln_1")(images)


def test_automatic_layer_with_reshape_transform_asks_for_a_name(tiny_vit: VisionTransformer) -> None:
    with pytest.raises(TargetLayerError, match="name the layer"):
        CamEngine(tiny_vit, None, reshape_transform=vit_reshape_transform)


def test_non_square_token_count_is_rejected() -> None:
    with pytest.raises(CamAuditError, match="square grid of patches, got 11 tokens"):
        vit_reshape_transform(torch.zeros(1, 11, 4))
