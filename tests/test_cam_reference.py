"""An independent float64 Grad-CAM / Grad-CAM++ written from the papers, and the checks it rests on.

The engine tests compare against :func:`reference_maps`. It shares no code with ``cam_audit.cam``: it
runs the whole model in float64 with autograd from the input (no detach trick), takes the gradient of
the kept activation with ``torch.autograd.grad``, and writes the formulas out in numpy float64.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cam_audit.cam import CamEngine
from cam_audit.cam.weights import gradcam_plus_plus_weights


def reference_maps(
    model: nn.Module,
    images: torch.Tensor,
    layer_name: str,
    targets: torch.Tensor,
    method: str = "gradcam++",
    reshape_transform=None,
) -> torch.Tensor:
    """float64 maps [N, H, W] of ``method`` for ``targets`` at ``layer_name`` of a copy of ``model``."""
    net = copy.deepcopy(model).double().eval()
    layer = net.get_submodule(layer_name)
    kept = {}

    def keep(_module, _args, output):
        kept["A"] = output
        return output * 1.0  # downstream in-place ops act on a copy, so `output` stays the activation

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            x = images.detach().double().requires_grad_()
            logits = net(x)
            score = logits[torch.arange(len(targets)), targets].sum()
            (grad,) = torch.autograd.grad(score, kept["A"])
    finally:
        handle.remove()
    a, g = kept["A"].detach(), grad.detach()
    if reshape_transform is not None:
        a, g = reshape_transform(a), reshape_transform(g)
    a, g = a.numpy().astype(np.float64), g.numpy().astype(np.float64)
    w = g.mean(axis=(2, 3)) if method == "gradcam" else reference_plus_plus_weights(a, g)
    cam = np.maximum((w[:, :, None, None] * a).sum(axis=1), 0)
    cam = torch.from_numpy(cam)[:, None]
    return F.interpolate(cam, size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]


def reference_plus_plus_weights(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Grad-CAM++ channel weights [N, K] of float64 activations and gradients [N, K, h, w], eq. 19 as
    printed: ``alpha = g^2 / (2 g^2 + (sum A) g^3)`` (0 where that denominator is 0), and
    ``w = sum alpha relu(g)``."""
    s = a.sum(axis=(2, 3))[:, :, None, None]
    numerator = g**2
    denominator = 2 * g**2 + s * g**3
    alpha = np.zeros_like(g)
    nonzero = denominator != 0
    alpha[nonzero] = numerator[nonzero] / denominator[nonzero]
    return (alpha * np.maximum(g, 0)).sum(axis=(2, 3))


@pytest.mark.parametrize("signs", ["after a ReLU", "of both signs"])
def test_plus_plus_weights_follow_eq_19_with_activations(signs: str) -> None:
    """Activation sums >= 0 take the short path (no zero denominator can occur), others the guarded one;
    both give eq. 19 (in float64, so that near-zero denominators compare), a zero denominator included
    (2 + S g = 0 at S = -4, g = 0.5)."""
    generator = torch.Generator().manual_seed(5)
    a = torch.randn(6, 8, 5, 5, generator=generator, dtype=torch.float64)
    a = a.clamp(min=0) if signs == "after a ReLU" else a
    g = torch.randn(6, 8, 5, 5, generator=generator, dtype=torch.float64)
    if signs == "of both signs":
        a[0, 0] = 0.0
        a[0, 0, 2, 2] = -4.0
        g[0, 0] = 0.5
    expected = reference_plus_plus_weights(a.numpy(), g.numpy())
    np.testing.assert_allclose(gradcam_plus_plus_weights(a, g).numpy(), expected, rtol=1e-12, atol=1e-12)


def assert_maps_close(
    ours: torch.Tensor, reference: torch.Tensor, min_pearson: float = 0.9999, max_rel_l1: float = 1e-3
) -> None:
    """Per map: Pearson correlation >= min_pearson and sum|ours - ref| / sum|ref| <= max_rel_l1."""
    assert ours.shape == reference.shape
    for index, (mine, theirs) in enumerate(zip(ours.double(), reference.double(), strict=True)):
        if theirs.abs().sum() == 0:
            assert mine.abs().max() <= 1e-6, f"map {index}: reference is all zero, ours is not"
            continue
        assert mine.std() > 0 and theirs.std() > 0, f"map {index} is constant"
        pearson = torch.corrcoef(torch.stack([mine.flatten(), theirs.flatten()]))[0, 1].item()
        rel_l1 = ((mine - theirs).abs().sum() / theirs.abs().sum()).item()
        assert pearson >= min_pearson, f"map {index}: Pearson {pearson:.6f} < {min_pearson}"
        assert rel_l1 <= max_rel_l1, f"map {index}: relative L1 {rel_l1:.2e} > {max_rel_l1}"


def _pooling_head() -> nn.Module:
    """Identity layer '0' (so A is the input), global average pool, linear head with fixed weights."""
    head = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[4.0, -4.0], [0.0, 1.0]]))
    return nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)


# A [1, 2, 2, 2]: channel 0 sums to 10, channel 1 to 2. For class 0, g = W[0, k] / 4 = (1, -1).
_HAND_INPUT = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[1.0, 0.0], [0.0, 1.0]]]])
# Grad-CAM++: alpha_0 = 1 / (2 + 10 * 1) = 1/12, w_0 = 4 * (1/12) * 1 = 1/3; w_1 = 0 since relu(-1) = 0.
_HAND_GRADCAM_PP = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]) / 3
# Grad-CAM: w = (1, -1), map = relu(A_0 - A_1).
_HAND_GRADCAM = torch.tensor([[[0.0, 2.0], [3.0, 3.0]]])


@pytest.mark.parametrize(
    ("method", "expected"), [("gradcam++", _HAND_GRADCAM_PP), ("gradcam", _HAND_GRADCAM)]
)
def test_reference_matches_hand_computed_map(method: str, expected: torch.Tensor) -> None:
    ref = reference_maps(_pooling_head(), _HAND_INPUT, "0", torch.tensor([0]), method)
    torch.testing.assert_close(ref, expected.double())


@pytest.mark.parametrize(
    ("method", "expected"), [("gradcam++", _HAND_GRADCAM_PP), ("gradcam", _HAND_GRADCAM)]
)
def test_engine_matches_hand_computed_map(method: str, expected: torch.Tensor) -> None:
    res = CamEngine(_pooling_head(), target_layer="0", method=method)(_HAND_INPUT, targets=[0])
    torch.testing.assert_close(res.maps, expected)
