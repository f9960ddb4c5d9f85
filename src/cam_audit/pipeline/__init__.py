"""One audit pipeline for :func:`audit` and the Lightning callback: score, counterfactual, finish."""

from cam_audit.pipeline.scoring import (
    SCORE_KEYS,
    AuditScores,
    audit,
    build_report,
    class_names,
    model_fingerprint,
    score_batch,
    score_pastes,
    score_probe,
    with_pastes,
)

__all__ = [
    "SCORE_KEYS",
    "AuditScores",
    "audit",
    "build_report",
    "class_names",
    "model_fingerprint",
    "score_batch",
    "score_pastes",
    "score_probe",
    "with_pastes",
]
