"""Shared fixtures: a small trained-in-seconds scene model and probe sets (built by :mod:`helpers`)."""

from __future__ import annotations

import pytest

from helpers.models import scene_classifier
from helpers.probes import watermark_probe


@pytest.fixture(scope="session")
def scene_probe():
    """24 synthetic scenes whose watermark corner gives the label away."""
    return watermark_probe(24, seed=123)


@pytest.fixture()
def scene_model():
    return scene_classifier(seed=0, width=8)
