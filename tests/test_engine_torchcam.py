"""torch-cam's GradCAMpp against eq. 19: where it differs, and why ours is the one to trust.

torch-cam 0.5 divides a *copy* of alpha (``alpha[mask].div_(...)`` on an advanced-indexing result), so
its weights come out as Σ g²·relu(g) instead of Σ α·relu(g), and it sums g³·A where eq. 19 has
(Σ A)·g³. On a head where the two channels' gradients differ in size, the maps disagree visibly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cam_audit.cam import CamEngine
from test_cam_reference import reference_maps

torchcam_methods = pytest.importorskip("torchcam.methods")


class TwoChannelHead(nn.Module):
    """features (a 1x1 identity conv) -> global average pool -> linear; class 0 leans on channel 0."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(2, 2, kernel_size=1, bias=False)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            self.fc.weight.copy_(torch.tensor([[8.0, 4.0], [4.0, 8.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _activations() -> torch.Tensor:
    a = torch.zeros(1, 2, 8, 8)
    a[0, 0, 2:6, 0:3] = 1.0  # channel 0: a blob on the left
    a[0, 1, 3:5, 5:7] = 6.0  # channel 1: a small, bright blob on the right
    return a


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.flatten().double().numpy(), b.flatten().double().numpy())[0, 1])


def test_engine_matches_eq19_where_torchcam_does_not():
    model = TwoChannelHead().eval()
    x = _activations()
    target = torch.tensor([0])
    reference = reference_maps(model, x, "features", target)[0]
    ours = CamEngine(model, target_layer="features")(x, target).maps[0]
    extractor = torchcam_methods.GradCAMpp(model, target_layer="features")
    try:
        theirs = extractor(0, model(x))[0][0].detach()
    finally:
        extractor.remove_hooks()

    assert _pearson(ours, reference) > 0.9999
    # eq. 19 puts the peak on the right blob (weights 2.29 and 1.14, blob heights 1 and 6); torch-cam's
    # weights grow with g³ (0.125 and 0.016), so its peak lands on the left blob instead
    assert int(reference.argmax()) % 8 >= 5
    assert int(ours.argmax()) % 8 >= 5
    assert int(theirs.argmax()) % 8 < 3
    right_over_left = float(reference[3:5, 5:7].max() / reference[2:6, 0:3].max())
    theirs_right_over_left = float(theirs[3:5, 5:7].max() / theirs[2:6, 0:3].max())
    assert right_over_left == pytest.approx(6 * 1.1429 / 2.2857, rel=1e-3)
    assert theirs_right_over_left < 1
