"""Reports for the promotion tests: a real audit, and copies of it with chosen scores changed."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch

from cam_audit import audit, keys
from cam_audit.report import AuditReport, ShortcutPolicy

#: A policy the untrained scene model passes (its focus_lift is about 1.3; its accuracy is at chance, so
#: the chance test is off), so a comparison of two copies of its report is decided by the comparison alone.
LENIENT = ShortcutPolicy(min_focus_lift=1.0, min_accuracy_p=None)


def audited(probe, seed: int = 0, policy: ShortcutPolicy = LENIENT) -> AuditReport:
    """The real audit of a freshly initialised scene model (width 8) on ``probe``."""
    from cam_audit.lightning.scenes import SceneClassifier

    torch.manual_seed(seed)
    model = SceneClassifier(num_classes=3, width=8).eval()
    return audit(model, probe, target_layer="features", batch_size=8, policy=policy)


def changed(
    report: AuditReport,
    factor: float | Callable[[pd.DataFrame], pd.Series],
    scores: Sequence[str] = ("focus", "focus_lift"),
    where: Callable[[pd.DataFrame], pd.Series] | None = None,
) -> AuditReport:
    """A copy of ``report`` whose per-sample ``scores`` are multiplied by ``factor`` (a number, or a
    function of the samples giving one factor per row) on the rows ``where`` selects (default: all);
    summary, per-class table and verdict are recomputed from the changed rows, as an audit would."""
    samples = report.samples.copy()
    rows = where(samples) if where is not None else pd.Series(True, index=samples.index)
    scale = factor(samples) if callable(factor) else pd.Series(factor, index=samples.index)
    summary, per_class = dict(report.summary), report.per_class.copy()
    for name in scores:
        column = keys.score(name).column
        samples.loc[rows, column] = (samples.loc[rows, column] * scale[rows]).astype(samples[column].dtype)
        summary[name] = float(samples[column].mean())
        per_class[name] = samples.groupby("class")[column].mean().reindex(per_class.index)
    verdict = report.policy.evaluate(summary, per_class)
    return AuditReport(summary, samples, per_class, verdict, report.policy, dict(report.meta))


def with_class_value(report: AuditReport, name: str, scope: str, value: float) -> AuditReport:
    """A copy of ``report`` whose per-class ``name`` of class ``scope`` is ``value``, judged again."""
    per_class = report.per_class.copy()
    per_class.loc[scope, name] = value
    verdict = report.policy.evaluate(report.summary, per_class)
    return AuditReport(dict(report.summary), report.samples.copy(), per_class, verdict, report.policy,
                       dict(report.meta))
