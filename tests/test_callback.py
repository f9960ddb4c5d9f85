"""The Lightning callback: scheduling, logged metrics, TensorBoard content, reports, state."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cam_audit import CamAudit, ShortcutPolicy
from cam_audit.errors import CamAuditError, TargetLayerError
from cam_audit.keys import HEADLINE_KEYS
from cam_audit.lightning import ShortcutDetected, rank_indices
from cam_audit.lightning.scenes import SceneClassifier, SceneDataModule
from cam_audit.report import AuditReport
from helpers.trainers import make_trainer


def _trainer(tmp_path: Path, callbacks, logger=None, **kwargs) -> pl.Trainer:
    """Four batches an epoch, Lightning's sanity check, and TensorBoard unless ``logger`` is given."""
    if logger is None:
        logger = TensorBoardLogger(tmp_path, name="tb", version="")
    settings = {"limit_train_batches": 4, "num_sanity_val_steps": 2, **kwargs}
    return make_trainer(tmp_path, callbacks=callbacks, logger=logger, **settings)


def _data() -> SceneDataModule:
    return SceneDataModule(watermark="correlated", n_train=128, n_val=32, batch_size=32)


def test_fit_logs_finite_focus_and_tensorboard_tags(tmp_path, scene_probe):
    pl.seed_everything(0)
    audit = CamAudit(scene_probe, target_layer="features", batch_size=16, max_images=4)
    checkpoint = ModelCheckpoint(monitor="cam_audit/focus_lift", mode="max", dirpath=tmp_path / "ckpt")
    trainer = _trainer(tmp_path, [audit, checkpoint])
    trainer.fit(SceneClassifier(width=8), datamodule=_data())

    metrics = trainer.callback_metrics
    for key in (*HEADLINE_KEYS, "shortcut"):
        assert f"cam_audit/{key}" in metrics, key
    assert math.isfinite(float(metrics["cam_audit/focus"]))
    assert math.isfinite(float(metrics["cam_audit/focus_lift"]))
    assert audit.n_audits == 2
    assert Path(checkpoint.best_model_path).is_file()  # ModelCheckpoint could monitor the audit

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "histograms": 0}).Reload()
    tags = events.Tags()
    assert {"cam_audit/focus", "cam_audit/focus_lift", "cam_audit/spurious_lift"} <= set(tags["scalars"])
    assert "cam_audit/per_class/disc/focus_lift" in tags["scalars"]
    assert "cam_audit/overlays" in tags["images"]
    overlay = events.Images("cam_audit/overlays")[-1]
    decoded = Image.open(io.BytesIO(overlay.encoded_image_string))
    assert decoded.format == "PNG" and decoded.size == (overlay.width, overlay.height)
    assert decoded.mode == "RGB" and overlay.step == trainer.global_step
    assert "cam_audit/focus_lift_per_sample" in tags["histograms"]
    assert len(events.Scalars("cam_audit/focus_lift")) == 2

    report = AuditReport.from_json(tmp_path / "tb" / "cam_audit" / "latest" / "report.json")
    assert report.meta["epoch"] == 1
    assert len(report.samples) == len(scene_probe)
    assert report.summary["focus_lift"] == pytest.approx(float(metrics["cam_audit/focus_lift"]))
    assert (tmp_path / "tb" / "cam_audit" / "best" / "report.json").is_file()
    assert len((tmp_path / "tb" / "cam_audit" / "history.jsonl").read_text().splitlines()) == 2


def test_sanity_check_is_skipped_and_schedule_is_kept(tmp_path, scene_probe):
    audit = CamAudit(scene_probe, target_layer="features", every_n_epochs=2, log_images=False)
    trainer = _trainer(tmp_path, [audit], max_epochs=3, num_sanity_val_steps=1)
    trainer.fit(SceneClassifier(width=8), datamodule=_data())
    # epochs 0, 1, 2: due after epoch 1 (every 2nd) and after the last epoch; never in the sanity check
    assert audit.n_audits == 2


def test_counterfactual_every_n_audits_runs_first_every_nth_and_last_and_logs_no_stale_points(
    tmp_path, scene_probe
):
    audit = CamAudit(scene_probe, target_layer="features", counterfactual_every_n_audits=3, log_images=False)
    trainer = _trainer(tmp_path, [audit], max_epochs=5)
    model = SceneClassifier(width=8)
    trainer.fit(model, datamodule=_data())
    history = (tmp_path / "tb" / "cam_audit" / "history.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in history]
    # audits 0..4: the first, the 3rd after it, and the last epoch's run the fill and paste tests
    assert [row["cf_flip_rate"] is not None for row in rows] == [True, False, False, True, True]
    assert [row["focus_lift"] is not None for row in rows] == [True] * 5
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert [e.step for e in events.Scalars("cam_audit/cf_flip_rate")] == [
        e.step for i, e in enumerate(events.Scalars("cam_audit/focus_lift")) if i in (0, 3, 4)
    ]
    assert audit.last_report.meta["counterfactual"] is True
    # trainer.validate() always runs them
    trainer.validate(model, datamodule=_data())
    assert audit.last_report.meta["counterfactual"] is True
    assert math.isfinite(audit.last_report.summary["cf_flip_rate"])


def test_audits_at_train_epoch_end_without_validation(tmp_path, scene_probe):
    audit = CamAudit(scene_probe, target_layer="features", log_images=False)
    trainer = _trainer(tmp_path, [audit], max_epochs=1, limit_val_batches=0)
    model = SceneClassifier(width=8)
    trainer.fit(
        model,
        train_dataloaders=torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.rand(32, 3, 64, 64), torch.randint(0, 3, (32,))),
            batch_size=16,
        ),
    )
    assert audit.n_audits == 1
    assert "cam_audit/focus_lift" in trainer.callback_metrics


def test_csv_logger_gets_overlay_pngs(tmp_path, scene_probe):
    audit = CamAudit(scene_probe, target_layer="features", max_images=4)
    logger = CSVLogger(tmp_path, name="csv", version="")
    trainer = _trainer(tmp_path, [audit], logger=logger, max_epochs=1)
    trainer.fit(SceneClassifier(width=8), datamodule=_data())
    assert list((tmp_path / "csv" / "cam_audit").glob("overlays_epoch*.png"))
    assert "cam_audit/focus_lift" in (tmp_path / "csv" / "metrics.csv").read_text()


def test_wrong_layer_fails_in_setup_before_training(tmp_path, scene_probe):
    audit = CamAudit(scene_probe, target_layer="featurez")
    trainer = _trainer(tmp_path, [audit])
    model = SceneClassifier(width=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TargetLayerError, match="featurez"):
        trainer.fit(model, datamodule=_data())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_probe_with_more_classes_than_the_model_fails_in_setup(tmp_path, scene_probe):
    audit = CamAudit(scene_probe, target_layer="features")
    with pytest.raises(CamAuditError, match="3 classes"):
        _trainer(tmp_path, [audit]).fit(SceneClassifier(num_classes=2, width=8), datamodule=_data())


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("every_n_epochs", 0),
        ("counterfactual_every_n_audits", 0),
        ("batch_size", -1),
        ("method", "scorecam"),
        ("on_shortcut", "ignore"),
    ],
)
def test_bad_arguments_are_refused_at_construction(scene_probe, argument, value):
    with pytest.raises(CamAuditError, match=argument):
        CamAudit(scene_probe, **{argument: value})


def test_on_shortcut_raise_and_stop(tmp_path, scene_probe):
    # no model can pass this; the chance test is off, as a model one epoch in may still be at chance
    strict = ShortcutPolicy(min_focus_lift=1e6, min_accuracy_p=None)
    with pytest.raises(ShortcutDetected, match="focus_lift"):
        _trainer(
            tmp_path,
            [
                CamAudit(
                    scene_probe, target_layer="features", policy=strict, on_shortcut="raise", log_images=False
                )
            ],
        ).fit(SceneClassifier(width=8), datamodule=_data())

    stopper = CamAudit(
        scene_probe, target_layer="features", policy=strict, on_shortcut="stop", log_images=False
    )
    trainer = _trainer(tmp_path, [stopper], max_epochs=5)
    trainer.fit(SceneClassifier(width=8), datamodule=_data())
    assert trainer.current_epoch == 1  # stopped after the first audit
    assert stopper.first_flag_epoch == 0
    assert float(trainer.callback_metrics["cam_audit/shortcut"]) == 1.0


def test_state_dict_round_trip_and_distinct_state_keys(scene_probe):
    from cam_audit.synthetic import make_scenes

    audit = CamAudit(scene_probe, target_layer="features")
    audit.load_state_dict(
        {
            "best_focus_lift": 2.5,
            "best_epoch": 3,
            "first_flag_epoch": 1,
            "n_audits": 4,
            "last_summary": {"focus": 0.4},
        }
    )
    assert audit.state_dict()["best_focus_lift"] == 2.5
    assert audit.state_dict()["n_audits"] == 4
    other = CamAudit(make_scenes(8, seed=99).to_probe(), target_layer="features")
    assert audit.state_key != other.state_key


@pytest.mark.parametrize(
    ("size", "batch_size", "world_size"), [(13, 4, 2), (10, 3, 3), (5, 8, 4), (64, 64, 2)]
)
def test_rank_indices_split_the_probe_into_whole_single_process_batches(size, batch_size, world_size):
    single = [list(range(s, min(s + batch_size, size))) for s in range(0, size, batch_size)]
    per_rank = [rank_indices(size, batch_size, rank, world_size) for rank in range(world_size)]
    assert sorted(p for positions in per_rank for p in positions) == list(range(size))  # each sample once
    for rank, positions in enumerate(per_rank):
        batches = [positions[s : s + batch_size] for s in range(0, len(positions), batch_size)]
        assert batches == single[rank::world_size]  # the batches a single process forms
