"""The demo's third run: a model that learned the watermark shortcut, audited with nobody marking the tag,
still has the tag found in each class's corner and confirmed; the clean model has none (slow: trains)."""

from __future__ import annotations

import pytest

from cam_audit.cli import main
from cam_audit.cli.demo import audit_unannotated, print_discovery
from cam_audit.report import AuditReport
from cam_audit.synthetic import make_scenes
from helpers.models import trained_scene_net

#: the tag's corner of each class (corner ``label % 4`` of :func:`cam_audit.synthetic.make_scenes`)
CORNERS = {"disc": "top-left corner", "square": "top-right corner", "triangle": "bottom-left corner"}


@pytest.fixture(scope="module")
def models():
    shortcut = trained_scene_net(make_scenes(1200, watermark="correlated", seed=0), pool="avg", epochs=4)
    clean = trained_scene_net(make_scenes(1200, watermark="random", seed=0), pool="avg", epochs=4)
    return shortcut, clean


@pytest.mark.slow
def test_the_unannotated_watermark_is_found_in_each_class_corner_and_confirmed(models, tmp_path, capsys):
    shortcut, clean = models
    scenes = make_scenes(96, watermark="correlated", seed=2)
    found, pictures = audit_unannotated(shortcut, scenes, tmp_path / "unannotated")
    cues = found.cues.set_index("class")
    assert sorted(cues.index) == sorted(CORNERS) and cues["confirmed"].all()
    for name, corner in CORNERS.items():
        assert cues.loc[name, "where"].startswith(corner), cues.loc[name, "where"]
        assert cues.loc[name, "paste_rate"] - cues.loc[name, "control_paste_rate"] >= 0.3
    assert found.summary["bg_gap"] > 0.5 and not found.passed
    assert sorted(pictures) == sorted(found.cues["cue"]) and all(p.is_file() for p in pictures.values())
    assert AuditReport.from_json(tmp_path / "unannotated" / "report.json").cues.equals(found.cues)

    ignored, _ = audit_unannotated(clean, scenes)
    assert ignored.summary["n_cues_confirmed"] == 0 and abs(ignored.summary["bg_gap"]) < 0.2
    assert ignored.passed, ignored.verdict.flags

    print_discovery(found, ignored, pictures)
    printed = capsys.readouterr().out
    for name, corner in CORNERS.items():
        assert f"'{name}' CONFIRMED: {corner}" in printed
    assert "the clean model audited the same way: 0 of" in printed

    # the gate reads the same report and fails it on the cues
    assert main(["gate", str(tmp_path / "unannotated" / "report.json")]) == 1
    lines = capsys.readouterr().out.splitlines()
    cue_lines = [line for line in lines if line.startswith("  min_cue_excess: ")]
    assert len(cue_lines) == 3 and all("relies on an unannotated cue" in line for line in cue_lines)
