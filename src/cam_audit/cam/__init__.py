"""Grad-CAM++ and Grad-CAM maps: the engine, the weight formulas and target-layer resolution.

>>> from cam_audit.cam import CamEngine, CamResult
"""

from cam_audit.cam.calling import Forward
from cam_audit.cam.engine import CamEngine, CamMethod, CamResult
from cam_audit.cam.layers import resolve_target_layer, spatial_layers
from cam_audit.cam.reshape import vit_reshape_transform
from cam_audit.cam.tasks import Task
from cam_audit.cam.weights import gradcam_plus_plus_weights, gradcam_weights, weighted_map

__all__ = [
    "CamEngine",
    "CamMethod",
    "CamResult",
    "Forward",
    "Task",
    "gradcam_plus_plus_weights",
    "gradcam_weights",
    "resolve_target_layer",
    "spatial_layers",
    "vit_reshape_transform",
    "weighted_map",
]
