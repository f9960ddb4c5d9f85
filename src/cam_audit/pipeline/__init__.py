"""One audit pipeline for :func:`audit` and the Lightning callback: score -> counterfactual -> finish.

:class:`AuditRun` holds the steps; the front ends differ only in the collectives they inject
(:class:`LocalCollectives` for :func:`audit`, the Trainer's processes for the callback).
"""

from cam_audit.pipeline.collectives import Collectives, LocalCollectives, rank_indices
from cam_audit.pipeline.offline import audit
from cam_audit.pipeline.run import AuditRun, versions
from cam_audit.pipeline.scoring import (
    AuditScores,
    model_fingerprint,
    score_batch,
    score_pastes,
    score_probe,
    with_pastes,
)

__all__ = [
    "AuditRun",
    "AuditScores",
    "Collectives",
    "LocalCollectives",
    "audit",
    "model_fingerprint",
    "rank_indices",
    "score_batch",
    "score_pastes",
    "score_probe",
    "versions",
    "with_pastes",
]
