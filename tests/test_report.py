"""Reports, the shortcut policy and its verdict; the gate command's exit codes."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from cam_audit.cli import main
from cam_audit.errors import ReportError
from cam_audit.report import AuditReport, ShortcutPolicy


def _summary(**overrides) -> dict[str, float]:
    base = dict(
        focus=0.6,
        focus_lift=3.0,
        pointing_game=0.9,
        relevance_rank=0.7,
        spurious_mass=0.02,
        spurious_lift=0.8,
        cf_flip_rate=0.0,
        cf_confidence_drop=0.01,
        cf_paste_rate=0.0,
        accuracy=0.95,
        n_samples=40.0,
        n_degenerate=0.0,
        n_spurious=40.0,
    )
    base.update(overrides)
    return base


def _per_class(**horse) -> pd.DataFrame:
    rows = {
        "cat": _summary(n_samples=20.0, n_scored=20.0),
        "horse": _summary(n_samples=20.0, n_scored=20.0, **horse),
    }
    frame = pd.DataFrame(rows).T
    frame.index.name = "class"
    return frame


def _report(summary=None, per_class=None, policy=None) -> AuditReport:
    policy = policy or ShortcutPolicy()
    summary = summary or _summary()
    per_class = per_class if per_class is not None else _per_class()
    samples = pd.DataFrame(
        {
            "index": [0, 1],
            "sample_id": ["a.png", "b.png"],
            "label": [0, 1],
            "focus": [0.5, math.nan],
            "cf_flip": [1.0, math.nan],
        }
    )
    return AuditReport(
        summary,
        samples,
        per_class,
        policy.evaluate(summary, per_class),
        policy,
        {"epoch": 3, "tags": ("a", "b")},
    )


def test_clean_summary_passes():
    assert ShortcutPolicy().evaluate(_summary()).passed


def test_flag_sentence_carries_the_numbers():
    verdict = ShortcutPolicy(max_spurious_lift=2.0).evaluate(
        _summary(spurious_lift=26.25, spurious_mass=0.42)
    )
    assert not verdict.passed
    assert verdict.flags == [
        "spurious_lift 26.25 > 2.00: 42% of heatmap mass sits on 1.6% of the image marked spurious"
    ]


def test_every_rule_reads_as_a_sentence_with_its_numbers_for_the_probe_and_for_a_class():
    failing = dict(
        focus=0.12,
        focus_lift=1.2,
        spurious_lift=7.05,
        spurious_mass=0.12,
        cf_flip_rate=0.75,
        cf_confidence_drop=0.31,
        cf_paste_rate=1.0,
    )
    verdict = ShortcutPolicy().evaluate(_summary(**failing), _per_class(**failing))
    probe = [f for f in verdict.findings if f.scope == "probe"]
    assert [(f.rule, f.metric, f.value, f.threshold) for f in probe] == [
        ("min_focus_lift", "focus_lift", 1.2, 1.5),
        ("max_spurious_lift", "spurious_lift", 7.05, 5.0),
        ("max_flip_rate", "cf_flip_rate", 0.75, 0.5),
        ("max_paste_rate", "cf_paste_rate", 1.0, 0.2),
    ]
    assert [f.message for f in probe] == [
        "focus_lift 1.20 < 1.50: only 12% of heatmap mass falls on the object",
        "spurious_lift 7.05 > 5.00: 12% of heatmap mass sits on 1.7% of the image marked spurious",
        "cf_flip_rate 0.75 > 0.50: filling the spurious region changes 75% of predictions (target "
        "probability falls by 0.31 on average)",
        "cf_paste_rate 1.00 > 0.20: pasting the cue into images of other classes turns 100% of them into "
        "the cue's class",
    ]
    horse = [f.message for f in verdict.findings if f.scope == "horse"]
    assert horse == [m.replace(":", " for class 'horse':", 1) for m in verdict.flags[:4]]


def test_shortcut_confined_to_one_class_is_flagged_by_name():
    per_class = _per_class(spurious_lift=9.0, spurious_mass=0.3)
    summary = _summary(spurious_lift=1.9)  # the probe-wide mean stays under the limit
    verdict = ShortcutPolicy().evaluate(summary, per_class)
    assert not verdict.passed
    assert [f.scope for f in verdict.findings] == ["horse"]
    assert "for class 'horse'" in verdict.flags[0]
    assert ShortcutPolicy(per_class=False).evaluate(summary, per_class).passed


def test_small_classes_are_not_judged_alone():
    per_class = _per_class(spurious_lift=9.0)
    per_class.loc["horse", ["n_samples", "n_scored"]] = 2
    assert ShortcutPolicy(min_class_samples=4).evaluate(_summary(), per_class).passed


def test_nan_evidence_never_fails_a_rule():
    summary = _summary(spurious_lift=math.nan, spurious_mass=math.nan, cf_flip_rate=math.nan)
    assert ShortcutPolicy().evaluate(summary).passed


def test_focus_drop_from_best_is_flagged():
    verdict = ShortcutPolicy(max_focus_drop=0.3).evaluate(_summary(focus_lift=2.0), best_focus_lift=4.0)
    assert [f.rule for f in verdict.findings] == ["max_focus_drop"]
    assert "50%" in verdict.flags[0]
    assert ShortcutPolicy(max_focus_drop=0.3).evaluate(_summary(focus_lift=3.0), best_focus_lift=4.0).passed


@pytest.mark.parametrize(
    "field,value", [("min_focus_lift", -1.0), ("max_flip_rate", 1.5), ("min_class_samples", 0)]
)
def test_policy_rejects_bad_thresholds(field, value):
    with pytest.raises(ReportError, match=field):
        ShortcutPolicy(**{field: value})


def test_policy_from_dict_names_unknown_fields():
    with pytest.raises(ReportError, match="max_spurius_lift"):
        ShortcutPolicy.from_dict({"max_spurius_lift": 2.0})


def test_report_json_round_trip_is_exact(tmp_path):
    report = _report(summary=_summary(spurious_lift=math.nan, focus=0.1 + 0.2))
    path = report.to_json(tmp_path / "report.json")
    json.loads(path.read_text())  # strict JSON: NaN was written as null
    back = AuditReport.from_json(path)
    assert back.summary.keys() == report.summary.keys()
    for key, value in report.summary.items():
        assert (math.isnan(value) and math.isnan(back.summary[key])) or back.summary[key] == value
    pd.testing.assert_frame_equal(back.samples, report.samples)
    pd.testing.assert_frame_equal(back.per_class, report.per_class)
    assert back.verdict == report.verdict and back.policy == report.policy
    assert back.meta["tags"] == ["a", "b"]


def test_report_json_round_trip_keeps_infinities_ints_bools_and_text(tmp_path):
    report = _report()
    report.samples["cf_paste"] = [math.inf, -math.inf]
    report.samples["flagged"] = [True, False]
    report.samples["note"] = ["x", None]
    back = AuditReport.from_json(report.to_json(tmp_path / "report.json"))
    pd.testing.assert_frame_equal(back.samples, report.samples)
    assert back.samples["label"].tolist() == [0, 1] and back.samples["flagged"].dtype == bool


def test_write_reports_writes_latest_and_best_with_the_same_bytes_and_appends_history(tmp_path):
    from cam_audit.lightning.sinks import write_reports

    report = _report()
    report.meta.update(epoch=3, global_step=30)
    root = write_reports(tmp_path, report, is_best=True)
    for name in ("report.json", "samples.csv"):
        assert (root / "best" / name).read_bytes() == (root / "latest" / name).read_bytes()
    assert AuditReport.from_json(root / "best" / "report.json").summary == report.summary
    write_reports(tmp_path, report, is_best=False)
    rows = [json.loads(line) for line in (root / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [3, 3] and rows[0]["focus_lift"] == 3.0
    assert sorted(p.name for p in (root / "best").iterdir()) == ["report.json", "samples.csv"]


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"format": "other"}'])
def test_unreadable_reports_raise_report_error(tmp_path, content):
    path = tmp_path / "report.json"
    path.write_text(content)
    with pytest.raises(ReportError, match="report"):
        AuditReport.from_json(path)


def test_gate_exit_codes(tmp_path, capsys):
    passing = _report().to_json(tmp_path / "pass.json")
    failing = _report(summary=_summary(spurious_lift=7.0, spurious_mass=0.2, cf_flip_rate=0.6)).to_json(
        tmp_path / "fail.json"
    )

    assert main(["gate", str(passing)]) == 0
    assert "PASS" in capsys.readouterr().out

    assert main(["gate", str(failing)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FAIL") and len(lines) == 3  # one line per failed rule
    assert lines[1].strip().startswith("max_spurious_lift:") and lines[2].strip().startswith("max_flip_rate:")

    # thresholds on the command line override the report's policy
    assert main(["gate", str(failing), "--max-spurious-lift", "10", "--max-flip-rate", "0.9"]) == 0
    assert main(["gate", str(passing), "--min-focus-lift", "3.5"]) == 1
    capsys.readouterr()

    assert main(["gate", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_gate_json_and_policy_file(tmp_path, capsys):
    failing = _report(summary=_summary(focus_lift=1.1)).to_json(tmp_path / "r.json")
    policy = tmp_path / "policy.yaml"
    policy.write_text("min_focus_lift: 1.0\nmax_spurious_lift: 3.0\n")
    assert main(["gate", str(failing), "--policy", str(policy), "--json"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["passed"] is True and decision["policy"]["min_focus_lift"] == 1.0
    policy.write_text("min_focus_lif: 1.0\n")
    assert main(["gate", str(failing), "--policy", str(policy)]) == 2
    assert "min_focus_lif" in capsys.readouterr().err


def test_gate_bad_arguments_exit_2_without_traceback(tmp_path):
    path = _report().to_json(tmp_path / "r.json")
    done = subprocess.run(
        [sys.executable, "-m", "cam_audit.cli", "gate", str(path), "--max-flip-rate", "abc"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "--max-flip-rate" in done.stderr


def test_gate_needs_no_torch(tmp_path):
    path = _report().to_json(tmp_path / "r.json")
    code = (
        "import sys; from cam_audit.cli import main; rc = main(['gate', sys.argv[1]]); "
        "assert 'torch' not in sys.modules, 'gate imported torch'; sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
