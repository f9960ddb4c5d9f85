"""SpRAy (spectral relevance analysis, Lapuschkin et al. 2019) as an outside anchor for the discovery study.

SpRAy clusters a model's explanation maps and calls a shortcut when a cluster is small and pure in its
label or when attention is highly localised in a label-pure cluster; it needs no annotation, like
``audit(..., discover=True)``, so the study prints its calls next to ours. The implementation is
ShortKit-ML's ``SpRAyDetector`` (package ``shortkit-ml``, module ``shortcut_detect``), an optional
benchmark dependency that cam_audit never imports otherwise. Its releases pin ``torch<2.3``, ``numpy<2``
and ``pandas<3``, which cam_audit's own requirements exclude; its SpRAy needs only numpy, SciPy and
scikit-learn (the ``study`` extra), so install it beside cam_audit without its pins::

    pip install '.[study]' && pip install --no-deps shortkit-ml
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor, nn

from cam_audit.cam import CamEngine
from cam_audit.errors import CamAuditError

INSTALL_HINT = "pip install --no-deps shortkit-ml  (its torch<2.3 pin excludes cam_audit's torch)"


def spray_available() -> bool:
    """Whether ShortKit-ML's ``SpRAyDetector`` can be imported."""
    try:
        _detector_class()
    except CamAuditError:
        return False
    return True


def _detector_class() -> Any:
    try:
        from shortcut_detect import SpRAyDetector
    except ImportError as err:  # the package, or one of its imports, is missing
        raise CamAuditError(f"the SpRAy anchor needs ShortKit-ML: {INSTALL_HINT} ({err})") from err
    return SpRAyDetector


def spray_judgement(maps: Tensor, labels: Tensor, random_state: int = 0) -> dict[str, Any]:
    """ShortKit-ML's SpRAy verdict on explanation maps, with its defaults (cosine affinity, the number
    of clusters by eigengap, maps resized to 32x32 and scaled to ``[0, 1]``).

    Args:
        maps: float ``[N, H, W]``, one map per probe sample.
        labels: long ``[N]``, each sample's label (for the clusters' label purity).
        random_state: seed of the spectral clustering.

    Returns:
        Plain values for a report's ``meta``: ``detected`` (bool), ``risk`` (``"low"``, ``"moderate"``,
        ``"high"``), ``flags`` (the reasons), ``n_clusters`` and ``max_label_purity``.

    Raises:
        CamAuditError: ShortKit-ML is not installed (the message says how to install it).
    """
    detector = _detector_class()(random_state=random_state)
    detector.fit(maps.detach().cpu().numpy().astype(np.float32), labels=labels.cpu().numpy())
    clever_hans = detector.results_["report"]["clever_hans"]
    metrics = detector.results_["metrics"]
    return {
        "detected": bool(clever_hans["shortcut_detected"]),
        "risk": str(clever_hans["risk_level"]),
        "flags": [str(flag) for flag in clever_hans["flags"]],
        "n_clusters": int(metrics["n_clusters"]),
        "max_label_purity": float(metrics["max_label_purity"] or 0.0),
    }


def probe_maps(model: nn.Module, images: Tensor, labels: Tensor, target_layer: str) -> Tensor:
    """Grad-CAM++ maps ``[N, H, W]`` of ``model`` for each image's label: the maps the audit scores."""
    return CamEngine(model, target_layer)(images, labels).maps


__all__ = ["INSTALL_HINT", "probe_maps", "spray_available", "spray_judgement"]
