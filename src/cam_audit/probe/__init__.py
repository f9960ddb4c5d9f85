"""Probe sets: images with labels and ground-truth object / spurious regions."""

from cam_audit.probe.probeset import ProbeBatch, ProbeSet

__all__ = ["ProbeBatch", "ProbeSet"]
