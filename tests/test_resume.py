"""The callback's history survives a checkpoint: best focus_lift, first flagged epoch and audit count."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from cam_audit import CamAudit, ShortcutPolicy
from helpers.models import NoisyClassifier
from helpers.probes import tiny_probe
from helpers.trainers import make_trainer, tiny_data

pytestmark = pytest.mark.filterwarnings("ignore::cam_audit.lightning.ShortcutWarning")

HISTORY = ("best_focus_lift", "best_epoch", "first_flag_epoch", "n_audits")


def _audits(seed_probe: int = 7) -> CamAudit:
    # a policy no model passes, so the first audit is flagged and first_flag_epoch is set at once (the
    # chance test is off: a model two epochs in may still be at chance, which is no flag)
    strict = ShortcutPolicy(min_focus_lift=1e6, min_accuracy_p=None)
    return CamAudit(tiny_probe(seed=seed_probe), target_layer="features", policy=strict, log_images=False)


def _fit(tmp_path, callbacks, max_epochs, ckpt_path=None) -> pl.Trainer:
    pl.seed_everything(0)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    trainer = make_trainer(tmp_path, callbacks=[*callbacks, checkpoint], max_epochs=max_epochs)
    trainer.fit(NoisyClassifier(), datamodule=tiny_data(), ckpt_path=ckpt_path)
    return trainer


def test_state_dict_is_plain_values_and_round_trips():
    source = _audits()
    source.best_focus_lift, source.best_epoch, source.first_flag_epoch, source.n_audits = 2.5, 3, 1, 4
    state = source.state_dict()
    assert all(isinstance(state[k], (int, float)) for k in HISTORY)
    target = _audits()
    target.load_state_dict(state)
    assert {k: getattr(target, k) for k in HISTORY} == {k: getattr(source, k) for k in HISTORY}


def test_resumed_fit_continues_the_history(tmp_path):
    first = _audits()
    _fit(tmp_path, [first], max_epochs=2)
    assert (first.n_audits, first.first_flag_epoch) == (2, 0)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["callbacks"][first.state_key]
    assert saved["n_audits"] == 2 and saved["best_focus_lift"] == first.best_focus_lift

    resumed, lifts = _audits(), _LiftRecorder()  # a fresh callback, as in a new process
    _fit(tmp_path, [resumed, lifts], max_epochs=4, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert resumed.n_audits == 4  # 2 before + epochs 2 and 3
    assert resumed.first_flag_epoch == 0  # from the first run; this run's own first flag was epoch 2
    assert len(lifts.values) == 2
    assert resumed.best_focus_lift == pytest.approx(max(first.best_focus_lift, *lifts.values), rel=1e-6)


class _LiftRecorder(pl.Callback):
    """The focus_lift the audit logged at each validation end (runs after CamAudit in the list)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self.values.append(float(trainer.callback_metrics["cam_audit/focus_lift"]))


def test_two_callbacks_with_different_probes_keep_separate_histories(tmp_path):
    every, every_other = _audits(seed_probe=7), _audits(seed_probe=8)
    every_other.every_n_epochs = 2
    assert every.state_key != every_other.state_key
    _fit(tmp_path, [every, every_other], max_epochs=3)
    assert (every.n_audits, every_other.n_audits) == (3, 2)  # epochs 0,1,2 vs epochs 1 and 2 (the last)

    again, again_other = _audits(seed_probe=7), _audits(seed_probe=8)
    again_other.every_n_epochs = 2
    _fit(tmp_path, [again, again_other], max_epochs=4, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert (again.n_audits, again_other.n_audits) == (4, 3)
    assert not math.isnan(again.best_focus_lift) and not math.isnan(again_other.best_focus_lift)
