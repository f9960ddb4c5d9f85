"""CamEngine against pytorch-grad-cam (package ``pytorch_grad_cam``), an independent implementation.

Where pytorch-grad-cam behaves differently, and the tests below pin it down:
- it adds ``eps = 1e-6`` to the Grad-CAM++ denominator (we set alpha to 0 where the denominator is 0);
- it min-max normalises every map to [0, 1] (ours are raw, so mass-based scores stay meaningful);
- it puts the model in eval mode in its constructor and leaves it there (we restore each flag);
- it runs a full ``backward()``, writing every parameter's ``.grad`` (we use ``autograd.grad`` on the
  layer output only);
- with fewer targets than images it silently returns all-zero maps for the rest (we raise).
"""

from __future__ import annotations

import pytest
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from torchvision.models import resnet18

from cam_audit.cam import CamEngine
from cam_audit.errors import CamAuditError

TARGETS = [1, 3]


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return resnet18(num_classes=5)


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 64, 64)


def _min_max(maps: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's display scaling, per map: (m - min) / (max - min)."""
    low = maps.amin(dim=(1, 2), keepdim=True)
    return (maps - low) / (maps.amax(dim=(1, 2), keepdim=True) - low)


def _theirs(cam_class, model: nn.Module, images: torch.Tensor, targets: list[int]) -> torch.Tensor:
    cam = cam_class(model=model, target_layers=[model.layer4])
    return torch.from_numpy(cam(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in targets]))


@pytest.mark.parametrize(("method", "cam_class"), [("gradcam++", GradCAMPlusPlus), ("gradcam", GradCAM)])
def test_maps_match_pytorch_grad_cam(images: torch.Tensor, method: str, cam_class) -> None:
    model = _resnet().eval()
    ours = CamEngine(model, "layer4", method=method)(images, TARGETS).maps
    theirs = _theirs(cam_class, model, images, TARGETS)
    assert theirs.shape == ours.shape
    for mine, other in zip(_min_max(ours), theirs, strict=True):
        pearson = torch.corrcoef(torch.stack([mine.flatten(), other.flatten()]).double())[0, 1]
        assert pearson >= 0.999
        torch.testing.assert_close(mine, other, atol=2e-2, rtol=0)


def test_pytorch_grad_cam_normalises_ours_stays_raw(images: torch.Tensor) -> None:
    model = _resnet().eval()
    theirs = _theirs(GradCAMPlusPlus, model, images, TARGETS)
    ours = CamEngine(model, "layer4")(images, TARGETS).maps
    torch.testing.assert_close(theirs.amax(dim=(1, 2)), torch.ones(2), atol=1e-5, rtol=0)
    assert not torch.allclose(ours.amax(dim=(1, 2)), torch.ones(2), atol=1e-2)


def test_pytorch_grad_cam_leaves_eval_mode_and_grads_ours_does_not(images: torch.Tensor) -> None:
    model = _resnet().train()
    CamEngine(model, "layer4")(images, TARGETS)
    assert model.training and all(p.grad is None for p in model.parameters())
    _theirs(GradCAMPlusPlus, model, images, TARGETS)
    assert not model.training  # documented difference: left in eval mode
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)  # written by backward()


def test_short_targets_give_zero_maps_there_and_an_error_here(images: torch.Tensor) -> None:
    model = _resnet().eval()
    theirs = _theirs(GradCAMPlusPlus, model, images, TARGETS[:1])
    assert theirs[0].max() > 0 and theirs[1].max() == 0  # the second image silently gets an empty map
    with pytest.raises(CamAuditError, match=r"len\(targets\) = 1 but images holds N = 2"):
        CamEngine(model, "layer4")(images, TARGETS[:1])
