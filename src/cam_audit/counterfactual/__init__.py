"""Counterfactual interventions: fill a region, paste a cue into other images, and score what changes."""

from cam_audit.counterfactual.blur import coarse_blur
from cam_audit.counterfactual.interventions import (
    Fill,
    fill_region,
    fill_scores,
    paste_moves,
    paste_partners,
    paste_region,
)

__all__ = [
    "Fill",
    "coarse_blur",
    "fill_region",
    "fill_scores",
    "paste_moves",
    "paste_partners",
    "paste_region",
]
