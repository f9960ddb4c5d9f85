"""One CamAudit works with ``pytorch_lightning.Trainer`` and ``lightning.pytorch.Trainer`` alike."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from cam_audit import CamAudit
from cam_audit.pipeline import audit
from helpers.models import NoisyClassifier
from helpers.probes import tiny_probe
from helpers.trainers import make_trainer, tiny_data

lightning_pytorch = pytest.importorskip("lightning.pytorch")

pytestmark = pytest.mark.filterwarnings("ignore::cam_audit.lightning.ShortcutWarning")


class UnifiedSceneClassifier(lightning_pytorch.LightningModule):
    """The noisy scene CNN as a ``lightning.pytorch`` module (the other package's base class)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = NoisyClassifier()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        return nn.functional.cross_entropy(self(images), labels)

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        self.log("val_loss", nn.functional.cross_entropy(self(images), labels))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def test_callback_is_a_callback_of_both_packages(scene_probe):
    callback = CamAudit(scene_probe, target_layer="features")
    assert isinstance(callback, pl.Callback)
    assert isinstance(callback, lightning_pytorch.Callback)


@pytest.mark.parametrize("package", ["pytorch_lightning", "lightning.pytorch"])
def test_fit_logs_and_checkpoints_under_either_trainer(tmp_path, package):
    unified = package == "lightning.pytorch"
    trainer_module = lightning_pytorch if unified else pl
    torch.manual_seed(0)
    model = UnifiedSceneClassifier() if unified else NoisyClassifier()
    layer = "net.features" if unified else "features"
    callback = CamAudit(tiny_probe(), target_layer=layer, batch_size=6)
    checkpoint = trainer_module.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpt", monitor="cam_audit/focus_lift", mode="max"
    )
    trainer = make_trainer(
        tmp_path,
        trainer_module.Trainer,
        callbacks=[callback, checkpoint],
        max_epochs=1,
        limit_train_batches=2,
        logger=True,
    )
    data = tiny_data()
    trainer.fit(model, train_dataloaders=_loader(data, "train"), val_dataloaders=_loader(data, "val"))

    assert callback.n_audits == 1
    logged = float(trainer.callback_metrics["cam_audit/focus_lift"])
    expected = audit(model, tiny_probe(), target_layer=layer, batch_size=6).summary["focus_lift"]
    assert logged == pytest.approx(expected, rel=1e-6)
    assert checkpoint.best_model_path and float(checkpoint.best_model_score) == pytest.approx(logged)
    saved = torch.load(checkpoint.best_model_path, weights_only=False)
    assert saved["callbacks"][callback.state_key]["n_audits"] == 1


def _loader(data, split: str) -> torch.utils.data.DataLoader:
    data.setup("fit")
    return data.train_dataloader() if split == "train" else data.val_dataloader()
