"""Localisation scores of saliency maps against ground-truth regions.

``functional`` holds the pure per-sample math (``relevance_mass``, ``mass_lift``, ``pointing_game``,
``relevance_rank``, ``area_fraction``); the torchmetrics classes average it over batches and processes
with NaN accounting. Nothing here depends on how the maps were made.
"""

from __future__ import annotations

from cam_audit.metrics import functional
from cam_audit.metrics.scores import MassLift, MeanScore, PointingGame, RelevanceMass, RelevanceRank

__all__ = ["MassLift", "MeanScore", "PointingGame", "RelevanceMass", "RelevanceRank", "functional"]
