"""Channel weights of Grad-CAM and Grad-CAM++, and the weighted map they produce.

Pure functions of the target layer's activations ``A`` and the gradients ``g = d score_c / dA``; the
:class:`~cam_audit.cam.CamEngine` only collects these two tensors and calls them. They compute in the
dtype they are given; the engine passes float32.
"""

from __future__ import annotations

import torch

from cam_audit.errors import CamAuditError


def _check_pair(activations: torch.Tensor, gradients: torch.Tensor) -> None:
    if activations.dim() != 4:
        raise CamAuditError(
            f"activations must be a 4-D tensor [N, K, h, w], got shape {tuple(activations.shape)}; "
            "use a reshape_transform to bring token outputs into that layout"
        )
    if gradients.shape != activations.shape:
        raise CamAuditError(
            f"gradients must have the shape of activations {tuple(activations.shape)}, "
            f"got {tuple(gradients.shape)}"
        )


def gradcam_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM channel weights: the spatial mean of the gradient.

    ``w_k = (1 / hw) * sum_ij g_kij``  (Selvaraju et al. 2017, eq. 1).

    Args:
        activations: float tensor [N, K, h, w], the target layer's output ``A`` (only its shape is used).
        gradients: float tensor [N, K, h, w], ``d score_c / dA``.

    Returns:
        float tensor [N, K].

    Example:
        >>> g = torch.tensor([[[[1.0, -1.0], [2.0, 2.0]]]])
        >>> gradcam_weights(torch.ones_like(g), g)
        tensor([[1.]])
    """
    _check_pair(activations, gradients)
    return gradients.mean(dim=(2, 3))


def gradcam_plus_plus_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights (Chattopadhay et al. 2018, eq. 19).

    ``alpha_kij = g_kij^2 / (2 g_kij^2 + (sum_ab A_kab) g_kij^3)``, set to 0 where the denominator is 0
    (no epsilon, never NaN or inf), and ``w_k = sum_ij alpha_kij * relu(g_kij)``.

    Computed as ``w_k = sum_ij relu(g_kij) / (2 + (sum_ab A_kab) relu(g_kij))`` over the positions
    where that denominator is not 0: where ``g > 0`` the factor ``g^2`` cancels, where ``g <= 0`` the
    term is 0 either way. The same number in half the passes over ``[N, K, h, w]``, and no ``g^3``
    to underflow.

    Args:
        activations: float tensor [N, K, h, w], the target layer's output ``A``.
        gradients: float tensor [N, K, h, w], ``g = d score_c / dA``.

    Returns:
        float tensor [N, K].

    Example:
        >>> a = torch.ones(1, 1, 2, 2)                       # sum_ab A = 4
        >>> g = torch.tensor([[[[1.0, 0.0], [-1.0, 0.5]]]])
        >>> gradcam_plus_plus_weights(a, g)                  # (1/6) * 1 + (0.25/1) * 0.5
        tensor([[0.2917]])
        >>> gradcam_plus_plus_weights(-a, torch.full((1, 1, 2, 2), 0.5))   # 2 g^2 + (-4) g^3 = 0
        tensor([[0.]])
    """
    _check_pair(activations, gradients)
    positive = gradients.clamp(min=0)
    activation_sum = activations.sum(dim=(2, 3), keepdim=True)
    denominator = torch.mul(positive, activation_sum).add_(2)  # 2 where g <= 0: only 2 + S g with g > 0 is 0
    if bool((activation_sum >= 0).all()):  # then 2 + S g >= 2 everywhere (always so after a ReLU)
        return torch.div(positive, denominator, out=denominator).sum(dim=(2, 3))
    return torch.where(denominator != 0, positive / denominator, 0.0).sum(dim=(2, 3))


def weighted_map(activations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The class activation map ``relu(sum_k w_k A_k)`` at layer resolution.

    Args:
        activations: float tensor [N, K, h, w].
        weights: float tensor [N, K], e.g. from :func:`gradcam_plus_plus_weights`.

    Returns:
        float tensor [N, h, w], >= 0, not normalised.

    Example:
        >>> a = torch.tensor([[[[1.0, 2.0]], [[3.0, -9.0]]]])   # [1, 2, 1, 2]
        >>> weighted_map(a, torch.tensor([[1.0, 0.5]]))
        tensor([[[2.5000, 0.0000]]])
    """
    if activations.dim() != 4 or weights.shape != activations.shape[:2]:
        raise CamAuditError(
            f"weighted_map needs activations [N, K, h, w] and weights [N, K]; got "
            f"{tuple(activations.shape)} and {tuple(weights.shape)}"
        )
    return torch.einsum("nk,nkhw->nhw", weights, activations).clamp(min=0)
