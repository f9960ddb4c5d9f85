"""Models and probes of every classifier shape: one logit, one sigmoid per class, a dict-taking forward.

``TwoColourNet`` has fixed weights, so its decisions can be computed by hand: channel 0 of its
``features`` layer is the red channel of the image, channel 1 the blue one, and the logit of each colour
is ``weight * (share of the image in that colour) - bias``, on when the colour covers more than
``bias / weight`` of the image.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from cam_audit.lightning.scenes import SceneClassifier, SceneDataModule
from cam_audit.probe import ProbeSet
from cam_audit.synthetic import SceneNet, make_scenes

RED, BLUE = 0, 1
SIDE = 24
#: squares of these sides turn their colour on, smaller ones do not (threshold 36 pixels of 576)
ON_SIDES, OFF_SIDES = (7, 8), (4, 5)


class TwoColourNet(nn.Module):
    """A fixed multi-label detector of red and blue: logits ``[N, 2]``."""

    def __init__(self, threshold_pixels: float = 36.0) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.features[0].weight.zero_()
            self.features[0].bias.zero_()
            self.features[0].weight[RED, 0] = 1.0
            self.features[0].weight[BLUE, 2] = 1.0
            weight = 8.0 * SIDE * SIDE / threshold_pixels
            self.head.weight.copy_(torch.eye(2) * weight)
            self.head.bias.fill_(-8.0)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.pool(self.features(images)).flatten(1))


def square(image: Tensor, colour: int, top: int, left: int, side: int) -> Tensor:
    """Paint a square of ``colour`` (RED or BLUE) into ``image`` [3, H, W]; returns its xyxy box."""
    channel = 0 if colour == RED else 2
    image[channel, top : top + side, left : left + side] = 1.0
    return torch.tensor([[left, top, left + side, top + side]], dtype=torch.float32)


def two_colour_scenes(n_images: int = 8, seed: int = 0) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """``n_images`` images, each with a red square (left half) and a blue square (right half) of
    random sides; returns the images and the red and the blue boxes of each."""
    generator = torch.Generator().manual_seed(seed)
    sides = [*ON_SIDES, *OFF_SIDES]

    def draw(high: int) -> int:
        return int(torch.randint(0, high, (1,), generator=generator))

    images = torch.zeros(n_images, 3, SIDE, SIDE)
    red, blue = [], []
    for image in images:
        red.append(square(image, RED, draw(SIDE - 8), 1 + draw(3), sides[draw(len(sides))]))
        blue.append(square(image, BLUE, draw(SIDE - 8), 13 + draw(3), sides[draw(len(sides))]))
    return images, red, blue


def two_colour_probe(swap_boxes: bool = False, seed: int = 0) -> ProbeSet:
    """One probe sample per colour of each image (label RED with the red square as its object, label
    BLUE with the blue one); ``swap_boxes`` gives each sample the other colour's square instead."""
    images, red, blue = two_colour_scenes(seed=seed)
    n = images.shape[0]
    labels = [RED] * n + [BLUE] * n
    boxes = (blue + red) if swap_boxes else (red + blue)
    return ProbeSet.from_tensors(torch.cat([images, images]), labels, boxes=boxes, classes=["red", "blue"])


class BothSides(nn.Module):
    """A binary model as a two-class one: logits ``[-z, z]`` of the wrapped one-logit model."""

    def __init__(self, binary: nn.Module) -> None:
        super().__init__()
        self.binary = binary

    def forward(self, images: Tensor) -> Tensor:
        z = self.binary(images)
        return torch.cat([-z, z], dim=1)


class Squeezed(nn.Module):
    """A one-logit model that returns ``[N]`` instead of ``[N, 1]``."""

    def __init__(self, binary: nn.Module) -> None:
        super().__init__()
        self.binary = binary

    def forward(self, images: Tensor) -> Tensor:
        return self.binary(images)[:, 0]


def centred_binary_net(probe: ProbeSet, seed: int = 0, width: int = 4) -> SceneNet:
    """A one-logit scene CNN whose bias puts the median logit of ``probe`` at 0, so it predicts both
    classes."""
    torch.manual_seed(seed)
    model = SceneNet(num_classes=1, width=width).eval()
    with torch.no_grad():
        images = torch.stack([probe[i][0] for i in range(len(probe))])
        model.head.bias -= model(images).median()
    return model


class DictSceneNet(SceneNet):
    """The scene CNN behind a forward that takes ``{"image": images}``."""

    def forward(self, batch: dict[str, Tensor]) -> Tensor:  # type: ignore[override]
        return super().forward(batch["image"])


def image_dict_forward(model: nn.Module, images: Tensor) -> Tensor:
    """How the audit calls a model whose forward takes ``{"image": images}``."""
    return model({"image": images})


def binary_scene_probe(n: int = 12, seed: int = 7) -> ProbeSet:
    """32x32 scenes of two classes (disc 0, square 1) with a correlated watermark."""
    return make_scenes(n, num_classes=2, image_size=32, watermark="correlated", seed=seed).to_probe()


def binary_scene_data() -> SceneDataModule:
    return SceneDataModule(
        watermark="correlated", num_classes=2, n_train=64, n_val=16, image_size=32, batch_size=16
    )


class BinarySceneClassifier(SceneClassifier):
    """The scene CNN with one logit, trained with a logistic loss on ``label == 1``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(num_classes=1, width=4, **kwargs)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        return nn.functional.binary_cross_entropy_with_logits(self(images)[:, 0], labels.float())

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.log("val_acc", ((self(images)[:, 0] > 0).long() == labels).float().mean())


class MultiLabelSceneClassifier(SceneClassifier):
    """The scene CNN with one sigmoid per class, trained with a logistic loss on one-hot labels."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(num_classes=3, width=4, **kwargs)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        targets = nn.functional.one_hot(labels, 3).float()
        return nn.functional.binary_cross_entropy_with_logits(self(images), targets)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.log("val_on", (self(images).gather(1, labels[:, None]) > 0).float().mean())


class DictSceneClassifier(SceneClassifier):
    """The scene CNN as a LightningModule whose forward takes ``{"image": images}``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(width=4, **kwargs)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:  # type: ignore[override]
        return super().forward(batch["image"])

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        return nn.functional.cross_entropy(self({"image": images}), labels)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.log("val_acc", (self({"image": images}).argmax(1) == labels).float().mean())


def probe_images(probe: ProbeSet) -> Tensor:
    """All probe images as one batch [N, C, H, W]."""
    return torch.stack([probe[i][0].as_subclass(Tensor) for i in range(len(probe))])
