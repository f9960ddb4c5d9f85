"""audit(): the summary is what the per-sample rows say, the model is untouched, shortcuts show up."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from cam_audit import ShortcutPolicy, audit
from cam_audit.errors import CamAuditError
from cam_audit.keys import SCORES, SUMMARY_KEYS
from cam_audit.probe import ProbeSet
from cam_audit.synthetic import make_scenes
from helpers.trainers import make_trainer


def test_summary_has_the_documented_keys(scene_model, scene_probe):
    report = audit(scene_model, scene_probe, target_layer="features", batch_size=10)
    assert set(SUMMARY_KEYS) <= set(report.summary)
    assert report.summary["n_samples"] == len(scene_probe) == len(report.samples)
    assert report.summary["n_spurious"] == len(scene_probe)
    assert report.meta["target_layer"] == "features"


def test_summary_is_the_nan_aware_mean_of_the_sample_rows(scene_model, scene_probe):
    report = audit(scene_model, scene_probe, target_layer="features", batch_size=7, discover=True)
    rows = report.samples
    averaged = [entry for entry in SCORES if entry.reduce == "mean"]
    assert {"focus_lift", "cf_flip_rate", "accuracy"} <= {entry.summary for entry in averaged}
    for entry in averaged:
        values = rows[entry.column].to_numpy(dtype=float)
        assert np.isfinite(values).any(), entry.column  # every average is checked on real numbers
        expected = values[np.isfinite(values)].mean()
        assert report.summary[entry.summary] == pytest.approx(expected, rel=1e-5), entry.summary
    per_class = rows.groupby("class")["focus_lift"].mean()
    for name, value in per_class.items():
        assert report.per_class.loc[name, "focus_lift"] == pytest.approx(value, rel=1e-5)
    assert report.per_class["n_samples"].sum() == len(rows)


def test_batch_size_does_not_change_the_numbers(scene_model, scene_probe):
    one = audit(scene_model, scene_probe, target_layer="features", batch_size=24)
    many = audit(scene_model, scene_probe, target_layer="features", batch_size=5)
    for key in SUMMARY_KEYS:
        a, b = one.summary[key], many.summary[key]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-4, abs=1e-6), key


class CornerNet(torch.nn.Module):
    """A pure shortcut with a conv layer to explain: class 1 exactly when the top-left corner is bright."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3)[:, :, None, None])
            self.features.bias.zero_()

    def forward(self, images):
        corner = self.features(images)[:, :, :4, :4].mean(dim=(1, 2, 3))
        return torch.stack([0.5 - corner, corner - 0.5], dim=1) * 20


def _corner_probe(n: int = 12) -> ProbeSet:
    """Class 1 carries the bright corner (marked spurious), class 0 does not; labels interleave."""
    images = torch.full((n, 3, 16, 16), 0.2)
    labels = [i % 3 == 0 for i in range(n)]
    spurious = []
    for i, cue in enumerate(labels):
        if cue:
            images[i, :, :4, :4] = 1.0
        spurious.append(torch.tensor([[0.0, 0.0, 4.0, 4.0]]) if cue else torch.zeros(0, 4))
    boxes = torch.tensor([[6.0, 6.0, 12.0, 12.0]]).repeat(n, 1)
    return ProbeSet.from_tensors(images, [int(c) for c in labels], boxes=boxes, spurious_boxes=spurious)


def test_paste_partners_and_rates_do_not_depend_on_the_batch_size():
    probe = _corner_probe()
    reports = [audit(CornerNet(), probe, target_layer="features", batch_size=b) for b in (1, 2, 5, 12)]
    first = reports[0]
    assert first.summary["cf_paste_rate"] == 1.0  # every cue moves its partner: the rate is not vacuous
    assert first.samples["cf_paste"].notna().sum() == 4  # the four class-1 samples carry a cue
    for report in reports[1:]:
        assert report.summary["cf_paste_rate"] == first.summary["cf_paste_rate"]
        np.testing.assert_array_equal(report.samples["cf_paste"], first.samples["cf_paste"])


def test_audit_leaves_the_model_untouched(scene_model, scene_probe):
    scene_model.train()
    scene_model.head.eval()  # a deliberate mix of modes must survive
    for p in scene_model.parameters():
        p.grad = torch.full_like(p, 0.5)
    state = {k: v.clone() for k, v in scene_model.state_dict().items()}
    rng = torch.get_rng_state()
    audit(scene_model, scene_probe, target_layer="features")
    assert all(torch.equal(state[k], v) for k, v in scene_model.state_dict().items())  # incl. BN buffers
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in scene_model.parameters())
    assert scene_model.training and scene_model.features.training and not scene_model.head.training
    assert torch.equal(torch.get_rng_state(), rng)


def test_samples_without_spurious_regions_give_nan_not_zero(scene_model):
    scenes = make_scenes(12, watermark="none", seed=5)
    report = audit(scene_model, scenes.to_probe(), target_layer="features")
    assert math.isnan(report.summary["spurious_lift"]) and math.isnan(report.summary["cf_flip_rate"])
    assert report.summary["n_spurious"] == 0
    assert report.verdict.passed or all("spurious" not in f for f in report.verdict.flags)


def test_empty_object_region_is_counted_as_degenerate(scene_model):
    scenes = make_scenes(6, seed=2)
    masks = scenes.object_masks.clone()
    masks[0] = False
    probe = ProbeSet.from_tensors(scenes.images, scenes.labels, masks=masks)
    report = audit(scene_model, probe, target_layer="features", counterfactual=False)
    assert report.summary["n_degenerate"] == 1
    assert math.isnan(report.samples.loc[0, "focus"])
    assert report.summary["focus"] == pytest.approx(report.samples["focus"][1:].mean(), rel=1e-5)


def test_bad_choices_raise(scene_model, scene_probe):
    with pytest.raises(CamAuditError, match="target"):
        audit(scene_model, scene_probe, target="truth")
    with pytest.raises(CamAuditError, match="batch_size"):
        audit(scene_model, scene_probe, target_layer="features", batch_size=0)


@pytest.mark.slow
def test_a_watermark_shortcut_shows_in_the_audit_and_the_counterfactual(tmp_path):
    """Train the same CNN on clean and on watermark-predicts-label scenes; the audit must tell them apart."""
    from cam_audit.lightning.scenes import SceneClassifier, SceneDataModule

    probe_scenes = make_scenes(48, watermark="correlated", seed=77)
    reports = {}
    for name, watermark in (("clean", "random"), ("shortcut", "correlated")):
        pl.seed_everything(0, verbose=False)
        model = SceneClassifier(width=8)
        trainer = make_trainer(
            tmp_path / name,
            max_epochs=3,
            limit_train_batches=1.0,
            limit_val_batches=1.0,
            enable_checkpointing=False,
        )
        trainer.fit(model, datamodule=SceneDataModule(watermark=watermark, n_train=768, n_val=64))
        reports[name] = audit(
            model, probe_scenes.to_probe(), target_layer="features", policy=ShortcutPolicy()
        )
    clean, shortcut = reports["clean"].summary, reports["shortcut"].summary
    assert shortcut["spurious_lift"] > 2 * clean["spurious_lift"]
    assert shortcut["cf_flip_rate"] > clean["cf_flip_rate"] + 0.2
    assert not reports["shortcut"].verdict.passed
