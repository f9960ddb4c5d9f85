"""The scene CNN and the synthetic scenes as a LightningModule and a LightningDataModule: what the demo,
the configs and the Lightning tests train.

``SceneClassifier`` has the layers of :class:`cam_audit.synthetic.SceneNet` under the same names; its last
conv block is ``features``, the layer the audit explains.
"""

from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from cam_audit.synthetic import make_scenes
from cam_audit.synthetic.model import LEARNING_RATE, scene_forward, scene_layers

Watermark = Literal["none", "correlated", "random"]


class SceneClassifier(pl.LightningModule):
    """Conv-BN-ReLU blocks, global pooling and a linear head.

    Args:
        num_classes: number of shape classes.
        width: channels of the first block (doubled in each of the next two).
        pool: ``"avg"`` (global average pooling) or ``"max"`` (global max pooling, which lets a few
            pixels decide and so can hide a shortcut from attribution).
        lr: Adam learning rate.
    """

    def __init__(
        self,
        num_classes: int = 3,
        width: int = 16,
        pool: Literal["avg", "max"] = "avg",
        lr: float = LEARNING_RATE,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        scene_layers(self, num_classes, width, pool)

    def forward(self, images: Tensor) -> Tensor:
        return scene_forward(self, images)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        loss = nn.functional.cross_entropy(self(images), labels)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.log("val_loss", nn.functional.cross_entropy(logits, labels), sync_dist=True)
        self.log("val_acc", (logits.argmax(1) == labels).float().mean(), prog_bar=True, sync_dist=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.log("test_acc", (self(images).argmax(1) == labels).float().mean(), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])


class SceneDataModule(pl.LightningDataModule):
    """Training and validation scenes (see :func:`cam_audit.synthetic.make_scenes`).

    Args:
        watermark: ``"random"`` (a tag in a random corner: no information), ``"correlated"`` (the tag's
            corner predicts the label) or ``"none"``.
        correlation: share of training images whose tag sits in their class's corner.
        cue_classes: put the tag on these classes only (presence is then the cue).
        n_train, n_val: numbers of scenes.
        num_classes, image_size, batch_size, seed: as named.
    """

    def __init__(
        self,
        watermark: Watermark = "random",
        correlation: float = 1.0,
        cue_classes: tuple[int, ...] | None = None,
        n_train: int = 1536,
        n_val: int = 256,
        num_classes: int = 3,
        image_size: int = 64,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str) -> None:
        h = self.hparams
        common = dict(
            num_classes=h["num_classes"],
            image_size=h["image_size"],
            watermark=h["watermark"],
            correlation=h["correlation"],
            cue_classes=h["cue_classes"],
        )
        self.train_set = make_scenes(h["n_train"], seed=h["seed"], **common).dataset()
        self.val_set = make_scenes(h["n_val"], seed=h["seed"] + 10_000, **common).dataset()

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.hparams["seed"])
        return DataLoader(
            self.train_set, batch_size=self.hparams["batch_size"], shuffle=True, generator=generator
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


__all__ = ["SceneClassifier", "SceneDataModule"]
