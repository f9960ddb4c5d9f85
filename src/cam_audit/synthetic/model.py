"""The small CNN that the demo, the tests and the shortcut study train on the synthetic scenes.

Three Conv-BN-ReLU blocks (about 25k parameters at ``width=16``), global pooling and a linear head: it
trains in seconds on a CPU, and its last conv block, ``features``, is the layer the audit explains.
:class:`SceneNet` is the plain ``nn.Module``; the Lightning wrapper
(:class:`cam_audit.lightning.scenes.SceneClassifier`) builds the same layers under the same names, so a
``target_layer="features"`` and a ``state_dict`` mean the same thing for both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from cam_audit.synthetic.scenes import SceneData

Pool = Literal["avg", "max"]
#: Adam learning rate the scene CNN trains with (plain loop and Lightning module alike).
LEARNING_RATE = 3e-3


def scene_layers(module: nn.Module, num_classes: int, width: int, pool: Pool, in_channels: int = 3) -> None:
    """Give ``module`` the submodules ``stem``, ``features``, ``pool`` and ``head`` of the scene CNN.

    Args:
        module: the module to build into (a plain or a Lightning module).
        num_classes: outputs of the head.
        width: channels of the first block (doubled in each of the next two).
        pool: ``"avg"`` (global average pooling) or ``"max"`` (global max pooling, which lets a few
            pixels decide and so can hide a shortcut from attribution).
        in_channels: image channels.
    """

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )

    module.stem = nn.Sequential(
        block(in_channels, width), nn.MaxPool2d(2), block(width, 2 * width), nn.MaxPool2d(2)
    )
    module.features = block(2 * width, 4 * width)
    module.pool = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1)
    module.head = nn.Linear(4 * width, num_classes)


def scene_forward(module: nn.Module, images: Tensor) -> Tensor:
    """Logits ``[N, num_classes]`` of a module built by :func:`scene_layers`."""
    layers = cast(Any, module)  # the submodules scene_layers set, which nn.Module's typing cannot see
    return layers.head(layers.pool(layers.features(layers.stem(images))).flatten(1))


class SceneNet(nn.Module):
    """The scene CNN as a plain ``nn.Module`` (arguments as in :func:`scene_layers`).

    >>> SceneNet(num_classes=3, width=4)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 3])
    """

    def __init__(self, num_classes: int = 3, width: int = 16, pool: Pool = "avg") -> None:
        super().__init__()
        scene_layers(self, num_classes, width, pool)

    def forward(self, images: Tensor) -> Tensor:
        return scene_forward(self, images)


def train_epochs(
    model: nn.Module,
    scenes: SceneData,
    epochs: int,
    batch_size: int = 32,
    seed: int = 0,
    lr: float = LEARNING_RATE,
) -> Iterator[int]:
    """Train ``model`` on ``scenes`` with Adam and cross-entropy, yielding the index of each finished epoch.

    A generator, so a caller can look at the model between epochs (an audit per epoch) and the loop
    stays one piece. Batches are drawn in an order seeded by ``seed`` alone; the model is put in train
    mode at the start of every epoch.

    >>> from cam_audit.synthetic import make_scenes
    >>> model = SceneNet(width=4)
    >>> list(train_epochs(model, make_scenes(8, image_size=24), epochs=2, batch_size=4))
    [0, 1]
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        for batch in torch.randperm(len(scenes), generator=generator).split(batch_size):
            loss = nn.functional.cross_entropy(model(scenes.images[batch]), scenes.labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        yield epoch


def accuracy(model: nn.Module, scenes: SceneData) -> float:
    """Share of ``scenes`` that ``model`` classifies correctly, in eval mode (its mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return float((model(scenes.images).argmax(1) == scenes.labels).float().mean())
    finally:
        model.train(was_training)


__all__ = ["LEARNING_RATE", "Pool", "SceneNet", "accuracy", "scene_forward", "scene_layers", "train_epochs"]
