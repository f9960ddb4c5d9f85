"""Trained shortcut models are caught, and the flags name the class and the evidence (slow: trains)."""

from __future__ import annotations

import pytest
import torch

from cam_audit import ShortcutPolicy, audit
from cam_audit.lightning.scenes import SceneClassifier
from cam_audit.synthetic import SceneData, make_scenes

SIZE = 32


def _train(scenes: SceneData, pool: str, epochs: int = 8, seed: int = 0) -> SceneClassifier:
    torch.manual_seed(seed)
    model = SceneClassifier(num_classes=3, width=8, pool=pool)
    optimizer = torch.optim.Adam(model.parameters(), lr=model.hparams.lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(scenes), generator=generator).split(32):
            loss = torch.nn.functional.cross_entropy(model(scenes.images[batch]), scenes.labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def _accuracy(model: torch.nn.Module, scenes: SceneData) -> float:
    with torch.inference_mode():
        return float((model(scenes.images).argmax(1) == scenes.labels).float().mean())


@pytest.mark.slow
def test_clever_hans_tag_on_one_class_is_flagged_naming_that_class():
    """A tag on every 'disc' image and on no other: the flags must name 'disc' and no other class."""
    cue = dict(image_size=SIZE, watermark="correlated", correlation=1.0, cue_classes=(0,))
    model = _train(make_scenes(1200, seed=0, **cue), pool="avg")
    held_out = make_scenes(300, seed=1, **cue)
    # the behaviour that makes it a shortcut: without the tag, discs are no longer recognised
    assert _accuracy(model, held_out) - _accuracy(model, held_out.without_watermark()) > 0.10

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
    model = _train(make_scenes(600, seed=0, **cue), pool="max")
    moved = make_scenes(300, image_size=SIZE, watermark="correlated", correlation=0.0, seed=1)
    assert _accuracy(model, make_scenes(300, seed=1, **cue)) - _accuracy(model, moved) > 0.10

    report = audit(model, make_scenes(60, seed=2, **cue).to_probe(), target_layer="features")
    fired = {f.rule for f in report.verdict.findings}
    assert not report.verdict.passed
    assert fired & {"max_flip_rate", "max_paste_rate"}, report.verdict.flags
    # the causal test alone is enough to fail it
    causal_only = ShortcutPolicy(min_focus_lift=None, max_spurious_lift=None, max_focus_drop=None)
    assert not report.with_verdict(causal_only).passed
