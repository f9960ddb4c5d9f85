"""cam_audit: is my image classifier looking at the right thing, and is it getting better at it?

Grad-CAM++ maps on a probe set with ground-truth regions, scored for focus on the object and on
spurious cues, logged from a Lightning callback, confirmed by counterfactuals, and gated in CI.

Names are imported on first use, so ``cam-audit gate`` (which needs only :mod:`cam_audit.report`)
runs without loading torch or Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AuditReport": "cam_audit.report",
    "ShortcutPolicy": "cam_audit.report",
    "Verdict": "cam_audit.report",
    "CamAuditError": "cam_audit.errors",
    "CamEngine": "cam_audit.cam",
    "CamResult": "cam_audit.cam",
    "ProbeSet": "cam_audit.probe",
    "audit": "cam_audit.pipeline",
    "CamAudit": "cam_audit.lightning",
}

__all__ = [
    "AuditReport",
    "CamAudit",
    "CamAuditError",
    "CamEngine",
    "CamResult",
    "ProbeSet",
    "ShortcutPolicy",
    "Verdict",
    "__version__",
    "audit",
]

if TYPE_CHECKING:
    from cam_audit.cam import CamEngine, CamResult
    from cam_audit.errors import CamAuditError
    from cam_audit.lightning import CamAudit
    from cam_audit.pipeline import audit
    from cam_audit.probe import ProbeSet
    from cam_audit.report import AuditReport, ShortcutPolicy, Verdict


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cam_audit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
