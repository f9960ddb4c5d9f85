"""CamAudit under trainer.validate() / trainer.test() (hooks run in inference mode), fast_dev_run and the
sanity check."""

from __future__ import annotations

import pytest
import torch
from pytorch_lightning.loggers import TensorBoardLogger

import cam_audit.pipeline.scoring as scoring_module
from cam_audit import CamAudit
from cam_audit.pipeline import audit
from helpers.models import NoisyClassifier
from helpers.probes import tiny_probe
from helpers.trainers import make_trainer, tiny_data

pytestmark = pytest.mark.filterwarnings("ignore::cam_audit.lightning.ShortcutWarning")


@pytest.fixture()
def score_calls(monkeypatch):
    """Every call of score_probe made by the callback: the indices it scored and the modes it ran in."""
    calls: list[dict] = []
    real = scoring_module.score_probe

    def spy(*args, **kwargs):
        calls.append(
            {"indices": list(kwargs["indices"]), "inference_mode": torch.is_inference_mode_enabled()}
        )
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring_module, "score_probe", spy)
    return calls


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_validate_and_test_audit_inside_inference_mode(tmp_path, stage, score_calls):
    torch.manual_seed(0)
    model = NoisyClassifier()
    probe = tiny_probe()
    callback = CamAudit(probe, target_layer="features", batch_size=8, log_images=False)
    trainer = make_trainer(tmp_path, callbacks=[callback])
    results = getattr(trainer, stage)(model, datamodule=tiny_data())

    assert [c["inference_mode"] for c in score_calls] == [True]  # the hook really ran in inference mode
    assert callback.n_audits == 1
    logged = results[0]["cam_audit/focus_lift"]
    expected = audit(model, probe, target_layer="features", batch_size=8).summary["focus_lift"]
    assert logged == pytest.approx(expected, rel=1e-6)  # logged through float32


def test_validate_then_fit_without_validation_keeps_auditing(tmp_path):
    """States made inside inference mode must not break an audit outside it (train epoch end)."""
    torch.manual_seed(0)
    model = NoisyClassifier()
    callback = CamAudit(tiny_probe(), target_layer="features", batch_size=8, log_images=False)
    validator = make_trainer(tmp_path, callbacks=[callback])
    validator.validate(model, datamodule=tiny_data(), verbose=False)
    trainer = make_trainer(tmp_path, callbacks=[callback], max_epochs=1, limit_val_batches=0)
    trainer.fit(model, datamodule=tiny_data())
    assert callback.n_audits == 2
    assert "cam_audit/focus_lift" in trainer.callback_metrics


def test_fast_dev_run_smoke_audits_one_batch_and_writes_nothing(tmp_path, score_calls):
    callback = CamAudit(tiny_probe(12), target_layer="features", batch_size=4)
    logger = TensorBoardLogger(tmp_path, name="tb", version="")
    trainer = make_trainer(tmp_path, callbacks=[callback], fast_dev_run=True, logger=logger, max_epochs=None)
    before = set(tmp_path.rglob("*"))
    trainer.fit(NoisyClassifier(), datamodule=tiny_data())

    assert [len(c["indices"]) for c in score_calls] == [4]  # one batch, once
    assert callback.n_audits == 0 and callback.last_report is None
    assert not [k for k in trainer.callback_metrics if k.startswith("cam_audit/")]
    assert set(tmp_path.rglob("*")) == before  # no report, no image, no event file


def test_fast_dev_run_smoke_audit_surfaces_an_audit_failure(tmp_path):
    class BreaksInTheAudit(NoisyClassifier):
        def on_train_start(self) -> None:
            self.features.register_forward_hook(self._break_if_audited)

        def _break_if_audited(self, module, args, output):
            if len(module._forward_hooks) > 1:  # the engine's capture hook is attached
                raise RuntimeError("audit path broken")

    callback = CamAudit(tiny_probe(), target_layer="features", batch_size=4)
    trainer = make_trainer(tmp_path, callbacks=[callback], fast_dev_run=True, max_epochs=None)
    with pytest.raises(RuntimeError, match="audit path broken"):
        trainer.fit(BreaksInTheAudit(), datamodule=tiny_data())


def test_sanity_check_is_never_audited(tmp_path, score_calls):
    callback = CamAudit(tiny_probe(), target_layer="features", batch_size=8, log_images=False)
    trainer = make_trainer(tmp_path, callbacks=[callback], max_epochs=1, num_sanity_val_steps=2)
    trainer.fit(NoisyClassifier(), datamodule=tiny_data())
    assert len(score_calls) == 1 and callback.n_audits == 1  # the end of epoch 0, not the sanity check
