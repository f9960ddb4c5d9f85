"""The Lightning front end: the :class:`CamAudit` callback and the scene model's Lightning wrappers.

This package and :mod:`cam_audit.cli` are the only places that import Lightning.
"""

from cam_audit.errors import ShortcutDetected, ShortcutWarning
from cam_audit.lightning.callback import CamAudit
from cam_audit.pipeline import rank_indices

__all__ = ["CamAudit", "ShortcutDetected", "ShortcutWarning", "rank_indices"]
