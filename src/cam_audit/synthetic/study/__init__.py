"""The shortcut study: how often does a :class:`~cam_audit.report.ShortcutPolicy` catch a shortcut model,
and how often does it flag a model that has none?

:mod:`~cam_audit.synthetic.study.training` trains and audits one small scene model per condition, pool
and seed; :mod:`~cam_audit.synthetic.study.tables` judges each report and summarises the policy's
detection rate, false-alarm rate and margins. ``scripts/shortcut_study.py`` runs and prints it.
"""

from cam_audit.synthetic.study.tables import (
    EVIDENCE_KINDS,
    MODEL_COLUMNS,
    RULE_LABELS,
    evidence_kind,
    judge,
    margins,
    model_table,
    rates,
    worst,
)
from cam_audit.synthetic.study.training import (
    TARGET_LAYER,
    Auditor,
    Condition,
    StudySettings,
    conditions,
    measure,
    report_file,
    saved_reports,
    train_study,
)

__all__ = [
    "EVIDENCE_KINDS",
    "MODEL_COLUMNS",
    "RULE_LABELS",
    "TARGET_LAYER",
    "Auditor",
    "Condition",
    "StudySettings",
    "conditions",
    "evidence_kind",
    "judge",
    "margins",
    "measure",
    "model_table",
    "rates",
    "report_file",
    "saved_reports",
    "train_study",
    "worst",
]
