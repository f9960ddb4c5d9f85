"""``CamAudit(discover=True)``: cues nobody annotated are looked for in the audits that run the
counterfactual tests, logged as scalars and as a gallery on rank 0, and refused early where they cannot
run."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from cam_audit import CamAudit, ShortcutPolicy
from cam_audit.errors import CamAuditError
from cam_audit.keys import CHARTS
from cam_audit.lightning.scalars import scalar_values
from cam_audit.lightning.scenes import SceneDataModule
from cam_audit.probe import ProbeSet
from cam_audit.render import hwc_uint8
from cam_audit.render.cue_sheet import cue_sheet
from cam_audit.report import AuditReport
from helpers.cues import cue_row, discovery_report
from helpers.models import scene_classifier
from helpers.probes import tiny_probe, unannotated_probe
from helpers.trainers import fit, make_trainer

pytestmark = pytest.mark.filterwarnings("ignore::cam_audit.lightning.ShortcutWarning")

DISCOVERY_TAGS = (
    "cam_audit/bg_gap", "cam_audit/bg_acc_same", "cam_audit/bg_acc_other", "cam_audit/n_cues",
    "cam_audit/n_cues_confirmed",
)  # fmt: skip


@pytest.fixture(scope="module")
def discovered(tmp_path_factory):
    """Three epochs of 8 batches of a fresh scene CNN audited with ``discover=True`` on 18 scenes whose tag
    nobody marked; the counterfactual tests (and so discovery) run in the first and the last audit only.
    (Fewer steps leave the model deciding every scene as one class, whose flat map is no testable cue.)"""
    folder = tmp_path_factory.mktemp("discover")
    pl.seed_everything(0, verbose=False)
    callback = CamAudit(
        unannotated_probe(18, seed=5),
        target_layer="features",
        batch_size=9,
        max_images=2,
        discover=True,
        counterfactual_every_n_audits=2,
        # a barely trained model; cues of 3 samples are tested so a short fit has galleries to show
        policy=ShortcutPolicy(min_accuracy_p=None, min_cue_samples=3),
    )
    loggers = [TensorBoardLogger(folder, name="tb", version=""), CSVLogger(folder, name="csv", version="")]
    trainer = make_trainer(folder, callbacks=[callback], max_epochs=3, limit_train_batches=8, logger=loggers)
    # 64-pixel scenes, as the probe's: the maps of a model trained on smaller ones are too flat for a spot
    data = SceneDataModule(watermark="correlated", n_train=256, n_val=16, image_size=64, batch_size=16)
    trainer.fit(scene_classifier(), datamodule=data)
    events = EventAccumulator(str(folder / "tb"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    return callback, trainer, events.Reload(), folder


def test_discovery_runs_with_the_counterfactual_tests_and_logs_its_scalars_there_only(discovered):
    callback, trainer, events, _ = discovered
    report = callback.last_report
    assert callback.n_audits == 3 and report.meta["discover"] is True
    steps = [s.step for s in events.Scalars("cam_audit/cf_flip_rate")]
    assert len(steps) == 2  # the first and the last audit: epochs 0 and 2 of 8 steps each
    assert steps[-1] == trainer.global_step - 1  # Lightning logs epoch-end numbers at the step before
    for tag in DISCOVERY_TAGS:  # no point in the cheap audit between them, not even NaN
        assert [s.step for s in events.Scalars(tag)] == steps, tag
    logged = {tag: events.Scalars(tag)[-1].value for tag in DISCOVERY_TAGS}
    for tag, value in logged.items():
        assert value == pytest.approx(report.summary[tag.split("/")[1]], nan_ok=True), tag
    assert logged["cam_audit/n_cues"] == len(report.cues) > 0
    assert logged["cam_audit/n_cues_confirmed"] == report.cues["confirmed"].sum()
    assert [s.step for s in events.Scalars("cam_audit/focus_lift")] == [steps[0], steps[0] + 8, steps[1]]


def test_the_cue_gallery_goes_to_tensorboard_and_the_csv_folder(discovered):
    callback, trainer, events, folder = discovered
    report = callback.last_report
    images = events.Images("cam_audit/cues")
    assert images and images[-1].step == trainer.global_step
    logged = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)).convert("RGB"))
    # the same picture drawn again from the last audit: its galleries, under a caption per tested cue
    expected = cue_sheet(report.cues, callback._run.galleries())
    assert np.array_equal(logged, hwc_uint8(expected))
    (png,) = (folder / "csv").rglob("cues_epoch0002.png")
    assert np.array_equal(np.asarray(Image.open(png).convert("RGB")), logged)
    written = AuditReport.from_json(folder / "tb" / "cam_audit" / "latest" / "report.json")
    assert written.cues.equals(report.cues)


def test_the_chart_layout_has_the_background_chart_when_discovering(discovered):
    _, _, events, _ = discovered
    (layout_event,) = events.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(layout_event.tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for c in layout.category for chart in c.chart}
    assert charts == {title: [f"cam_audit/{key}" for key in keys] for title, keys in CHARTS.items()}
    background = ["cam_audit/bg_acc_same", "cam_audit/bg_acc_other", "cam_audit/bg_gap"]
    assert charts["background reliance"] == background
    assert {tag for tags in charts.values() for tag in tags} <= set(events.Tags()["scalars"])


def test_discover_without_object_regions_fails_in_setup_before_training(tmp_path):
    images = torch.rand(6, 3, 32, 32)
    tags = [torch.tensor([[0.0, 0.0, 6.0, 6.0]])] * 6
    probe = ProbeSet.from_tensors(images, [0, 1, 2, 0, 1, 2], spurious_boxes=tags)
    callback = CamAudit(probe, target_layer="features", discover=True)
    model = scene_classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CamAuditError, match="discover=True needs object regions") as caught:
        fit(tmp_path, model, [callback])
    assert "boxes= or masks=" in str(caught.value) and "discover=False" in str(caught.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # no step was taken


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"discover": True, "counterfactual": False}, "set counterfactual=True"),
        ({"discover": "yes"}, "discover must be true or false"),
    ],
)
def test_discover_arguments_are_checked_at_construction(arguments, message):
    with pytest.raises(CamAuditError, match=message):
        CamAudit(tiny_probe(), **arguments)


def test_the_budget_prices_discovery_into_the_full_audit():
    plain = CamAudit(tiny_probe(), max_overhead=0.1)
    discovering = CamAudit(tiny_probe(), max_overhead=0.1, discover=True)
    assert (plain.budget.prices.full_extra, discovering.budget.prices.full_extra) == (2.0, 10.0)


def test_discovery_scalars_are_left_out_of_an_audit_without_discovery():
    report = discovery_report([cue_row()], bg_gap=0.3)
    with_it = scalar_values(report, "cam_audit", with_counterfactual=True)
    assert with_it["cam_audit/bg_gap"] == pytest.approx(0.3) and with_it["cam_audit/n_cues_confirmed"] == 1.0
    report.meta["discover"] = False
    without = scalar_values(report, "cam_audit", with_counterfactual=True)
    assert set(with_it) - set(without) == {
        "cam_audit/bg_acc_same", "cam_audit/bg_acc_other", "cam_audit/bg_gap", "cam_audit/n_cues",
        "cam_audit/n_cues_confirmed",
    }  # fmt: skip
    assert "cam_audit/focus_lift" in without


def test_every_logger_gets_the_cue_gallery(tmp_path, monkeypatch):
    """MLflow (a local file store) and a CSV log get the same PNG; a Weights & Biases-like logger (one with
    ``log_image``) gets it as ``cam_audit/cues``."""
    pytest.importorskip("mlflow")
    from types import SimpleNamespace

    from pytorch_lightning.loggers import MLFlowLogger

    from cam_audit.lightning.sinks import log_audit_media

    class RecordsImages:
        def __init__(self) -> None:
            self.images: dict[str, np.ndarray] = {}

        def log_image(self, key, images, step):
            self.images[key] = images[0]

        def log_text(self, **kwargs):
            pass

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow = MLFlowLogger(experiment_name="cam_audit", tracking_uri=f"file:{tmp_path / 'mlruns'}")
    wandb_like = RecordsImages()
    loggers = [CSVLogger(tmp_path, name="csv", version=""), mlflow, wandb_like]
    report = discovery_report([cue_row()])
    report.meta.update(epoch=1, global_step=7)
    sheet = torch.rand(3, 40, 90)
    trainer = SimpleNamespace(loggers=loggers, global_step=7, current_epoch=1)
    log_audit_media(trainer, report, None, cues=sheet)

    (csv_png,) = (tmp_path / "csv").rglob("cues_epoch0001.png")
    expected = hwc_uint8(sheet)
    assert np.array_equal(np.asarray(Image.open(csv_png).convert("RGB")), expected)
    run = mlflow.experiment.get_run(mlflow.run_id)
    artifact = Path(run.info.artifact_uri.removeprefix("file:")) / "cam_audit" / "cues_0001.png"
    assert np.array_equal(np.asarray(Image.open(artifact).convert("RGB")), expected)
    assert list(wandb_like.images) == ["cam_audit/cues"]
    assert np.array_equal(wandb_like.images["cam_audit/cues"], expected)
