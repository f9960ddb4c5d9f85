"""A batch of probe samples with their regions rasterised at input resolution."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from cam_audit.errors import CamAuditError


@dataclass(frozen=True)
class ProbeBatch:
    """A batch of probe samples with their regions rasterised at input resolution.

    Attributes:
        images: float ``[B, C, H, W]`` (after the probe set's transform; ``C`` is 3, or 1 for grayscale).
        labels: long ``[B]`` class indices.
        regions: bool ``[B, H, W]``, union of the object boxes and masks.
        spurious: bool ``[B, H, W]``, union of the spurious boxes and masks (all ``False`` where none).
        has_spurious: bool ``[B]``, whether ``spurious`` is non-empty for each sample.
        indices: long ``[B]``, positions of the samples in the probe set.
        sample_ids: the samples' ids, in batch order.
    """

    images: Tensor
    labels: Tensor
    regions: Tensor
    spurious: Tensor
    has_spurious: Tensor
    indices: Tensor
    sample_ids: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> ProbeBatch:
        """The same batch with every tensor moved to ``device``."""
        tensors = ("images", "labels", "regions", "spurious", "has_spurious", "indices")
        return replace(self, **{name: getattr(self, name).to(device) for name in tensors})


def collate(
    items: Sequence[tuple[Tensor, Mapping[str, Any], tuple[Tensor, Tensor]]], positions: Sequence[int]
) -> ProbeBatch:
    """Stack ``(image [C, H, W], target, (region [H, W], spurious [H, W]))`` items into a batch.

    Raises:
        CamAuditError: two images of different sizes or channel counts, naming both samples and the fix.
    """
    first_id, first_shape = items[0][1]["sample_id"], tuple(items[0][0].shape)
    for image, target, _ in items[1:]:
        shape = tuple(image.shape)
        if shape[1:] != first_shape[1:]:
            raise CamAuditError(
                f"samples {first_id!r} ({first_shape[1]}x{first_shape[2]}) and {target['sample_id']!r} "
                f"({shape[1]}x{shape[2]}) have different image sizes and cannot share a batch; "
                f"give the probe set transform=v2.Resize(({first_shape[1]}, {first_shape[2]}))."
            )
        if shape[0] != first_shape[0]:
            raise CamAuditError(
                f"samples {first_id!r} ({first_shape[0]} channels) and {target['sample_id']!r} ({shape[0]} "
                "channels) cannot share a batch; load every image with the same channels= (1 or 3), or "
                "give tensor images one channel count."
            )
    spurious = torch.stack([pair[1] for _, _, pair in items])
    return ProbeBatch(
        images=torch.stack([image for image, _, _ in items]),
        labels=torch.tensor([int(target["label"]) for _, target, _ in items], dtype=torch.long),
        regions=torch.stack([pair[0] for _, _, pair in items]),
        spurious=spurious,
        has_spurious=spurious.flatten(1).any(dim=1),
        indices=torch.tensor(list(positions), dtype=torch.long),
        sample_ids=[str(target["sample_id"]) for _, target, _ in items],
    )


__all__ = ["ProbeBatch", "collate"]
