"""The comparison with a champion on the audit page, and ``cam-audit audit --baseline``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from cam_audit.cli import main
from cam_audit.render.html import render_html
from cam_audit.report import AuditReport
from cam_audit.report.policy import RULE_HELP
from cam_audit.synthetic import SceneNet
from helpers.compare import audited, changed

#: every rule off: the untrained model passes, so the exit code is the comparison's
NO_RULES = {rule: None for rule in RULE_HELP}  # every threshold off, the chance test too


def test_the_page_shows_the_comparison_and_the_samples_most_worse(scene_probe):
    champion = audited(scene_probe)
    champion.samples["sample_id"] = [f"<i>{i}</i>" for i in range(len(champion.samples))]
    candidate = changed(champion, 0.9)
    comparison = candidate.compare(champion)
    overlays = {i: b"candidate-png" for i in range(24)}
    page = render_html(candidate, overlays, worst=3, comparison=comparison,
                       baseline_overlays={i: b"champion-png" for i in range(24)})
    section = page.split("<h2>Against the champion</h2>")[1].split("<h2>Summary</h2>")[0]
    assert "DO NOT PROMOTE" in section and "24 paired probe samples" in section
    assert '<tr class="regression"><td class="name">focus_lift</td><td class="name">probe</td>' in section
    assert section.count("<tr class=") == len(comparison.table)
    assert "more than the 5% allowed" in section  # the reason, as a sentence
    cards = section.split("<h2>Most worse than the champion: focus_lift</h2>")[1]
    worst = comparison.worst_samples(3)
    shown = re.findall(r"<b>&lt;i&gt;(\d+)&lt;/i&gt;</b>", cards)
    assert [int(i) for i in shown] == [int(i) for i in worst["index"]] and "<i>" not in cards
    assert cards.count('alt="candidate overlay') == 3 and cards.count('alt="champion overlay') == 3
    # without the champion's overlays its numbers are still there
    alone = render_html(candidate, overlays, worst=3, comparison=comparison)
    assert 'alt="champion overlay' not in alone
    assert "<th>champion</th><th>candidate</th><th>delta</th>" in alone
    assert "Against the champion" not in render_html(candidate, overlays)


@pytest.fixture()
def setup(tmp_path):
    """Weights of a plain scene model and a config that audits them on 12 synthetic scenes."""
    torch.manual_seed(0)
    weights = tmp_path / "scene.pt"
    torch.save(SceneNet(width=8).state_dict(), weights)

    def config(seed: int = 7) -> str:
        path = tmp_path / f"audit_{seed}.yaml"
        path.write_text(yaml.safe_dump({
            "model": "cam_audit.synthetic.SceneNet", "model_args": {"width": 8}, "checkpoint": str(weights),
            "probe": {"class_path": "cam_audit.synthetic.SyntheticProbe",
                      "init_args": {"n": 12, "watermark": "correlated", "seed": seed}},
            "target_layer": "features", "policy": NO_RULES, "progress": False, "worst": 3,
        }))
        return str(path)

    assert main(["audit", "--config", config(), "--out", str(tmp_path / "champion")]) == 0
    return tmp_path, config


def test_audit_against_itself_promotes_and_shows_the_champions_overlays(setup, capsys):
    folder, config = setup
    capsys.readouterr()
    champion = folder / "champion" / "report.json"
    argv = ["audit", "--config", config(), "--out", str(folder / "same"), "--baseline", str(champion)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"PROMOTE {folder / 'scene.pt'} over {champion} (12 paired samples)" in printed
    page = (folder / "same" / "index.html").read_text()
    assert "<h2>Against the champion</h2>" in page and "PROMOTE" in page
    # overlays/ beside the champion's report are found without --baseline_overlays
    assert page.count('alt="champion overlay') == 3


def test_audit_worse_than_the_champion_exits_1(setup, capsys):
    folder, config = setup
    better = changed(AuditReport.from_json(folder / "champion" / "report.json"), 1.5)
    champion = better.to_json(folder / "better" / "report.json")
    argv = ["audit", "--config", config(), "--out", str(folder / "worse"), "--baseline", str(champion),
            "--baseline_overlays", str(folder / "champion")]
    capsys.readouterr()
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "DO NOT PROMOTE" in printed and "(-33%, 95% CI" in printed
    page = (folder / "worse" / "index.html").read_text()
    assert '<tr class="regression">' in page and page.count('alt="champion overlay') == 3
    # the report itself passes its (empty) policy: the exit code is the promotion's
    assert AuditReport.from_json(folder / "worse" / "report.json").passed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--baseline", "{champion}", "--config", "{other_probe}"], "different probes"),
        (["--baseline", "{champion}", "--scores", "[focus_lifts]"], "unknown score(s) 'focus_lifts'"),
        (["--baseline", "{missing}"], "missing.json does not exist"),
        (["--baseline_overlays", "{folder}"], "--baseline_overlays needs the champion's report"),
    ],
)
def test_bad_baseline_input_exits_2_before_the_audit(setup, capsys, extra, message):
    folder, config = setup
    names = {"champion": folder / "champion" / "report.json", "other_probe": config(seed=8),
             "missing": folder / "missing.json", "folder": folder / "champion"}
    argv = ["audit", "--config", config(), "--out", str(folder / "bad"), *(a.format(**names) for a in extra)]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not Path(folder / "bad" / "report.json").exists()  # refused before any time was spent
