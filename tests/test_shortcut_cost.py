"""The audit reports what its counterfactual test costs next to the attribution."""

from __future__ import annotations

import math

from cam_audit import audit


def test_meta_reports_attribution_and_counterfactual_seconds(scene_model, scene_probe):
    report = audit(scene_model, scene_probe, target_layer="features")
    meta = report.meta
    assert meta["attribution_seconds"] > 0 and meta["counterfactual_seconds"] > 0
    # both are parts of the whole audit, measured inside it
    assert meta["attribution_seconds"] + meta["counterfactual_seconds"] <= meta["seconds"]


def test_no_counterfactual_costs_no_counterfactual_seconds(scene_model, scene_probe):
    report = audit(scene_model, scene_probe, target_layer="features", counterfactual=False)
    assert report.meta["counterfactual_seconds"] == 0.0
    assert report.meta["attribution_seconds"] > 0
    assert math.isnan(report.summary["cf_flip_rate"])
