"""``cam-audit gate`` on reports of discovery audits: confirmed cues and bg_gap fail the gate with readable
lines, ``--min-cue-excess`` and ``--max-bg-gap`` re-judge them, and a promotion refuses a new cue."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cam_audit.cli import main
from helpers.compare import LENIENT, audited
from helpers.cues import cue_row, cue_table, discovery_report

#: filling the cue flips 16 of 20 decisions, its control none: an excess of 0.8, p about 1.5e-5
STRONG = cue_row(0, "disc", 0, fill=(16, 0, 20))
#: pasting this one moves 14 of 30 images of other classes to 'square', its control 1: an excess of 0.43
MODEST = cue_row(1, "square", 1, fill=(0, 0, 30), paste=(14, 1, 30),
                 where="bottom-right corner, about 6x6 px", box=(56.0, 56.0, 62.0, 62.0))  # fmt: skip
#: as large as the modest one but its control moves as often: never confirmed
CONTROLLED = cue_row(2, "triangle", 2, fill=(5, 5, 20), where="centre, about 9x9 px")


@pytest.fixture()
def cued(tmp_path):
    return discovery_report([STRONG, MODEST, CONTROLLED]).to_json(tmp_path / "cued.json")


def test_a_confirmed_cue_fails_the_gate_with_its_class_place_and_rates(cued, capsys):
    assert main(["gate", str(cued)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"FAIL {cued}") and "2 rule(s) failed" in lines[0]
    assert lines[1] == (
        "  min_cue_excess: class 'disc' relies on an unannotated cue at the top-left corner, about 8x8 px "
        "(20 samples): filling it flips 80% of 20 predictions (control 0%, p < 0.001)"
    )
    assert lines[2].startswith("  min_cue_excess: class 'square' relies on an unannotated cue at the "
                               "bottom-right corner, about 6x6 px (20 samples)")
    assert "moves 47% of 30 to 'square' (control 3%, p < 0.001)" in lines[2]
    assert len(lines) == 3  # the triangle's cue moves no more than its control


def test_min_cue_excess_decides_which_cues_are_confirmed(cued, capsys):
    # 0.5: only the fill excess of 0.8 is large enough; 0.9: neither
    assert main(["gate", str(cued), "--min-cue-excess", "0.5"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "class 'disc'" in lines[1]
    assert main(["gate", str(cued), "--min-cue-excess", "0.9"]) == 0
    assert capsys.readouterr().out.startswith(f"PASS {cued}")


def test_the_cue_settings_are_flags_of_the_gate_too(cued, capsys):
    """--min-cue-samples and --cue-alpha re-judge a saved cue table like --min-cue-excess does; a value the
    policy refuses is bad input (exit 2, one line)."""
    assert main(["gate", str(cued), "--min-cue-samples", "21"]) == 0  # both confirmed cues have 20 samples
    assert capsys.readouterr().out.startswith(f"PASS {cued}")
    assert main(["gate", str(cued), "--cue-alpha", "1e-9"]) == 0  # no p-value is that small
    assert main(["gate", str(cued), "--cue-alpha", "0.01", "--min-cue-samples", "20"]) == 1
    capsys.readouterr()
    assert main(["gate", str(cued), "--cue-alpha", "2"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cam-audit gate: error:") and "cue_alpha" in error
    assert len(error.splitlines()) == 1
    # below the audit's own minimum: those cues were never tested, so lowering it cannot confirm them
    assert main(["gate", str(cued), "--min-cue-samples", "2"]) == 2
    assert "below the audit's own 5" in capsys.readouterr().err


def test_max_bg_gap_fails_and_is_overridden_on_the_command_line(tmp_path, capsys):
    report = discovery_report([], bg_gap=0.5).to_json(tmp_path / "background.json")
    assert main(["gate", str(report)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (
        "  max_bg_gap: bg_gap 0.50 > 0.20: the objects are recognised 95% of the time on backgrounds of "
        "their own class and 45% on backgrounds of another class"
    )
    assert main(["gate", str(report), "--max-bg-gap", "0.6"]) == 0
    assert main(["gate", str(report), "--max-bg-gap", "0.4"]) == 1


def test_json_names_the_cue_finding(cued, capsys):
    assert main(["gate", str(cued), "--json", "--min-cue-excess", "0.5"]) == 1
    decision = json.loads(capsys.readouterr().out)
    assert decision["passed"] is False and decision["policy"]["min_cue_excess"] == 0.5
    (finding,) = decision["findings"]
    assert (finding["rule"], finding["metric"], finding["scope"]) == ("min_cue_excess", "cue", "disc")
    assert finding["value"] == pytest.approx(0.8) and finding["threshold"] == 0.5


def test_the_rule_flags_are_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["gate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-bg-gap X" in text and "--min-cue-excess X" in text
    assert "for the cue to be confirmed" in text


def test_an_out_of_range_cue_threshold_exits_2(cued, capsys):
    assert main(["gate", str(cued), "--min-cue-excess", "1.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "min_cue_excess" in err


def test_a_candidate_with_a_new_confirmed_cue_is_not_promoted(tmp_path, capsys, scene_probe):
    """Two copies of one real audit that differ only in their cue tables."""
    report = audited(scene_probe)
    champion = replace(report, cues=cue_table([CONTROLLED])).with_verdict(LENIENT)
    candidate = replace(report, cues=cue_table([STRONG, CONTROLLED])).with_verdict(LENIENT)
    champion, candidate = champion.to_json(tmp_path / "champion.json"), candidate.to_json(tmp_path / "c.json")
    assert main(["gate", str(champion), "--baseline", str(champion)]) == 0
    capsys.readouterr()
    assert main(["gate", str(candidate), "--baseline", str(champion)]) == 1
    printed = capsys.readouterr().out
    assert "new flag min_cue_excess: class 'disc' relies on an unannotated cue" in printed
