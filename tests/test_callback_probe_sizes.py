"""CamAudit refuses, in setup, a probe whose images of one audit batch differ in size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from cam_audit import CamAudit, ProbeSet
from cam_audit.errors import CamAuditError
from helpers.models import NoisyClassifier
from helpers.trainers import make_trainer, tiny_data


def _mixed_probe(tmp_path, transform=None) -> ProbeSet:
    rows = ["image,label,x_min,y_min,x_max,y_max"]
    for i, (h, w) in enumerate([(32, 32), (32, 32), (40, 48)]):
        pixels = np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"img{i}.png")
        rows.append(f"img{i}.png,{i % 3},2,2,20,20")
    (tmp_path / "probe.csv").write_text("\n".join(rows) + "\n")
    return ProbeSet.from_csv(tmp_path / "probe.csv", transform=transform)


def test_mixed_sizes_in_one_batch_fail_in_setup_before_training(tmp_path):
    callback = CamAudit(_mixed_probe(tmp_path), target_layer="features", batch_size=4, log_images=False)
    trainer = make_trainer(tmp_path, callbacks=[callback], max_epochs=1)
    with pytest.raises(CamAuditError, match=r"^probe samples 'img0.png' \(32x32\) and 'img2.png' \(40x48\)"):
        trainer.fit(NoisyClassifier(), datamodule=tiny_data())
    assert trainer.global_step == 0


def test_mixed_sizes_in_different_batches_or_resized_are_audited(tmp_path):
    torch.manual_seed(0)
    for probe, batch_size in ((_mixed_probe(tmp_path), 2), (_mixed_probe(tmp_path, v2.Resize((32, 32))), 4)):
        callback = CamAudit(probe, target_layer="features", batch_size=batch_size, log_images=False)
        trainer = make_trainer(tmp_path, callbacks=[callback], max_epochs=1)
        trainer.fit(NoisyClassifier(), datamodule=tiny_data())
        assert callback.n_audits == 1 and len(callback.last_report.samples) == 3
