"""The shortcut study: how often does a :class:`~cam_audit.report.ShortcutPolicy` catch a shortcut model,
and how often does it flag a model that has none?

:mod:`~cam_audit.synthetic.study.training` trains and audits one small scene model per condition, pool
and seed; :mod:`~cam_audit.synthetic.study.tables` judges each report and summarises the policy's
detection rate, false-alarm rate and margins. ``scripts/shortcut_study.py`` runs and prints it.

The discovery study asks the same of a probe with no cue annotated: :mod:`~.discovery` trains the same
models plus two with a background cue and audits each with and without the annotations, and
:mod:`~.discovery_tables` judges them by attribution, discovery, both, and the annotated verdict, beside
ShortKit-ML's SpRAy (:mod:`~.spray`). ``scripts/discovery_study.py`` runs and prints it.
"""

from cam_audit.synthetic.study.arguments import add_study_arguments, settings_from
from cam_audit.synthetic.study.discovery import (
    BACKGROUND_CONDITIONS,
    REPORT_KINDS,
    DiscoveryAuditor,
    discovery_conditions,
    measure_discovery,
    save_pair,
    saved_pairs,
    train_discovery_study,
    true_cue_boxes,
)
from cam_audit.synthetic.study.discovery_tables import (
    MODES,
    PAIR_COLUMNS,
    confirmed_cues,
    cost,
    cue_locations,
    cues_on_true_cue,
    detection_rates,
    judge_pair,
    missed_without_annotations,
    overlaps,
    pair_table,
)
from cam_audit.synthetic.study.spray import INSTALL_HINT, probe_maps, spray_available, spray_judgement
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
    behaviour,
    conditions,
    measure,
    report_file,
    saved_reports,
    train_model,
    train_study,
)

__all__ = [
    "add_study_arguments",
    "settings_from",
    "BACKGROUND_CONDITIONS",
    "EVIDENCE_KINDS",
    "INSTALL_HINT",
    "MODEL_COLUMNS",
    "MODES",
    "PAIR_COLUMNS",
    "REPORT_KINDS",
    "RULE_LABELS",
    "TARGET_LAYER",
    "Auditor",
    "Condition",
    "DiscoveryAuditor",
    "StudySettings",
    "behaviour",
    "conditions",
    "confirmed_cues",
    "cost",
    "cue_locations",
    "cues_on_true_cue",
    "detection_rates",
    "discovery_conditions",
    "evidence_kind",
    "judge",
    "judge_pair",
    "margins",
    "measure",
    "measure_discovery",
    "missed_without_annotations",
    "model_table",
    "overlaps",
    "pair_table",
    "probe_maps",
    "rates",
    "report_file",
    "save_pair",
    "saved_pairs",
    "saved_reports",
    "spray_available",
    "spray_judgement",
    "train_discovery_study",
    "train_model",
    "train_study",
    "true_cue_boxes",
    "worst",
]
