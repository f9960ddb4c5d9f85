"""Finding the layer to explain: by dotted name, by module, or automatically from one traced forward."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from cam_audit.cam.calling import Forward, call_model
from cam_audit.cam.isolation import eager_submodules, eval_mode_untouched, unwrap_model
from cam_audit.cam.names import canonical_name, close_names, name_of, named_layers
from cam_audit.errors import CamAuditError, TargetLayerError

ReshapeTransform = Callable[[torch.Tensor], torch.Tensor]

# Resizing pools at the start of a classifier head (VGG's AdaptiveAvgPool2d((7, 7))): never chosen
# automatically, the features before them are what the head reads.
_HEAD_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass
class _LayerRun:
    """What one submodule did during a traced forward."""

    name: str
    module: nn.Module
    calls: int = 0
    output: object = field(default=None, repr=False)  # only kept for the layer being validated

    @property
    def shape(self) -> tuple[int, ...] | None:
        return tuple(self.output.shape) if isinstance(self.output, torch.Tensor) else None


def _trace(
    model: nn.Module,
    example_input: torch.Tensor,
    keep: nn.Module | None = None,
    forward: Forward | None = None,
) -> list[_LayerRun]:
    """Run ``model`` once (eval mode, no grad, state restored) and record every submodule that ran.

    Returns the runs in the order the modules first finished (children before their parent), each under
    the module's first name (a module reachable under two names runs, and is recorded, once). Each run
    keeps its output shape; the output tensor of the ``keep`` module is kept as well.
    """
    runs: dict[int, _LayerRun] = {}
    order: list[_LayerRun] = []

    def record(name: str, module: nn.Module) -> Callable:
        def hook(_module: nn.Module, _args: object, output: object) -> None:
            run = runs.get(id(module))
            if run is None:
                run = runs[id(module)] = _LayerRun(name, module)
                order.append(run)
            run.calls += 1
            if module is keep or run.calls == 1:
                run.output = output if module is keep else _shape_only(output)

        return hook

    handles = []
    hooked: set[int] = set()
    try:
        for name, module in named_layers(model).items():
            if name and id(module) not in hooked:
                hooked.add(id(module))
                handles.append(module.register_forward_hook(record(name, module)))
        with eval_mode_untouched(model, example_input.device), eager_submodules(model), torch.no_grad():
            call_model(model, example_input, forward)
    finally:
        for handle in handles:
            handle.remove()
    return order


def _shape_only(output: object) -> object:
    """A meta tensor with the output's shape, so tracing keeps no activations alive."""
    if isinstance(output, torch.Tensor):
        return torch.empty(output.shape, device="meta")
    return output


def _is_spatial(run: _LayerRun) -> bool:
    shape = run.shape
    return run.calls == 1 and shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1


def spatial_layers(
    model: nn.Module, example_input: torch.Tensor, *, forward: Forward | None = None
) -> list[str]:
    """Names of the layers that can be explained without a reshape transform, in execution order.

    A layer qualifies when it runs exactly once per forward and outputs a 4-D tensor ``[N, C, h, w]``
    with more than one spatial position. Modules reused within a forward (e.g. the ReLU shared inside a
    ResNet block) are left out: their parent block is the unambiguous choice. Children come before
    their parent, so the last name is the outermost module holding the last spatial output.

    Args:
        model: the classifier (``torch.compile`` wrappers, of the model or of submodules, run eagerly).
        example_input: float tensor [N, C, H, W] the model accepts (cast to the model's dtype); one
            forward is run on it, in eval mode with the model's state restored afterwards.
        forward: ``forward(model, images) -> logits`` for a model that is not called as ``model(images)``.

    Returns:
        dotted module names.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> spatial_layers(net, torch.zeros(1, 3, 8, 8))
        ['0', '1']
    """
    model = unwrap_model(model)
    return [run.name for run in _trace(model, example_input, forward=forward) if _is_spatial(run)]


def _summary(names: list[str], model: nn.Module) -> str:
    """A short list of candidates for an error message: the top-level blocks among ``names``."""
    modules = named_layers(model)
    top = [name for name in names if "." not in name]
    blocks = [name for name in top if any(True for _ in modules[name].children())]
    chosen = blocks or top or names[-6:]
    return ", ".join(chosen) if chosen else "(none)"


def _structural_candidates(model: nn.Module) -> list[str]:
    """Top-level children that hold a 2-D convolution: the layers with a spatial output in practice."""
    return [
        name
        for name, child in model.named_children()
        if any(isinstance(module, nn.Conv2d) for module in child.modules())
    ]


def _candidates_hint(
    model: nn.Module, example_input: torch.Tensor | None, forward: Forward | None = None
) -> str:
    return _candidates(model, example_input, forward)[1]


def _candidates(
    model: nn.Module, example_input: torch.Tensor | None, forward: Forward | None = None
) -> tuple[str, str]:
    """What to choose from, and what that is: the layers with a spatial output where an input has run;
    without one, the top-level blocks holding convolutions (a whole backbone may be one of them, though
    its output is no map), or the top-level children where no block holds a convolution."""
    if example_input is not None:
        spatial = spatial_layers(model, example_input, forward=forward)
        return "layers with a spatial output", _summary(spatial, model)
    names = _structural_candidates(model)
    if names:
        return "blocks holding convolutions", _summary(names, model)
    return "its top-level layers", ", ".join(name for name, _ in model.named_children())


def _model_name(model: nn.Module) -> str:
    return type(model).__name__


def resolve_target_layer(
    model: nn.Module,
    target_layer: str | nn.Module | None,
    example_input: torch.Tensor | None = None,
    *,
    reshape_transform: ReshapeTransform | None = None,
    forward: Forward | None = None,
) -> tuple[str, nn.Module]:
    """Find the layer to explain and check, when an example input is given, that it can be explained.

    Args:
        model: the classifier. Names refer to the eager model: a module registered under two names is
            found under either, ``_orig_mod.`` segments (``torch.compile`` of the model or of a
            submodule) may be written or left out, and a compiled submodule means its eager module.
        target_layer: a dotted name (``"layer4"``, ``"features.28"``), a submodule of ``model``, or
            ``None`` for the last layer of :func:`spatial_layers` that is not an adaptive pooling layer
            (VGG's head starts with one), which needs ``example_input``.
        example_input: float tensor [N, C, H, W]; when given, one traced forward checks that the layer
            runs exactly once and outputs ``[N, C, h, w]`` (after ``reshape_transform`` if given).
        reshape_transform: turns the layer's output into ``[N, C, h, w]`` (e.g. ViT tokens).
        forward: ``forward(model, images) -> logits`` for a model that is not called as ``model(images)``.

    Returns:
        ``(name, module)``: the dotted name within the eager model and the module.

    Raises:
        TargetLayerError: the name does not exist (the message suggests the closest names and lists
            layers with a spatial output), the module is not part of ``model``, the layer never runs or
            runs more than once, or its output is not a 4-D map and no ``reshape_transform`` makes it one.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> resolve_target_layer(net, None, torch.zeros(1, 3, 8, 8))[0]
        '1'
        >>> resolve_target_layer(net, net[0])[0]
        '0'
    """
    model = unwrap_model(model)
    if target_layer is None:
        return _auto_layer(model, example_input, reshape_transform, forward)
    if isinstance(target_layer, nn.Module):
        name = name_of(model, target_layer)
        if name is None:
            raise TargetLayerError(
                f"target_layer {type(target_layer).__name__} is not a submodule of {_model_name(model)}; "
                "pass a module taken from this model (e.g. model.layer4) or its dotted name"
            )
        if name == "":
            raise TargetLayerError(
                "target_layer is the model itself; pick a layer inside it with a spatial output, e.g. "
                f"one of: {_candidates_hint(model, example_input, forward)}"
            )
    elif isinstance(target_layer, str):
        name = canonical_name(target_layer)
        if name == "" or name not in named_layers(model):
            raise _not_found_error(model, target_layer, example_input, forward)
    else:
        raise CamAuditError(
            f"target_layer must be a dotted layer name, an nn.Module inside the model or None (automatic), "
            f"got {type(target_layer).__name__}"
        )
    module = named_layers(model)[name]
    if example_input is not None:
        _check_runs(model, (name, module), example_input, reshape_transform, forward)
    return name, module


def _not_found_error(
    model: nn.Module, target_layer: str, example_input: torch.Tensor | None, forward: Forward | None
) -> TargetLayerError:
    close = close_names(target_layer, model)
    guess = f"; did you mean {' or '.join(repr(name) for name in close)}?" if close else "."
    listed, names = _candidates(model, example_input, forward)
    return TargetLayerError(
        f"target_layer '{target_layer}' not found in {_model_name(model)}; {listed}: {names}{guess} Nested "
        "dotted names work too; cam_audit.cam.spatial_layers(model, images) lists the layers with a spatial "
        "output"
    )


def _auto_layer(
    model: nn.Module,
    example_input: torch.Tensor | None,
    reshape_transform: ReshapeTransform | None,
    forward: Forward | None,
) -> tuple[str, nn.Module]:
    if reshape_transform is not None:
        raise TargetLayerError(
            "target_layer=None picks the last layer with a 4-D output, which does not apply with a "
            "reshape_transform; name the layer, e.g. target_layer='encoder.layers.encoder_layer_11.ln_1' "
            "for torchvision's vit_b_16"
        )
    if example_input is None:
        raise TargetLayerError(
            "target_layer=None is resolved by a traced forward; pass example_input (a batch the model "
            "accepts) or name the layer"
        )
    modules = named_layers(model)
    names = [
        name
        for name in spatial_layers(model, example_input, forward=forward)
        if not isinstance(modules[name], _HEAD_POOLS)
    ]
    if not names:
        raise TargetLayerError(
            f"no layer of {_model_name(model)} outputs a 4-D [N, C, h, w] map with h*w > 1 on input of "
            f"shape {tuple(example_input.shape)}; name target_layer and pass a reshape_transform "
            "(e.g. cam_audit.cam.vit_reshape_transform for Vision Transformers), or use larger images"
        )
    name = names[-1]
    return name, modules[name]


def _check_runs(
    model: nn.Module,
    layer: tuple[str, nn.Module],
    example_input: torch.Tensor,
    reshape_transform: ReshapeTransform | None,
    forward: Forward | None,
) -> None:
    name, module = layer
    runs = _trace(model, example_input, keep=module, forward=forward)
    run = next((run for run in runs if run.module is module), None)
    if run is None:
        raise never_runs_error(model, name, example_input, forward)
    if run.calls > 1:
        raise runs_twice_error(model, name)
    check_spatial(model, name, check_layer_output(name, run.output, reshape_transform), example_input)


def check_spatial(
    model: nn.Module, name: str, activations: torch.Tensor, example_input: torch.Tensor
) -> None:
    """Refuse a target layer whose map ``[N, C, h, w]`` has one position (``h * w == 1``).

    Such a map is constant after upsampling, so focus is the region's area fraction and focus_lift is
    exactly 1.00 for every sample and every model: the audit would blame the model for the layer choice.
    """
    if activations.shape[-2] * activations.shape[-1] > 1:
        return
    raise TargetLayerError(
        f"target_layer '{name}' outputs shape {tuple(activations.shape)}: a single spatial position, so "
        "every map is constant and focus_lift is 1.00 whatever the model does; pick a layer with spatial "
        f"resolution, e.g. one of: {_candidates_hint(model, example_input)}"
    )


def never_runs_error(
    model: nn.Module, name: str, example_input: torch.Tensor, forward: Forward | None = None
) -> TargetLayerError:
    """The error for a target layer that the model's forward never calls."""
    return TargetLayerError(
        f"target_layer '{name}' never runs in {_model_name(model)}.forward, so nothing can be explained "
        f"there; pick a layer that runs, e.g. one of: {_candidates_hint(model, example_input, forward)}"
    )


def runs_twice_error(model: nn.Module, name: str) -> TargetLayerError:
    """The error for a target layer called more than once per forward (a shared module)."""
    parent = name.rpartition(".")[0]
    hint = f"its parent '{parent}'" if parent else "a block that contains it"
    return TargetLayerError(
        f"target_layer '{name}' runs more than once in one forward of {_model_name(model)} (a module "
        f"reused inside a block), so its output is ambiguous; pick {hint} or another layer that runs once"
    )


def check_layer_output(name: str, output: object, reshape_transform: ReshapeTransform | None) -> torch.Tensor:
    """Check that a layer's output is (or reshapes into) a map ``[N, C, h, w]`` and return that map."""
    if not isinstance(output, torch.Tensor):
        raise TargetLayerError(
            f"target_layer '{name}' returns a {type(output).__name__}, not a tensor; pick a layer that "
            "returns one tensor (e.g. its parent or the block that consumes it)"
        )
    activations = output if reshape_transform is None else reshape_transform(output)
    if not isinstance(activations, torch.Tensor) or activations.dim() != 4:
        shape = tuple(activations.shape) if isinstance(activations, torch.Tensor) else type(activations)
        if reshape_transform is None:
            raise TargetLayerError(
                f"target_layer '{name}' outputs shape {shape}, not a 4-D [N, C, h, w] map; pass "
                "reshape_transform= a function that returns one (cam_audit.cam.vit_reshape_transform for "
                "Vision Transformer tokens [N, 1 + h*w, C]) or pick a convolutional layer"
            )
        raise TargetLayerError(
            f"reshape_transform turned the output of target_layer '{name}' into {shape}; it must return "
            "a 4-D [N, C, h, w] tensor"
        )
    return activations
