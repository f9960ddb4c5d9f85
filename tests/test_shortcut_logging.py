"""What the callback shows about shortcuts in TensorBoard: per-class scores and the counterfactual's cost."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cam_audit import CamAudit
from cam_audit.keys import PER_CLASS_LOGGED_KEYS
from cam_audit.lightning.scenes import SceneClassifier, SceneDataModule
from helpers.trainers import make_trainer


def test_per_class_breakdown_reaches_tensorboard_with_the_reports_values(tmp_path, scene_probe):
    pl.seed_everything(0, verbose=False)
    audit = CamAudit(scene_probe, target_layer="features", batch_size=16, log_images=False)
    trainer = make_trainer(
        tmp_path,
        max_epochs=1,
        limit_train_batches=2,
        enable_checkpointing=False,
        logger=TensorBoardLogger(tmp_path, name="tb", version=""),
        callbacks=[audit],
    )
    data = SceneDataModule(watermark="correlated", n_train=64, n_val=32, batch_size=32)
    trainer.fit(SceneClassifier(width=8), datamodule=data)

    report = audit.last_report
    assert report is not None
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert "cam_audit/shortcut" in scalars
    for name, row in report.per_class.iterrows():
        for key in PER_CLASS_LOGGED_KEYS:
            tag = f"cam_audit/per_class/{name}/{key}"
            assert tag in scalars, tag
            logged = events.Scalars(tag)[-1].value
            expected = float(row[key])
            same = math.isnan(logged) and math.isnan(expected)
            assert same or logged == pytest.approx(expected, rel=1e-6), tag
    # the report says what the causal test cost next to the attribution
    assert report.meta["counterfactual_seconds"] > 0 and report.meta["attribution_seconds"] > 0
