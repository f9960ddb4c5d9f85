"""What the pipeline needs from the processes it runs in: who am I, gather a value, fail together.

:func:`~cam_audit.pipeline.audit` runs in one process (:class:`LocalCollectives`); the Lightning
callback passes collectives over the Trainer's strategy (``cam_audit.lightning.distributed``), so one
code path serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Collectives(Protocol):
    """The collective operations of an audit; every method is called on every process in the same order.

    Attributes:
        rank: this process's index, ``0 <= rank < world_size``.
        world_size: number of processes auditing together.
    """

    rank: int
    world_size: int

    def gather(self, value: T) -> list[T]:
        """Every process's ``value``, in rank order, on every process."""
        ...

    def run_step(self, step: str, work: Callable[[], T]) -> T:
        """``work()``, raising on every process when it failed on any (``step`` names it in the error)."""
        ...


class LocalCollectives:
    """The collectives of a single process: gathering returns the value, a step fails alone.

    >>> LocalCollectives().gather({"rows": 3})
    [{'rows': 3}]
    """

    rank = 0
    world_size = 1

    def gather(self, value: T) -> list[T]:
        return [value]

    def run_step(self, step: str, work: Callable[[], T]) -> T:
        return work()


def rank_indices(size: int, batch_size: int, rank: int, world_size: int) -> list[int]:
    """The probe positions one process audits: whole batches ``rank``, ``rank + world_size``, ... of the
    probe's own batching.

    Every batch is then the one a single process forms with the same ``batch_size``, so even the floating
    point of batched kernels matches a single-process audit. A rank left without a batch (a probe of
    fewer than ``world_size`` batches) scores nothing and still joins every collective.

    >>> rank_indices(10, 3, rank=0, world_size=2), rank_indices(10, 3, rank=1, world_size=2)
    ([0, 1, 2, 6, 7, 8], [3, 4, 5, 9])
    """
    starts = range(rank * batch_size, size, world_size * batch_size)
    return [position for start in starts for position in range(start, min(start + batch_size, size))]


__all__ = ["Collectives", "LocalCollectives", "rank_indices"]
