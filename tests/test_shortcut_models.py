"""Trained shortcut models are caught, and the flags name the class and the evidence (slow: trains)."""

from __future__ import annotations

import pytest

from cam_audit import ShortcutPolicy, audit
from cam_audit.synthetic import accuracy, make_scenes
from helpers.models import trained_scene_net

SIZE = 32


@pytest.mark.slow
def test_clever_hans_tag_on_one_class_is_flagged_naming_that_class():
    """A tag on every 'disc' image and on no other: the flags must name 'disc' and no other class."""
    cue = dict(image_size=SIZE, watermark="correlated", correlation=1.0, cue_classes=(0,))
    model = trained_scene_net(make_scenes(1200, seed=0, **cue), pool="avg")
    held_out = make_scenes(300, seed=1, **cue)
    # the behaviour that makes it a shortcut: without the tag, discs are no longer recognised
    assert accuracy(model, held_out) - accuracy(model, held_out.without_watermark()) > 0.10

    report = audit(model, make_scenes(60, seed=2, **cue).to_probe(), target_layer="features")
    scopes = {f.scope for f in report.verdict.findings}
    assert not report.verdict.passed
    assert "disc" in scopes, report.verdict.flags
    spurious_or_causal = {"max_spurious_lift", "max_flip_rate", "max_paste_rate"}
    assert {f.scope for f in report.verdict.findings if f.rule in spurious_or_causal} <= {"probe", "disc"}
    assert any("for class 'disc'" in flag for flag in report.verdict.flags)


@pytest.mark.slow
def test_max_pool_shortcut_is_confirmed_by_the_counterfactual_test():
    """A max-pooling head on scenes whose tag corner gives the label away: filling or moving the tag
    changes its decisions, and the counterfactual rules say so."""
    cue = dict(image_size=SIZE, watermark="correlated", correlation=1.0)
    model = trained_scene_net(make_scenes(600, seed=0, **cue), pool="max")
    moved = make_scenes(300, image_size=SIZE, watermark="correlated", correlation=0.0, seed=1)
    assert accuracy(model, make_scenes(300, seed=1, **cue)) - accuracy(model, moved) > 0.10

    report = audit(model, make_scenes(60, seed=2, **cue).to_probe(), target_layer="features")
    fired = {f.rule for f in report.verdict.findings}
    assert not report.verdict.passed
    assert fired & {"max_flip_rate", "max_paste_rate"}, report.verdict.flags
    # the causal test alone is enough to fail it
    causal_only = ShortcutPolicy(min_focus_lift=None, max_spurious_lift=None, max_focus_drop=None)
    assert not report.with_verdict(causal_only).passed
