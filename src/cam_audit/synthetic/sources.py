"""The synthetic scenes as a :class:`~cam_audit.probe.sources.ProbeSource`, so a YAML config can name them."""

from __future__ import annotations

from typing import Literal

from cam_audit.probe import ProbeSet
from cam_audit.probe.sources import ProbeSource
from cam_audit.synthetic.scenes import make_scenes


class SyntheticProbe(ProbeSource):
    """Synthetic shape scenes with a watermark tag (see :func:`cam_audit.synthetic.make_scenes`).

    Args:
        n: number of scenes.
        watermark: ``"none"``, ``"random"`` or ``"correlated"`` (the tag's corner gives the label away).
        correlation: share of tags that follow the label (``"correlated"`` only).
        num_classes: number of shape classes.
        image_size: side of the square images.
        seed: seed of the generator; the same seed gives the same scenes.

    >>> probe = SyntheticProbe(n=6, watermark="correlated", seed=3).load()
    >>> len(probe), probe.classes, probe.has_spurious
    (6, ['disc', 'square', 'triangle'], True)
    """

    def __init__(
        self,
        n: int = 96,
        watermark: Literal["none", "random", "correlated"] = "correlated",
        correlation: float = 1.0,
        num_classes: int = 3,
        image_size: int = 64,
        seed: int = 0,
    ) -> None:
        self.n = n
        self.watermark = watermark
        self.correlation = correlation
        self.num_classes = num_classes
        self.image_size = image_size
        self.seed = seed

    def load(self) -> ProbeSet:
        scenes = make_scenes(
            self.n,
            num_classes=self.num_classes,
            image_size=self.image_size,
            watermark=self.watermark,
            correlation=self.correlation,
            seed=self.seed,
        )
        return scenes.to_probe()


__all__ = ["SyntheticProbe"]
