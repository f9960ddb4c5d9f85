"""Small models, data and trainers shared by the training-safety tests (32x32 scenes, seconds per fit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from cam_audit.lightning.scenes import SceneClassifier, SceneDataModule
from cam_audit.probe import ProbeSet
from cam_audit.synthetic import make_scenes

IMAGE_SIZE = 32


def tiny_probe(n: int = 12, seed: int = 7) -> ProbeSet:
    """``n`` 32x32 scenes whose watermark corner follows the label."""
    return make_scenes(n, image_size=IMAGE_SIZE, watermark="correlated", seed=seed).to_probe()


def tiny_data(n_train: int = 64, n_val: int = 16, batch_size: int = 16, seed: int = 0) -> SceneDataModule:
    return SceneDataModule(
        watermark="correlated",
        n_train=n_train,
        n_val=n_val,
        image_size=IMAGE_SIZE,
        batch_size=batch_size,
        seed=seed,
    )


class NoisyClassifier(SceneClassifier):
    """The scene CNN with input noise and head dropout drawn from the global generator while training.

    Any change the audit made to the random stream, the BatchNorm statistics or the gradients would show
    up in the weights after the next optimizer step.
    """

    def __init__(self, width: int = 4, **kwargs: Any) -> None:
        super().__init__(width=width, **kwargs)
        self.dropout = nn.Dropout(0.3)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.dropout(self.pool(self.features(self.stem(images))).flatten(1)))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        noisy = images + 0.05 * torch.randn_like(images)
        loss = nn.functional.cross_entropy(self(noisy), labels)
        self.log("train_loss", loss)
        return loss


def trainer_kwargs(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """Quiet single-process CPU settings for a fit of a few batches."""
    kwargs: dict[str, Any] = dict(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=3,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=tmp_path,
        logger=False,
    )
    kwargs.update(overrides)
    return kwargs


def hook_count(model: nn.Module) -> int:
    """Every forward, backward and state-dict hook registered anywhere in ``model``."""
    names = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_state_dict_hooks",
        "_load_state_dict_pre_hooks",
        "_load_state_dict_post_hooks",
    )
    return sum(len(getattr(module, name, {})) for module in model.modules() for name in names)


def fit(tmp_path: Path, model: pl.LightningModule, callbacks: list, **overrides: Any) -> pl.Trainer:
    trainer = pl.Trainer(callbacks=callbacks, **trainer_kwargs(tmp_path, **overrides))
    trainer.fit(model, datamodule=tiny_data())
    return trainer
