"""What a classifier's logits mean: one decision per task, read by the engine, the scores and the
counterfactual tests alike.

- ``"multiclass"``: logits ``[N, C]``, ``C >= 2``, one class per image (softmax). The map explains
  ``logit[c]``; the prediction is the argmax; the confidence is ``softmax(logits)[c]``.
- ``"multilabel"``: logits ``[N, C]``, one independent sigmoid per class. The map explains ``logit[c]``;
  class ``c`` is "on" when ``sigmoid(logit[c]) > 0.5``, which is also when a sample labelled ``c`` counts
  as correct; the confidence is ``sigmoid(logit[c])``; the prediction column holds the top-scoring class.
- ``"binary"``: one logit ``z`` per image, ``[N, 1]``. Class 1 explains ``+z``, class 0 explains ``-z``;
  the prediction is 1 when ``z > 0``; the confidence of class ``c`` is ``sigmoid(+z)`` or ``sigmoid(-z)``.

``None`` lets the first logits decide: ``"binary"`` for one output, else ``"multiclass"``.

>>> logits = torch.tensor([[2.0], [-1.0]])
>>> resolve_task(None, logits)
'binary'
>>> predictions(logits, "binary").tolist(), explained_score(logits, torch.tensor([0, 0]), "binary").tolist()
([1, 0], [-2.0, 1.0])
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from cam_audit.errors import CamAuditError

Task = Literal["multiclass", "multilabel", "binary"]
"""How the logits are read: softmax over classes, one sigmoid per class, or one logit for two classes."""

TASKS: tuple[str, ...] = get_args(Task)


def check_task(task: object, argument: str = "task") -> None:
    """Raise a :class:`~cam_audit.errors.CamAuditError` unless ``task`` is None or one of :data:`TASKS`."""
    if task is not None and (not isinstance(task, str) or task not in TASKS):
        raise CamAuditError(
            f"{argument} must be None (binary for a model with one output, else multiclass) or one of "
            f"{', '.join(map(repr, TASKS))}; got {task!r}"
        )


def resolve_task(task: Task | None, logits: Tensor, model_name: str = "the model") -> Task:
    """The task for logits ``[N, K]``, checked against their number of outputs.

    Raises:
        CamAuditError: ``"binary"`` with more than one output, or ``"multiclass"``/``"multilabel"`` with one.
    """
    outputs = logits.shape[1]
    if task is None:
        return "binary" if outputs == 1 else "multiclass"
    if task == "binary" and outputs != 1:
        raise CamAuditError(
            f"task='binary' needs one output logit, but {model_name} returns {outputs} per image; pass "
            "task='multiclass' for softmax classes, task='multilabel' for one sigmoid per class, or None"
        )
    if task != "binary" and outputs == 1:
        raise CamAuditError(
            f"task={task!r} needs at least two outputs, but {model_name} returns one logit per image; "
            "a one-logit model is binary: pass task='binary' or task=None"
        )
    return task


def num_classes(task: Task, outputs: int) -> int:
    """Classes a model with ``outputs`` logits can tell apart: 2 for a binary model, else ``outputs``."""
    return 2 if task == "binary" else outputs


def explained_score(logits: Tensor, targets: Tensor, task: Task) -> Tensor:
    """The score each map explains, ``[N]``: ``logit[target]``, or ``+z`` / ``-z`` for a binary model."""
    targets = targets.to(logits.device)
    if task == "binary":
        z = logits[:, 0]
        return torch.where(targets == 1, z, -z)
    return logits.gather(1, targets[:, None]).squeeze(1)


def predictions(logits: Tensor, task: Task) -> Tensor:
    """long ``[N]``: ``z > 0`` for a binary model, the top-scoring class otherwise."""
    logits = logits.detach()
    if task == "binary":
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def confidence(logits: Tensor, targets: Tensor, task: Task) -> Tensor:
    """float32 ``[N]``: the probability the model gives each target (see the module docstring)."""
    logits = logits.detach().float()
    if task == "multiclass":
        return logits.softmax(dim=1).gather(1, targets.to(logits.device)[:, None]).squeeze(1)
    return torch.sigmoid(explained_score(logits, targets, task))


def decides_for(logits: Tensor, targets: Tensor, task: Task) -> Tensor:
    """bool ``[N]``: whether the model decides for each target class.

    Multiclass and binary: the prediction is the target. Multilabel: ``sigmoid(logit[target]) > 0.5``.
    With the labels as targets this is whether a sample is classified correctly.
    """
    targets = targets.to(logits.device)
    if task == "multilabel":
        return confidence(logits, targets, task) > 0.5
    return predictions(logits, task) == targets


def decision_changed(before: Tensor, after: Tensor, targets: Tensor, task: Task) -> Tensor:
    """bool ``[N]``: whether the model's decision changed between two sets of logits of the same images.

    Multiclass and binary: the prediction changed. Multilabel: the target class turned on or off.
    """
    if task == "multilabel":
        return decides_for(before, targets, task) != decides_for(after, targets, task)
    return predictions(before, task) != predictions(after, task)


__all__ = [
    "TASKS",
    "Task",
    "check_task",
    "confidence",
    "decides_for",
    "decision_changed",
    "explained_score",
    "num_classes",
    "predictions",
    "resolve_task",
]
