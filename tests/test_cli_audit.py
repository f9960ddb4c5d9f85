"""``cam-audit audit``: a checkpoint written here is loaded and audited; outputs and exit codes checked."""

from __future__ import annotations

import ast
import base64
import importlib
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
import yaml

from cam_audit import audit
from cam_audit.cli import main
from cam_audit.lightning.scenes import SceneClassifier, SceneDataModule
from cam_audit.pipeline import model_fingerprint
from cam_audit.render import png_bytes
from cam_audit.report import AuditReport, ShortcutPolicy
from cam_audit.report.policy import RULE_HELP
from cam_audit.synthetic import SyntheticProbe
from helpers.pipes import run_into_closed_pipe
from helpers.trainers import make_trainer

COCO = "cam_audit.probe.sources.CocoProbe"
MISSING_COCO = {"annotation_json": "no.json", "image_dir": "."}
SYNTHETIC = "cam_audit.synthetic.SyntheticProbe"
PROBE = {"n": 12, "watermark": "correlated", "seed": 7}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A SceneClassifier trained for a few steps and its Lightning checkpoint."""
    folder = tmp_path_factory.mktemp("ckpt")
    pl.seed_everything(3, verbose=False)
    model = SceneClassifier(width=8)
    trainer = make_trainer(folder, max_epochs=1, limit_val_batches=0, enable_checkpointing=False)
    trainer.fit(model, datamodule=SceneDataModule(watermark="correlated", n_train=96, n_val=8, batch_size=32))
    path = folder / "model.ckpt"
    trainer.save_checkpoint(path)
    return model.eval(), path


@pytest.fixture(scope="module")
def trained_longer(tmp_path_factory):
    """A SceneClassifier trained for 32 steps and its checkpoint: enough to leave chance, where every
    scene is decided as one class and its flat map is no testable cue."""
    folder = tmp_path_factory.mktemp("ckpt_longer")
    pl.seed_everything(3, verbose=False)
    model = SceneClassifier(width=8)
    trainer = make_trainer(folder, max_epochs=2, limit_train_batches=16, limit_val_batches=0,
                           enable_checkpointing=False)  # fmt: skip
    data = SceneDataModule(watermark="correlated", n_train=512, n_val=8, batch_size=32)
    trainer.fit(model, datamodule=data)
    path = folder / "model.ckpt"
    trainer.save_checkpoint(path)
    return model.eval(), path


def _config(folder: Path, weights: Path, **overrides) -> Path:
    config = {
        "model": "cam_audit.lightning.scenes.SceneClassifier",
        "checkpoint": str(weights),
        "probe": {"class_path": SYNTHETIC, "init_args": PROBE},
        "target_layer": "features",
        "batch_size": 5,
        "policy": {"min_focus_lift": 1.0, "max_spurious_lift": 2.0},
        "progress": False,
        "worst": 3,
    }
    config.update(overrides)
    path = folder / "audit.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_audit_loads_the_checkpoint_and_writes_report_overlays_and_page(tmp_path, trained, capsys):
    model, checkpoint = trained
    out = tmp_path / "out"
    code = main(["audit", "--config", str(_config(tmp_path, checkpoint)), "--out", str(out)])

    report = AuditReport.from_json(out / "report.json")
    assert code == (0 if report.passed else 1)
    # the weights are the trained model's, not a fresh initialisation
    assert report.meta["model_fingerprint"] == model_fingerprint(model)
    torch.manual_seed(3)
    assert report.meta["model_fingerprint"] != model_fingerprint(SceneClassifier(width=8))
    assert report.meta["checkpoint"] == str(checkpoint)
    assert report.meta["epoch"] == 1 and report.meta["global_step"] == 3
    # the same numbers as audit() in Python on the model and probe the config names
    policy = ShortcutPolicy(min_focus_lift=1.0, max_spurious_lift=2.0)
    probe = SyntheticProbe(**PROBE).load()
    direct = audit(model, probe, target_layer="features", batch_size=5, policy=policy)
    for key, value in direct.summary.items():
        assert report.summary[key] == pytest.approx(value, rel=1e-5, nan_ok=True), key
    assert report.verdict.flags == direct.verdict.flags

    samples = pd.read_csv(out / "samples.csv")
    assert len(samples) == PROBE["n"]
    overlays = sorted((out / "overlays").glob("*.png"))
    assert [p.name for p in overlays] == [f"{i:05d}.png" for i in range(PROBE["n"])]
    page = (out / "index.html").read_text()
    worst = samples.sort_values(["focus_lift", "index"]).iloc[0]
    assert f"<b>{worst['sample_id']}</b> (#{worst['index']})" in page
    assert page.count('src="data:image/png;base64,') >= 3

    printed = capsys.readouterr().out
    assert ("PASS" if report.passed else "FAIL") in printed.splitlines()[0]
    assert str(out / "index.html") in printed


def test_exit_code_follows_the_policy_like_gate(tmp_path, trained, capsys):
    _, checkpoint = trained
    config = str(_config(tmp_path, checkpoint))
    strict = main(["audit", "--config", config, "--out", str(tmp_path / "a"), "--policy.min_focus_lift=1000"])
    printed = capsys.readouterr().out
    assert strict == 1
    assert "min_focus_lift: focus_lift" in printed and "< 1000.00" in printed
    assert main(["gate", str(tmp_path / "a" / "report.json")]) == 1

    off = [f"--policy.{rule}=null" for rule in RULE_HELP]
    assert main(["audit", "--config", config, "--out", str(tmp_path / "b"), "--overlays", "false", *off]) == 0
    assert not (tmp_path / "b" / "overlays").exists()
    assert AuditReport.from_json(tmp_path / "b" / "report.json").passed


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"batch_sise": 4}, "batch_sise"),
        ({"policy": {"max_flip_rat": 0.2}}, "max_flip_rat"),
        ({"probe": {"class_path": SYNTHETIC, "init_args": {"seeed": 1}}}, "seeed"),
        ({"probe": {"class_path": COCO, "init_args": MISSING_COCO}}, "no.json"),
        ({"method": "gradcam+"}, "gradcam+"),
        ({"model": "cam_audit.lightning.scenes.SceneClassifer"}, "SceneClassifer"),
        ({"target_layer": "layer5"}, "layer5"),
        ({"checkpoint": "missing.ckpt"}, "missing.ckpt"),
        ({"policy": {"max_flip_rate": 2.0}}, "max_flip_rate"),
        ({"discover": True, "counterfactual": False}, "add --counterfactual true"),
    ],
)
def test_bad_config_exits_2_with_one_line_naming_the_key(tmp_path, trained, capsys, override, named):
    _, checkpoint = trained
    config = _config(tmp_path, checkpoint, **override)
    assert main(["audit", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("cam-audit audit: error:") and named in err
    assert "Traceback" not in err


def test_ckpt_flag_overrides_the_config_and_a_plain_module_loads_a_state_dict(tmp_path):
    from torchvision.models import SqueezeNet

    torch.manual_seed(0)
    model = SqueezeNet(num_classes=3).eval()
    weights = tmp_path / "squeezenet.pt"
    torch.save(model.state_dict(), weights)
    config = _config(
        tmp_path,
        tmp_path / "not_this_one.ckpt",
        model="torchvision.models.SqueezeNet",
        model_args={"num_classes": 3},
        target_layer="features.12",
        counterfactual=False,
    )
    code = main(["audit", "--config", str(config), "--ckpt", str(weights), "--out", str(tmp_path / "out")])
    report = AuditReport.from_json(tmp_path / "out" / "report.json")
    assert code in (0, 1) and code == (0 if report.passed else 1)
    assert report.meta["checkpoint"] == str(weights)
    assert report.meta["model_fingerprint"] == model_fingerprint(model)
    assert math.isnan(report.summary["cf_flip_rate"])  # counterfactual: false was honoured


def test_discover_writes_a_gallery_per_tested_cue_and_the_page_shows_them(tmp_path, trained_longer, capsys):
    model, checkpoint = trained_longer
    probe, policy = {**PROBE, "n": 24}, {"min_focus_lift": 1.0, "min_cue_samples": 3}
    config = _config(tmp_path, checkpoint, probe={"class_path": SYNTHETIC, "init_args": probe},
                     policy=policy, discover=True)  # fmt: skip
    out = tmp_path / "out"
    code = main(["audit", "--config", str(config), "--out", str(out)])
    report = AuditReport.from_json(out / "report.json")
    assert code == (0 if report.passed else 1) and report.meta["discover"] is True

    # the same cues and galleries as audit() in Python; a gallery for each cue whose tests ran
    galleries = {}
    direct = audit(model, SyntheticProbe(**probe).load(), target_layer="features", batch_size=5,
                   policy=ShortcutPolicy(**policy), discover=True,
                   on_cues=lambda cues, drawn: galleries.update(drawn))  # fmt: skip
    pd.testing.assert_frame_equal(report.cues, direct.cues)
    tested = report.cues.loc[report.cues["n_fill"] > 0, "cue"].tolist()
    assert tested and sorted(galleries) == tested
    written = sorted((out / "cues").glob("*.png"))
    assert [p.name for p in written] == [f"cue_{n}.png" for n in tested]
    assert all((out / "cues" / f"cue_{n}.png").read_bytes() == png_bytes(galleries[n]) for n in tested)

    page = (out / "index.html").read_text()
    section = page.split("<h2>Cues found</h2>")[1].split("<h2>")[0]
    assert section.count('<div class="cue">') == len(report.cues)
    shown = [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', section)]
    assert sorted(shown) == sorted(p.read_bytes() for p in written)
    assert f"bg_gap {report.summary['bg_gap']:.3f}" in section

    printed = capsys.readouterr().out.splitlines()
    confirmed = int(report.cues["confirmed"].sum())
    found = f"  discovery: {len(report.cues)} candidate cue(s) off the object, {confirmed} confirmed"
    assert any(line.startswith(found) and line.endswith(f"bg_gap {report.summary['bg_gap']:.3f}")
               for line in printed)  # fmt: skip
    assert f"cues:     {out / 'cues'}" in printed


def test_a_closed_stdout_keeps_the_exit_code_and_prints_no_traceback(tmp_path, trained):
    _, checkpoint = trained
    config, out = str(_config(tmp_path, checkpoint)), tmp_path / "out"
    for extra, decided in (([], None), (["--policy.min_focus_lift=1000"], 1)):
        done = run_into_closed_pipe(["audit", "--config", config, "--out", str(out), *extra])
        report = AuditReport.from_json(out / "report.json")  # the audit ran to the end
        assert done.returncode == (decided if decided is not None else (0 if report.passed else 1))
        assert done.stderr == ""
    done = run_into_closed_pipe(["audit", "--help"])
    assert (done.returncode, done.stderr) == (0, "")


def test_the_progress_bar_ends_its_line_before_the_result_is_printed(tmp_path, trained):
    """``cam-audit audit ... > log 2>&1``: the result line starts a line of its own."""
    _, checkpoint = trained
    config, out = str(_config(tmp_path, checkpoint)), tmp_path / "out"
    command = [sys.executable, "-m", "cam_audit.cli", "audit", "--config", config, "--out", str(out),
               "--progress", "true"]  # fmt: skip
    # bytes: text mode would turn the bar's carriage returns into line ends
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    log = done.stdout.decode()
    assert done.returncode in (0, 1), log
    lines = log.split("\n")
    assert "img/s]" in lines[0], log  # the bar was drawn
    result = [line for line in lines if line.endswith(str(checkpoint))]
    assert len(result) == 1 and result[0].startswith(("PASS ", "FAIL: ")), log


def _probe_sources() -> dict[str, str]:
    """Every class in src/cam_audit that derives from ProbeSource (directly or not): name -> module."""
    package = Path(__file__).parents[1] / "src" / "cam_audit"
    classes: dict[str, tuple[str, list[str]]] = {}
    for path in package.rglob("*.py"):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                classes[node.name] = (module, bases)
    found = {"ProbeSource"}
    while grown := {n for n, (_, bases) in classes.items() if n not in found and found & set(bases)}:
        found |= grown
    return {name: classes[name][0] for name in sorted(found - {"ProbeSource"})}


def test_the_help_names_every_probe_source_by_an_importable_class_path():
    sources = _probe_sources()
    assert {"CocoProbe", "CsvProbe", "MaskDirProbe", "SyntheticProbe"} <= set(sources)
    env = {**os.environ, "COLUMNS": "1000"}  # one line per option: no class path broken by the wrapping
    done = subprocess.run([sys.executable, "-m", "cam_audit.cli", "audit", "--help"], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    probe = next(line for line in done.stdout.splitlines() if line.strip().startswith("--probe PROBE"))
    paths = set(re.findall(r"cam_audit(?:\.\w+)+", probe))
    for name, module in sources.items():
        named = [p for p in paths if p.rsplit(".", 1)[1] == name]
        assert named, f"{name} (in {module}) is not in the help of --probe: {probe}"
    for path in paths:  # each one a config can use
        module, _, name = path.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), name, None), type), path


def test_a_plain_state_dict_for_a_lightning_module_exits_2_saying_how_to_load_it(tmp_path, trained, capsys):
    model, _ = trained
    weights = tmp_path / "weights.pt"
    torch.save(model.state_dict(), weights)
    config = str(_config(tmp_path, tmp_path / "not_this_one.ckpt"))
    assert main(["audit", "--config", config, "--ckpt", str(weights), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("cam-audit audit: error:"), err
    assert f"{weights} is a plain state_dict" in err and "not a Lightning checkpoint" in err
    assert "trainer.save_checkpoint" in err and "model_args" in err  # the two ways out
    assert "'pytorch-lightning_version'" not in err  # no KeyError's bare key
