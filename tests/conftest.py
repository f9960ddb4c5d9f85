"""Shared fixtures: a small trained-in-seconds scene model and probe sets."""

from __future__ import annotations

import pytest
import torch

from cam_audit.synthetic import make_scenes


@pytest.fixture(scope="session")
def scene_probe():
    """24 synthetic scenes whose watermark corner gives the label away."""
    return make_scenes(24, watermark="correlated", seed=123).to_probe()


@pytest.fixture()
def scene_model():
    from cam_audit.lightning.scenes import SceneClassifier

    torch.manual_seed(0)
    return SceneClassifier(num_classes=3, width=8)
