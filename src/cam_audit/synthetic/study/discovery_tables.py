"""The discovery study's tables: one row per model (:func:`judge_pair`), and how often each way of judging
catches a shortcut model or flags a clean control (:func:`detection_rates`).

A model is judged four ways, by one :class:`~cam_audit.report.ShortcutPolicy`:

- **attribution**: the findings of the discovered report (no spurious annotations) that rest on
  attribution, i.e. the focus rules, which need only the object regions;
- **discovery**: its findings that rest on discovery (a confirmed cue, or ``bg_gap`` above
  ``max_bg_gap``);
- **both**: either of the two, which is what ``audit(..., discover=True)`` tells a user who marked no cue;
- **annotated**: any finding of the annotated report (the tags marked as spurious regions), the shortcut
  study's verdict, for reference.

An ``"inconclusive"`` finding (a model at chance, degenerate maps) names no cue and is counted apart.
A model is a **shortcut model** by its behaviour (see :mod:`~cam_audit.synthetic.study.tables`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from cam_audit.report import AuditReport, Finding, ShortcutPolicy
from cam_audit.synthetic.study.tables import RULE_LABELS, evidence_kind

#: The ways of judging a model, in print order, and the column each is counted from.
MODES = ("attribution", "discovery", "both", "annotated", "spray")
#: Columns of the per-model table, in print order.
PAIR_COLUMNS = (
    "condition",
    "pool",
    "seed",
    "acc_cue",
    "acc_removed",
    "acc_moved",
    "shortcut",
    "bg_gap",
    "n_confirmed",
    "n_on_cue",
    *MODES,
    "fired",
)
#: The evidence kind of discovery's findings (:func:`~cam_audit.synthetic.study.evidence_kind`).
DISCOVERY_EVIDENCE = "discovery"
#: Short names of discovery's rules in the ``fired`` column (the others': ``RULE_LABELS``).
_DISCOVERY_RULE_LABELS = {"max_bg_gap": "bg_gap", "min_cue_excess": "cue"}


def confirmed_cues(report: AuditReport) -> pd.DataFrame:
    """The rows of ``report.cues`` that its policy confirmed (no rows when discovery found none)."""
    return report.cues[report.cues["confirmed"]]


def overlaps(box: Sequence[float], other: Sequence[float]) -> bool:
    """Whether two xyxy boxes share some area (IoU > 0).

    >>> overlaps([0, 0, 4, 4], [3, 3, 6, 6]), overlaps([0, 0, 4, 4], [4, 0, 8, 4])
    (True, False)
    """
    return min(box[2], other[2]) > max(box[0], other[0]) and min(box[3], other[3]) > max(box[1], other[1])


def cues_on_true_cue(cues: pd.DataFrame, true_cues: Mapping[str, Sequence[Sequence[float]]]) -> int:
    """How many of ``cues`` (rows with ``class`` and the xyxy box ``x_min .. y_max``) overlap a true tag box
    of their class (``true_cues``: class name -> boxes, as :func:`~cam_audit.synthetic.study.true_cue_boxes`
    gives them)."""
    on = 0
    for _, cue in cues.iterrows():
        box = [float(cue[k]) for k in ("x_min", "y_min", "x_max", "y_max")]
        on += any(overlaps(box, true) for true in true_cues.get(str(cue["class"]), []))
    return on


def judge_pair(
    annotated: AuditReport, discovered: AuditReport, policy: ShortcutPolicy, shortcut_drop: float
) -> dict[str, Any]:
    """One row of the per-model table: behaviour, the four ways of judging, where the confirmed cues lie,
    SpRAy's call, and the cost.

    Args:
        annotated: the report with the tags marked as spurious regions.
        discovered: the report without spurious annotations, audited with ``discover=True``.
        policy: the policy both are judged by.
        shortcut_drop: accuracy drop (a fraction) that makes a model a shortcut model.
    """
    meta = discovered.meta
    discovered = discovered.with_verdict(policy)  # the policy's cue rules decide which cues are confirmed
    found = discovered.verdict.findings
    marked = annotated.with_verdict(policy).verdict.findings
    kinds = {evidence_kind(f) for f in found}
    confirmed = confirmed_cues(discovered)
    acc_cue, acc_removed, acc_moved = meta["acc_cue"], meta["acc_removed"], meta["acc_moved"]
    spray = meta.get("spray")
    true_cues = meta.get("true_cues") or {}
    return {
        "condition": meta["condition"],
        "order": meta.get("order", 0),
        "clean": meta["clean"],
        "cue": meta["cue"],
        "pool": meta["pool"],
        "seed": meta["seed"],
        "held_out": meta["held_out"],
        "acc_cue": acc_cue,
        "acc_removed": acc_removed,
        "acc_moved": acc_moved,
        "shortcut": max(acc_cue - acc_removed, acc_cue - acc_moved) > shortcut_drop,
        "bg_gap": discovered.summary.get("bg_gap", math.nan),
        "n_spurious": annotated.summary["n_spurious"],
        "n_confirmed": len(confirmed),
        "n_on_cue": cues_on_true_cue(confirmed, true_cues) if true_cues else math.nan,
        "attribution": "attribution" in kinds,
        "discovery": DISCOVERY_EVIDENCE in kinds,
        "both": bool(kinds & {"attribution", DISCOVERY_EVIDENCE}),
        "annotated": any(evidence_kind(f) != "no evidence" for f in marked),
        "spray": spray["detected"] if spray else None,
        "spray_flags": ",".join(spray["flags"]) if spray else "",
        "inconclusive": any(evidence_kind(f) == "no evidence" for f in found + marked),
        "fired": _fired(found),
        "fired_annotated": _fired(marked),
        "discovery_seconds": discovered.meta.get("discovery_seconds", math.nan),
        "attribution_seconds": discovered.meta.get("attribution_seconds", math.nan),
        "counterfactual_seconds": annotated.meta.get("counterfactual_seconds", math.nan),
    }


def _fired(findings: Iterable[Finding]) -> str:
    labels = {**RULE_LABELS, **_DISCOVERY_RULE_LABELS}
    return ",".join(sorted({labels.get(f.rule, f.rule) for f in findings})) or "-"


def pair_table(
    pairs: Iterable[tuple[AuditReport, AuditReport]], policy: ShortcutPolicy, shortcut_drop: float
) -> pd.DataFrame:
    """The per-model table: one :func:`judge_pair` row per ``(annotated, discovered)`` pair."""
    return pd.DataFrame([judge_pair(a, d, policy, shortcut_drop) for a, d in pairs])


def detection_rates(models: pd.DataFrame) -> pd.DataFrame:
    """For each way of judging: flagged / models, per condition and overall, for the shortcut models
    (the detection rate), the clean controls that are no shortcut models (the false-alarm rate) and the
    cue-trained models that learned no shortcut."""
    shortcut = models[models["shortcut"]]
    clean = models[models["clean"] & ~models["shortcut"]]
    rows: dict[str, dict[str, object]] = {}
    for name, group in _by_condition(shortcut):
        rows[f"{name}: shortcut"] = _counts(group)
    rows["ALL SHORTCUT MODELS (detection rate)"] = _counts(shortcut)
    for name, group in _by_condition(clean):
        rows[f"{name}: clean"] = _counts(group)
    rows["ALL CLEAN CONTROLS (false-alarm rate)"] = _counts(clean)
    rows["cue-trained, no shortcut"] = _counts(models[~models["clean"] & ~models["shortcut"]])
    return pd.DataFrame(rows).T


def _by_condition(models: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``models`` grouped by condition, in the study's order of conditions."""
    groups = models.groupby("condition", sort=False)
    return sorted(((str(name), group) for name, group in groups), key=lambda item: item[1]["order"].min())


def _counts(group: pd.DataFrame) -> dict[str, object]:
    row: dict[str, object] = {"n": len(group)}
    for mode in MODES:
        known = group[mode].dropna()
        row[mode] = f"{int(known.astype(bool).sum())}/{len(known)}" if len(known) else "-"
    return row


def missed_without_annotations(models: pd.DataFrame) -> pd.DataFrame:
    """The shortcut models the annotated verdict catches and neither attribution nor discovery does."""
    missed = models[models["shortcut"] & models["annotated"] & ~models["both"]]
    return missed[["condition", "pool", "seed", "held_out", "fired_annotated", "fired"]]


def cue_locations(models: pd.DataFrame) -> pd.DataFrame:
    """Per tag condition: shortcut models with a confirmed cue, with one on the true tag, and confirmed
    cues that lie elsewhere; per background condition and for the clean controls: ``bg_gap``."""
    rows: dict[str, dict[str, object]] = {}
    shortcut = models[models["shortcut"]]
    for name, group in _by_condition(shortcut):
        tag = group["cue"].isin(["corner", "presence"]).all()
        confirmed = group[group["n_confirmed"] > 0]
        rows[name] = {
            "shortcut models": len(group),
            "with a confirmed cue": len(confirmed),
            "cue on the true tag": int((confirmed["n_on_cue"] > 0).sum()) if tag else "-",
            "confirmed cues off the tag": int((confirmed["n_confirmed"] - confirmed["n_on_cue"]).sum())
            if tag
            else "-",
            **_gap_range(group),
        }
    clean = models[models["clean"] & ~models["shortcut"]]
    rows["clean controls"] = {
        "shortcut models": 0,
        "with a confirmed cue": int((clean["n_confirmed"] > 0).sum()),
        "cue on the true tag": "-",
        "confirmed cues off the tag": int(clean["n_confirmed"].sum()),
        **_gap_range(clean),
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def _gap_range(group: pd.DataFrame) -> dict[str, float]:
    gaps = group["bg_gap"].astype(float)
    return {"bg_gap min": gaps.min(), "bg_gap median": gaps.median(), "bg_gap max": gaps.max()}


def cost(models: pd.DataFrame) -> dict[str, float]:
    """Median seconds per model of discovery, attribution and the annotated counterfactual tests, and the
    median of each model's ratio of discovery to counterfactual seconds, over the models whose annotated
    probe marks a tag (a background condition's has nothing to test)."""
    tested = models[models["n_spurious"] > 0]
    ratio = tested["discovery_seconds"] / tested["counterfactual_seconds"]
    return {
        "discovery_seconds": float(models["discovery_seconds"].median()),
        "attribution_seconds": float(models["attribution_seconds"].median()),
        "counterfactual_seconds": float(tested["counterfactual_seconds"].median()),
        "discovery / counterfactual": float(ratio.median()),
    }


__all__ = [
    "MODES",
    "PAIR_COLUMNS",
    "confirmed_cues",
    "cost",
    "cue_locations",
    "cues_on_true_cue",
    "detection_rates",
    "judge_pair",
    "missed_without_annotations",
    "overlaps",
    "pair_table",
]
