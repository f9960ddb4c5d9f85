"""The Trainer's processes as the pipeline's collectives, and its precision as the forward context."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

import pytorch_lightning as pl
import torch

from cam_audit.errors import CamAuditError

T = TypeVar("T")


class LightningCollectives:
    """:class:`~cam_audit.pipeline.Collectives` over ``trainer.strategy``.

    Every method is a collective under DDP: each rank calls it in the same order.
    """

    def __init__(self, trainer: pl.Trainer) -> None:
        self.trainer = trainer
        self.rank = trainer.global_rank
        self.world_size = trainer.world_size

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank."""
        if (
            self.world_size == 1
            or not torch.distributed.is_available()
            or not torch.distributed.is_initialized()
        ):
            return [value]
        values: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(values, value)
        return values

    def run_step(self, step: str, work: Callable[[], T]) -> T:
        """``work()``, raising on every rank when it failed on any rank.

        An error on one rank alone would leave the others waiting forever in the next collective (the
        metric sync, the gather of per-sample rows, ``ModelCheckpoint``); so every rank joins one
        all-reduce of "did it fail here" and all of them raise: the failing rank its own error, the
        others a :class:`~cam_audit.errors.CamAuditError` pointing at it.
        """
        failure: Exception | None = None
        try:
            result = work()
        except Exception as error:  # re-raised below, after the other ranks have heard of it
            failure = error
        failed_anywhere = failure is not None
        if self.world_size > 1:
            failed_anywhere = self.trainer.strategy.reduce_boolean_decision(failure is not None, all=False)
        if failure is not None:
            raise failure
        if failed_anywhere:
            raise CamAuditError(
                f"CamAudit stopped on rank {self.rank}: another rank failed while {step}; its traceback "
                "(in that rank's output) says why"
            )
        return result


def check_strategy(trainer: pl.Trainer) -> None:
    """Refuse strategies that shard parameters: no rank holds the whole model to explain."""
    strategy = type(trainer.strategy).__name__
    if "FSDP" in strategy or "DeepSpeed" in strategy:
        raise CamAuditError(
            f"CamAudit does not support {strategy}: sharded parameters are not whole on any rank, so "
            "Grad-CAM++ cannot run the model; audit a gathered checkpoint offline with "
            "`cam-audit audit --ckpt PATH` instead"
        )


def forward_context(trainer: pl.Trainer) -> Callable[[], AbstractContextManager[Any]]:
    """A factory of the precision plugin's forward context (a new one per use: it is a generator's)."""
    precision = getattr(trainer.strategy, "precision_plugin", None)
    if precision is None:
        return nullcontext
    return precision.forward_context


__all__ = ["LightningCollectives", "check_strategy", "forward_context"]
