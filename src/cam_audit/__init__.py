"""cam_audit: is my image classifier looking at the right thing, and is it getting better at it?

Grad-CAM++ maps on a probe set with ground-truth regions, scored for focus on the object and on
spurious cues, logged from a Lightning callback, confirmed by counterfactuals, and gated in CI.

Names are imported on first use, so ``cam-audit gate`` (which needs only :mod:`cam_audit.report`)
runs without loading torch or Lightning.
"""

from __future__ import annotations

import importlib
import sys
import types
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
    "audit": "cam_audit.audit",
    "CamAudit": "cam_audit.callback",
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
    from cam_audit.audit import audit
    from cam_audit.callback import CamAudit
    from cam_audit.cam import CamEngine, CamResult
    from cam_audit.errors import CamAuditError
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


class _Package(types.ModuleType):
    """Keeps ``cam_audit.audit`` the function once the submodule of the same name is imported.

    Importing ``cam_audit.audit`` (the module) binds it as the package attribute ``audit``, which would
    hide the function ``audit`` that ``from cam_audit import audit`` promises.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType) and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
