"""Probe sets: images with labels and ground-truth object / spurious regions, and synthetic scenes."""

from cam_audit.probe.probeset import ProbeBatch, ProbeSet
from cam_audit.probe.synthetic import CLASS_NAMES, SceneData, make_scenes

__all__ = ["CLASS_NAMES", "ProbeBatch", "ProbeSet", "SceneData", "make_scenes"]
