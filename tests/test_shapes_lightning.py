"""CamAudit in a fit of every classifier shape: one logit, one sigmoid per class, a true half or double
precision Trainer, and a LightningModule whose forward takes a dict."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cam_audit import CamAudit, audit
from cam_audit.errors import CamAuditError
from cam_audit.synthetic import SceneNet
from helpers.models import NoisyClassifier
from helpers.probes import tiny_probe
from helpers.shapes import (
    BinarySceneClassifier,
    DictSceneClassifier,
    MultiLabelSceneClassifier,
    binary_scene_data,
    binary_scene_probe,
    image_dict_forward,
    probe_images,
)
from helpers.trainers import make_trainer, tiny_data

pytestmark = pytest.mark.filterwarnings("ignore::cam_audit.lightning.ShortcutWarning")


def _fit(tmp_path, model, probe, datamodule, *, epochs: int = 2, **options) -> CamAudit:
    precision = options.pop("precision", "32-true")
    callback = CamAudit(probe, target_layer="features", batch_size=6, log_images=False, **options)
    trainer = make_trainer(tmp_path, callbacks=[callback], max_epochs=epochs, precision=precision)
    trainer.fit(model, datamodule=datamodule)
    assert callback.n_audits == epochs and callback.last_report is not None
    return callback


def _logits(model, probe) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(probe_images(probe).to(next(model.parameters()).dtype)).float()


def test_a_binary_fit_is_audited_with_the_sign_of_its_one_logit(tmp_path):
    torch.manual_seed(0)
    model, probe = BinarySceneClassifier(), binary_scene_probe()
    report = _fit(tmp_path, model, probe, binary_scene_data()).last_report
    assert report.meta["task"] == "binary"
    z = _logits(model, probe)[:, 0]
    np.testing.assert_array_equal(report.samples["prediction"], (z > 0).long().numpy())
    labels = probe.labels
    assert report.summary["accuracy"] == pytest.approx(float(((z > 0).long() == labels).float().mean()))
    offline = audit(model, probe, target_layer="features", batch_size=6)
    np.testing.assert_allclose(report.samples["focus"], offline.samples["focus"], rtol=1e-5)


def test_a_multilabel_fit_counts_a_sample_correct_when_its_labels_sigmoid_is_on(tmp_path):
    torch.manual_seed(0)
    model, probe = MultiLabelSceneClassifier(), tiny_probe()
    report = _fit(tmp_path, model, probe, tiny_data(), task="multilabel").last_report
    assert report.meta["task"] == "multilabel"
    on = torch.sigmoid(_logits(model, probe)).gather(1, probe.labels[:, None])[:, 0]
    np.testing.assert_allclose(report.samples["confidence"], on.numpy(), rtol=1e-5)
    assert report.summary["accuracy"] == pytest.approx(float((on > 0.5).float().mean()))


TRUE_PRECISIONS = [("bf16-true", torch.bfloat16, 0.05), ("64-true", torch.float64, 1e-5)]


@pytest.mark.parametrize(("precision", "dtype", "tolerance"), TRUE_PRECISIONS)
def test_a_true_precision_fit_is_audited_every_epoch_in_its_dtype(tmp_path, precision, dtype, tolerance):
    torch.manual_seed(0)
    model = NoisyClassifier()
    report = _fit(tmp_path, model, tiny_probe(), tiny_data(), precision=precision).last_report
    assert next(model.parameters()).dtype == dtype  # Lightning converted the weights, the audit followed
    reference = audit(copy.deepcopy(model).float(), tiny_probe(), target_layer="features", batch_size=6)
    for key in ("focus", "focus_lift", "spurious_mass", "accuracy"):
        assert report.summary[key] == pytest.approx(reference.summary[key], rel=tolerance), key


def test_a_16_true_validate_is_audited_in_float16(tmp_path):
    torch.manual_seed(0)
    model = NoisyClassifier()
    callback = CamAudit(tiny_probe(), target_layer="features", batch_size=6, log_images=False)
    trainer = make_trainer(tmp_path, callbacks=[callback], precision="16-true")
    trainer.validate(model, datamodule=tiny_data())
    assert next(model.parameters()).dtype == torch.float16
    reference = audit(copy.deepcopy(model).float(), tiny_probe(), target_layer="features", batch_size=6)
    assert callback.last_report.summary["focus"] == pytest.approx(reference.summary["focus"], rel=0.05)


def test_a_dict_batch_model_is_audited_through_forward_like_the_plain_model(tmp_path):
    torch.manual_seed(0)
    model = DictSceneClassifier()
    report = _fit(tmp_path, model, tiny_probe(), tiny_data(), forward=image_dict_forward).last_report
    plain = SceneNet(width=4)
    plain.load_state_dict(model.state_dict())
    reference = audit(plain, tiny_probe(), target_layer="features", batch_size=6)
    np.testing.assert_allclose(report.samples["focus"], reference.samples["focus"], rtol=1e-5)
    assert report.samples["prediction"].tolist() == reference.samples["prediction"].tolist()


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence")  # the model indexing a tensor with a str
def test_a_model_the_audit_cannot_call_fails_in_setup_before_training(tmp_path):
    model = DictSceneClassifier()
    callback = CamAudit(tiny_probe(), target_layer="features", log_images=False)
    trainer = make_trainer(tmp_path, callbacks=[callback])
    with pytest.raises(CamAuditError, match=r"pass forward=\(model, images\) -> logits"):
        trainer.fit(model, datamodule=tiny_data())
    assert trainer.global_step == 0


def test_callback_arguments_for_shapes_are_checked_at_once():
    with pytest.raises(CamAuditError, match="task must be None"):
        CamAudit(tiny_probe(), task="softmax")
    with pytest.raises(CamAuditError, match="forward must be a callable"):
        CamAudit(tiny_probe(), forward="image_dict_forward")
