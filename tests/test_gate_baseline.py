"""``cam-audit gate CANDIDATE --baseline CHAMPION``: exit codes, printed reasons, Markdown and JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cam_audit.cli import main
from cam_audit.report import AuditReport
from helpers.compare import audited, changed, with_class_value


@pytest.fixture(scope="module")
def reports(scene_probe, tmp_path_factory):
    """The champion's report and three candidates, written as JSON files."""
    folder = tmp_path_factory.mktemp("gate")
    champion = audited(scene_probe)

    def with_meta(**meta) -> AuditReport:
        return AuditReport(champion.summary, champion.samples, champion.per_class, champion.verdict,
                           champion.policy, {**champion.meta, **meta})

    candidates = {
        "champion": champion,
        "same": champion,
        "lower": changed(champion, 0.9),
        "flagged": with_class_value(champion, "spurious_lift", "square", 6.0),
        "other_probe": with_meta(probe_fingerprint="ffffffffffffffff"),
        "other_task": with_meta(target="predicted"),
    }
    return {name: str(report.to_json(folder / f"{name}.json")) for name, report in candidates.items()}


def _gate(*argv: str) -> int:
    return main(["gate", *argv])


def test_identical_reports_promote(reports, capsys):
    assert _gate(reports["same"], "--baseline", reports["champion"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"PROMOTE {reports['same']} over {reports['champion']} (24 paired samples)"
    assert out[1].startswith("  focus_lift ")
    assert out[1].endswith("(+0%, 95% CI +0% to +0%, p = 1.000): within the 5% allowed")


def test_a_ten_percent_drop_does_not_promote_unless_allowed(reports, capsys):
    assert _gate(reports["lower"], "--baseline", reports["champion"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"DO NOT PROMOTE {reports['lower']} over {reports['champion']}: 1 reason(s)")
    assert out[1].startswith("  focus_lift ") and "(-10%, 95% CI" in out[1]
    assert "more than the 5% allowed" in out[1]
    champion = ["--baseline", reports["champion"]]
    assert _gate(reports["lower"], *champion, "--max-regression", "0.2") == 0
    # judged on other scores, which did not change
    assert _gate(reports["lower"], *champion, "--scores", "spurious_lift,accuracy") == 0


def test_a_new_flag_does_not_promote(reports, capsys):
    assert _gate(reports["flagged"], "--baseline", reports["champion"]) == 1
    out = capsys.readouterr().out
    assert "new flag max_spurious_lift: spurious_lift 6.00 > 5.00 for class 'square'" in out


def test_markdown_holds_the_table_and_the_reasons(reports, tmp_path, capsys):
    path = tmp_path / "comment" / "promotion.md"
    assert _gate(reports["flagged"], "--baseline", reports["lower"], "--markdown", str(path)) == 1
    text = path.read_text()
    assert text.startswith(f"### cam_audit: **do not promote** `{reports['flagged']}`")
    assert "| score | scope | champion | candidate | delta | CI | p | verdict |" in text
    # the flagged copy has the champion's scores; the lowered one 10% less: focus_lift rose 11%
    lift = next(line for line in text.splitlines() if line.startswith("| **focus_lift** | probe |"))
    assert "(+11%)" in lift and lift.endswith("| < 0.001 | better |")
    assert "**New flags** (the champion does not have them):" in text
    assert "- spurious_lift 6.00 > 5.00 for class 'square'" in text


def test_json_carries_the_decision_and_the_comparison(reports, capsys):
    assert _gate(reports["lower"], "--baseline", reports["champion"], "--json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] is False and data["baseline"] == reports["champion"]
    comparison = data["comparison"]
    assert comparison["passed"] is False and len(comparison["reasons"]) == 1
    row = next(r for r in comparison["table"] if r["score"] == "focus_lift" and r["scope"] == "probe")
    assert row["verdict"] == "regression" and row["judged"] is True and row["p_value"] == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("candidate", "extra", "message"),
    [
        ("other_probe", [], "different probes (probe_fingerprint ffffffffffffffff vs"),
        ("other_task", [], "the candidate's target is 'predicted' but the baseline's is 'label'"),
        ("same", ["--scores", "focus_lft"], "unknown score(s) 'focus_lft'; scores with a per-sample column:"),
        ("same", ["--max-regression", "-1"], "max_regression must be a fraction >= 0"),
    ],
)
def test_bad_input_exits_2_with_one_line(reports, capsys, candidate, extra, message):
    assert _gate(reports[candidate], "--baseline", reports["champion"], *extra) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err and len(captured.err.strip().splitlines()) == 1


def test_unreadable_baseline_and_promotion_flags_without_baseline_exit_2(reports, tmp_path, capsys):
    assert _gate(reports["same"], "--baseline", str(tmp_path / "missing.json")) == 2
    assert "missing.json does not exist" in capsys.readouterr().err
    assert _gate(reports["same"], "--markdown", str(tmp_path / "x.md")) == 2
    assert "--markdown compare against a champion: add --baseline" in capsys.readouterr().err
    assert not (tmp_path / "x.md").exists()
    # without --baseline the gate is the policy gate it always was
    assert _gate(reports["flagged"]) == 1 and _gate(reports["same"]) == 0


def test_the_console_command_prints_no_traceback(reports):
    command = ["gate", reports["other_probe"], "--baseline", reports["champion"]]
    done = subprocess.run([sys.executable, "-m", "cam_audit.cli", *command], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "different probes" in done.stderr
