"""Reports of discovery audits written by hand: a cue table with chosen counts, judged by a policy.

The counts are the inputs (``only``: pairs where only the cue's intervention changed the model,
``control_only``: only its control's); the rates follow from them with no pair changed by both.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from cam_audit.report import AuditReport, ShortcutPolicy
from cam_audit.report.cues import exceedance_p, normalise


def cue_row(
    number: int = 0,
    name: str = "disc",
    label: int = 0,
    n_samples: int = 20,
    fill: tuple[int, int, int] = (16, 0, 20),
    paste: tuple[int, int, int] = (0, 0, 0),
    where: str = "top-left corner, about 8x8 px",
    box: tuple[float, float, float, float] = (0.0, 0.0, 8.0, 8.0),
) -> dict[str, Any]:
    """One row of a cue table; ``fill`` and ``paste`` are ``(only, control_only, pairs tested)``."""
    corners = dict(zip(("x_min", "y_min", "x_max", "y_max"), box, strict=True))
    row: dict[str, Any] = {"cue": number, "class": name, "label": label, "n_samples": n_samples,
                           "where": where, **corners}  # fmt: skip
    tests = (("fill", "flip_rate", fill), ("paste", "paste_rate", paste))
    for prefix, rate, (only, control_only, n) in tests:
        row[f"n_{prefix}"], row[f"{prefix}_only"], row[f"control_{prefix}_only"] = n, only, control_only
        row[rate] = only / n if n else math.nan
        row[f"control_{rate}"] = control_only / n if n else math.nan
        row[f"{prefix}_p_value"] = exceedance_p(only, control_only) if n else math.nan
    return row


def cue_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A cue table of ``rows`` (:func:`cue_row`), not yet judged (``confirmed`` all False)."""
    return normalise(pd.DataFrame(rows)) if rows else normalise(pd.DataFrame(columns=["cue"]))


def discovery_summary(bg_gap: float = 0.05, n_cues: int = 0, n_confirmed: int = 0) -> dict[str, float]:
    """The summary of a clean audit of 40 samples that also ran discovery."""
    return dict(
        focus=0.6, focus_lift=3.0, pointing_game=0.9, relevance_rank=0.7, spurious_mass=math.nan,
        spurious_lift=math.nan, cf_flip_rate=math.nan, cf_confidence_drop=math.nan, cf_paste_rate=math.nan,
        bg_acc_same=0.95, bg_acc_other=0.95 - bg_gap, bg_gap=bg_gap, accuracy=0.95, n_samples=40.0,
        n_degenerate=0.0, n_spurious=0.0, n_cues=float(n_cues), n_cues_confirmed=float(n_confirmed),
    )  # fmt: skip


def discovery_report(
    rows: list[dict[str, Any]], bg_gap: float = 0.05, policy: ShortcutPolicy | None = None
) -> AuditReport:
    """A report of a discovery audit with the cue table ``rows``, judged by ``policy`` (default policy)."""
    policy = policy or ShortcutPolicy()
    cues = cue_table(rows)
    cues = cues.assign(confirmed=policy.confirmed(cues))
    summary = discovery_summary(bg_gap, len(cues), int(cues["confirmed"].sum()))
    samples = pd.DataFrame({"index": [0, 1], "sample_id": ["a.png", "b.png"], "label": [0, 1],
                            "focus": [0.5, 0.7], "focus_lift": [2.5, 3.5]})  # fmt: skip
    per_class = pd.DataFrame()
    verdict = policy.evaluate(summary, per_class, cues=cues)
    meta = {"discover": True, "model_class": "SceneNet", "task": "multiclass"}
    return AuditReport(summary, samples, per_class, verdict, policy, meta, cues)
