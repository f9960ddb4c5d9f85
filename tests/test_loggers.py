"""What each logger receives from a real fit: TensorBoard layout and verdict text, CSVLogger PNGs, and the
overlays and verdict through MLflow's and Weights & Biases' own APIs (offline, local files only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
from PIL import Image

from cam_audit import CamAudit, ShortcutPolicy
from cam_audit.keys import CHARTS, HEADLINE_KEYS, is_discovery
from cam_audit.lightning.scenes import SceneClassifier, SceneDataModule
from cam_audit.lightning.sinks import verdict_markdown
from cam_audit.synthetic import SyntheticProbe
from helpers.trainers import make_trainer


def _fit(tmp_path: Path, loggers: list) -> CamAudit:
    pl.seed_everything(0, verbose=False)
    audit = CamAudit(
        SyntheticProbe(n=6, watermark="correlated", seed=11),
        target_layer="features",
        batch_size=6,
        max_images=4,
        # fails, so the verdict text carries a flag (the chance test is off: one epoch may leave it at chance)
        policy=ShortcutPolicy(min_focus_lift=50.0, min_accuracy_p=None),
        on_shortcut="warn",
    )
    trainer = make_trainer(
        tmp_path,
        max_epochs=1,
        limit_train_batches=2,
        logger=loggers,
        callbacks=[audit],
        enable_checkpointing=False,
    )
    with pytest.warns(UserWarning, match="focus_lift"):
        trainer.fit(SceneClassifier(width=8), datamodule=SceneDataModule(n_train=64, n_val=16, batch_size=32))
    assert audit.last_report is not None
    return audit


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def _csv_overlay(tmp_path: Path) -> np.ndarray:
    (png,) = (tmp_path / "csv").rglob("overlays_epoch0000.png")
    return _pixels(png)


def test_tensorboard_gets_custom_scalars_layout_and_verdict_text(tmp_path):
    from pytorch_lightning.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    audit = _fit(tmp_path, [TensorBoardLogger(tmp_path, name="tb", version="")])
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0}).Reload()
    tensors = events.Tags()["tensors"]

    (layout_event,) = events.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(layout_event.tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for c in layout.category for chart in c.chart}
    assert [c.title for c in layout.category] == ["cam_audit"]
    # every chart but discovery's, which a callback without discover=True never logs
    shown = {title: keys for title, keys in CHARTS.items() if not all(map(is_discovery, keys))}
    assert charts == {title: [f"cam_audit/{key}" for key in keys] for title, keys in shown.items()}
    assert "background reliance" in CHARTS and "background reliance" not in charts
    assert charts["focus vs spurious (lift)"] == ["cam_audit/focus_lift", "cam_audit/spurious_lift"]
    # every line of the layout is a scalar the callback really logged
    drawn = {tag for tags in charts.values() for tag in tags}
    assert drawn and drawn <= set(events.Tags()["scalars"])

    assert "cam_audit/verdict/text_summary" in tensors
    (text_event,) = events.Tensors("cam_audit/verdict/text_summary")
    text = text_event.tensor_proto.string_val[0].decode()
    assert text == verdict_markdown(audit.last_report)
    assert text.startswith("**shortcut flagged**") and "focus_lift" in text and "< 50.00" in text
    summary = audit.last_report.summary
    assert text.splitlines()[-1] == " | ".join(f"{key} {summary[key]:.3g}" for key in HEADLINE_KEYS)


def test_csv_logger_gets_overlay_pngs(tmp_path):
    from pytorch_lightning.loggers import CSVLogger

    _fit(tmp_path, [CSVLogger(tmp_path, name="csv", version="")])
    image = _csv_overlay(tmp_path)
    assert image.shape[2] == 3 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50


def test_mlflow_gets_overlays_and_verdict_as_artifacts(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from pytorch_lightning.loggers import CSVLogger, MLFlowLogger

    # MLflow 3 keeps the file store behind this switch; a local file store needs no server or database
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow = MLFlowLogger(experiment_name="cam_audit", tracking_uri=f"file:{tmp_path / 'mlruns'}")
    audit = _fit(tmp_path, [CSVLogger(tmp_path, name="csv", version=""), mlflow])

    run = mlflow.experiment.get_run(mlflow.run_id)
    artifacts = Path(run.info.artifact_uri.removeprefix("file:")) / "cam_audit"
    overlay = _pixels(artifacts / "overlays_0000.png")
    reference = _csv_overlay(tmp_path)
    assert overlay.shape == reference.shape
    assert np.array_equal(overlay, reference)  # the same grid, the same bytes
    assert (artifacts / "verdict_0000.md").read_text() == verdict_markdown(audit.last_report)
    assert run.data.metrics["cam_audit/focus_lift"] == pytest.approx(audit.last_report.summary["focus_lift"])


@pytest.mark.slow  # wandb starts its own service process
def test_wandb_offline_gets_overlays_and_verdict_table(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    import json

    from pytorch_lightning.loggers import CSVLogger, WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    wandb_logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="cam_audit")
    audit = _fit(tmp_path, [CSVLogger(tmp_path, name="csv", version=""), wandb_logger])
    wandb_logger.experiment.finish()

    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (overlay,) = (run_dir / "files" / "media" / "images" / "cam_audit").glob("overlays_*.png")
    reference = _csv_overlay(tmp_path)
    assert _pixels(overlay).shape == reference.shape
    assert np.array_equal(_pixels(overlay), reference)
    (table,) = (run_dir / "files" / "media" / "table" / "cam_audit").glob("verdict_*.table.json")
    assert json.loads(table.read_text())["data"] == [[verdict_markdown(audit.last_report)]]
