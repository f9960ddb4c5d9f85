"""CamAudit(baseline=...): a candidate watched against the champion's report while it trains."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from cam_audit import CamAudit, audit
from cam_audit.errors import CamAuditError
from helpers.models import NoisyClassifier
from helpers.probes import tiny_probe
from helpers.trainers import make_trainer, tiny_data


def _champion(tmp_path, probe):
    torch.manual_seed(1)
    report = audit(NoisyClassifier(), probe, target_layer="features", batch_size=4)
    return report, report.to_json(tmp_path / "champion.json")


def test_every_audit_logs_the_paired_deltas_against_the_champion(tmp_path):
    probe = tiny_probe(10)
    champion, path = _champion(tmp_path, probe)
    torch.manual_seed(0)
    callback = CamAudit(probe, target_layer="features", batch_size=4, log_images=False, baseline=str(path))
    trainer = make_trainer(tmp_path, callbacks=[callback], max_epochs=1)
    trainer.fit(NoisyClassifier(), datamodule=tiny_data())

    candidate = callback.last_report.samples.set_index("sample_id")
    theirs = champion.samples.set_index("sample_id").loc[candidate.index]
    for key, column in (("focus_lift", "focus_lift"), ("focus", "focus"), ("accuracy", "correct")):
        expected = float((candidate[column] - theirs[column]).dropna().mean())
        logged = float(trainer.callback_metrics[f"cam_audit/vs_baseline/{key}"])
        assert logged == pytest.approx(expected, rel=1e-5, abs=1e-6), key
    assert not pd.isna(trainer.callback_metrics["cam_audit/vs_baseline/focus_lift"].item())


def test_a_champion_of_another_probe_is_refused_before_training(tmp_path):
    _, path = _champion(tmp_path, tiny_probe(10))
    other_probe = tiny_probe(12)
    callback = CamAudit(other_probe, target_layer="features", log_images=False, baseline=str(path))
    trainer = make_trainer(tmp_path, callbacks=[callback], max_epochs=1)
    with pytest.raises(CamAuditError, match="baseline=.*different probes"):
        trainer.fit(NoisyClassifier(), datamodule=tiny_data())
    assert trainer.global_step == 0


def test_a_missing_champion_report_is_named(tmp_path):
    callback = CamAudit(tiny_probe(10), target_layer="features", baseline=str(tmp_path / "nope.json"))
    trainer = make_trainer(tmp_path, callbacks=[callback], max_epochs=1)
    with pytest.raises(CamAuditError, match="nope.json does not exist"):
        trainer.fit(NoisyClassifier(), datamodule=tiny_data())
