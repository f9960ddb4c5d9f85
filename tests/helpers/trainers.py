"""The one way the tests build a Lightning trainer: quiet, single-process CPU, a fit of a few batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from cam_audit.lightning.scenes import SceneDataModule
from helpers.probes import IMAGE_SIZE

#: Settings every test trainer starts from; a test overrides what it is about.
QUIET: dict[str, Any] = dict(
    max_epochs=2,
    accelerator="cpu",
    devices=1,
    enable_progress_bar=False,
    enable_model_summary=False,
    limit_train_batches=3,
    limit_val_batches=1,
    num_sanity_val_steps=0,
    log_every_n_steps=1,
    logger=False,
)


def make_trainer(tmp_path: Path, trainer_class: type = pl.Trainer, **overrides: Any) -> Any:
    """A trainer with the :data:`QUIET` settings and ``tmp_path`` as its root, changed by ``overrides``.

    Args:
        tmp_path: ``default_root_dir`` (where Lightning writes anything not given a place of its own).
        trainer_class: ``pytorch_lightning.Trainer`` or ``lightning.pytorch.Trainer``.
        overrides: any ``Trainer`` argument (``callbacks``, ``logger``, ``max_epochs``, ``strategy``, ...).
    """
    return trainer_class(**{**QUIET, "default_root_dir": tmp_path, **overrides})


def tiny_data(
    n_train: int = 64, n_val: int = 16, batch_size: int = 16, seed: int = 0, image_size: int = IMAGE_SIZE
) -> SceneDataModule:
    """32x32 (or ``image_size``) training and validation scenes whose watermark corner follows the label."""
    return SceneDataModule(
        watermark="correlated",
        n_train=n_train,
        n_val=n_val,
        image_size=image_size,
        batch_size=batch_size,
        seed=seed,
    )


def fit(
    tmp_path: Path,
    model: pl.LightningModule,
    callbacks: list,
    data: SceneDataModule | None = None,
    **overrides: Any,
) -> pl.Trainer:
    """Fit ``model`` on ``data`` (default :func:`tiny_data`) with a :func:`make_trainer` trainer; returns
    the trainer."""
    trainer = make_trainer(tmp_path, callbacks=callbacks, **overrides)
    trainer.fit(model, datamodule=data if data is not None else tiny_data())
    return trainer
