"""The discovery study (cam_audit.synthetic.study): the background conditions' scenes, where the true tags
lie, the four ways a model is judged on hand-made reports, the SpRAy anchor, and a smoke run of the script
that re-judges its saved reports identically."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from cam_audit.errors import CamAuditError
from cam_audit.keys import SUMMARY_KEYS
from cam_audit.report import AuditReport, ShortcutPolicy, Verdict
from cam_audit.report.cues import normalise
from cam_audit.synthetic import make_scenes, study

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "discovery_study.py"
CLASSES = ["disc", "square", "triangle"]
DISC_TAG = [1.0, 1.0, 7.0, 4.0]  # the corner-1.0 tag of class 0 at 32 px


# --- the conditions -------------------------------------------------------------------------------------


def test_discovery_conditions_add_the_background_ones_to_the_shortcut_study():
    names = [c.name for c in study.discovery_conditions(quick=False)]
    assert names == [c.name for c in study.conditions(quick=False)] + ["bg-colour", "bg-texture"]
    quick = [c.name for c in study.discovery_conditions(quick=True)]
    assert quick == ["clean-random", "corner-1.0", "single-1.0", "bg-colour", "bg-texture"]
    cues = {c.name: (c.cue, c.clean) for c in study.discovery_conditions(quick=False)}
    assert cues["clean-none"] == ("none", True) and cues["corner-0.7"] == ("corner", False)
    assert cues["single-1.0"] == ("presence", False) and cues["bg-texture"] == ("texture", False)


@pytest.mark.parametrize("condition", study.BACKGROUND_CONDITIONS, ids=lambda c: c.name)
def test_background_condition_shows_the_cue_removes_it_and_moves_it(condition):
    seen = condition.seen_scenes(60, 1, 32)
    assert torch.equal(seen.images, condition.scenes(60, 1, 32).images)  # the probe's distribution
    assert not seen.has_watermark.any() and torch.equal(seen.background_classes, seen.labels)
    removed = condition.removed_scenes(60, 1, 32)
    assert torch.equal(removed.object_masks, seen.object_masks) and (removed.background_classes == -1).all()
    assert torch.equal(removed.images, make_scenes(60, image_size=32, seed=1).images)
    moved = condition.moved_scenes(60, 1, 32)
    assert torch.equal(moved.object_masks, seen.object_masks)
    assert (moved.background_classes >= 0).all() and not (moved.background_classes == moved.labels).any()


def test_a_tag_conditions_removed_scenes_are_its_scenes_without_the_tag():
    for condition in study.conditions(quick=False):
        removed = condition.removed_scenes(30, 2, 32)
        assert torch.equal(removed.images, condition.seen_scenes(30, 2, 32).without_watermark().images)


def test_true_cue_boxes_are_the_tags_each_class_carries():
    corner = study.true_cue_boxes(make_scenes(60, image_size=32, watermark="correlated", seed=0))
    assert corner == {
        "disc": [DISC_TAG],
        "square": [[25.0, 1.0, 31.0, 4.0]],
        "triangle": [[1.0, 28.0, 7.0, 31.0]],
    }
    presence = make_scenes(600, image_size=32, watermark="correlated", cue_classes=(0,), seed=0)
    boxes = study.true_cue_boxes(presence)
    assert list(boxes) == ["disc"] and len(boxes["disc"]) == 4  # a tag in any corner, on discs only
    assert study.true_cue_boxes(make_scenes(30, image_size=32, seed=0)) == {}


# --- judging hand-made reports --------------------------------------------------------------------------


def _report(summary: dict | None = None, cues: list[dict] | None = None, **meta: object) -> AuditReport:
    values = {key: math.nan for key in SUMMARY_KEYS}
    values |= {"n_samples": 48, "n_degenerate": 0, "n_spurious": 0, "accuracy": 0.95, "focus_lift": 3.0}
    values |= summary or {}
    per_class = pd.DataFrame({"n_samples": [16] * 3, "n_scored": [16] * 3}, index=CLASSES)
    table = normalise(pd.DataFrame(cues or [], columns=None))
    info = {
        "condition": "corner-1.0",
        "clean": False,
        "cue": "corner",
        "pool": "avg",
        "seed": 0,
        "held_out": False,
        "acc_cue": 1.0,
        "acc_removed": 0.4,
        "acc_moved": 0.1,
        "true_cues": {"disc": [DISC_TAG]},
        "spray": {"detected": False, "risk": "low", "flags": [], "n_clusters": 3, "max_label_purity": 1.0},
        "discovery_seconds": 0.3,
        "attribution_seconds": 0.05,
        "counterfactual_seconds": 0.1,
        "order": 0,
        "settings": {"epochs": 8, "n_train": 1200, "image_size": 32, "width": 8, "n_probe": 96},
    }
    return AuditReport(values, pd.DataFrame(), per_class, Verdict(True), ShortcutPolicy(), info | meta, table)


def _cue(box: list[float], samples: int = 16, flip: float = 0.9) -> dict:
    """A cue of class disc whose fill flips ``flip`` of its samples and its control none."""
    flipped = round(flip * samples)
    return {
        "cue": 0, "class": "disc", "label": 0, "n_samples": samples,
        "x_min": box[0], "y_min": box[1], "x_max": box[2], "y_max": box[3], "where": "top-left corner",
        "flip_rate": flip, "control_flip_rate": 0.0, "paste_rate": math.nan, "control_paste_rate": math.nan,
        "confirmed": True, "n_fill": samples, "fill_only": flipped, "control_fill_only": 0,
        "fill_p_value": 0.5**flipped, "n_paste": 0, "paste_only": 0, "control_paste_only": 0,
        "paste_p_value": math.nan,
    }  # fmt: skip


def _judge(annotated: AuditReport, discovered: AuditReport) -> dict:
    return study.judge_pair(annotated, discovered, ShortcutPolicy(), 0.10)


def test_a_confirmed_cue_on_the_true_tag_is_a_located_discovery():
    row = _judge(_report({"n_spurious": 48, "cf_paste_rate": 0.9}), _report(cues=[_cue([0, 0, 8, 5])]))
    assert row["shortcut"] and row["discovery"] and row["both"] and row["annotated"]
    assert not row["attribution"]  # focus_lift 3.0 passes
    assert row["n_confirmed"] == 1 and row["n_on_cue"] == 1 and row["fired"] == "cue"


def test_a_confirmed_cue_elsewhere_is_counted_off_the_tag():
    row = _judge(_report(), _report(cues=[_cue([20, 20, 28, 28])]))
    assert row["discovery"] and row["n_confirmed"] == 1 and row["n_on_cue"] == 0


def test_the_policy_not_the_saved_table_confirms_a_cue():
    # saved as confirmed, but with 3 samples it is under min_cue_samples (5): the policy confirms nothing
    row = _judge(_report(), _report(cues=[_cue([0, 0, 8, 5], samples=3, flip=1.0)]))
    assert not row["discovery"] and row["n_confirmed"] == 0


def test_bg_gap_above_the_policys_limit_is_discovery_and_low_focus_is_attribution():
    background = {"condition": "bg-colour", "cue": "colour", "true_cues": {}}
    row = _judge(_report(**background), _report({"bg_gap": 0.5, "focus_lift": 1.0}, **background))
    assert row["discovery"] and row["attribution"] and row["both"] and not row["annotated"]
    assert row["fired"] == "bg_gap,focus" and math.isnan(row["n_on_cue"]) and row["bg_gap"] == 0.5
    quiet = _judge(_report(**background), _report({"bg_gap": 0.1}, **background))
    assert not (quiet["discovery"] or quiet["attribution"] or quiet["both"])


def test_an_inconclusive_verdict_names_no_cue_and_counts_apart():
    at_chance = {"accuracy": 0.3, "focus_lift": 1.0}  # focus alone still fires on a model at chance
    row = _judge(_report(at_chance), _report(at_chance, cues=[_cue([0, 0, 8, 5])]))
    assert row["inconclusive"] and not row["discovery"] and row["attribution"]


def test_rates_count_shortcut_models_and_clean_controls_apart():
    clean = {"condition": "clean-random", "clean": True, "cue": "none", "acc_removed": 1.0, "acc_moved": 1.0}
    pairs = [
        (_report({"n_spurious": 48, "cf_paste_rate": 0.9}), _report(cues=[_cue([0, 0, 8, 5])])),
        (_report({"n_spurious": 48, "cf_paste_rate": 0.9}), _report(seed=1)),  # caught only when annotated
        (_report({"n_spurious": 48}, **clean), _report({"focus_lift": 1.0}, **clean)),  # a false alarm
        (_report({"n_spurious": 48}, **clean, held_out=True), _report(**clean, held_out=True)),
    ]
    models = study.pair_table(pairs, ShortcutPolicy(), 0.10)
    seeds = study.detection_rates(models[~models["held_out"]])
    assert seeds.loc["corner-1.0: shortcut", "discovery"] == "1/2"
    assert seeds.loc["ALL SHORTCUT MODELS (detection rate)", "annotated"] == "2/2"
    assert seeds.loc["ALL CLEAN CONTROLS (false-alarm rate)", "attribution"] == "1/1"
    assert seeds.loc["ALL CLEAN CONTROLS (false-alarm rate)", "spray"] == "0/1"
    held_out = study.detection_rates(models[models["held_out"]])
    assert held_out.loc["ALL CLEAN CONTROLS (false-alarm rate)", "both"] == "0/1"
    missed = study.missed_without_annotations(models)
    assert missed[["condition", "seed"]].values.tolist() == [["corner-1.0", 1]]
    located = study.cue_locations(models)
    assert located.loc["corner-1.0", "cue on the true tag"] == 1
    assert located.loc["clean controls", "confirmed cues off the tag"] == 0
    cost = study.cost(models)
    assert cost["discovery / counterfactual"] == pytest.approx(3.0)


def test_saved_pairs_are_judged_as_the_pairs_were(tmp_path):
    pairs = [
        (_report({"n_spurious": 48}, seed=s), _report(cues=[_cue([0, 0, 8, 5])], seed=s)) for s in (1, 0)
    ]
    for annotated, discovered in pairs:
        study.save_pair(tmp_path, annotated, discovered)
    (tmp_path / "lonely-avg-9.annotated.json").write_text(
        (tmp_path / "corner-1.0-avg-0.annotated.json").read_text()
    )
    loaded = study.saved_pairs(tmp_path)
    assert [a.meta["seed"] for a, _ in loaded] == [0, 1]  # a model without its second report is left out
    policy = ShortcutPolicy()
    pd.testing.assert_frame_equal(
        study.pair_table(loaded, policy, 0.1), study.pair_table(pairs[::-1], policy, 0.1)
    )


# --- the SpRAy anchor -----------------------------------------------------------------------------------


def test_spray_without_shortkit_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "shortcut_detect", None)  # an import of it raises ImportError
    assert not study.spray_available()
    with pytest.raises(CamAuditError, match="pip install --no-deps shortkit-ml"):
        study.spray_judgement(torch.rand(6, 8, 8), torch.arange(6) % 3)


def test_spray_judges_maps_with_plain_values():
    pytest.importorskip("shortcut_detect")
    maps = torch.zeros(30, 16, 16)
    for i in range(30):  # each class's maps light up their own corner
        corner = i % 3
        maps[i, 8 * (corner // 2) : 8 * (corner // 2) + 8, 8 * (corner % 2) : 8 * (corner % 2) + 8] = 1.0
    verdict = study.spray_judgement(maps + 0.01 * torch.rand(30, 16, 16), torch.arange(30) % 3)
    assert set(verdict) == {"detected", "risk", "flags", "n_clusters", "max_label_purity"}
    assert verdict["max_label_purity"] == 1.0 and isinstance(verdict["detected"], bool)


# --- the script ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_quick_script_prints_its_tables_and_rejudges_saved_reports_identically(tmp_path):
    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-4000:]
        return done.stdout

    first = run(
        "--quick", "--pools", "avg", "--held-out", "1", "--threads", "1", "--no-spray", "--out", str(tmp_path)
    )
    assert len(list(tmp_path.glob("*.json"))) == 2 * 5 * 2  # two reports per model, 5 conditions, 2 seeds
    for heading in (
        "per model",
        "flagged / models, seeds",
        "flagged / models, held-out seeds",
        "bg_gap",
        "cost",
    ):
        assert heading in first
    assert "every shortcut model the annotated verdict catches is caught without annotations" in first
    again = run("--from-reports", str(tmp_path))
    assert first.rsplit("\n(", 1)[0] == again.rsplit("\n(", 1)[0]  # only the elapsed seconds differ
