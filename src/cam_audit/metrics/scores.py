"""torchmetrics classes that average per-sample scores over a probe set, across batches and processes.

Each class only holds sum/count states and calls :mod:`cam_audit.metrics.functional` for the math.
States (all reduced by ``sum`` across processes, so DDP needs nothing more than torchmetrics' own sync):

- ``total``: float64 sum of the finite per-sample scores;
- ``count``: number of finite scores;
- ``degenerate``: number of ``NaN`` scores (empty region, all-zero map, ...), counted and never averaged;
- with ``num_classes``: ``class_total``, ``class_count``, ``class_degenerate``, each ``[num_classes]``.

``compute()`` is ``total / count`` (``NaN`` when no sample had a finite score).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch
from torch import Tensor
from torchmetrics import Metric

from cam_audit.errors import CamAuditError
from cam_audit.metrics import functional as F

__all__ = [
    "MassLift",
    "MeanScore",
    "PointingGame",
    "RelevanceMass",
    "RelevanceRank",
    "check_labels",
    "mean_or_nan",
    "synced_states",
]


def mean_or_nan(total: Tensor, count: Tensor) -> Tensor:
    """``total / count`` as float32, ``NaN`` where ``count`` is 0 (elementwise)."""
    mean = total / count.clamp(min=1).to(total.dtype)
    return torch.where(count > 0, mean, float("nan")).to(torch.float32)


@contextmanager
def synced_states(metric: Metric) -> Iterator[None]:
    """Hold ``metric``'s states reduced over all processes, as its ``compute()`` does, then restore the
    local ones (nothing happens outside a process group, or when they are synced already)."""
    already_synced = metric._is_synced
    with metric.sync_context(
        dist_sync_fn=metric.dist_sync_fn,
        should_sync=metric._to_sync and not already_synced,
        should_unsync=metric._should_unsync and not already_synced,
    ):
        yield


def check_labels(labels: Tensor | None, n: int, num_classes: int, name: str, device: torch.device) -> Tensor:
    """``labels`` as int64 on ``device`` when they are an integer tensor ``[n]`` in ``[0, num_classes)``;
    otherwise a :class:`CamAuditError` naming the metric ``name`` and the fix."""
    if labels is None:
        raise CamAuditError(
            f"{name}.update: num_classes={num_classes} keeps per-class scores, so labels [N] "
            "are required; pass labels=targets."
        )
    if (
        not isinstance(labels, Tensor)
        or labels.is_floating_point()
        or labels.dtype == torch.bool
        or labels.is_complex()
        or labels.shape != (n,)
    ):
        described = (
            f"shape {tuple(labels.shape)}, dtype {labels.dtype}"
            if isinstance(labels, Tensor)
            else type(labels).__name__
        )
        raise CamAuditError(
            f"{name}.update: labels must be an integer tensor [N] matching scores (N={n}); "
            f"got {described}."
        )
    labels = labels.to(device=device, dtype=torch.int64)
    out_of_range = (labels < 0) | (labels >= num_classes)
    if out_of_range.any():
        first = int(out_of_range.nonzero()[0, 0])
        raise CamAuditError(
            f"{name}.update: labels[{first}] = {int(labels[first])} is outside [0, {num_classes}); "
            "check num_classes against the model's number of outputs."
        )
    return labels


class MeanScore(Metric):
    """Mean of per-sample scores with NaN accounting, optionally per class.

    ``compute() = Σ_{i: s_i finite} s_i / #{i: s_i finite}``; ``NaN`` samples are counted in
    ``degenerate`` instead of being averaged. Use it for any score computed one value per sample
    (counterfactual flips, spurious mass, ...); the map scores below are subclasses of it.

    Args:
        num_classes: when given, ``update`` needs ``labels`` and per-class states are kept;
            :meth:`compute_per_class` returns the per-class means.
        **kwargs: passed to :class:`torchmetrics.Metric` (``sync_on_compute``, ``process_group``, ...).

    Example:
        >>> import torch
        >>> metric = MeanScore(num_classes=2)
        >>> metric.update(torch.tensor([1.0, float("nan"), 0.0]), labels=torch.tensor([0, 0, 1]))
        >>> metric.update(torch.tensor([0.5]), labels=torch.tensor([1]))
        >>> metric.compute(), metric.compute_per_class(), metric.compute_degenerate()
        (tensor(0.5000), tensor([1.0000, 0.2500]), tensor(1))
    """

    is_differentiable: bool | None = False
    higher_is_better: bool | None = None
    full_state_update: bool | None = False

    total: Tensor
    count: Tensor
    degenerate: Tensor
    class_total: Tensor
    class_count: Tensor
    class_degenerate: Tensor

    def __init__(self, num_classes: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
        ):
            raise CamAuditError(
                f"{type(self).__name__}: num_classes must be a positive int or None; got {num_classes!r}."
            )
        self.num_classes = num_classes
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("degenerate", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        if num_classes is not None:
            self.add_state("class_total", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state("class_count", torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum")
            self.add_state(
                "class_degenerate", torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum"
            )

    def update(self, scores: Tensor, labels: Tensor | None = None) -> None:
        """Add a batch of per-sample scores.

        Args:
            scores: float tensor ``[N]``; ``NaN`` marks a degenerate sample, infinities are refused.
            labels: int tensor ``[N]`` with values in ``[0, num_classes)``; required exactly when the
                metric was built with ``num_classes``.
        """
        self._accumulate(scores, labels)

    def compute(self) -> Tensor:
        """Mean over finite samples (synced across processes), float32 scalar; ``NaN`` if there are none."""
        return mean_or_nan(self.total, self.count)

    def compute_per_class(self) -> Tensor:
        """Per-class mean over finite samples, synced across processes like :meth:`compute`.

        Returns:
            float32 tensor ``[num_classes]``; ``NaN`` for a class without finite samples.
        """
        self._require_classes("compute_per_class")
        with synced_states(self):
            return mean_or_nan(self.class_total, self.class_count).clone()

    def compute_degenerate(self) -> Tensor:
        """Number of degenerate (``NaN``) samples seen, synced across processes; int64 scalar."""
        with synced_states(self):
            return self.degenerate.clone()

    def compute_count(self) -> Tensor:
        """Number of samples with a finite score, synced across processes; int64 scalar."""
        with synced_states(self):
            return self.count.clone()

    def _require_classes(self, caller: str) -> None:
        if self.num_classes is None:
            raise CamAuditError(
                f"{type(self).__name__}.{caller}: per-class scores need num_classes; "
                f"construct it as {type(self).__name__}(num_classes=C) and pass labels to update()."
            )

    def _accumulate(self, scores: Tensor, labels: Tensor | None) -> None:
        name = type(self).__name__
        if not isinstance(scores, Tensor) or not scores.is_floating_point() or scores.ndim != 1:
            described = (
                f"shape {tuple(scores.shape)}, dtype {scores.dtype}"
                if isinstance(scores, Tensor)
                else type(scores).__name__
            )
            raise CamAuditError(f"{name}.update: scores must be a float tensor [N]; got {described}.")
        scores = scores.detach().to(device=self.total.device, dtype=torch.float64)
        if torch.isinf(scores).any():
            first = int(torch.isinf(scores).nonzero()[0, 0])
            raise CamAuditError(
                f"{name}.update: scores[{first}] is infinite; only finite scores or NaN (a degenerate "
                "sample) can be averaged. Check how that score was computed."
            )
        finite = ~torch.isnan(scores)
        self.total = self.total + scores[finite].sum()
        self.count = self.count + finite.sum()
        self.degenerate = self.degenerate + (~finite).sum()
        if self.num_classes is None:
            if labels is not None:
                raise CamAuditError(
                    f"{name}.update: labels were given but the metric keeps no per-class states; "
                    f"construct it as {name}(num_classes=C) or drop labels."
                )
            return
        labels = check_labels(labels, len(scores), cast(int, self.num_classes), name, self.total.device)
        self.class_total = self.class_total.index_add(0, labels, torch.where(finite, scores, 0.0))
        self.class_count = self.class_count.index_add(0, labels, finite.to(torch.int64))
        self.class_degenerate = self.class_degenerate.index_add(0, labels, (~finite).to(torch.int64))


class _MapScore(MeanScore):
    """A :class:`MeanScore` whose per-sample score is computed from ``(maps, regions)``."""

    higher_is_better: bool | None = True

    def update(self, maps: Tensor, regions: Tensor, labels: Tensor | None = None) -> None:  # type: ignore[override]
        """Score a batch of maps and add the per-sample scores.

        Args:
            maps: float tensor ``[N, H, W]``, finite and ``>= 0``.
            regions: bool tensor ``[N, H, W]``.
            labels: int tensor ``[N]``; required exactly when built with ``num_classes``.
        """
        self._accumulate(self._score(maps, regions), labels)

    def _score(self, maps: Tensor, regions: Tensor) -> Tensor:
        raise NotImplementedError


class RelevanceMass(_MapScore):
    """Mean :func:`~cam_audit.metrics.functional.relevance_mass` (the *focus*): ``Σ map·region / Σ map``.

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[3.0, 1.0], [0.0, 0.0]]])
        >>> regions = torch.tensor([[[True, False], [False, False]]])
        >>> metric = RelevanceMass()
        >>> metric.update(maps, regions)
        >>> metric.compute()
        tensor(0.7500)
    """

    def _score(self, maps: Tensor, regions: Tensor) -> Tensor:
        return F.relevance_mass(maps, regions)


class MassLift(_MapScore):
    """Mean :func:`~cam_audit.metrics.functional.mass_lift` (the *focus lift*): mass / area fraction.

    Example:
        >>> import torch
        >>> maps = torch.ones(1, 2, 2)
        >>> regions = torch.tensor([[[True, False], [False, False]]])
        >>> metric = MassLift()
        >>> metric.update(maps, regions)
        >>> metric.compute()  # a uniform map scores 1
        tensor(1.)
    """

    def _score(self, maps: Tensor, regions: Tensor) -> Tensor:
        return F.mass_lift(maps, regions)


class PointingGame(_MapScore):
    """Hit rate of :func:`~cam_audit.metrics.functional.pointing_game`: the map's maximum lies in the region.

    Args:
        tolerance: pixels by which each region is grown (square dilation) before testing.
        num_classes: as :class:`MeanScore`.
        **kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]])
        >>> regions = torch.tensor([[[True, False, False]]]).expand(2, 1, 3)
        >>> metric = PointingGame()
        >>> metric.update(maps, regions)
        >>> metric.compute()
        tensor(0.5000)
    """

    def __init__(self, tolerance: int = 0, num_classes: int | None = None, **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
            raise CamAuditError(
                f"PointingGame: tolerance must be a non-negative int (pixels); got {tolerance!r}."
            )
        self.tolerance = tolerance

    def _score(self, maps: Tensor, regions: Tensor) -> Tensor:
        return F.pointing_game(maps, regions, tolerance=self.tolerance)


class RelevanceRank(_MapScore):
    """Mean :func:`~cam_audit.metrics.functional.relevance_rank`: share of the top-``|region|`` pixels inside.

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])
        >>> regions = torch.tensor([[[True, False], [True, False]]])
        >>> metric = RelevanceRank()
        >>> metric.update(maps, regions)
        >>> metric.compute()
        tensor(0.5000)
    """

    def _score(self, maps: Tensor, regions: Tensor) -> Tensor:
        return F.relevance_rank(maps, regions)
