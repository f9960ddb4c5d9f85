"""What a user gets on a bad day: every broken input to the gate, `cam-audit audit` and the report, and how
each ends (exit code or error class, and the first words of the one-line message). The README's table
"What you get on a bad day" lists the same cases.
"""

from __future__ import annotations

import copy
import errno
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from cam_audit.cam import CamEngine, resolve_target_layer
from cam_audit.cli import main
from cam_audit.errors import NonFiniteModelError, ReportError, TargetLayerError
from cam_audit.report import AuditReport, ShortcutPolicy
from cam_audit.synthetic import SceneNet, SyntheticProbe

ROOT = Path(__file__).resolve().parents[1]
PROBE = {"n": 12, "image_size": 32, "seed": 1}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``cam-audit ARGV`` in this process: exit code, stdout, stderr (argparse's exits included)."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = int(stop.code)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------------ the gate
def _report_dict() -> dict[str, Any]:
    """A passing report (40 samples, 2 classes of 20, accuracy 0.95) as written by to_json."""
    summary = dict(focus=0.6, focus_lift=3.0, pointing_game=0.9, relevance_rank=0.7, spurious_mass=0.02,
                   spurious_lift=0.8, cf_flip_rate=0.0, cf_confidence_drop=0.0, cf_paste_rate=0.0,
                   accuracy=0.95, n_samples=40.0, n_degenerate=0.0, n_spurious=40.0)
    sizes = {"n_samples": 20.0, "n_scored": 20.0}
    per_class = pd.DataFrame({name: {**summary, **sizes} for name in ("cat", "horse")}).T
    per_class.index.name = "class"
    samples = pd.DataFrame({"index": [0, 1], "sample_id": ["a.png", "b.png"], "label": [0, 1],
                            "focus": [0.5, math.nan]})
    policy = ShortcutPolicy()
    verdict = policy.evaluate(summary, per_class)
    report = AuditReport(summary, samples, per_class, verdict, policy, {"epoch": 3})
    return json.loads(json.dumps(report.to_dict()))


def _with(**summary: Any) -> Callable[[dict], dict]:
    def change(data: dict) -> dict:
        data["summary"].update(summary)
        return data

    return change


def _set(path: str, value: Any) -> Callable[[dict], dict]:
    """Set ``data[a][b]...`` for ``path`` "a.b..." (list positions as numbers)."""
    def change(data: dict) -> dict:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
        return data

    return change


def _drop(path: str) -> Callable[[dict], dict]:
    def change(data: dict) -> dict:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        del node[last]
        return data

    return change


def _per_class_column(column: str, value: Any, dtype: str | None = None) -> Callable[[dict], dict]:
    def change(data: dict) -> dict:
        table = data["per_class"]
        position = table["columns"].index(column)
        for row in table["data"]:
            row[position] = value
        if dtype:
            table["dtypes"][position] = dtype
        return data

    return change


def _dead_layer(data: dict) -> dict:
    """What a dead target layer writes: every map all-zero, so every attribution score is null."""
    for key in ("focus", "focus_lift", "pointing_game", "relevance_rank", "spurious_mass", "spurious_lift"):
        data["summary"][key] = None
    data["summary"]["n_degenerate"] = 40.0
    return _per_class_column("n_scored", 0.0)(data)


def _chance_with_a_cue(data: dict) -> dict:
    data["summary"].update(accuracy=0.5, spurious_lift=9.0, spurious_mass=0.3)
    return data


GATE_REPORTS = [
    # (id, how the valid report is broken, exit code, first words of the line that says why)
    ("valid-report", lambda d: d, 0, "PASS"),
    ("shortcut", _with(spurious_lift=7.0, spurious_mass=0.2), 1,
     "max_spurious_lift: spurious_lift 7.00 > 5.00"),
    ("all-null-summary", lambda d: {**d, "summary": dict.fromkeys(d["summary"])}, 1,
     "inconclusive: no probe sample was scored (n_samples is missing)"),
    ("empty-summary", _set("summary", {}), 1, "inconclusive: no probe sample was scored"),
    ("no-samples", _with(n_samples=0.0), 1, "inconclusive: no probe sample was scored (n_samples is 0)"),
    ("dead-target-layer", _dead_layer, 1, "inconclusive: none of the 40 probe samples could be scored"),
    ("mostly-degenerate", _with(n_degenerate=30.0), 1, "inconclusive: 30 of 40 samples (75%) are degenerate"),
    ("model-at-chance", _chance_with_a_cue, 1,
     "inconclusive: accuracy 0.50 (20 of 40 correct) is not clearly above the majority-class rate 0.50"),
    ("summary-text", _with(focus_lift="high"), 2, "summary['focus_lift'] is 'high' (str)"),
    ("summary-list", _with(accuracy=[0.9]), 2, "summary['accuracy'] is [0.9] (list)"),
    ("summary-bool", _with(n_samples=True), 2, "summary['n_samples'] is True (bool)"),
    ("summary-not-object", _set("summary", [1, 2]), 2, "summary must be an object"),
    ("summary-missing", _drop("summary"), 2, "report has no 'summary' field"),
    ("samples-not-table", _set("samples", [1, 2, 3]), 2, "samples must be a table object"),
    ("samples-short-row", _set("samples.data.0", [0]), 2, "samples: row 0 must be a list of 4"),
    ("per-class-no-columns", _drop("per_class.columns"), 2, "per_class has no list 'columns'"),
    ("per-class-index-mismatch", _set("per_class.index", ["cat"]), 2,
     "per_class: 2 rows in 'data' but 1 in 'index'"),
    ("per-class-unknown-dtype", _set("per_class.dtypes.0", "float99"), 2,
     "per_class: column 'focus' does not hold float99 values"),
    ("per-class-text-in-float", _per_class_column("focus_lift", "abc"), 2,
     "per_class: column 'focus_lift' does not hold float64 values"),
    ("per-class-text-as-object", _per_class_column("focus_lift", "abc", "object"), 2,
     "per_class['focus_lift'] of class 'cat' is 'abc', not a number or null"),
    ("verdict-malformed", _set("verdict", {"passed": "yes", "findings": []}), 2,
     "field 'verdict': a verdict is an object whose 'passed' is true or false"),
    ("finding-extra-field", _set("verdict.findings", [{"rule": "x"}]), 2, "field 'verdict': findings[0] has"),
    ("policy-unknown-field", _set("policy.max_spurius_lift", 2.0), 2,
     "field 'policy': unknown ShortcutPolicy field(s) ['max_spurius_lift']"),
    ("policy-wrong-type", _set("policy.min_class_samples", "four"), 2,
     "field 'policy': ShortcutPolicy.min_class_samples must be an integer"),
    ("policy-bad-threshold", _set("policy.max_flip_rate", 2.0), 2,
     "field 'policy': ShortcutPolicy.max_flip_rate bounds cf_flip_rate, which is in [0, 1]"),
    ("meta-not-object", _set("meta", "x"), 2, "meta must be an object, got a str"),
    ("wrong-format", _set("format", "other"), 2, "not a cam_audit report (format 'other'"),
]


@pytest.mark.parametrize(("case", "damage", "code", "words"), GATE_REPORTS, ids=[c[0] for c in GATE_REPORTS])
def test_gate_on_a_broken_report(tmp_path, capsys, case, damage, code, words):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(damage(copy.deepcopy(_report_dict()))))
    got, out, err = _run(["gate", str(path)], capsys)
    assert got == code, out + err
    if code == 2:
        assert err.startswith(f"cam-audit gate: error: {path}: {words}"), err
        assert err.count("\n") == 1 and out == ""
        with pytest.raises(ReportError, match=r"^" + str(path)):
            AuditReport.from_json(path)
    elif code == 1:
        lines = out.splitlines()
        assert lines[0].startswith(f"FAIL {path}") and lines[1].strip().startswith(words), out
        if case == "model-at-chance":  # the spurious_lift of 9.0 is not named: the model is at chance
            assert len(lines) == 2 and "spurious" not in out
    else:
        assert out.startswith(words)


GATE_FILES = [
    ("missing-file", None, "report file {path} does not exist"),
    ("folder-not-file", "folder", "report file {path} is not readable JSON: [Errno 21] Is a directory"),
    ("empty-file", "", "report file {path} is not readable JSON: Expecting value"),
    ("not-json", "{not json", "report file {path} is not readable JSON"),
    ("not-utf8", b"\xff\xfe\x00{", "report file {path} is not readable JSON"),
    ("json-list", "[1, 2]", "report file {path} holds a JSON list, not a report object"),
]


@pytest.mark.parametrize(("case", "content", "words"), GATE_FILES, ids=[c[0] for c in GATE_FILES])
def test_gate_on_an_unreadable_file(tmp_path, capsys, case, content, words):
    path = tmp_path / "report.json"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    code, out, err = _run(["gate", str(path)], capsys)
    assert code == 2 and out == ""
    assert err.startswith("cam-audit gate: error: " + words.format(path=path)) and err.count("\n") == 1, err


def _policy_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return str(path)


GATE_ARGUMENTS = [
    ("flag-not-a-number", lambda t: ["--max-flip-rate", "abc"],
     "cam-audit gate: error: argument --max-flip-rate"),
    ("flag-out-of-range", lambda t: ["--max-flip-rate", "2"],
     "cam-audit gate: error: ShortcutPolicy.max_flip_rate bounds cf_flip_rate, which is in [0, 1]"),
    ("chance-level-zero", lambda t: ["--min-accuracy-p", "0"],
     "cam-audit gate: error: ShortcutPolicy.min_accuracy_p is a significance level in (0, 1)"),
    ("unknown-flag", lambda t: ["--max-flip", "0.2", "--strict"],
     "cam-audit: error: unrecognized arguments: --strict"),
    ("policy-file-missing", lambda t: ["--policy", str(t / "nope.yaml")],
     "cam-audit gate: error: --policy file"),
    ("policy-file-unknown-field", lambda t: ["--policy", _policy_file(t, "min_focus_lif: 1.0\n")],
     "cam-audit gate: error: unknown ShortcutPolicy field(s) ['min_focus_lif']"),
    ("policy-file-not-mapping", lambda t: ["--policy", _policy_file(t, "- 1\n- 2\n")],
     "cam-audit gate: error: --policy file"),
    ("policy-file-not-yaml", lambda t: ["--policy", _policy_file(t, "a: [1\n")],
     "cam-audit gate: error: --policy file"),
    ("policy-file-wrong-type", lambda t: ["--policy", _policy_file(t, "per_class: maybe\n")],
     "cam-audit gate: error: ShortcutPolicy.per_class must be true or false"),
]


@pytest.mark.parametrize(("case", "flags", "words"), GATE_ARGUMENTS, ids=[c[0] for c in GATE_ARGUMENTS])
def test_gate_with_bad_arguments(tmp_path, capsys, case, flags, words):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_report_dict()))
    code, out, err = _run(["gate", str(path), *flags(tmp_path)], capsys)
    assert code == 2 and out == ""
    assert err.startswith(words) and err.count("\n") == 1, err


def test_gate_prints_no_traceback_on_a_malformed_table(tmp_path):
    data = _report_dict()
    data["per_class"]["data"] = "not rows"
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data))
    done = subprocess.run([sys.executable, "-m", "cam_audit.cli", "gate", str(path)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "per_class has no list 'data'" in done.stderr


# ------------------------------------------------------------------------------------- cam-audit audit
def _weights(folder: Path, name: str, change: Callable | None = None, width: int = 4) -> Path:
    torch.manual_seed(0)
    model = SceneNet(width=width).eval()
    if change is not None:
        with torch.no_grad():
            change(model)
    path = folder / name
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """State dicts of SceneNet(width=4): sound, NaN, overflowing, with a dead target layer; broken files."""
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {
        "sound": _weights(folder, "sound.pt"),
        "nan": _weights(folder, "nan.pt", lambda m: m.head.weight[1, 2].fill_(math.nan)),
        # finite weights whose sums overflow float32: the logits are inf
        "overflow": _weights(folder, "overflow.pt", lambda m: [p.fill_(3e38) for p in m.head.parameters()]),
        # a BatchNorm bias far below zero: the ReLU of `features` outputs zeros, every map is all-zero
        "dead": _weights(folder, "dead.pt", lambda m: m.features[1].bias.fill_(-1e4)),
        "other": _weights(folder, "other.pt", width=8),
    }
    (folder / "notes.ckpt").write_text("not a checkpoint")
    paths["text"] = folder / "notes.ckpt"
    (folder / "run").mkdir()
    (folder / "run" / "last.ckpt").write_bytes(paths["sound"].read_bytes())
    paths["folder"] = folder / "run"
    return paths


def _config(folder: Path, checkpoint: Path, **overrides: Any) -> Path:
    config = {
        "model": "cam_audit.synthetic.SceneNet",
        "model_args": {"width": 4},
        "checkpoint": str(checkpoint),
        "probe": {"class_path": "cam_audit.synthetic.SyntheticProbe", "init_args": PROBE},
        "target_layer": "features",
        "batch_size": 6,
        "progress": False,
        "worst": 2,
        **overrides,
    }
    path = folder / "audit.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "a_file").write_text("x")
    return tmp_path / "a_file"


ERROR, FAIL = "cam-audit audit: error: ", "cam-audit audit: FAIL: "
COCO = {"class_path": "cam_audit.probe.sources.CocoProbe",
        "init_args": {"annotation_json": "no.json", "image_dir": "."}}
LINEAR = {"model": "torch.nn.Linear", "model_args": {"in_features": 5, "out_features": 3},
          "checkpoint": "linear", "target_layer": None}
SCENE_CLASSIFIER = "cam_audit.lightning.scenes.SceneClassifier"
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
NO_MPS = pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")

AUDIT_CASES = [
    # (id, config overrides (checkpoint: a key of `checkpoints`), extra arguments, exit code, first words)
    ("checkpoint-missing", {"checkpoint": "missing.pt"}, [], 2,
     ERROR + "checkpoint missing.pt does not exist"),
    ("checkpoint-is-a-folder", {"checkpoint": "folder"}, [], 2,
     ERROR + "checkpoint {folder} is a folder, not a checkpoint file; give the file itself, e.g. "
     "{folder}/last.ckpt"),
    ("checkpoint-not-torch", {"checkpoint": "text"}, [], 2,
     ERROR + "cannot load cam_audit.synthetic.SceneNet from checkpoint"),
    ("checkpoint-of-another-model", {"checkpoint": "other"}, [], 2,
     ERROR + "cannot load cam_audit.synthetic.SceneNet from checkpoint"),
    ("state-dict-for-a-lightning-module", {"model": SCENE_CLASSIFIER, "model_args": {}}, [], 2,
     ERROR + "checkpoint {sound} is a plain state_dict (torch.save(model.state_dict())), not a Lightning "
     "checkpoint"),
    ("model-class-typo", {"model": "cam_audit.synthetic.SceneNett"}, [], 2,
     ERROR + "model 'cam_audit.synthetic.SceneNett' cannot be imported"),
    ("model-not-a-class-path", {"model": "SceneNet"}, [], 2, ERROR + "model 'SceneNet' is not a class path"),
    ("config-key-typo", {"batch_sise": 4}, [], 2, ERROR + "Option 'batch_sise' is not accepted"),
    ("config-file-missing", {}, ["--config", "nope.yaml"], 2,
     ERROR + 'Parser key "config": File does not exist'),
    ("batch-size-zero", {}, ["--batch_size", "0"], 2, ERROR + "--batch_size must be >= 1"),
    ("worst-negative", {}, ["--worst", "-1"], 2, ERROR + "--worst must be >= 0"),
    ("policy-out-of-range", {"policy": {"max_flip_rate": 2.0}}, [], 2,
     ERROR + "ShortcutPolicy.max_flip_rate bounds cf_flip_rate, which is in [0, 1]"),
    ("probe-source-missing", {"probe": COCO}, [], 2, ERROR + "annotation file no.json does not exist"),
    ("target-layer-missing", {"target_layer": "layer5"}, [], 2,
     ERROR + "target_layer 'layer5' not found in SceneNet"),
    ("target-layer-1x1", {"target_layer": "pool"}, [], 2,
     ERROR + "target_layer 'pool' outputs shape (1, 16, 1, 1): a single spatial position"),
    ("model-forward-fails", LINEAR, [], 2, ERROR + "Linear failed on probe sample '0'"),
    ("device-not-a-device", {}, ["--device", "gpu"], 2, ERROR + "--device 'gpu' is not a torch device"),
    ("device-unsupported", {}, ["--device", "meta"], 2,
     ERROR + "--device meta: device type 'meta' is not supported here"),
    pytest.param("device-cuda-absent", {}, ["--device", "cuda"], 2,
                 ERROR + f"--device cuda: torch {torch.__version__} sees no CUDA device", marks=NO_CUDA,
                 id="device-cuda-absent"),
    pytest.param("device-mps-absent", {}, ["--device", "mps"], 2,
                 ERROR + "--device mps: MPS is not available", marks=NO_MPS, id="device-mps-absent"),
    ("out-is-a-file", {}, ["--out", "{a_file}"], 2, ERROR + "--out {a_file} is a file, not a folder"),
    ("out-under-a-file", {}, ["--out", "{a_file}/audit"], 2,
     ERROR + "--out {a_file}/audit cannot be created: {a_file} is a file, not a folder"),
    ("weights-nan", {"checkpoint": "nan"}, [], 1,
     FAIL + "parameter 'head.weight' of checkpoint {nan} holds 1 of 48 values that are NaN or infinite"),
    ("logits-overflow", {"checkpoint": "overflow"}, [], 1,
     FAIL + "SceneNet returned non-finite logits (NaN or inf) for "),
]


def _audit_args(case_config: dict, extra: list[str], tmp_path: Path, checkpoints: dict) -> list[str]:
    overrides = dict(case_config)
    name = overrides.pop("checkpoint", "sound")
    if name == "linear":
        torch.save(torch.nn.Linear(5, 3).state_dict(), tmp_path / "linear.pt")
        checkpoint = tmp_path / "linear.pt"
    else:
        checkpoint = checkpoints.get(name, Path(name))
    config = _config(tmp_path, checkpoint, **overrides)
    fill = {"a_file": _a_file(tmp_path), **checkpoints}
    extra = [arg.format(**fill) for arg in extra]
    return ["audit", "--config", str(config), "--out", str(tmp_path / "out"), *extra]


@pytest.mark.parametrize(("case", "config", "extra", "code", "words"),
                         [c if hasattr(c, "marks") else pytest.param(*c, id=c[0]) for c in AUDIT_CASES])
def test_audit_on_a_bad_day(tmp_path, capsys, checkpoints, case, config, extra, code, words):
    code_got, out, err = _run(_audit_args(config, extra, tmp_path, checkpoints), capsys)
    fill = {"a_file": tmp_path / "a_file", **checkpoints}
    assert code_got == code, err
    assert err.startswith(words.format(**fill)), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing half-written where the gate looks
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_audit_on_a_device_index_this_machine_does_not_have(tmp_path, capsys, checkpoints, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    code, _, err = _run(_audit_args({}, ["--device", "cuda:3"], tmp_path, checkpoints), capsys)
    assert code == 2
    assert err == ERROR + "--device cuda:3: this machine has 1 CUDA device(s), cuda:0 to cuda:0\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("locked", ["out", "parent"])
def test_audit_into_a_read_only_folder(tmp_path, capsys, checkpoints, locked):
    parent = tmp_path / "runs"
    (parent / "out").mkdir(parents=True)
    (parent / locked if locked == "out" else parent).chmod(0o555)
    args = _audit_args({}, [], tmp_path, checkpoints)
    args[args.index("--out") + 1] = str(parent / "out")
    try:
        code, _, err = _run(args, capsys)
    finally:
        (parent / locked if locked == "out" else parent).chmod(0o755)
    assert code == 2 and err.startswith(f"cam-audit audit: error: --out {parent / 'out'}")


def test_a_dead_target_layer_fails_as_inconclusive(tmp_path, capsys, checkpoints):
    code, out, err = _run(_audit_args({"checkpoint": "dead"}, [], tmp_path, checkpoints), capsys)
    report = AuditReport.from_json(tmp_path / "out" / "report.json")
    assert code == 1 and err == ""
    assert report.summary["n_degenerate"] == 12 and math.isnan(report.summary["focus_lift"])
    assert out.splitlines()[2].startswith("  inconclusive: none of the 12 probe samples could be scored")
    assert _run(["gate", str(tmp_path / "out" / "report.json")], capsys)[0] == 1


def _old_outputs(out: Path) -> bytes:
    """A previous audit's outputs: a passing report and an overlay the new audit does not write."""
    (out / "overlays").mkdir(parents=True)
    (out / "overlays" / "99999.png").write_bytes(b"old overlay")
    data = _report_dict()
    (out / "report.json").write_text(json.dumps(data))
    return (out / "report.json").read_bytes()


def test_a_re_audit_replaces_the_old_outputs_whole(tmp_path, capsys, checkpoints):
    args = _audit_args({}, ["--overlays", "false"], tmp_path, checkpoints)
    _old_outputs(tmp_path / "out")
    code, out, _ = _run(args, capsys)
    assert code in (0, 1)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["index.html", "report.json", "samples.csv"]
    assert AuditReport.from_json(tmp_path / "out" / "report.json").summary["n_samples"] == PROBE["n"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "audit.yaml", "out"]  # nothing beside it
    assert f"report:   {tmp_path / 'out' / 'report.json'}" in out


@pytest.mark.parametrize(
    ("fault", "code", "words"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "samples.csv"), 2,
         ERROR + "cannot write the outputs of --out {out} (samples.csv): No space left on device; check the "
         "free space and the permissions there"),
        (KeyboardInterrupt(), 130, "cam-audit audit: interrupted; --out was left as it was"),
    ],
    ids=["disk-full", "interrupted"],
)
def test_a_failed_re_audit_leaves_the_old_outputs_as_they_were(tmp_path, capsys, checkpoints, monkeypatch,
                                                               fault, code, words):
    args = _audit_args({}, [], tmp_path, checkpoints)
    before = _old_outputs(tmp_path / "out")

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise fault

    monkeypatch.setattr(AuditReport, "to_csv", fail)  # after the overlays of the new model are written
    code_got, _, err = _run(args, capsys)
    assert code_got == code and err == words.format(out=tmp_path / "out") + "\n"
    assert (tmp_path / "out" / "report.json").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir()) == ["99999.png"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------------- engine and layers
def test_an_explicit_1x1_target_layer_is_refused_where_it_is_resolved():
    model, images = SceneNet(width=4).eval(), torch.rand(2, 3, 32, 32)
    words = "target_layer 'pool' outputs shape (2, 16, 1, 1): a single spatial position"
    calls = (lambda: CamEngine(model, "pool")(images), lambda: resolve_target_layer(model, "pool", images))
    for call in calls:
        with pytest.raises(TargetLayerError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(words) and message.endswith("e.g. one of: stem, features")


def test_the_automatic_layer_skips_1x1_outputs():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 8),  # 8x8 -> 1x1
        torch.nn.Flatten(), torch.nn.Linear(4, 2),
    )
    assert resolve_target_layer(model, None, torch.rand(1, 3, 8, 8))[0] == "1"


def test_the_engine_names_non_finite_logits():
    model = SceneNet(width=4).eval()
    with torch.no_grad():
        model.head.bias[1] = math.nan
    with pytest.raises(NonFiniteModelError) as caught:
        CamEngine(model, "features")(torch.rand(3, 3, 32, 32))
    assert str(caught.value).startswith("SceneNet returned non-finite logits (NaN or inf) for 3 of 3 images")


def test_audit_refuses_a_list_as_probe():
    from cam_audit import audit
    from cam_audit.errors import CamAuditError

    probe = SyntheticProbe(**PROBE).load()
    with pytest.raises(CamAuditError, match="^probe must be a cam_audit.ProbeSet, got list"):
        audit(SceneNet(width=4).eval(), [probe[0], probe[1]])


# ------------------------------------------------------------------------------------------- writes
WRITER = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from cam_audit.report import AuditReport, ShortcutPolicy

    path, writer, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    summary = {"focus_lift": 3.0, "accuracy": 1.0, "n_samples": 4000.0, "n_degenerate": 0.0}
    samples = pd.DataFrame({"sample_id": [f"{writer}-{i}.png" for i in range(4000)], "focus": 0.5})
    policy = ShortcutPolicy()
    verdict = policy.evaluate(summary)
    report = AuditReport(summary, samples, pd.DataFrame(), verdict, policy, {"writer": writer})
    for _ in range(rounds):
        report.to_json(path)
    """
)


def test_two_writers_and_a_reader_of_one_report_never_collide(tmp_path):
    path = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, "150"], env=env,
                                stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    reads, seen = 0, set()
    while any(w.poll() is None for w in writers):
        try:
            text = path.read_text()
        except FileNotFoundError:  # before the first write
            time.sleep(0.001)
            continue
        report = AuditReport.from_dict(json.loads(text))  # raises on a partial file
        assert len(report.samples) == 4000
        seen.add(report.meta["writer"])
        reads += 1
    errors = [w.stderr.read() for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    assert reads >= 20 and seen == {"a", "b"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temporary file left


def test_write_atomic_cleans_up_and_keeps_the_usual_permissions(tmp_path):
    from cam_audit.report.atomic import write_atomic

    (tmp_path / "taken").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "taken", b"x")  # os.replace cannot put a file over a folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    umask = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "r.json", "{}")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # as open() would make it, not mkstemp's 0600


def test_write_reports_leaves_no_temporary_file_in_latest_or_best(tmp_path):
    from cam_audit.lightning.sinks import write_reports

    summary = {"focus_lift": 3.0, "accuracy": 1.0, "n_samples": 2.0, "n_degenerate": 0.0}
    report = AuditReport(summary, pd.DataFrame({"focus": [0.5, 0.6]}), pd.DataFrame(),
                         ShortcutPolicy().evaluate(summary), ShortcutPolicy(), {"epoch": 0})
    root = write_reports(tmp_path, report, is_best=True)
    write_reports(tmp_path, report, is_best=True)
    assert sorted(p.name for p in (root / "best").iterdir()) == ["report.json", "samples.csv"]
    assert sorted(p.name for p in (root / "latest").iterdir()) == ["report.json", "samples.csv"]
    assert (root / "best" / "report.json").read_bytes() == (root / "latest" / "report.json").read_bytes()


def test_a_reader_that_stops_early_does_not_turn_the_audit_into_an_error(tmp_path):
    """``cam-audit audit ... | head -1``: the exit code is the audit's, not a broken-pipe error."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from cam_audit.cli.audit_cmd import _emit\n"
        "_emit(['first line'] + ['more'] * 200000)\n"
        "sys.exit(7)\n"
    )
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{sys.executable} -c \"{script}\" | head -1"],
        capture_output=True,
        text=True,
    )
    assert done.stdout == "first line\n" and done.returncode == 7
    assert "Broken pipe" not in done.stderr and "Error" not in done.stderr, done.stderr
