"""Collect the first probe samples' overlays during an audit, for the grid the loggers show."""

from __future__ import annotations

import torch
from torch import Tensor

from cam_audit.probe import ProbeBatch
from cam_audit.render import overlay_grid


class OverlayCollector:
    """An ``on_batch`` callback that keeps up to ``limit`` samples' images, maps and regions on the CPU.

    Args:
        limit: samples to keep (0 keeps none).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[tuple[Tensor, Tensor, Tensor, Tensor, list[str]]] = []

    @property
    def kept(self) -> int:
        return sum(len(part[4]) for part in self.parts)

    def __call__(self, batch: ProbeBatch, maps: Tensor, rows: dict[str, Tensor]) -> None:
        if self.kept >= self.limit:
            return
        take = slice(0, self.limit - self.kept)
        captions = [f"lift {v:.2f}" for v in rows["focus_lift"][take].tolist()]
        self.parts.append(
            (
                batch.images[take].cpu(),
                maps[take].cpu(),
                batch.regions[take].cpu(),
                batch.spurious[take].cpu(),
                captions,
            )
        )

    def grid(self) -> Tensor | None:
        """The kept samples as one overlay grid, or None when none were kept."""
        if not self.parts:
            return None
        images, maps, regions, spurious = (torch.cat([part[i] for part in self.parts]) for i in range(4))
        captions = [c for part in self.parts for c in part[4]]
        return overlay_grid(images, maps, regions, spurious, captions=captions)


__all__ = ["OverlayCollector"]
