"""Small models the tests build: the scene CNN (fresh, trained, or with noise drawn while training)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from cam_audit.lightning.scenes import SceneClassifier
from cam_audit.synthetic import SceneData, SceneNet
from cam_audit.synthetic.model import Pool, train_epochs


def scene_classifier(seed: int = 0, width: int = 8, **kwargs: Any) -> SceneClassifier:
    """A fresh Lightning scene CNN whose weights are drawn after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return SceneClassifier(num_classes=3, width=width, **kwargs)


def trained_scene_net(scenes: SceneData, pool: Pool, epochs: int = 8, seed: int = 0) -> SceneNet:
    """The plain scene CNN (width 8) trained on ``scenes`` with the study's loop, in eval mode."""
    torch.manual_seed(seed)
    model = SceneNet(num_classes=3, width=8, pool=pool)
    for _ in train_epochs(model, scenes, epochs, batch_size=32, seed=seed):
        pass
    return model.eval()


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
