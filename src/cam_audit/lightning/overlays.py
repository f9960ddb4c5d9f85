"""Collect the first probe samples' overlays during an audit, for the grid the loggers show, and draw the
cue galleries of a discovery audit after it."""

from __future__ import annotations

import torch
from torch import Tensor

from cam_audit.pipeline import AuditRun
from cam_audit.probe import ProbeBatch
from cam_audit.render import overlay_grid
from cam_audit.render.cue_sheet import cue_sheet
from cam_audit.report import AuditReport


class OverlayCollector:
    """An ``on_batch`` callback that keeps up to ``limit`` samples' images, maps and regions on the CPU.

    Args:
        limit: samples to keep (0 keeps none).
        cues: draw the cue galleries of an audit that ran discovery (:meth:`cue_sheet`).
    """

    def __init__(self, limit: int, cues: bool = False) -> None:
        self.limit = limit
        self.cues = cues
        self.tensors: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        self.captions: list[str] = []

    def __call__(self, batch: ProbeBatch, maps: Tensor, rows: dict[str, Tensor]) -> None:
        if len(self.captions) >= self.limit:
            return
        take = slice(0, self.limit - len(self.captions))
        self.captions += [f"lift {v:.2f}" for v in rows["focus_lift"][take].tolist()]
        kept = (batch.images[take], maps[take], batch.regions[take], batch.spurious[take])
        self.tensors.append((kept[0].cpu(), kept[1].cpu(), kept[2].cpu(), kept[3].cpu()))

    def grid(self) -> Tensor | None:
        """The kept samples as one overlay grid, or None when none were kept."""
        if not self.tensors:
            return None
        images, maps, regions, spurious = (torch.cat(parts) for parts in zip(*self.tensors, strict=True))
        return overlay_grid(images, maps, regions, spurious, captions=self.captions)

    def cue_sheet(self, run: AuditRun, report: AuditReport) -> Tensor | None:
        """The galleries of the cues ``run`` found in the audit that made ``report``, as one picture
        (:func:`~cam_audit.render.cue_sheet.cue_sheet`); None when not drawing cues, when the audit ran
        no discovery, or no cue was tested. Runs the engine on a few images: call it on one process."""
        if not self.cues or not report.meta.get("discover"):
            return None
        return cue_sheet(report.cues, run.galleries())


__all__ = ["OverlayCollector"]
