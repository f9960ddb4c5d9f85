"""The regions of one image as a loader reads them, and the probe samples they make: one per class present.

Real probe images often hold objects of several classes (a cat and a dog, two findings on one X-ray).
Such an image gives one sample per class: that class's objects are the sample's object region, the
image's spurious regions go to every one of its samples, and the samples share the image's id
(``target["image_id"]``). An image of one class gives one sample named as before, so reports of probes
without such images stay comparable; the samples of an image of several classes are named
``"<file>#<class>"``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from cam_audit.errors import ProbeError
from cam_audit.probe.sample import ProbeSample

RegionKind = Literal["boxes", "masks"]


def _no_regions() -> dict[str, list[Tensor]]:
    return {"boxes": [], "masks": []}


@dataclass
class ImageRegions:
    """Object regions of one image by class, and its spurious regions, gathered annotation by annotation.

    Example:
        >>> regions = ImageRegions()
        >>> regions.add_object(1, "boxes", torch.tensor([[0.0, 0.0, 2.0, 2.0]]))
        >>> regions.add_object(0, "boxes", torch.tensor([[2.0, 2.0, 4.0, 4.0]]))
        >>> regions.add_spurious("boxes", torch.tensor([[0.0, 3.0, 1.0, 4.0]]))
        >>> samples = regions.samples("a.png", "a.png", Path("a.png"), (4, 4), ["cat", "dog"])
        >>> [(s.sample_id, s.label, s.image_id, s.boxes.tolist()) for s in samples]
        [('a.png#cat', 0, 'a.png', [[2.0, 2.0, 4.0, 4.0]]), ('a.png#dog', 1, 'a.png', [[0.0, 0.0, 2.0, 2.0]])]
        >>> samples[0].spurious_boxes.tolist() == samples[1].spurious_boxes.tolist() == [[0.0, 3.0, 1.0, 4.0]]
        True
    """

    objects: dict[int, dict[str, list[Tensor]]] = field(default_factory=dict)
    spurious: dict[str, list[Tensor]] = field(default_factory=_no_regions)

    @property
    def labels(self) -> list[int]:
        """The classes present, in increasing order."""
        return sorted(self.objects)

    def add_class(self, label: int) -> None:
        """Record that the image shows class ``label`` (its regions may follow, or be none)."""
        self.objects.setdefault(label, _no_regions())

    def add_object(self, label: int, kind: RegionKind, region: Tensor) -> None:
        """Add boxes ``[K, 4]`` or masks ``[K, H, W]`` of objects of class ``label``."""
        self.add_class(label)
        self.objects[label][kind].append(region)

    def add_spurious(self, kind: RegionKind, region: Tensor) -> None:
        """Add spurious boxes or masks; they go to every sample of the image."""
        self.spurious[kind].append(region)

    def samples(
        self,
        name: str,
        image_id: int | str,
        image: Path | Tensor,
        size: tuple[int, int],
        class_names: Sequence[str] | None,
        channels: int = 3,
    ) -> list[ProbeSample]:
        """One sample per class present, in class order.

        Args:
            name: the image's sample id (its file name); ``"<name>#<class>"`` when it has several classes.
            image_id: the id the image's samples share (a COCO image id, the file name).
            image: the file (or tensor) every sample shows.
            size: ``(H, W)`` of the image.
            class_names: names for the ids (the class index where there are none).
            channels: what the image file is decoded to (3 or 1).
        """
        spurious = {f"spurious_{kind}": _stack(values) for kind, values in self.spurious.items()}
        several = len(self.objects) > 1
        image_classes = tuple(self.labels) if several else ()
        return [
            ProbeSample(
                sample_id=f"{name}#{_class_name(label, class_names)}" if several else name,
                label=label,
                size=size,
                image=image,
                boxes=_stack(self.objects[label]["boxes"]),
                masks=_stack(self.objects[label]["masks"]),
                image_id=image_id,
                image_classes=image_classes,
                channels=channels,
                **spurious,
            )
            for label in self.labels
        ]


def check_unique_ids(samples: Sequence[ProbeSample], source: str) -> None:
    """Refuse two samples of one id (a file named like the ``"<file>#<class>"`` sample of another image).

    Raises:
        ProbeError: naming the id and ``source``.
    """
    repeated = [sample_id for sample_id, count in Counter(s.sample_id for s in samples).items() if count > 1]
    if repeated:
        raise ProbeError(
            f"{source}: the sample id {repeated[0]!r} is given twice: an image's file name equals the id of "
            'one class of an image with objects of several classes ("<file>#<class>"); rename that file.'
        )


def _stack(values: list[Tensor]) -> Tensor | None:
    return torch.cat(values) if values else None


def _class_name(label: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and label < len(class_names):
        return str(class_names[label])
    return str(label)


__all__ = ["ImageRegions", "RegionKind", "check_unique_ids"]
