"""A batch of probe samples with their regions rasterised at input resolution."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class ProbeBatch:
    """A batch of probe samples with their regions rasterised at input resolution.

    Attributes:
        images: float ``[B, 3, H, W]`` (after the probe set's transform).
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


__all__ = ["ProbeBatch"]
