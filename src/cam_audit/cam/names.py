"""Dotted layer names as users write them: aliases, ``torch.compile`` wrappers and typos.

A submodule registered under two names (``self.features = self.net.features``) is found under either;
``_orig_mod`` segments (left by ``torch.compile`` on the model or on any submodule) may be written or
left out, and a compiled submodule's name means the eager module inside it; a misspelt name gets the
closest existing names at any depth.
"""

from __future__ import annotations

import difflib

from torch import nn

from cam_audit.cam.isolation import compiled_inner

_COMPILED = "_orig_mod"


def canonical_name(name: str) -> str:
    """``name`` without the ``_orig_mod`` segments ``torch.compile`` inserts.

    >>> canonical_name("backbone._orig_mod.layer4")
    'backbone.layer4'
    """
    return ".".join(part for part in name.split(".") if part != _COMPILED)


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every dotted name of ``model``'s submodules (the model itself is ``""``), aliases included.

    Names are canonical (:func:`canonical_name`), and a compiled submodule's name maps to its eager
    module, so each name means what it means in the eager model.

    Example:
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = nn.Sequential(nn.Conv2d(3, 4, 3))
        ...         self.features = self.net[0]
        >>> layers = named_layers(Net())
        >>> layers["features"] is layers["net.0"]
        True
    """
    table: dict[str, nn.Module] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        table.setdefault(canonical_name(name), compiled_inner(module) or module)
    return table


def name_of(model: nn.Module, module: nn.Module) -> str | None:
    """The first dotted name under which ``module`` (or the eager module it wraps) sits in ``model``."""
    wanted = compiled_inner(module) or module
    return next((name for name, found in named_layers(model).items() if found is wanted), None)


def close_names(name: str, model: nn.Module, count: int = 3) -> list[str]:
    """The existing dotted names (at any depth) closest to a misspelt ``name``, best first.

    >>> net = nn.ModuleDict({"backbone": nn.ModuleDict({"layer4": nn.ReLU()}), "head": nn.Flatten()})
    >>> close_names("backbone.layr4", net)[0]
    'backbone.layer4'
    """
    names = [found for found in named_layers(model) if found]
    return difflib.get_close_matches(canonical_name(name), names, n=count, cutoff=0.6)


__all__ = ["canonical_name", "close_names", "name_of", "named_layers"]
