"""Probe sets the tests audit: synthetic scenes whose watermark corner gives the label away."""

from __future__ import annotations

from cam_audit.probe import ProbeSet
from cam_audit.synthetic import make_scenes

#: Side of the scenes of the Lightning fits: small enough for a fit of a few seconds.
IMAGE_SIZE = 32


def watermark_probe(n: int, seed: int, image_size: int = 64) -> ProbeSet:
    """``n`` scenes whose watermark corner follows the label, as a probe set."""
    return make_scenes(n, image_size=image_size, watermark="correlated", seed=seed).to_probe()


def tiny_probe(n: int = 12, seed: int = 7) -> ProbeSet:
    """``n`` 32x32 scenes whose watermark corner follows the label."""
    return watermark_probe(n, seed, IMAGE_SIZE)


def unannotated_probe(n: int, seed: int, image_size: int = 64) -> ProbeSet:
    """``n`` scenes whose watermark corner follows the label, with only the objects marked: the tag is in
    the images but nobody annotated it (what discovery has to find)."""
    scenes = make_scenes(n, image_size=image_size, watermark="correlated", seed=seed)
    return scenes.to_probe(spurious=False)
