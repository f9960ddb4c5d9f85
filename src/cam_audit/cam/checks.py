"""The engine's input checks: images, the classes to explain, and the model's logits.

Each check runs before the work it guards and names what is wrong and how to fix it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from cam_audit.cam import tasks
from cam_audit.cam.tasks import Task
from cam_audit.errors import CamAuditError, NonFiniteModelError

#: The classes to explain: ``None``/``"predicted"`` (the prediction), or one class index per image as a
#: tensor, a NumPy array or a sequence of (Python or NumPy) ints.
Targets = Literal["predicted"] | torch.Tensor | np.ndarray | Sequence[int] | None


def check_images(images: object) -> None:
    if not isinstance(images, torch.Tensor):
        raise CamAuditError(f"images must be a float tensor [N, C, H, W], got {type(images).__name__}")
    if images.dim() != 4 or not images.is_floating_point() or images.shape[0] == 0:
        raise CamAuditError(
            f"images must be a non-empty float tensor [N, C, H, W], got shape {tuple(images.shape)} and "
            f"dtype {images.dtype}; add a batch dimension with images.unsqueeze(0) for a single image"
        )


def check_targets(targets: Targets, count: int) -> torch.Tensor | None:
    """Validate ``targets`` before any forward runs; ``None`` means explain the prediction.

    >>> import numpy as np
    >>> check_targets(np.array([2, 0]), 2).tolist(), check_targets([np.int64(1)], 1).tolist()
    ([2, 0], [1])
    """
    if targets is None:
        return None
    if isinstance(targets, str):
        if targets == "predicted":
            return None
        raise CamAuditError(
            f"targets={targets!r} is not understood; pass None or 'predicted' (explain the predicted "
            "class), a long tensor [N] or a sequence of N class indices"
        )
    if isinstance(targets, np.ndarray):
        targets = torch.tensor(targets)  # a copy: the array may be read-only
    if isinstance(targets, torch.Tensor):
        indices = _tensor_indices(targets)
    elif isinstance(targets, Sequence):
        bad = [v for v in targets if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral)]
        if bad:
            raise CamAuditError(f"targets must be integer class indices, got {bad[0]!r}")
        indices = torch.tensor([int(value) for value in targets], dtype=torch.long)
    else:
        raise CamAuditError(
            f"targets must be None, 'predicted', a long tensor [N], a NumPy integer array or a sequence "
            f"of ints, got {type(targets).__name__}"
        )
    if indices.shape[0] != count:
        raise CamAuditError(
            f"len(targets) = {indices.shape[0]} but images holds N = {count}; pass one class index per "
            "image (or targets=None to explain the predicted classes)"
        )
    return indices


def _tensor_indices(targets: torch.Tensor) -> torch.Tensor:
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
    return targets.detach().long()


def check_logits(output: object, count: int, model_name: str) -> torch.Tensor:
    """The model's output as logits ``[N, K]``; a 1-D output ``[N]`` (one logit per image) is ``[N, 1]``.

    Raises:
        CamAuditError: the output is not a tensor of N rows.
        NonFiniteModelError: a logit is NaN or infinite (maps from such a score are noise).
    """
    if isinstance(output, torch.Tensor) and output.dim() == 1 and output.shape[0] == count:
        output = output[:, None]
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != count:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise CamAuditError(
            f"{model_name} must return logits [N, num_classes] (or [N] for one logit) with N={count}, got "
            f"{shape}; wrap the model so its forward returns the class logits only, or pass "
            "forward=a function (model, images) -> logits"
        )
    finite = torch.isfinite(output.detach()).all(dim=1)
    if not bool(finite.all()):
        broken = (~finite).nonzero().flatten().tolist()
        raise NonFiniteModelError(
            f"{model_name} returned non-finite logits (NaN or inf) for {len(broken)} of {count} images of "
            f"the batch (image {broken[0]}: {output[broken[0]].detach().float().cpu().tolist()!s:.80}); "
            "check the weights for NaN, the input normalisation, and float16 overflow"
        )
    return output


def resolve_targets(requested: torch.Tensor | None, logits: torch.Tensor, task: Task) -> torch.Tensor:
    """The class each map explains: the requested ones (checked against the model's classes) or the
    predictions."""
    if requested is None:
        return tasks.predictions(logits, task)
    classes = tasks.num_classes(task, logits.shape[1])
    out_of_range = ((requested < 0) | (requested >= classes)).nonzero().flatten()
    if out_of_range.numel():
        position = int(out_of_range[0])
        kind = "a binary model (one logit)" if task == "binary" else f"a model with {classes} outputs"
        raise CamAuditError(
            f"targets[{position}] = {int(requested[position])} is not a class index of {kind}; "
            f"targets must lie in [0, {classes})"
        )
    return requested.to(logits.device).clone()  # a normal tensor even if given in inference mode


__all__ = ["Targets", "check_images", "check_logits", "check_targets", "resolve_targets"]
