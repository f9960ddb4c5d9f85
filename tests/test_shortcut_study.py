"""The shortcut study script runs end to end and re-judges its saved reports identically (slow: trains)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "shortcut_study.py"


def _load_study():
    spec = importlib.util.spec_from_file_location("shortcut_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_study_prints_its_tables_and_rejudges_saved_reports_identically(tmp_path, capsys):
    study = _load_study()
    assert study.main(["--quick", "--pools", "avg", "--out", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    assert len(list(tmp_path.glob("*.json"))) == 3  # one report per quick condition
    for heading in ("per model", "detection and false-alarm rates", "margins", "counterfactual cost"):
        assert heading in first
    for condition in ("clean-random", "corner-1.0", "single-1.0"):
        assert condition in first

    assert study.main(["--from-reports", str(tmp_path)]) == 0
    again = capsys.readouterr().out
    # the same tables from the saved reports (only the elapsed seconds differ)
    assert first.rsplit("\n(", 1)[0] == again.rsplit("\n(", 1)[0]


def test_a_shortcut_is_defined_by_behaviour_not_by_training():
    study = _load_study()
    from cam_audit.report import AuditReport

    row = {"condition": "clean-random", "clean": True, "pool": "avg", "seed": 0, "best_focus_lift": None}
    report = AuditReport.from_dict(_empty_report())
    report.meta.update(row, acc_cue=0.95, acc_removed=0.95, acc_moved=0.80)
    report.meta.update(attribution_seconds=1.0, counterfactual_seconds=0.5)
    assert study.judge(report, study.ShortcutPolicy(), 0.10)["shortcut"]  # follows a moved cue
    report.meta.update(acc_moved=0.90)
    assert not study.judge(report, study.ShortcutPolicy(), 0.10)["shortcut"]  # a 5-point drop is not


def _empty_report() -> dict:
    import pandas as pd

    from cam_audit.report import SUMMARY_KEYS, AuditReport, ShortcutPolicy, Verdict

    summary = {key: float("nan") for key in SUMMARY_KEYS}
    frame = pd.DataFrame({key: [float("nan")] for key in SUMMARY_KEYS} | {"n_scored": [0.0]}, index=["disc"])
    return AuditReport(summary, pd.DataFrame(), frame, Verdict(True), ShortcutPolicy()).to_dict()


def test_rates_and_margins_count_what_the_policy_sees():
    import pandas as pd

    study = _load_study()
    nan = float("nan")
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
    policy = study.ShortcutPolicy()
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
        study.margins(models, study.ShortcutPolicy(min_focus_lift=1.0)).loc[
            "min_focus_lift", "shortcut caught"
        ]
        == "1/2"
    )
    assert margins.loc["max_flip_rate", "shortcut max"] == 0.9
    assert margins.loc["max_paste_rate", "shortcut min"] == 0.3
