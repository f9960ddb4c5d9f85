"""The score registry (``cam_audit.keys``) is the one list of scores: what a real audit reports, what the
page, ``cam-audit audit``, the gate, the demo and the verdict text show, all follow from it, and no other
module keeps a list of score names of its own."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cam_audit.cli import main
from cam_audit.errors import ReportError
from cam_audit.keys import (
    CARD_COLUMNS,
    CHARTS,
    HEADLINE_KEYS,
    PER_CLASS_LOGGED_KEYS,
    SCORES,
    SUMMARY_KEYS,
    is_count,
    is_counterfactual,
    score,
)
from cam_audit.report import AuditReport, ShortcutPolicy
from cam_audit.report.policy import RULE_HELP
from cam_audit.synthetic import SceneNet

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cam_audit"
#: Every name the registry gives a score: summary keys and per-sample columns.
NAMES = frozenset(s.summary for s in SCORES) | frozenset(s.column for s in SCORES)
#: Modules whose own lists are switched to the registry together with their rewrite.
@dataclasses.dataclass(frozen=True)
class Audited:
    report: AuditReport
    page: str
    printed: list[str]


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> Audited:
    """``cam-audit audit`` of a small scene CNN on 12 synthetic scenes: its report, page and output."""
    folder = tmp_path_factory.mktemp("keys")
    torch.manual_seed(0)
    weights = folder / "scene_net.pt"
    torch.save(SceneNet(num_classes=3, width=4).state_dict(), weights)
    config = {
        "model": "cam_audit.synthetic.SceneNet",
        "model_args": {"num_classes": 3, "width": 4},
        "checkpoint": str(weights),
        "probe": {
            "class_path": "cam_audit.synthetic.SyntheticProbe",
            "init_args": {"n": 12, "watermark": "correlated", "seed": 7},
        },
        "target_layer": "features",
        "discover": True,
        "batch_size": 6,
        "progress": False,
        "overlays": False,
        "worst": 3,
    }
    path = folder / "audit.yaml"
    path.write_text(yaml.safe_dump(config))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["audit", "--config", str(path), "--out", str(folder / "out")])
    report = AuditReport.from_json(folder / "out" / "report.json")
    assert code == (0 if report.passed else 1)
    return Audited(report, (folder / "out" / "index.html").read_text(), out.getvalue().splitlines())


def test_the_registry_names_each_score_once_and_every_derived_list_from_it():
    assert len(set(SUMMARY_KEYS)) == len(SUMMARY_KEYS) == len(SCORES)
    assert set(HEADLINE_KEYS) | set(PER_CLASS_LOGGED_KEYS) <= set(SUMMARY_KEYS)
    assert {key for keys in CHARTS.values() for key in keys} <= set(SUMMARY_KEYS)
    assert set(CARD_COLUMNS) <= {s.column for s in SCORES}
    assert all(s.bounds[0] < s.bounds[1] for s in SCORES)
    counts = ["n_samples", "n_degenerate", "n_spurious", "n_cues", "n_cues_confirmed"]
    assert [s.summary for s in SCORES if is_count(s.summary)] == counts
    assert is_counterfactual("cf_paste_rate") and not is_counterfactual("focus_lift")
    assert not is_count("n_scored") and not is_counterfactual("no_such_score")
    with pytest.raises(KeyError, match="focus_lift"):  # the message lists the valid names
        score("focus_lfit")


def test_a_real_report_carries_exactly_the_registry_summary_keys(audited):
    report = audited.report
    assert set(report.summary) == set(SUMMARY_KEYS)
    averaged = {s.summary for s in SCORES if s.reduce == "mean"}
    assert averaged | {"n_samples"} <= set(report.per_class.columns)


def _reduced(column: np.ndarray, how: str) -> float:
    """The registry's ``reduce`` written out: what the summary number of a column must be."""
    finite = np.isfinite(column)
    if how == "mean":
        return float(column[finite].mean()) if finite.any() else math.nan
    if how == "count":
        return float(len(column))
    if how == "degenerate":
        return float((~finite).sum())
    assert how == "sum", how
    return float(column.sum())


def _counted(cues, column: str) -> float:
    """A ``"cues"`` entry written out: the rows of the cue table, or those whose ``column`` is true."""
    return float(len(cues) if column == "" else cues[column].sum())


def test_every_summary_number_is_its_registry_column_reduced_as_the_registry_says(audited):
    report = audited.report
    samples = report.samples
    assert len(samples) == 12
    assert len(report.cues) > 0  # the cue counts are checked on a table with rows
    for entry in SCORES:
        if entry.reduce == "cues":
            assert report.summary[entry.summary] == _counted(report.cues, entry.column), entry.summary
            continue
        assert entry.column in samples.columns, entry
        column = samples[entry.column].to_numpy(dtype=float)
        assert np.isfinite(column).any(), entry.column  # checked on real numbers, not NaN == NaN
        expected = _reduced(column, entry.reduce)
        assert report.summary[entry.summary] == pytest.approx(expected, rel=1e-5, nan_ok=True), entry.summary
    assert report.summary["n_samples"] == 12 and report.summary["n_spurious"] == 12


def test_the_page_shows_the_headline_keys_first_and_every_card_column(audited):
    page = audited.page
    summary_row = re.search(r'<table class="summary"><tr>(.*?)</tr>', page).group(1)
    shown = re.findall(r"<th>([^<]*)</th>", summary_row)
    assert shown[: len(HEADLINE_KEYS)] == list(HEADLINE_KEYS)
    assert sorted(shown) == sorted(SUMMARY_KEYS)
    class_row = re.search(r'<table class="per-class"><tr>(.*?)</tr>', page).group(1)
    assert re.findall(r"<th[^>]*>([^<]*)</th>", class_row) == ["class", "n_samples", *HEADLINE_KEYS]
    cards = page.split("<h2>Lowest focus_lift</h2>")[1]
    first_card = cards.split('<div class="card">')[1]
    assert re.findall(r"<th class='name'>([^<]*)</th>", first_card) == [*CARD_COLUMNS, "confidence"]
    # counts are written as whole numbers because the registry says they are counts
    values = re.findall(r"<td>([^<]*)</td>", page.split('<table class="summary">')[1].split("</table>")[0])
    assert dict(zip(shown, values, strict=True))["n_samples"] == "12"


def test_cam_audit_audit_prints_every_headline_key_with_its_value(audited):
    summary = audited.report.summary
    expected = ", ".join(f"{key} {summary[key]:.3f}" for key in HEADLINE_KEYS)
    assert audited.printed[1] == f"  {expected}"


def test_the_demo_table_has_the_attribution_and_counterfactual_headlines_then_its_own_accuracies(audited):
    from cam_audit.cli.demo import DemoRun, summary_table

    run = DemoRun("watermark", None, audited.report, "", 0.9, 0.4, 0.1)
    table = summary_table([run])
    assert list(table.columns) == [
        "focus", "focus_lift", "spurious_mass", "spurious_lift", "cf_flip_rate", "cf_paste_rate",
        "acc_with_wm", "acc_without_wm", "acc_wm_moved", "bg_gap", "cues", "verdict",
    ]
    row = table.loc["watermark"]
    for key in table.columns[:6]:
        assert row[key] == pytest.approx(audited.report.summary[key], nan_ok=True), key
    assert row["acc_without_wm"] == 0.4
    summary = audited.report.summary
    assert row["bg_gap"] == pytest.approx(summary["bg_gap"], nan_ok=True)
    assert row["cues"] == f"{int(summary['n_cues_confirmed'])} of {int(summary['n_cues'])}"


def test_verdict_text_ends_with_every_headline_key(audited):
    from cam_audit.lightning.sinks import verdict_markdown

    last = verdict_markdown(audited.report).splitlines()[-1]
    assert [part.split(" ")[0] for part in last.split(" | ")] == list(HEADLINE_KEYS)


def test_each_gate_flag_says_which_score_it_bounds_and_the_policy_judges_that_score(capsys):
    thresholds = [f.name for f in dataclasses.fields(ShortcutPolicy) if f.type == "float | None"]
    assert list(RULE_HELP) == thresholds
    with pytest.raises(SystemExit):
        main(["gate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    judged = []
    for field, line in RULE_HELP.items():
        assert f"--{field.replace('_', '-')} X {line}" in help_text
        match = re.fullmatch(r"(min|max) (\w+) \((.*)\)", line)
        if match is None:  # max_focus_drop judges the run's history, not one score
            continue
        side, key, description = match.groups()
        assert description == score(key).description
        # the flag really judges that score, on the side its help says
        policy = ShortcutPolicy(**{**dict.fromkeys(thresholds), field: 0.5})
        low, high = score(key).bounds
        evidence = {"n_samples": 40, "n_degenerate": 0, "focus": 0.3}  # enough to be judged at all
        (finding,) = policy.evaluate({**evidence, key: low if side == "min" else min(high, 10.0)}).findings
        assert (finding.rule, finding.metric) == (field, key)
        judged.append(key)
    assert judged == ["focus_lift", "spurious_lift", "cf_flip_rate", "cf_paste_rate", "bg_gap"]


def test_a_threshold_takes_the_bounds_of_the_score_it_bounds():
    ShortcutPolicy(max_flip_rate=1.0, max_spurious_lift=50.0)
    with pytest.raises(ReportError, match=r"max_flip_rate bounds cf_flip_rate, which is in \[0, 1\]"):
        ShortcutPolicy(max_flip_rate=1.01)
    with pytest.raises(ReportError, match=r"min_focus_lift bounds focus_lift, which is >= 0"):
        ShortcutPolicy(min_focus_lift=-0.1)


def _listed_names(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """Tuple, list and set literals that hold three or more registry names, with their line."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            names = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in NAMES]
            if len(set(names)) >= 3:
                found.append((node.lineno, names))
    return found


def test_the_scan_finds_a_hand_written_list_and_passes_reads_of_the_registry():
    listed = 'KEYS = ("focus", "focus_lift", "cf_paste")\nrule = ("max_flip_rate", "cf_flip_rate", 0.5)\n'
    assert _listed_names(ast.parse(listed)) == [(1, ["focus", "focus_lift", "cf_paste"])]
    read = "from cam_audit.keys import HEADLINE_KEYS\nKEYS = (*HEADLINE_KEYS, 'confidence')\n"
    assert _listed_names(ast.parse(read)) == []


def _module_params() -> list:
    return [
        pytest.param(path, id=str(path.relative_to(PACKAGE)))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "keys.py" or path.parent != PACKAGE
    ]


@pytest.mark.parametrize("path", _module_params())
def test_no_module_but_the_registry_lists_score_names(path):
    listed = _listed_names(ast.parse(path.read_text()))
    assert listed == [], f"{path.name} lists score names {listed}; read them from cam_audit.keys instead"
