"""CamEngine: Grad-CAM++ and Grad-CAM maps for a batch, at about the cost of one no-grad forward.

How the cost stays low: the forward runs with autograd off up to the target layer. A forward hook on
that layer detaches its output into a leaf that requires grad, turns autograd on for the rest of the
forward, and hands a clone of the leaf downstream (so in-place ops such as ``ReLU(inplace=True)`` keep
working). The gradient is then ``torch.autograd.grad(score, leaf)``: the backward runs through the
head only, no graph exists below the layer, and no parameter ``.grad`` is touched.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from cam_audit.cam.isolation import eval_mode_untouched, unwrap_model
from cam_audit.cam.layers import (
    ReshapeTransform,
    check_layer_output,
    check_spatial,
    never_runs_error,
    resolve_target_layer,
    runs_twice_error,
)
from cam_audit.cam.weights import gradcam_plus_plus_weights, gradcam_weights, weighted_map
from cam_audit.errors import CamAuditError, NonFiniteModelError, TargetLayerError

CamMethod = Literal["gradcam++", "gradcam"]
"""The map methods: Grad-CAM++ (Chattopadhay et al. 2018, eq. 19) and Grad-CAM (Selvaraju et al. 2017)."""

Targets = Literal["predicted"] | torch.Tensor | Sequence[int] | None

_WEIGHTS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradcam++": gradcam_plus_plus_weights,
    "gradcam": gradcam_weights,
}


@dataclass(frozen=True)
class CamResult:
    """Maps for one batch, with the logits and the classes they explain.

    Attributes:
        maps: float32 tensor [N, H, W], >= 0, at input resolution, raw (not min-max normalised).
        logits: tensor [N, num_classes], detached, in the model's output dtype.
        targets: long tensor [N], the class each map explains.
    """

    maps: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor


class _LayerCapture:
    """The forward hook that turns the target layer's output into the gradient leaf."""

    def __init__(self, name: str, model: nn.Module, reshape_transform: ReshapeTransform | None) -> None:
        self.name = name
        self.model = model
        self.reshape_transform = reshape_transform
        self.leaf: torch.Tensor | None = None
        self.activations: torch.Tensor | None = None

    def __call__(self, _module: nn.Module, _args: object, output: object) -> torch.Tensor:
        if self.leaf is not None:
            raise runs_twice_error(self.model, self.name)
        self.activations = check_layer_output(self.name, output, self.reshape_transform).detach()
        self.leaf = output.detach().requires_grad_()
        torch.set_grad_enabled(True)  # the caller's grad mode comes back when the surrounding no_grad exits
        return self.leaf.clone()


class CamEngine:
    """Explain a classifier's logits with Grad-CAM++ (or Grad-CAM) maps on a target layer.

    For the target class ``c`` with logit ``score_c`` and the layer's activations ``A`` [N, K, h, w],
    ``g = d score_c / dA``; Grad-CAM++ weights are
    ``alpha = g^2 / (2 g^2 + sum_ij(A) g^3)`` (0 where the denominator is 0),
    ``w_k = sum_ij alpha * relu(g)``, Grad-CAM weights ``w_k = mean_ij g``, and the map is
    ``relu(sum_k w_k A_k)`` upsampled bilinearly (``align_corners=False``) to the input size.
    ``A`` and ``g`` are cast to float32 first, also when the model runs under autocast.

    A call leaves the model as it found it: each submodule's ``training`` flag, parameter ``.grad``,
    BatchNorm statistics, the random number generators and the hook dictionaries are unchanged, the
    input is not modified, also when the call raises. It works inside ``torch.no_grad()`` and
    ``torch.inference_mode()``. A ``torch.compile`` wrapper is unwrapped: the engine runs the eager
    module, so the caller's compiled graph is never recompiled.

    Args:
        model: a classifier returning logits [N, num_classes].
        target_layer: a dotted name (``"layer4"``, ``"features.28"``), a submodule of ``model``, or
            ``None`` for the last layer with a 4-D spatial output (adaptive pools of the head
            excepted), found by one traced forward on the first call's input.
        method: ``"gradcam++"`` or ``"gradcam"``.
        reshape_transform: turns the layer's output into ``[N, C, h, w]`` for the formula (the layer's
            own output goes downstream unchanged), e.g. :func:`~cam_audit.cam.vit_reshape_transform`.

    Raises:
        TargetLayerError: the layer does not exist; at the first call also when it never runs, runs
            more than once, or has no spatial output.
        CamAuditError: an unknown method.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                     nn.Flatten(), nn.Linear(4, 2))
        >>> engine = CamEngine(net, target_layer="1")
        >>> res = engine(torch.rand(2, 3, 8, 8), targets=[0, 1])
        >>> res.maps.shape, res.maps.dtype, res.targets.tolist()
        (torch.Size([2, 8, 8]), torch.float32, [0, 1])
        >>> bool((res.maps >= 0).all())
        True
    """

    def __init__(
        self,
        model: nn.Module,
        target_layer: str | nn.Module | None = None,
        method: CamMethod = "gradcam++",
        reshape_transform: ReshapeTransform | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise CamAuditError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        _check_methods((method,), "method")
        if reshape_transform is not None and not callable(reshape_transform):
            raise CamAuditError(
                f"reshape_transform must be a callable [layer output] -> [N, C, h, w], got "
                f"{type(reshape_transform).__name__}"
            )
        self.model = unwrap_model(model)
        self.method = method
        self.reshape_transform = reshape_transform
        self._layer: tuple[str, nn.Module] | None = None
        if target_layer is not None:
            self._layer = resolve_target_layer(self.model, target_layer)
        elif reshape_transform is not None:
            resolve_target_layer(self.model, None, reshape_transform=reshape_transform)  # raises, says why

    @property
    def layer_name(self) -> str:
        """Dotted name of the target layer in the (eager) model.

        With ``target_layer=None`` the layer is chosen at the first call; reading the name earlier
        raises :class:`~cam_audit.errors.TargetLayerError`.
        """
        if self._layer is None:
            raise TargetLayerError(
                "target_layer=None is resolved by the first call; call the engine on a batch first, or "
                "find the layer up front with cam_audit.cam.resolve_target_layer(model, None, images)"
            )
        return self._layer[0]

    def __call__(self, images: torch.Tensor, targets: Targets = None) -> CamResult:
        """Maps of ``self.method`` for a batch.

        Args:
            images: float tensor [N, 3, H, W].
            targets: ``None`` or ``"predicted"`` (explain the argmax of the logits), a long tensor [N]
                or a sequence of N ints in ``[0, num_classes)``.

        Returns:
            :class:`CamResult` with ``maps`` float32 [N, H, W], ``logits`` [N, num_classes] and
            ``targets`` long [N].
        """
        maps, logits, explained = self._explain(images, targets, (self.method,))
        return CamResult(maps=maps[self.method], logits=logits, targets=explained)

    def compute(
        self,
        images: torch.Tensor,
        targets: Targets = None,
        methods: Sequence[CamMethod] = ("gradcam++", "gradcam"),
    ) -> dict[str, torch.Tensor]:
        """Maps of several methods from one forward and one backward.

        Args:
            images: float tensor [N, 3, H, W].
            targets: as in :meth:`__call__`.
            methods: method names, each ``"gradcam++"`` or ``"gradcam"``.

        Returns:
            ``{method: float32 tensor [N, H, W]}``.

        Example:
            >>> _ = torch.manual_seed(0)
            >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            ...                     nn.Linear(4, 3))
            >>> maps = CamEngine(net, "0").compute(torch.rand(2, 3, 6, 6))
            >>> sorted(maps), tuple(maps["gradcam"].shape)
            (['gradcam', 'gradcam++'], (2, 6, 6))
        """
        methods = tuple(methods)
        _check_methods(methods, "methods")
        maps, _, _ = self._explain(images, targets, methods)
        return maps

    def _explain(
        self, images: torch.Tensor, targets: Targets, methods: tuple[str, ...]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        _check_images(images)
        requested = _check_targets(targets, images.shape[0])
        with torch.inference_mode(False), eval_mode_untouched(self.model, images.device):
            if images.is_inference():
                images = images.clone()
            if self._layer is None:
                self._layer = resolve_target_layer(self.model, None, images)
            name, module = self._layer
            capture = _LayerCapture(name, self.model, self.reshape_transform)
            handle = module.register_forward_hook(capture)
            try:
                with torch.no_grad():
                    output = self.model(images)
            finally:
                handle.remove()
            if capture.leaf is None:
                raise never_runs_error(self.model, name, images)
            check_spatial(self.model, name, capture.activations, images)
            logits = _check_logits(output, images.shape[0], type(self.model).__name__)
            explained = _resolve_targets(requested, logits)
            score = logits.gather(1, explained[:, None]).sum()
            if not score.requires_grad:
                raise _disconnected_error(name)
            (gradient,) = torch.autograd.grad(score, capture.leaf, allow_unused=True)
            if gradient is None:
                raise _disconnected_error(name)
            if self.reshape_transform is not None:
                gradient = self.reshape_transform(gradient)
            maps = _maps(capture.activations, gradient, methods, images.shape[-2:])
        return maps, logits.detach(), explained


def _maps(
    activations: torch.Tensor, gradient: torch.Tensor, methods: tuple[str, ...], size: torch.Size
) -> dict[str, torch.Tensor]:
    """float32 maps [N, H, W] per method from activations and gradients [N, K, h, w] of any dtype."""
    activations, gradient = activations.float(), gradient.float()
    with torch.autocast(activations.device.type, enabled=False):  # an enclosing autocast would cast down
        return {
            method: _upsample(weighted_map(activations, _WEIGHTS[method](activations, gradient)), size)
            for method in methods
        }


def _upsample(maps: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """[N, h, w] -> [N, H, W], bilinear with ``align_corners=False`` (keeps values >= 0)."""
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def _check_methods(methods: tuple[str, ...], argument: str) -> None:
    known = get_args(CamMethod)
    unknown = [method for method in methods if method not in known]
    if unknown or not methods:
        raise CamAuditError(
            f"{argument}={methods if argument == 'methods' else methods[0]!r} is not supported; "
            f"choose from {', '.join(repr(name) for name in known)}"
        )


def _check_images(images: object) -> None:
    if not isinstance(images, torch.Tensor):
        raise CamAuditError(f"images must be a float tensor [N, 3, H, W], got {type(images).__name__}")
    if images.dim() != 4 or not images.is_floating_point() or images.shape[0] == 0:
        raise CamAuditError(
            f"images must be a non-empty float tensor [N, 3, H, W], got shape {tuple(images.shape)} and "
            f"dtype {images.dtype}; add a batch dimension with images.unsqueeze(0) for a single image"
        )


def _check_targets(targets: Targets, count: int) -> torch.Tensor | None:
    """Validate ``targets`` before any forward runs; ``None`` means explain the prediction."""
    if targets is None:
        return None
    if isinstance(targets, str):
        if targets == "predicted":
            return None
        raise CamAuditError(
            f"targets={targets!r} is not understood; pass None or 'predicted' (explain the predicted "
            "class), a long tensor [N] or a sequence of N class indices"
        )
    if isinstance(targets, torch.Tensor):
        if targets.dtype == torch.bool or targets.is_floating_point() or targets.is_complex():
            raise CamAuditError(
                f"targets must hold integer class indices, got a {targets.dtype} tensor; convert it with "
                "targets.long() if it holds whole numbers"
            )
        if targets.dim() != 1:
            raise CamAuditError(
                f"targets must be a 1-D tensor [N] with one class index per image, got shape "
                f"{tuple(targets.shape)}"
            )
        indices = targets.detach().long()
    elif isinstance(targets, Sequence):
        bad = [v for v in targets if isinstance(v, bool) or not isinstance(v, numbers.Integral)]
        if bad:
            raise CamAuditError(f"targets must be integer class indices, got {bad[0]!r}")
        indices = torch.tensor([int(value) for value in targets], dtype=torch.long)
    else:
        raise CamAuditError(
            f"targets must be None, 'predicted', a long tensor [N] or a sequence of ints, got "
            f"{type(targets).__name__}"
        )
    if indices.shape[0] != count:
        raise CamAuditError(
            f"len(targets) = {indices.shape[0]} but images holds N = {count}; pass one class index per "
            "image (or targets=None to explain the predicted classes)"
        )
    return indices


def _check_logits(output: object, count: int, model_name: str) -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != count:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise CamAuditError(
            f"{model_name} must return logits [N, num_classes] with N={count}, got {shape}; wrap the model "
            "so its forward returns the class logits only"
        )
    finite = torch.isfinite(output.detach()).all(dim=1)
    if not bool(finite.all()):  # maps from a NaN or infinite score are noise
        broken = (~finite).nonzero().flatten().tolist()
        raise NonFiniteModelError(
            f"{model_name} returned non-finite logits (NaN or inf) for {len(broken)} of {count} images of "
            f"the batch (image {broken[0]}: {output[broken[0]].detach().float().cpu().tolist()!s:.80}); "
            "check the weights for NaN, the input normalisation, and float16 overflow"
        )
    return output


def _resolve_targets(requested: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    if requested is None:
        return logits.detach().argmax(dim=1)
    classes = logits.shape[1]
    out_of_range = ((requested < 0) | (requested >= classes)).nonzero().flatten()
    if out_of_range.numel():
        position = int(out_of_range[0])
        raise CamAuditError(
            f"targets[{position}] = {int(requested[position])} is not a class index of a model with "
            f"{classes} outputs; targets must lie in [0, {classes})"
        )
    return requested.to(logits.device).clone()  # a normal tensor even if given in inference mode


def _disconnected_error(name: str) -> TargetLayerError:
    return TargetLayerError(
        f"the logits do not depend on target_layer '{name}' (it feeds no path to the output, or the "
        "model detaches it or runs its head under torch.no_grad); pick a layer on the path to the logits"
    )
