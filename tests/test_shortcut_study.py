"""The shortcut study (cam_audit.synthetic.study): a quick run re-judges its saved reports identically, the
script prints its tables, and a shortcut, the rates and the margins are counted as the policy sees them."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cam_audit import audit
from cam_audit.report import SUMMARY_KEYS, AuditReport, ShortcutPolicy, Verdict
from cam_audit.synthetic import study

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "shortcut_study.py"
QUICK_CONDITIONS = ("clean-random", "corner-1.0", "single-1.0")


def test_quick_study_rejudges_saved_reports_identically(tmp_path):
    settings = study.StudySettings.for_run(quick=True)
    conditions = study.conditions(quick=True)
    for report in study.train_study(conditions, ["avg"], [0], settings, audit):
        report.to_json(tmp_path / study.report_file(report))
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [f"{c}-avg-0.json" for c in QUICK_CONDITIONS]

    reports = study.saved_reports(tmp_path)
    assert [r.meta["condition"] for r in reports] == list(QUICK_CONDITIONS)
    assert reports[0].meta["settings"] == {
        "epochs": 2,
        "n_train": 300,
        "image_size": 32,
        "width": 8,
        "n_probe": 48,
    }
    policy = ShortcutPolicy()
    first = study.model_table(reports, policy, 0.10)
    again = study.model_table(study.saved_reports(tmp_path), policy, 0.10)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(study.rates(first), study.rates(again))
    pd.testing.assert_frame_equal(study.margins(first, policy), study.margins(again, policy))


@pytest.mark.slow
def test_the_script_prints_its_tables_and_rejudges_saved_reports_identically(tmp_path):
    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-4000:]
        return done.stdout

    first = run("--quick", "--pools", "avg", "--threads", "1", "--out", str(tmp_path))
    assert len(list(tmp_path.glob("*.json"))) == 3  # one report per quick condition
    for heading in ("per model", "detection and false-alarm rates", "margins", "counterfactual cost"):
        assert heading in first
    for condition in QUICK_CONDITIONS:
        assert condition in first

    again = run("--from-reports", str(tmp_path))
    # the same tables from the saved reports (only the elapsed seconds differ)
    assert first.rsplit("\n(", 1)[0] == again.rsplit("\n(", 1)[0]


def test_a_shortcut_is_defined_by_behaviour_not_by_training():
    row = {"condition": "clean-random", "clean": True, "pool": "avg", "seed": 0, "best_focus_lift": None}
    report = AuditReport.from_dict(_empty_report())
    report.meta.update(row, acc_cue=0.95, acc_removed=0.95, acc_moved=0.80)
    report.meta.update(attribution_seconds=1.0, counterfactual_seconds=0.5)
    assert study.judge(report, ShortcutPolicy(), 0.10)["shortcut"]  # follows a moved cue
    report.meta.update(acc_moved=0.90)
    assert not study.judge(report, ShortcutPolicy(), 0.10)["shortcut"]  # a 5-point drop is not


def _empty_report() -> dict:
    summary = {key: float("nan") for key in SUMMARY_KEYS}
    frame = pd.DataFrame({key: [float("nan")] for key in SUMMARY_KEYS} | {"n_scored": [0.0]}, index=["disc"])
    return AuditReport(summary, pd.DataFrame(), frame, Verdict(True), ShortcutPolicy()).to_dict()


def test_each_rule_counts_as_the_evidence_of_the_score_it_reads():
    failing = {"focus_lift": 0.5, "focus": 0.1, "spurious_lift": 9.0, "spurious_mass": 0.9}
    failing |= {"cf_flip_rate": 0.9, "cf_paste_rate": 0.9, "n_samples": 40, "n_degenerate": 0}
    verdict = ShortcutPolicy().evaluate(failing, best_focus_lift=2.0)
    kinds = {f.rule: study.evidence_kind(f) for f in verdict.findings}
    assert kinds == {
        "min_focus_lift": "attribution",
        "max_spurious_lift": "attribution",
        "max_flip_rate": "counterfactual",
        "max_paste_rate": "counterfactual",
        "max_focus_drop": "history",
    }
    # every rule the policy has gets a short name
    assert set(kinds) | {"inconclusive"} == set(study.RULE_LABELS)


def test_rates_and_margins_count_what_the_policy_sees():
    nan = math.nan
    models = pd.DataFrame(
        {
            "clean": [True, True, False, False],
            "shortcut": [False, False, True, True],
            "flagged": [False, True, True, False],
            "evidence": [[], ["attribution"], ["counterfactual"], []],
            "focus_lift": [3.0, 2.0, 1.2, 2.5],
            "min_class_focus_lift": [2.5, 1.9, 1.4, 0.9],  # the last model's worst class is below 1.5
            "spurious_lift": [0.5, 1.0, 2.5, 1.5],
            "max_class_spurious_lift": [0.7, 2.4, 3.0, 1.8],
            "cf_flip_rate": [0.0, 0.1, 0.5, nan],
            "max_class_flip_rate": [0.05, 0.1, 0.9, nan],
            "cf_paste_rate": [0.0, 0.0, 0.8, 0.1],
            "max_class_paste_rate": [0.0, 0.1, 1.0, 0.3],
            "focus_drop": [0.0, 0.1, 0.4, nan],
        }
    )
    policy = ShortcutPolicy()
    rates = study.rates(models)
    assert rates.loc["shortcut models (detection rate)", "any (verdict)"] == "1/2"
    assert rates.loc["shortcut models (detection rate)", "counterfactual"] == "1/2"
    assert rates.loc["  of which clean controls", "attribution"] == "1/2"
    assert rates.loc["  of which cue-trained", "n"] == 0

    margins = study.margins(models, policy)
    assert margins.loc["min_focus_lift", "clean worst"] == 1.9  # the lowest class, not the probe mean
    assert margins.loc["max_spurious_lift", "clean worst"] == 2.4
    # 1.2 (probe) and 0.9 (a class): only the class value is below a threshold of 1.0
    assert (
        study.margins(models, ShortcutPolicy(min_focus_lift=1.0)).loc["min_focus_lift", "shortcut caught"]
        == "1/2"
    )
    assert margins.loc["max_flip_rate", "shortcut max"] == 0.9
    assert margins.loc["max_paste_rate", "shortcut min"] == 0.3
