"""Run a model in eval mode and put back everything the run could have changed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The eager module behind a ``torch.compile`` wrapper, or ``model`` itself.

    The engine hooks and runs the eager module, so a caller's compiled graph is never traced with
    hooks attached and never recompiled because of an audit.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> unwrap_model(net) is net
        True
    """
    inner = getattr(model, "_orig_mod", None)
    return inner if isinstance(inner, nn.Module) else model


@contextmanager
def eval_mode_untouched(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Put every submodule in eval mode and fork the random number generators, restoring both on exit.

    Each submodule gets its own ``training`` flag back (set directly, not through ``Module.train``, so
    overrides of ``train`` with side effects are not triggered). The CPU generator, and the generator
    of ``device`` when it is an accelerator, are restored too, so a model that draws random numbers in
    eval mode does not shift the caller's random stream.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
        >>> net[1].training = False
        >>> with eval_mode_untouched(net, torch.device("cpu")):
        ...     net.training
        False
        >>> net.training, net[1].training
        (True, False)
    """
    # only the modules in training mode are switched (and switched back): each flag set goes through
    # Module.__setattr__, and an audit enters this context three times per batch
    training = [module for module in model.modules() if module.training]
    if device.type == "cpu":
        rng = torch.random.fork_rng(devices=[])
    else:
        index = device.index
        if index is None:
            index = torch.get_device_module(device.type).current_device()
        rng = torch.random.fork_rng(devices=[index], device_type=device.type)
    with rng:
        try:
            for module in training:
                module.training = False
            yield
        finally:
            for module in training:
                module.training = True


def compiled_inner(module: nn.Module) -> nn.Module | None:
    """The eager module inside a ``torch.compile`` wrapper, or None when ``module`` is not one."""
    inner = getattr(module, "_orig_mod", None)
    return inner if isinstance(inner, nn.Module) else None


@contextmanager
def eager_submodules(model: nn.Module) -> Iterator[None]:
    """Run the eager module in place of every ``torch.compile``'d submodule, restoring them on exit.

    ``model.backbone = torch.compile(model.backbone)`` leaves a wrapper in the module tree; the engine's
    hooks sit on the eager layers inside it, and a compiled graph traced with them would be recompiled.
    For the duration of the block each wrapper is replaced in its parent by its ``_orig_mod``, so the
    forward runs eagerly and the caller's compiled graph is left as it was.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2))
        >>> wrapper = torch.compile(net[0])
        >>> net[0] = wrapper
        >>> with eager_submodules(net):
        ...     net[0] is wrapper._orig_mod
        True
        >>> net[0] is wrapper
        True
    """
    swapped = [
        (parent, key, child)
        for parent in model.modules()
        for key, child in parent._modules.items()
        if child is not None and compiled_inner(child) is not None
    ]
    try:
        for parent, key, child in swapped:
            parent._modules[key] = compiled_inner(child)
        yield
    finally:
        for parent, key, child in reversed(swapped):
            parent._modules[key] = child
