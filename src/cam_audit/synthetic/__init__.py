"""Synthetic scenes with a watermark cue, the small model the demo trains on them, and the shortcut study's
training conditions: what the demo, the tests and the scripts share."""

from cam_audit.synthetic.model import SceneNet, accuracy, scene_layers
from cam_audit.synthetic.scenes import CLASS_NAMES, SceneData, WatermarkMode, make_scenes
from cam_audit.synthetic.sources import SyntheticProbe

__all__ = [
    "CLASS_NAMES",
    "SceneData",
    "SceneNet",
    "SyntheticProbe",
    "WatermarkMode",
    "accuracy",
    "make_scenes",
    "scene_layers",
]
