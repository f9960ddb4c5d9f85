"""The overhead budget: the decision as a function of measured seconds, the prices it learns, the clock,
the agreement across ranks, and the last epoch of a fit audited in full however the fit ends."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cam_audit import CamAudit
from cam_audit.errors import CamAuditError
from cam_audit.lightning import budget as budget_module
from cam_audit.lightning.budget import (
    AuditPrices,
    BudgetState,
    CostMeter,
    agree,
    plan_audit,
    remaining_training,
)
from cam_audit.lightning.scenes import SceneClassifier, SceneDataModule
from cam_audit.report import AuditReport

# ---------------------------------------------------------------- the decision, from measured seconds


def state(fit=100.0, spent=1.0, full=3.0, cheap=1.0, remaining=None, budget=0.05) -> BudgetState:
    return BudgetState(budget, fit, spent, full, cheap, remaining)


def test_a_full_audit_when_it_fits():
    kind, reason = plan_audit(state(spent=1.0, full=3.0), counterfactual=True, last_epoch=False)
    assert kind == "full"  # (1 + 3) / (100 + 3) = 3.9%
    assert "3.9%" in reason and "within max_overhead=5.0%" in reason


def test_a_cheap_audit_where_a_full_one_does_not_fit():
    kind, reason = plan_audit(state(spent=3.0, full=3.0, cheap=1.0), counterfactual=True, last_epoch=False)
    assert kind == "cheap"  # full: 6 / 103 = 5.8%; cheap: 4 / 101 = 4.0%
    assert "5.8%" in reason and "4.0%" in reason


def test_no_audit_where_neither_fits():
    kind, reason = plan_audit(state(spent=4.5, full=3.0, cheap=1.0), counterfactual=True, last_epoch=False)
    assert kind == "skip"  # cheap: 5.5 / 101 = 5.4%
    assert "a full audit (3.00 s)" in reason and "a cheap audit (1.00 s)" in reason and "5.4%" in reason


def test_no_full_audit_when_the_counterfactual_tests_are_not_due():
    kind, _ = plan_audit(state(spent=0.0, full=1.0, cheap=0.5), counterfactual=False, last_epoch=False)
    assert kind == "cheap"


def test_the_last_epoch_is_audited_in_full_whatever_it_costs():
    over = state(spent=50.0, full=30.0, cheap=10.0)
    assert plan_audit(over, counterfactual=True, last_epoch=True) == (
        "full",
        "the last epoch of a fit is always audited in full",
    )
    assert plan_audit(over, counterfactual=False, last_epoch=True)[0] == "cheap"  # tests switched off


def test_the_last_epochs_full_audit_is_reserved_for_when_the_end_is_known():
    # now: (1 + 1) / (100 + 1) = 2.0%; at the projected end: (1 + 1 + 3) / (100 + 20 + 1 + 3) = 4.0%
    assert plan_audit(state(remaining=20.0), counterfactual=False, last_epoch=False)[0] == "cheap"
    # a short rest of the fit leaves no room: (1 + 1 + 3) / (100 + 0 + 1 + 3) = 4.8% fits, but the full
    # audit now would leave (1 + 3 + 3) / (100 + 0 + 3 + 3) = 6.6% at the end
    kind, reason = plan_audit(state(remaining=0.0), counterfactual=True, last_epoch=False)
    assert kind == "cheap" and "6.6% at the projected end" in reason


def test_an_unpriced_audit_is_not_run():
    kind, reason = plan_audit(state(full=None, cheap=None), counterfactual=True, last_epoch=False)
    assert kind == "skip" and reason == "a full audit has no price yet; a cheap audit has no price yet"


def test_remaining_training_projects_the_mean_epoch():
    trainer = SimpleNamespace(max_epochs=10, current_epoch=3)
    assert remaining_training(trainer, 40.0) == pytest.approx(60.0)  # 4 epochs in 40 s, 6 to go
    assert remaining_training(SimpleNamespace(max_epochs=-1, current_epoch=3), 40.0) is None


# ---------------------------------------------------------------- prices


def _report(seconds: float, attribution: float, counterfactual: float) -> AuditReport:
    meta = {"seconds": seconds, "attribution_seconds": attribution, "counterfactual_seconds": counterfactual}
    return SimpleNamespace(meta=meta)  # the prices read the report's meta only


def test_a_full_audit_prices_both_kinds_until_a_cheap_one_is_measured():
    prices = AuditPrices()
    prices.estimate_from_batch(0.4, 2)  # the engine: 0.4 s a batch, two batches
    assert (prices.cheap, prices.full) == pytest.approx((1.2, 2.8))
    assert (prices.quote("cheap"), prices.quote("full")) == pytest.approx((1.8, 4.2))  # with the margin
    prices.record("full", 2.0, _report(1.9, 0.5, 1.2))
    assert (prices.full, prices.cheap) == pytest.approx((2.0, 0.8))
    assert (prices.quote("full"), prices.quote("cheap")) == pytest.approx((2.0, 1.2))  # measured as is
    prices.record("cheap", 0.9, _report(0.85, 0.5, 0.0))
    assert (prices.full, prices.cheap) == pytest.approx((2.0, 0.9))
    prices.record("full", 2.4, _report(2.3, 0.6, 1.5))
    assert (prices.full, prices.cheap) == pytest.approx((2.4, 0.9))  # a measured cheap price stays
    prices.estimate_from_batch(9.0, 2)
    assert prices.full == pytest.approx(2.4)  # estimates never replace measurements


def test_a_cheap_audit_prices_a_full_one_at_two_more_forwards():
    prices = AuditPrices()
    prices.record("cheap", 1.0, _report(0.9, 0.4, 0.0))
    assert (prices.cheap, prices.full) == pytest.approx((1.0, 1.8))


def test_discovery_is_priced_into_the_full_audit_and_out_of_the_cheap_one():
    prices = AuditPrices(discover=True)
    prices.estimate_from_batch(0.4, 2)  # the engine: 0.8 s an audit; discovery adds eight engine times
    assert (prices.cheap, prices.full) == pytest.approx((1.2, 1.2 + 10 * 0.8))
    report = _report(6.5, 0.5, 1.0)
    report.meta["discovery_seconds"] = 4.0
    prices.record("full", 7.0, report)  # less the counterfactual tests and discovery: 2.0
    assert (prices.full, prices.cheap) == pytest.approx((7.0, 2.0))
    fresh = AuditPrices(discover=True)
    fresh.record("cheap", 1.0, _report(0.9, 0.4, 0.0))
    assert fresh.full == pytest.approx(1.0 + 10 * 0.4)


# ---------------------------------------------------------------- the clock


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_meter_counts_nested_hooks_once_and_the_running_hook_too(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(budget_module.time, "perf_counter", clock)
    meter = CostMeter()
    meter.start_fit()
    clock.now = 10.0
    with meter.timing():
        clock.now = 11.0
        with meter.timing():  # a hook calling another hook
            clock.now = 12.0
        assert meter.seconds() == (12.0, 2.0)  # the running hook counts
    clock.now = 20.0
    assert meter.seconds() == (20.0, 2.0)
    assert meter.share() == pytest.approx(0.1)


# ---------------------------------------------------------------- the same decision on every rank


class RankZeroBroadcast:
    """A strategy whose broadcast hands every rank what rank 0 sent, as DDP's does."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def broadcast(self, obj, src=0):
        assert src == 0
        self.sent.append(obj)
        return self.sent[0]


def test_every_rank_follows_rank_zeros_decision():
    strategy = RankZeroBroadcast()
    ranks = [SimpleNamespace(world_size=2, global_rank=r, strategy=strategy) for r in (0, 1)]
    # each rank timed itself: rank 1 alone would have skipped
    decided = [
        agree(ranks[0], ("full", "rank 0 has room")),
        agree(ranks[1], ("skip", "rank 1 does not")),
    ]
    assert decided == [("full", "rank 0 has room")] * 2
    assert agree(SimpleNamespace(world_size=1), ("cheap", "alone")) == ("cheap", "alone")


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize("value", [0, 1.0, 1.5, -0.1, True, "5%"])
def test_max_overhead_outside_zero_one_is_refused(scene_probe, value):
    with pytest.raises(CamAuditError, match="max_overhead"):
        CamAudit(scene_probe, target_layer="features", max_overhead=value)


# ---------------------------------------------------------------- the last epoch, however the fit ends


class FlatValidation(SceneClassifier):
    """Logs a validation number that never improves, so EarlyStopping(patience=0) stops after epoch 1."""

    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        self.log("flat", 1.0)


def _fit(tmp_path: Path, audit: CamAudit, model: pl.LightningModule, **kwargs) -> pl.Trainer:
    options = dict(
        max_epochs=5,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        logger=TensorBoardLogger(tmp_path, name="tb", version=""),
    )
    options.update(kwargs)
    trainer = pl.Trainer(callbacks=[audit, *options.pop("callbacks", [])], **options)
    trainer.fit(
        model, datamodule=SceneDataModule(watermark="correlated", n_train=64, n_val=32, batch_size=32)
    )
    return trainer


def _history(tmp_path: Path) -> list[dict]:
    lines = (tmp_path / "tb" / "cam_audit" / "history.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("max_overhead", [None, 0.5])
def test_an_early_stop_still_audits_the_last_epoch_in_full(tmp_path, scene_probe, max_overhead):
    torch.manual_seed(0)
    audit = CamAudit(
        scene_probe,
        target_layer="features",
        every_n_epochs=3,  # epochs 2 and 4 are due: the stop after epoch 1 comes first
        log_images=False,
        max_overhead=max_overhead,
    )
    stopper = EarlyStopping(monitor="flat", patience=0, mode="max")
    trainer = _fit(tmp_path, audit, FlatValidation(width=8), callbacks=[stopper])
    assert stopper.stopped_epoch == 1 and trainer.current_epoch == 2
    assert audit.n_audits == 1  # in on_train_end
    report = AuditReport.from_json(tmp_path / "tb" / "cam_audit" / "latest" / "report.json")
    assert report.meta["epoch"] == 1 and report.meta["counterfactual"] is True
    assert math.isfinite(report.summary["cf_flip_rate"])
    assert [row["epoch"] for row in _history(tmp_path)] == [1]
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    logged = events.Scalars("cam_audit/focus_lift")
    assert [e.step for e in logged] == [trainer.global_step]
    assert logged[-1].value == pytest.approx(report.summary["focus_lift"])
    assert "cam_audit/cf_flip_rate" in events.Tags()["scalars"]


def test_a_budget_no_audit_fits_audits_only_the_last_epoch_in_full(tmp_path, scene_probe):
    torch.manual_seed(0)
    # no audit costs a millionth of a fit: only the mandatory one runs
    audit = CamAudit(scene_probe, target_layer="features", log_images=False, max_overhead=1e-6)
    trainer = _fit(tmp_path, audit, SceneClassifier(width=8), max_epochs=3)
    assert audit.n_audits == 1
    assert [(row["epoch"], row["cf_flip_rate"] is not None) for row in _history(tmp_path)] == [(2, True)]
    decisions = audit.budget.decisions
    assert [(epoch, kind) for epoch, kind, _ in decisions] == [(0, "skip"), (1, "skip"), (2, "full")]
    assert "a cheap audit" in decisions[0][2] and "over max_overhead=0.0%" in decisions[0][2]
    share = float(trainer.callback_metrics["cam_audit/overhead"])
    assert 0.0 < share < 1.0
    assert audit.budget.prices.measured == {"full"}


def test_the_overhead_is_logged_every_epoch_without_a_budget(tmp_path, scene_probe):
    audit = CamAudit(scene_probe, target_layer="features", every_n_epochs=2, log_images=False)
    _fit(tmp_path, audit, SceneClassifier(width=8), max_epochs=3)
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    shares = [e.value for e in events.Scalars("cam_audit/overhead")]
    assert len(shares) == 3 and all(0.0 < share < 1.0 for share in shares)
    assert audit.n_audits == 2  # epochs 1 and 2 (the last): no audit added at the end
