"""An overhead budget: the callback times itself and audits only as much as ``max_overhead`` allows.

:func:`plan_audit` is the decision, a pure function of measured seconds returning ``(kind, reason)``
like Lightning's ``EarlyStopping._evaluate_stopping_criteria``; :class:`FitBudget` is the stateful
shell around it: it reads the clock (:class:`CostMeter`), keeps the prices of a full and a cheap audit
(:class:`AuditPrices`) and makes every rank follow rank 0's decision.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import pytorch_lightning as pl

from cam_audit.errors import CamAuditError
from cam_audit.lightning.schedule import AuditSchedule, FitProgress, last_epoch
from cam_audit.pipeline import AuditRun, rank_indices
from cam_audit.report import AuditReport

#: ``"full"``: maps and the counterfactual tests; ``"cheap"``: maps only; ``"skip"``: no audit.
AuditKind = Literal["full", "cheap", "skip"]

Hook = TypeVar("Hook", bound=Callable[..., Any])

#: How much more than its estimate an audit not yet measured is priced at.
ESTIMATE_MARGIN = 1.5
#: What discovery adds to a full audit, in engine times over the probe (forward and backward): six
#: forwards of up to the whole probe (fill and control fill, paste and control paste of the tested spots,
#: each object on a background of its own class and of another), on batches twice the audit's, plus the
#: search for control places, the grouping of the spots and the gallery, which cost as much again on a
#: small model. Too high a price only delays an audit; too low a one overspends the budget.
DISCOVERY_ENGINE_TIMES = 8.0


@dataclass(frozen=True)
class BudgetState:
    """What the decision reads, all measured in wall seconds.

    Attributes:
        max_overhead: the callback's largest allowed share of the fit's time, e.g. 0.05.
        fit_seconds: since the fit started, the callback's own time included.
        spent_seconds: the callback's own time in that span (every hook it implements).
        full_price: what a full audit costs (None: not known yet).
        cheap_price: what a cheap audit costs (None: not known yet).
        remaining_seconds: the training time the fit is projected to take still, or None when its end
            is unknown (no ``max_epochs``); when known, the last epoch's full audit is reserved for.
    """

    max_overhead: float
    fit_seconds: float
    spent_seconds: float
    full_price: float | None
    cheap_price: float | None
    remaining_seconds: float | None = None

    def share_after(self, price: float) -> tuple[float, float | None]:
        """The callback's share of the fit right after an audit of ``price`` seconds, and at the fit's
        projected end with the last epoch's full audit added (None when the end is unknown)."""
        now = (self.spent_seconds + price) / max(self.fit_seconds + price, 1e-9)
        if self.remaining_seconds is None:
            return now, None
        final = self.full_price or 0.0
        spent = self.spent_seconds + price + final
        return now, spent / max(self.fit_seconds + self.remaining_seconds + price + final, 1e-9)


def plan_audit(state: BudgetState, *, counterfactual: bool, last_epoch: bool) -> tuple[AuditKind, str]:
    """Which audit this epoch gets: the richest that keeps the callback's share within the budget.

    The last epoch of a fit is always audited in full. Otherwise a full audit (allowed only when
    ``counterfactual``: the counterfactual tests are due) is chosen if the share stays within
    ``max_overhead`` both right after it and at the fit's projected end, else a cheap one on the same
    terms, else none.

    >>> state = BudgetState(0.05, fit_seconds=100.0, spent_seconds=3.0, full_price=3.0, cheap_price=1.0)
    >>> plan_audit(state, counterfactual=True, last_epoch=False)[0]
    'cheap'
    >>> plan_audit(state, counterfactual=True, last_epoch=True)[0]
    'full'
    """
    if last_epoch:
        return ("full" if counterfactual else "cheap"), "the last epoch of a fit is always audited in full"
    budget = f"max_overhead={state.max_overhead:.1%}"
    options: list[tuple[AuditKind, float | None]] = [("full", state.full_price)] if counterfactual else []
    options.append(("cheap", state.cheap_price))
    refused = []
    for kind, price in options:
        if price is None:
            refused.append(f"a {kind} audit has no price yet")
            continue
        now, end = state.share_after(price)
        worst = now if end is None else max(now, end)
        said = f"a {kind} audit ({price:.2f} s) takes the share to {now:.1%}" + (
            "" if end is None else f" now and {end:.1%} at the projected end"
        )
        if worst <= state.max_overhead:
            return kind, "; ".join([*refused, f"{said}, within {budget}"])
        refused.append(f"{said}, over {budget}")
    return "skip", "; ".join(refused)


class AuditPrices:
    """Seconds a full and a cheap audit take: measured from the audits themselves, estimated until then.

    Before any audit an estimate comes from one probe batch timed through the engine
    (:func:`batch_price`), at the first epoch an audit is due, on the device the fit runs on. After
    an audit of one kind the other kind is estimated from it: a cheap audit is a full one less its
    counterfactual tests and discovery, a full one a cheap one plus two forwards (the fill and the paste
    test) of the probe, priced by its attribution time, and with ``discover`` plus
    :data:`DISCOVERY_ENGINE_TIMES` attribution times. A measured price always replaces an estimate, and an
    estimate is quoted at :data:`ESTIMATE_MARGIN` times itself (:meth:`quote`): a price too low overspends
    the budget, one too high only delays an audit.

    Args:
        discover: the full audits also look for cues nobody annotated (``CamAudit(discover=True)``).
    """

    def __init__(self, discover: bool = False) -> None:
        #: engine times a full audit adds to a cheap one
        self.full_extra = 2.0 + (DISCOVERY_ENGINE_TIMES if discover else 0.0)
        self.full: float | None = None
        self.cheap: float | None = None
        self.measured: set[str] = set()

    def estimate_from_batch(self, seconds: float, n_batches: int) -> None:
        """Prices before any audit, from one probe batch through the engine in ``seconds``: with the
        engine's time over the ``n_batches`` an audit takes, a cheap audit half as much again (scores,
        images and reports), a full one two engine times more (the fill and the paste forwards), and
        :data:`DISCOVERY_ENGINE_TIMES` more with discovery."""
        if not self.measured:
            engine = seconds * n_batches
            self.cheap = 1.5 * engine
            self.full = self.cheap + self.full_extra * engine

    def quote(self, kind: Literal["full", "cheap"]) -> float | None:
        """The price the decision uses: the measured one, or the estimate with its margin."""
        price = self.full if kind == "full" else self.cheap
        if price is None or kind in self.measured:
            return price
        return ESTIMATE_MARGIN * price

    def record(self, kind: AuditKind, seconds: float, report: AuditReport) -> None:
        """Price ``kind`` at ``seconds`` (the whole audit: scoring, logging, images and reports)."""
        if kind == "skip":
            return
        self.measured.add(kind)
        if kind == "full":
            self.full = seconds
            if "cheap" not in self.measured:
                tests = ("counterfactual_seconds", "discovery_seconds")
                self.cheap = max(seconds - sum(float(report.meta.get(k, 0.0)) for k in tests), 0.0)
        else:
            self.cheap = seconds
            if "full" not in self.measured:
                self.full = seconds + self.full_extra * float(report.meta.get("attribution_seconds", seconds))


class CostMeter:
    """The fit's wall time and the callback's own time in it (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.fit_started: float | None = None
        self.spent = 0.0
        self._entered: float | None = None

    def start_fit(self) -> None:
        self.fit_started, self.spent = time.perf_counter(), 0.0

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Add the block's seconds to :attr:`spent` (a block inside another counts once)."""
        if self._entered is not None:
            yield
            return
        self._entered = time.perf_counter()
        try:
            yield
        finally:
            self.spent += time.perf_counter() - self._entered
            self._entered = None

    def seconds(self) -> tuple[float, float]:
        """``(fit seconds, callback seconds)`` so far, the hook now running included."""
        now = time.perf_counter()
        running = now - self._entered if self._entered is not None else 0.0
        return now - (self.fit_started if self.fit_started is not None else now), self.spent + running

    def share(self) -> float:
        """The callback's share of the fit so far (0 before the fit starts)."""
        fit, spent = self.seconds()
        return spent / fit if fit > 0 else 0.0


def timed(hook: Hook) -> Hook:
    """Count a callback hook's time as the callback's own (its ``meter``)."""

    @functools.wraps(hook)
    def timed_hook(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.meter.timing():
            return hook(self, *args, **kwargs)

    return timed_hook  # type: ignore[return-value]


class FitBudget:
    """The callback's overhead budget during a fit: decides each audit and learns its price.

    Args:
        max_overhead: the callback's largest share of the fit's time, in ``(0, 1)``.
        meter: the callback's clock.
        discover: the full audits also look for cues nobody annotated (they cost more).
    """

    def __init__(self, max_overhead: float, meter: CostMeter, discover: bool = False) -> None:
        if isinstance(max_overhead, bool) or not isinstance(max_overhead, (int, float)):
            raise CamAuditError(f"max_overhead must be a number in (0, 1) or None, got {max_overhead!r}")
        if not 0.0 < max_overhead < 1.0:
            raise CamAuditError(
                f"max_overhead must lie in (0, 1), e.g. 0.05 for 5% of the fit's time, got {max_overhead}"
            )
        self.max_overhead = float(max_overhead)
        self.meter = meter
        self.prices = AuditPrices(discover)
        #: ``(epoch, kind, reason)`` of every decision of the fit, in order
        self.decisions: list[tuple[int, AuditKind, str]] = []

    def plan(self, trainer: pl.Trainer, counterfactual: bool, last_epoch: bool) -> AuditKind:
        """This epoch's audit, decided on rank 0 and followed by every rank."""
        fit, spent = self.meter.seconds()
        state = BudgetState(
            self.max_overhead,
            fit,
            spent,
            self.prices.quote("full"),
            self.prices.quote("cheap"),
            remaining_training(trainer, fit - spent),
        )
        kind, reason = agree(trainer, plan_audit(state, counterfactual=counterfactual, last_epoch=last_epoch))
        self.decisions.append((trainer.current_epoch, kind, reason))
        return kind


def batch_price(run: AuditRun, rank: int, world_size: int) -> tuple[float, int]:
    """``(seconds, batches)``: the engine timed on the first probe batch on the run's device (after an
    untimed one-sample call, so no first-call cost is priced), and the batches an audit of this rank
    takes. A smaller sample would be cheaper to time but prices a batch badly: per-call costs dominate
    it."""
    batch = next(iter(run.probe.batches(run.batch_size))).to(run.device)
    run.engine(batch.images[:1], batch.labels[:1])  # the engine runs the model in its forward context
    started = time.perf_counter()
    run.engine(batch.images, batch.labels)
    seconds = time.perf_counter() - started
    mine = rank_indices(len(run.probe), run.batch_size, rank, world_size)
    return seconds, math.ceil(len(mine) / run.batch_size)


def record_audit(
    progress: FitProgress,
    budget: FitBudget | None,
    kind: AuditKind,
    epoch: int,
    seconds: float,
    report: AuditReport,
) -> None:
    """After an audit of ``epoch``: note a full audit of the current epoch, and price ``kind`` at
    ``seconds`` for the budget."""
    if kind == "full" and epoch == progress.epoch:
        progress.full_epoch = epoch
    if budget is not None:
        budget.prices.record(kind, seconds, report)


def epoch_audit(
    trainer: pl.Trainer, schedule: AuditSchedule, budget: FitBudget | None, run: AuditRun, n_audits: int
) -> AuditKind:
    """This epoch's audit: by the schedule alone, or the budget's choice among what the schedule allows
    (``every_n_epochs`` and ``counterfactual_every_n_audits`` stay the densest)."""
    if not schedule.due(trainer):
        return "skip"
    counterfactual = schedule.counterfactual_due(trainer, n_audits)
    if budget is None or getattr(trainer, "fast_dev_run", False):
        return "full" if counterfactual else "cheap"
    if budget.prices.full is None:
        budget.prices.estimate_from_batch(*batch_price(run, trainer.global_rank, trainer.world_size))
    return budget.plan(trainer, counterfactual, last_epoch(trainer))


def remaining_training(trainer: pl.Trainer, trained_seconds: float) -> float | None:
    """Training seconds the fit is projected to take still, at the mean pace of its epochs so far
    (None without ``max_epochs``)."""
    max_epochs = trainer.max_epochs
    if max_epochs is None or max_epochs < 0:
        return None
    done = trainer.current_epoch + 1
    return trained_seconds / done * max(max_epochs - done, 0)


def agree(trainer: pl.Trainer, decision: tuple[AuditKind, str]) -> tuple[AuditKind, str]:
    """Rank 0's decision on every rank (each rank timed itself; all must audit together)."""
    if trainer.world_size == 1:
        return decision
    kind, reason = trainer.strategy.broadcast(decision, src=0)
    return kind, reason


__all__ = [
    "DISCOVERY_ENGINE_TIMES",
    "ESTIMATE_MARGIN",
    "AuditKind",
    "AuditPrices",
    "BudgetState",
    "CostMeter",
    "FitBudget",
    "agree",
    "epoch_audit",
    "plan_audit",
    "record_audit",
    "remaining_training",
    "batch_price",
    "timed",
]
