"""CamEngine: Grad-CAM++ and Grad-CAM maps for a batch, at about the cost of one no-grad forward.

How the cost stays low: the forward runs with autograd off up to the target layer. A forward hook on
that layer detaches its output into a leaf that requires grad, turns autograd on for the rest of the
forward, and hands a clone of the leaf downstream (so in-place ops such as ``ReLU(inplace=True)`` keep
working). The gradient is then ``torch.autograd.grad(score, leaf)``: the backward runs through the
head only, no graph exists below the layer, and no parameter ``.grad`` is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import torch
from torch import nn

from cam_audit.cam import tasks
from cam_audit.cam.calling import Forward, call_model
from cam_audit.cam.checks import Targets, check_images, check_logits, check_targets, resolve_targets
from cam_audit.cam.isolation import eager_submodules, eval_mode_untouched, unwrap_model
from cam_audit.cam.layers import (
    ReshapeTransform,
    check_layer_output,
    check_spatial,
    never_runs_error,
    resolve_target_layer,
    runs_twice_error,
)
from cam_audit.cam.resize import resize_bilinear
from cam_audit.cam.tasks import Task
from cam_audit.cam.weights import gradcam_plus_plus_weights, gradcam_weights, weighted_map
from cam_audit.errors import CamAuditError, TargetLayerError, check_choice

CamMethod = Literal["gradcam++", "gradcam"]
"""The map methods: Grad-CAM++ (Chattopadhay et al. 2018, eq. 19) and Grad-CAM (Selvaraju et al. 2017)."""

_WEIGHTS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradcam++": gradcam_plus_plus_weights,
    "gradcam": gradcam_weights,
}


@dataclass(frozen=True)
class CamResult:
    """Maps for one batch, with the logits and the classes they explain.

    Attributes:
        maps: float32 tensor [N, H, W], >= 0, at input resolution, raw (not min-max normalised).
        logits: tensor [N, num_classes] ([N, 1] for a binary model), detached, in the model's output dtype.
        targets: long tensor [N], the class each map explains.
        task: how the logits are read (:mod:`cam_audit.cam.tasks`): ``"multiclass"``, ``"multilabel"``
            or ``"binary"``.
    """

    maps: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor
    task: Task = "multiclass"


class _LayerCapture:
    """The forward hook that turns the target layer's output into the gradient leaf."""

    def __init__(self, name: str, model: nn.Module, reshape_transform: ReshapeTransform | None) -> None:
        self.name = name
        self.model = model
        self.reshape_transform = reshape_transform
        self.leaf: torch.Tensor | None = None
        self.activations: torch.Tensor | None = None
        self.output: object = None  # what the model returned

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The gradient leaf and the activations, once the layer has run."""
        if self.leaf is None or self.activations is None:
            raise RuntimeError(f"target layer '{self.name}' has not run yet")
        return self.leaf, self.activations

    def __call__(self, _module: nn.Module, _args: object, output: object) -> torch.Tensor:
        if self.leaf is not None:
            raise runs_twice_error(self.model, self.name)
        self.activations = check_layer_output(self.name, output, self.reshape_transform).detach()
        self.leaf = cast(torch.Tensor, output).detach().requires_grad_()  # check_layer_output: a tensor
        torch.set_grad_enabled(True)  # the caller's grad mode comes back when the surrounding no_grad exits
        return self.leaf.clone()


class CamEngine:
    """Explain a classifier's logits with Grad-CAM++ (or Grad-CAM) maps on a target layer.

    For the target class ``c`` with score ``score_c`` (its logit; ``+z`` or ``-z`` for the one logit
    ``z`` of a binary model) and the layer's activations ``A`` [N, K, h, w], ``g = d score_c / dA``;
    Grad-CAM++ weights are ``alpha = g^2 / (2 g^2 + sum_ij(A) g^3)`` (0 where the denominator is 0),
    ``w_k = sum_ij alpha * relu(g)``, Grad-CAM weights ``w_k = mean_ij g``, and the map is
    ``relu(sum_k w_k A_k)`` upsampled bilinearly (``align_corners=False``) to the input size.
    ``A`` and ``g`` are cast to float32 first, also when the model runs under autocast or in bfloat16,
    float16 or float64; the images are cast to the dtype of the model's parameters before the forward.

    A call leaves the model as it found it: each submodule's ``training`` flag, parameter ``.grad``,
    BatchNorm statistics, the random number generators and the hook dictionaries are unchanged, the
    input is not modified, also when the call raises. It works inside ``torch.no_grad()`` and
    ``torch.inference_mode()``. ``torch.compile`` wrappers, of the model or of any submodule, are run
    eagerly, so the caller's compiled graphs are never recompiled.

    Args:
        model: a classifier returning logits [N, num_classes], or [N, 1] / [N] for a binary model.
        target_layer: a dotted name (``"layer4"``, ``"features.28"``; aliases and ``_orig_mod.``
            segments are understood), a submodule of ``model``, or ``None`` for the last layer with a
            4-D spatial output (adaptive pools of the head excepted), found by one traced forward on the
            first call's input.
        method: ``"gradcam++"`` or ``"gradcam"``.
        reshape_transform: turns the layer's output into ``[N, C, h, w]`` for the formula (the layer's
            own output goes downstream unchanged), e.g. :func:`~cam_audit.cam.vit_reshape_transform`.
        task: how the logits are read (:mod:`cam_audit.cam.tasks`): ``"multiclass"`` (softmax),
            ``"multilabel"`` (one sigmoid per class) or ``"binary"`` (one logit), or ``None``: binary for
            a model with one output, else multiclass, decided by the first call.
        forward: ``forward(model, images) -> logits`` for a model that takes a dict or extra inputs; the
            hooks stay inside ``model``, so the maps are those of its own layers.
        forward_context: a factory of the context each model call runs in (e.g. a Lightning precision
            plugin's ``forward_context``); the maps are computed outside it.

    Raises:
        TargetLayerError: the layer does not exist; at the first call also when it never runs, runs
            more than once, or has no spatial output.
        CamAuditError: an unknown method or task.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                     nn.Flatten(), nn.Linear(4, 2))
        >>> engine = CamEngine(net, target_layer="1")
        >>> res = engine(torch.rand(2, 3, 8, 8), targets=[0, 1])
        >>> res.maps.shape, res.maps.dtype, res.targets.tolist(), res.task
        (torch.Size([2, 8, 8]), torch.float32, [0, 1], 'multiclass')
        >>> bool((res.maps >= 0).all())
        True
    """

    def __init__(
        self,
        model: nn.Module,
        target_layer: str | nn.Module | None = None,
        method: CamMethod = "gradcam++",
        reshape_transform: ReshapeTransform | None = None,
        *,
        task: Task | None = None,
        forward: Forward | None = None,
        forward_context: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise CamAuditError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        _check_methods((method,), "method")
        tasks.check_task(task)
        for name, value, what in (
            ("reshape_transform", reshape_transform, "a callable [layer output] -> [N, C, h, w]"),
            ("forward", forward, "a callable (model, images) -> logits"),
            ("forward_context", forward_context, "a callable returning a context manager"),
        ):
            if value is not None and not callable(value):
                raise CamAuditError(f"{name} must be {what}, got {type(value).__name__}")
        self.model = unwrap_model(model)
        self.method = method
        self.reshape_transform = reshape_transform
        self.forward = forward
        self.forward_context = forward_context or nullcontext
        self._requested_task = task
        self._task: Task | None = None
        self._layer: tuple[str, nn.Module] | None = None
        #: ``(h, w)`` of the target layer's output at the last call (None before the first): one map cell
        #: covers ``H / h`` by ``W / w`` input pixels.
        self.feature_size: tuple[int, int] | None = None
        #: Set True to keep the target layer's output of the last call in :attr:`last_features`
        #: (float32, detached; discovery describes candidate cues by it). Off by default: nothing is held.
        self.keep_features = False
        self.last_features: torch.Tensor | None = None
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

    @property
    def task(self) -> Task:
        """How the logits are read; with ``task=None`` decided by the first call (reading it earlier
        raises :class:`~cam_audit.errors.CamAuditError`)."""
        if self._task is None:
            if self._requested_task is not None:
                return self._requested_task
            raise CamAuditError(
                "task=None is decided by the model's first logits (binary for one output, else "
                "multiclass); call the engine on a batch first, or pass task= explicitly"
            )
        return self._task

    def __call__(self, images: torch.Tensor, targets: Targets = None) -> CamResult:
        """Maps of ``self.method`` for a batch.

        Args:
            images: float tensor [N, C, H, W] (cast to the model's dtype for the forward).
            targets: ``None`` or ``"predicted"`` (explain the prediction: the argmax of the logits, or
                ``z > 0`` for a binary model), a long tensor [N], a NumPy integer array or a sequence of
                N ints in ``[0, num_classes)`` (``{0, 1}`` for a binary model).

        Returns:
            :class:`CamResult` with ``maps`` float32 [N, H, W], ``logits`` [N, num_classes],
            ``targets`` long [N] and the ``task``.
        """
        maps, logits, explained = self._explain(images, targets, (self.method,))
        return CamResult(maps=maps[self.method], logits=logits, targets=explained, task=self.task)

    def compute(
        self,
        images: torch.Tensor,
        targets: Targets = None,
        methods: Sequence[CamMethod] = ("gradcam++", "gradcam"),
    ) -> dict[str, torch.Tensor]:
        """Maps of several methods from one forward and one backward.

        Args:
            images: float tensor [N, C, H, W].
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

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """The model's logits [N, K] for a batch, called as the maps call it (eval mode, the model's
        dtype, ``forward``, ``forward_context``, compiled submodules run eagerly), without maps.

        The counterfactual tests run their forwards through this, so they see the model as the maps do.
        """
        check_images(images)
        with (
            eval_mode_untouched(self.model, images.device),
            eager_submodules(self.model),
            self.forward_context(),
        ):
            output = call_model(self.model, images, self.forward)
        return self._logits(output, images.shape[0])

    def _logits(self, output: object, count: int) -> torch.Tensor:
        """Check the model's output, decide the task on first sight, and return logits [N, K]."""
        model_name = type(self.model).__name__
        logits = check_logits(output, count, model_name)
        self._task = tasks.resolve_task(self._task or self._requested_task, logits, model_name)
        return logits

    def _explain(
        self, images: torch.Tensor, targets: Targets, methods: tuple[str, ...]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        check_images(images)
        requested = check_targets(targets, images.shape[0])
        with (
            torch.inference_mode(False),
            eval_mode_untouched(self.model, images.device),
            eager_submodules(self.model),
        ):
            if images.is_inference():
                images = images.clone()
            capture = self._capture(images)
            logits = self._logits(capture.output, images.shape[0])
            explained = resolve_targets(requested, logits, self.task)
            score = tasks.explained_score(logits, explained, self.task).sum()
            if not score.requires_grad:
                raise _disconnected_error(capture.name)
            leaf, activations = capture.tensors()
            (gradient,) = torch.autograd.grad(score, leaf, allow_unused=True)
            if gradient is None:
                raise _disconnected_error(capture.name)
            if self.reshape_transform is not None:
                gradient = self.reshape_transform(gradient)
            maps = _maps(activations, gradient, methods, images.shape[-2:])
            self.last_features = activations.detach().float() if self.keep_features else None
        return maps, logits.detach(), explained

    def _capture(self, images: torch.Tensor) -> _LayerCapture:
        """One forward with the target layer hooked (its output becomes the gradient leaf)."""
        with self.forward_context():
            if self._layer is None:
                self._layer = resolve_target_layer(self.model, None, images, forward=self.forward)
            name, module = self._layer
            capture = _LayerCapture(name, self.model, self.reshape_transform)
            handle = module.register_forward_hook(capture)
            try:
                with torch.no_grad():
                    capture.output = call_model(self.model, images, self.forward)
            finally:
                handle.remove()
            if capture.leaf is None:
                raise never_runs_error(self.model, name, images, self.forward)
            activations = capture.tensors()[1]
            check_spatial(self.model, name, activations, images)
            self.feature_size = (int(activations.shape[-2]), int(activations.shape[-1]))
        return capture


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
    return resize_bilinear(maps[:, None], (int(size[0]), int(size[1])))[:, 0]


def _check_methods(methods: tuple[str, ...], argument: str) -> None:
    known = get_args(CamMethod)
    if not methods:
        raise CamAuditError(f"{argument} is empty; choose from {', '.join(repr(name) for name in known)}")
    for method in methods:
        check_choice(argument, method, known)


def _disconnected_error(name: str) -> TargetLayerError:
    return TargetLayerError(
        f"the logits do not depend on target_layer '{name}' (it feeds no path to the output, or the "
        "model detaches it or runs its head under torch.no_grad); pick a layer on the path to the logits"
    )
