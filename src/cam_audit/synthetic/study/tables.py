"""The study's tables: one row per model (:func:`judge`), and the policy's detection and false-alarm rates
(:func:`rates`) and margins (:func:`margins`) over them.

A model is a **shortcut model** by its behaviour, not by how it was trained: its accuracy falls by more
than ``shortcut_drop`` when the cue is removed or moved. A finding's kind of evidence comes from the
score registry (:mod:`cam_audit.keys`), except for the fall from the run's best ``focus_lift``, which
rests on the history of earlier audits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from cam_audit.keys import score
from cam_audit.report import AuditReport, Finding, ShortcutPolicy
from cam_audit.report.policy import THRESHOLD_KEYS

#: Columns of the per-model table, in print order.
MODEL_COLUMNS = (
    "condition",
    "pool",
    "seed",
    "acc_cue",
    "acc_removed",
    "acc_moved",
    "shortcut",
    *THRESHOLD_KEYS.values(),  # the probe-wide value of each score a threshold rule reads
    "min_class_focus_lift",
    "max_class_spurious_lift",
    "max_class_flip_rate",
    "max_class_paste_rate",
    "focus_drop",
    "flagged",
    "fired",
)
#: Short name of each policy rule in the ``fired`` column.
RULE_LABELS = {
    "min_focus_lift": "focus",
    "max_spurious_lift": "spurious",
    "max_flip_rate": "flip",
    "max_paste_rate": "paste",
    "max_focus_drop": "drop",
    "inconclusive": "inconclusive",
}
#: Kinds of evidence a finding can rest on, as the rates table counts them.
EVIDENCE_KINDS = ("attribution", "counterfactual", "history")
#: For each rule of the margins table: its per-class column, its probe-wide column, and whether lower
#: values are the worse ones.
_MARGIN_COLUMNS = (
    ("min_focus_lift", "min_class_focus_lift", "focus_lift", True),
    ("max_spurious_lift", "max_class_spurious_lift", "spurious_lift", False),
    ("max_flip_rate", "max_class_flip_rate", "cf_flip_rate", False),
    ("max_paste_rate", "max_class_paste_rate", "cf_paste_rate", False),
    ("max_focus_drop", "focus_drop", "focus_drop", False),
)


def evidence_kind(finding: Finding) -> str:
    """What a finding rests on: ``"history"`` for a fall from the run's best ``focus_lift`` (it needs the
    earlier audits), ``"discovery"`` for a confirmed cue (it reads the cue table, not a score), else the
    evidence kind of the score its rule reads (:mod:`cam_audit.keys`).

    >>> paste = Finding("max_paste_rate", "cf_paste_rate", 0.8, 0.2, "probe", "pasted tags decide")
    >>> drop = Finding("max_focus_drop", "focus_lift", 0.4, 0.3, "probe", "focus_lift fell 40%")
    >>> cue = Finding("min_cue_excess", "cue", 0.6, 0.3, "disc", "class 'disc' relies on a cue")
    >>> evidence_kind(paste), evidence_kind(drop), evidence_kind(cue)
    ('counterfactual', 'history', 'discovery')
    """
    if finding.rule == "max_focus_drop":
        return "history"
    if finding.rule == "inconclusive":
        return "no evidence"
    if finding.rule == "min_cue_excess":
        return "discovery"
    return score(finding.metric).evidence


def worst(report: AuditReport, key: str, policy: ShortcutPolicy, lowest: bool = False) -> float:
    """The class value of ``key`` the per-class rules would judge worst (NaN when no class is judged)."""
    table = report.per_class
    judged = table[table["n_scored"] >= policy.min_class_samples][key].dropna()
    if judged.empty:
        return math.nan
    return float(judged.min() if lowest else judged.max())


def judge(report: AuditReport, policy: ShortcutPolicy, shortcut_drop: float) -> dict[str, object]:
    """One row of the per-model table: behaviour, audit numbers, and ``policy``'s verdict on them.

    Args:
        report: a report of :func:`measure`.
        policy: the policy to judge it by.
        shortcut_drop: accuracy drop (a fraction) that makes a model a shortcut model.
    """
    meta = report.meta
    best = meta["best_focus_lift"]
    report = report.with_verdict(policy, best_focus_lift=best)
    findings = report.verdict.findings
    fired = sorted({f.rule for f in findings})
    summary = report.summary
    focus_lift = summary["focus_lift"]
    acc_cue, acc_removed, acc_moved = meta["acc_cue"], meta["acc_removed"], meta["acc_moved"]
    return {
        "condition": meta["condition"],
        "clean": meta["clean"],
        "pool": meta["pool"],
        "seed": meta["seed"],
        "acc_cue": acc_cue,
        "acc_removed": acc_removed,
        "acc_moved": acc_moved,
        "shortcut": max(acc_cue - acc_removed, acc_cue - acc_moved) > shortcut_drop,
        **{key: summary[key] for key in THRESHOLD_KEYS.values()},
        "min_class_focus_lift": worst(report, "focus_lift", policy, lowest=True),
        "max_class_spurious_lift": worst(report, "spurious_lift", policy),
        "max_class_flip_rate": worst(report, "cf_flip_rate", policy),
        "max_class_paste_rate": worst(report, "cf_paste_rate", policy),
        "focus_drop": 1 - focus_lift / best if best and not math.isnan(best) else math.nan,
        "flagged": not report.verdict.passed,
        "fired": ",".join(RULE_LABELS[rule] for rule in fired) or "-",
        "evidence": sorted({evidence_kind(f) for f in findings}),
        "flag_scopes": sorted({f.scope for f in findings}),
        "attribution_seconds": meta["attribution_seconds"],
        "counterfactual_seconds": meta["counterfactual_seconds"],
    }


def model_table(reports: Iterable[AuditReport], policy: ShortcutPolicy, shortcut_drop: float) -> pd.DataFrame:
    """The per-model table: one :func:`judge` row per report."""
    return pd.DataFrame([judge(report, policy, shortcut_drop) for report in reports])


def rates(models: pd.DataFrame) -> pd.DataFrame:
    """Detection rate (shortcut models) and false-alarm rate (the others) of the policy, by evidence kind."""
    groups = {
        "shortcut models (detection rate)": models[models["shortcut"]],
        "non-shortcut models (false-alarm rate)": models[~models["shortcut"]],
        "  of which clean controls": models[~models["shortcut"] & models["clean"]],
        "  of which cue-trained": models[~models["shortcut"] & ~models["clean"]],
    }
    rows = {}
    for name, group in groups.items():
        row: dict[str, object] = {"n": len(group)}
        for kind in EVIDENCE_KINDS:
            row[kind] = _share(group["evidence"].map(lambda fired, kind=kind: kind in fired))
        row["any (verdict)"] = _share(group["flagged"])
        rows[name] = row
    return pd.DataFrame(rows).T


def margins(models: pd.DataFrame, policy: ShortcutPolicy) -> pd.DataFrame:
    """For each rule: the clean controls' worst value, the shortcut models' values, the default threshold.

    A threshold is safe when it lies beyond every clean control's worst value; it catches the shortcut
    models whose value lies beyond it.
    """
    clean = models[models["clean"] & ~models["shortcut"]]
    shortcut = models[models["shortcut"]]
    rows = {}
    for rule, per_class, probe_wide, lowest in _MARGIN_COLUMNS:
        # a model's worst value over the probe and every judged class: what the policy sees
        both = pd.concat([models[per_class], models[probe_wide]], axis=1)
        value = both.min(axis=1) if lowest else both.max(axis=1)
        clean_worst = value[clean.index].min() if lowest else value[clean.index].max()
        threshold = getattr(policy, rule)
        caught = (value[shortcut.index] < threshold) if lowest else (value[shortcut.index] > threshold)
        rows[rule] = {
            "default": threshold,
            "clean worst": clean_worst,
            "shortcut min": value[shortcut.index].min(),
            "shortcut median": value[shortcut.index].median(),
            "shortcut max": value[shortcut.index].max(),
            "shortcut caught": f"{int(caught.sum())}/{len(shortcut)}",
        }
    return pd.DataFrame(rows).T


def _share(flags: pd.Series) -> str:
    return f"{int(flags.sum())}/{len(flags)}" if len(flags) else "-"


__all__ = [
    "EVIDENCE_KINDS",
    "MODEL_COLUMNS",
    "RULE_LABELS",
    "evidence_kind",
    "judge",
    "margins",
    "model_table",
    "rates",
    "worst",
]
