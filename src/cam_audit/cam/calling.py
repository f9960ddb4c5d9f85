"""How the engine calls a model: inputs in the model's dtype, through the user's ``forward`` if given.

A model kept in bfloat16, float16 or float64 (``model.half()``, ``Trainer(precision="bf16-true")``) gets
its probe images in that dtype; a model whose ``forward`` takes a dict or extra inputs is called through
a ``forward(model, images) -> logits`` callable. Either way the engine's hooks sit inside the model, so
they see the same layer outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

#: ``forward(model, images) -> logits``: how to call a model that does not take a batch of images alone.
Forward = Callable[[nn.Module, Tensor], object]


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point parameter (or buffer), or None when it has none.

    >>> model_dtype(nn.Linear(2, 2).to(torch.float64))
    torch.float64
    >>> model_dtype(nn.ReLU()) is None
    True
    """
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def as_model_input(images: Tensor, model: nn.Module) -> Tensor:
    """``images`` cast to the model's floating-point dtype (unchanged when it already matches).

    >>> as_model_input(torch.zeros(1, 3, 2, 2), nn.Conv2d(3, 1, 1).to(torch.bfloat16)).dtype
    torch.bfloat16
    """
    dtype = model_dtype(model)
    if dtype is None or dtype == images.dtype:
        return images
    return images.to(dtype)


def call_model(model: nn.Module, images: Tensor, forward: Forward | None = None) -> object:
    """``model(images)`` or ``forward(model, images)``, with the images in the model's dtype."""
    images = as_model_input(images, model)
    return model(images) if forward is None else forward(model, images)


__all__ = ["Forward", "as_model_input", "call_model", "model_dtype"]
