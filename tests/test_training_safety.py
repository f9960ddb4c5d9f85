"""A run with the callback ends with exactly the weights and optimizer state of a run without it."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from cam_audit import CamAudit, ShortcutPolicy
from helpers.models import NoisyClassifier
from helpers.probes import tiny_probe, unannotated_probe
from helpers.trainers import fit, make_trainer, tiny_data

pytestmark = pytest.mark.filterwarnings("ignore::cam_audit.lightning.ShortcutWarning")


def _seeded_fit(
    tmp_path: Path, with_audit: bool, discover: bool = False
) -> tuple[dict, dict, CamAudit | None]:
    """Three epochs of the noisy model; ``discover``: on 64-pixel scenes (maps sharp enough for cues to
    be tested), with a logger so the cue galleries are drawn too."""
    pl.seed_everything(1234, workers=True)
    model = NoisyClassifier()
    audit = None
    if with_audit and discover:
        audit = CamAudit(unannotated_probe(12, seed=3), target_layer="features", batch_size=6, discover=True,
                         max_images=2, policy=ShortcutPolicy(min_cue_samples=3))  # fmt: skip
    elif with_audit:
        audit = CamAudit(tiny_probe(), target_layer="features", batch_size=8, log_images=False)
    trainer = fit(
        tmp_path,
        model,
        [audit] if audit is not None else [],
        data=tiny_data(image_size=64) if discover else None,
        max_epochs=3,
        deterministic=True,
        num_sanity_val_steps=1,
        logger=CSVLogger(tmp_path, name="csv") if discover else False,
    )
    optimizer = trainer.optimizers[0].state_dict()
    return {k: v.clone() for k, v in model.state_dict().items()}, optimizer, audit


def _assert_same_optimizer_state(left: dict, right: dict) -> None:
    assert left["param_groups"] == right["param_groups"]
    assert left["state"].keys() == right["state"].keys()
    for index, state in left["state"].items():
        assert state.keys() == right["state"][index].keys()
        for name, value in state.items():
            other = right["state"][index][name]
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, other), (index, name)
            else:
                assert value == other, (index, name)


def test_fit_with_audit_ends_bit_identical_to_fit_without(tmp_path):
    weights_plain, optimizer_plain, _ = _seeded_fit(tmp_path / "plain", with_audit=False)
    weights_audited, optimizer_audited, audit = _seeded_fit(tmp_path / "audited", with_audit=True)

    assert audit is not None and audit.n_audits == 3  # the audits really ran, after every epoch
    assert weights_plain.keys() == weights_audited.keys()
    for name, tensor in weights_plain.items():
        assert torch.equal(tensor, weights_audited[name]), name  # BatchNorm buffers included
    _assert_same_optimizer_state(optimizer_plain, optimizer_audited)


def test_fit_with_discovery_ends_bit_identical_to_fit_without(tmp_path):
    weights_plain, optimizer_plain, _ = _seeded_fit(tmp_path / "plain", with_audit=False, discover=True)
    weights_audited, optimizer_audited, audit = _seeded_fit(tmp_path / "audited", True, discover=True)

    assert audit is not None and audit.n_audits == 3 and audit.last_report.meta["discover"] is True
    assert list((tmp_path / "audited" / "csv").rglob("cues_epoch*.png"))  # the galleries were drawn
    for name, tensor in weights_plain.items():
        assert torch.equal(tensor, weights_audited[name]), name
    _assert_same_optimizer_state(optimizer_plain, optimizer_audited)


def test_the_comparison_detects_a_callback_that_touches_the_random_stream(tmp_path):
    """The noisy model makes the check sensitive: one extra draw from the global generator shows up."""

    class DrawsRandomNumbers(pl.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            torch.rand(1)

    pl.seed_everything(1234, workers=True)
    plain = NoisyClassifier()
    fit(tmp_path / "plain", plain, [], max_epochs=2, deterministic=True)
    pl.seed_everything(1234, workers=True)
    disturbed = NoisyClassifier()
    fit(tmp_path / "disturbed", disturbed, [DrawsRandomNumbers()], max_epochs=2, deterministic=True)
    differs = [k for k, v in plain.state_dict().items() if not torch.equal(v, disturbed.state_dict()[k])]
    assert differs, "an extra random draw between epochs must change the trained weights"


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_validate_and_test_leave_weights_and_mode_untouched(tmp_path, stage):
    pl.seed_everything(0)
    model = NoisyClassifier()
    model.train()
    model.stem.eval()  # a submodule with its own mode must get it back
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {name: m.training for name, m in model.named_modules()}
    audit = CamAudit(tiny_probe(), target_layer="features", batch_size=8, log_images=False)
    trainer = make_trainer(tmp_path, callbacks=[audit])
    getattr(trainer, stage)(model, datamodule=tiny_data())
    assert audit.n_audits == 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert {name: m.training for name, m in model.named_modules()} == flags


def test_probe_is_hashed_once_not_at_every_hook_call(tmp_path, monkeypatch):
    """Lightning reads ``state_key`` around every hook of every batch; hashing the probe there made
    training itself twice as slow on the demo (256-image probe)."""
    from cam_audit.probe import ProbeSet

    callback = CamAudit(tiny_probe(), target_layer="features", batch_size=8, log_images=False)
    hashed = []
    real = ProbeSet.fingerprint
    monkeypatch.setattr(ProbeSet, "fingerprint", lambda self: hashed.append(1) or real(self))
    fit(tmp_path, NoisyClassifier(), [callback], max_epochs=2)
    assert callback.n_audits == 2
    assert hashed == []
    assert callback.last_report.meta["probe_fingerprint"] == real(callback.probe)


def test_an_audit_whose_last_batch_holds_one_sample_scores_it():
    from cam_audit.pipeline import audit

    torch.manual_seed(0)
    report = audit(NoisyClassifier(), tiny_probe(5), target_layer="features", batch_size=4)
    assert report.summary["n_samples"] == 5
