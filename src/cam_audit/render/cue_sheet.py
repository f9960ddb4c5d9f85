"""The galleries of a discovery audit's cues as one picture, each under two caption lines: what the
loggers show (``<prefix>/cues`` in TensorBoard, Weights & Biases, MLflow, a PNG beside a CSV log)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch
import torch.nn.functional as nnf
from torch import Tensor

from cam_audit.render.cues_html import cue_lines, cue_order
from cam_audit.render.overlays import text_strip

#: Most cues one sheet shows (the confirmed first, then the larger); the report lists them all.
MAX_SHEET_CUES = 8
#: Narrowest sheet, in pixels: room for a caption line next to a gallery of one crop.
MIN_WIDTH = 480


def cue_sheet(
    cues: pd.DataFrame, galleries: Mapping[int, Tensor], limit: int = MAX_SHEET_CUES
) -> Tensor | None:
    """The galleries of the cue table's cues stacked top to bottom, confirmed cues first, each under the
    lines of :func:`~cam_audit.render.cues_html.cue_lines`; None when no cue has a gallery.

    Args:
        cues: the report's cue table.
        galleries: ``{cue number: image [3, H, W] in [0, 1]}`` (``AuditRun.galleries()``).
        limit: most cues shown; a last line says how many more were left out.

    Returns:
        float [3, H', W'] in [0, 1].

    >>> table = pd.DataFrame([{"cue": 0, "class": "disc", "where": "top-left corner, about 8x8 px",
    ...     "n_samples": 6, "confirmed": True, "n_fill": 6, "flip_rate": 0.5, "control_flip_rate": 0.0,
    ...     "fill_p_value": 0.03, "n_paste": 0, "paste_rate": 0.0, "control_paste_rate": 0.0,
    ...     "paste_p_value": 1.0}])
    >>> tuple(cue_sheet(table, {0: torch.zeros(3, 40, 300)}).shape)
    (3, 68, 480)
    """
    rows = {int(r["cue"]): r for r in cues.to_dict("records")}
    shown = [n for n in cue_order(cues) if n in galleries]
    if not shown:
        return None
    width = max(max(int(galleries[n].shape[-1]) for n in shown[:limit]), MIN_WIDTH)
    blocks = []
    for number in shown[:limit]:
        gallery = galleries[number].detach().float().cpu().clamp(0, 1)
        blocks += [text_strip(line, width) for line in cue_lines(rows[number])]
        blocks.append(nnf.pad(gallery, (0, width - gallery.shape[-1]), value=1.0))
        blocks.append(torch.ones(3, 4, width))
    if len(shown) > limit:
        more = f"and {len(shown) - limit} more tested cue(s): see the report's cue table"
        blocks.append(text_strip(more, width))
    return torch.cat(blocks, dim=1)


__all__ = ["MAX_SHEET_CUES", "cue_sheet"]
