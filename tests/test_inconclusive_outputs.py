"""A verdict without evidence is called inconclusive everywhere, and the callback never acts on it."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from cam_audit import CamAudit, ShortcutPolicy
from cam_audit.errors import InconclusiveWarning
from cam_audit.lightning.sinks import verdict_markdown
from cam_audit.render.html import render_html
from cam_audit.report import AuditReport
from helpers.models import NoisyClassifier
from helpers.probes import tiny_probe
from helpers.trainers import make_trainer, tiny_data

NO_EVIDENCE = {"focus": math.nan, "focus_lift": math.nan, "n_samples": 8.0, "n_degenerate": 8.0}


def _report(summary: dict[str, float]) -> AuditReport:
    policy = ShortcutPolicy()
    return AuditReport(summary, pd.DataFrame(), pd.DataFrame(), policy.evaluate(summary), policy, {})


def test_every_output_names_the_outcome():
    report = _report(NO_EVIDENCE)
    assert report.verdict.outcome == "inconclusive" and not report.passed
    assert "INCONCLUSIVE" in render_html(report) and "SHORTCUT" not in render_html(report)
    assert verdict_markdown(report).startswith("**inconclusive**")
    flagged = _report({"focus": 0.05, "focus_lift": 0.5, "n_samples": 8.0, "n_degenerate": 0.0})
    assert flagged.verdict.outcome == "shortcut"
    assert verdict_markdown(flagged).startswith("**shortcut flagged**")


def test_the_callback_warns_but_never_stops_on_an_inconclusive_audit(tmp_path):
    # a model that stays at chance on the probe: the chance test leaves every verdict inconclusive
    torch.manual_seed(0)
    degenerate = CamAudit(tiny_probe(8), target_layer="features", batch_size=4, log_images=False,
                          on_shortcut="stop", policy=ShortcutPolicy(min_focus_lift=None))
    trainer = make_trainer(tmp_path, callbacks=[degenerate], max_epochs=3)
    with pytest.warns(InconclusiveWarning):
        trainer.fit(NoisyClassifier(), datamodule=tiny_data())
    assert degenerate.n_audits == 3  # not stopped after the first audit
    assert degenerate.last_report is not None and degenerate.last_report.verdict.inconclusive
    assert degenerate.first_flag_epoch == -1
    assert float(trainer.callback_metrics["cam_audit/inconclusive"]) == 1.0
    assert float(trainer.callback_metrics["cam_audit/shortcut"]) == 0.0
