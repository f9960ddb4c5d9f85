"""``cam-audit audit --task`` and ``--forward``, and the task shown by the gate and the HTML page."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml

from cam_audit import audit
from cam_audit.cli import main
from cam_audit.report import AuditReport
from cam_audit.synthetic import SceneNet, SyntheticProbe

PROBE = {"n": 8, "num_classes": 2, "image_size": 32, "watermark": "correlated", "seed": 7}
COLUMNS = ["label", "prediction", "correct", "focus", "spurious_mass", "cf_flip", "cf_paste"]


@pytest.fixture(scope="module")
def binary_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = SceneNet(num_classes=1, width=4).eval()
    path = tmp_path_factory.mktemp("weights") / "binary.pt"
    torch.save(model.state_dict(), path)
    return model, path


def _run(folder, weights, **overrides) -> tuple[int, AuditReport | None]:
    config = {
        "model": "cam_audit.synthetic.SceneNet",
        "model_args": {"num_classes": 1, "width": 4},
        "checkpoint": str(weights),
        "probe": {"class_path": "cam_audit.synthetic.SyntheticProbe", "init_args": PROBE},
        "target_layer": "features",
        "batch_size": 3,
        "progress": False,
        "overlays": False,
        **overrides,
    }
    path = folder / "audit.yaml"
    path.write_text(yaml.safe_dump(config))
    code = main(["audit", "--config", str(path), "--out", str(folder / "out")])
    report_path = folder / "out" / "report.json"
    return code, AuditReport.from_json(report_path) if report_path.exists() else None


@pytest.mark.parametrize("task", [None, "binary"])
def test_a_one_logit_checkpoint_is_audited_as_binary(tmp_path, binary_weights, capsys, task):
    model, weights = binary_weights
    code, report = _run(tmp_path, weights, task=task)
    assert code in (0, 1) and report.meta["task"] == "binary"
    direct = audit(model, SyntheticProbe(**PROBE).load(), target_layer="features", batch_size=3)
    pd.testing.assert_frame_equal(report.samples[COLUMNS], direct.samples[COLUMNS], check_dtype=False)
    assert "<th class=\"name\">task</th><td>binary</td>" in (tmp_path / "out" / "index.html").read_text()
    capsys.readouterr()
    main(["gate", str(tmp_path / "out" / "report.json")])
    assert capsys.readouterr().out.splitlines()[0].split(":")[0].endswith("report.json (binary)")


def test_a_task_that_does_not_fit_the_model_exits_2_naming_it(tmp_path, binary_weights, capsys):
    _, weights = binary_weights
    code, _ = _run(tmp_path, weights, task="multilabel")
    err = capsys.readouterr().err
    assert code == 2 and "task='multilabel' needs at least two outputs" in err


def test_forward_names_a_function_for_a_model_that_takes_a_dict(tmp_path, binary_weights):
    model, weights = binary_weights
    code, report = _run(
        tmp_path, weights, model="helpers.shapes.DictSceneNet", forward="helpers.shapes.image_dict_forward"
    )
    assert code in (0, 1)
    direct = audit(model, SyntheticProbe(**PROBE).load(), target_layer="features", batch_size=3)
    pd.testing.assert_frame_equal(report.samples[COLUMNS], direct.samples[COLUMNS], check_dtype=False)


@pytest.mark.parametrize(
    ("forward", "said"),
    [("helpers.shapes.no_such_function", "cannot be imported"), ("helpers.shapes.RED", "not a function")],
)
def test_a_bad_forward_exits_2_with_one_line(tmp_path, binary_weights, capsys, forward, said):
    _, weights = binary_weights
    code, _ = _run(tmp_path, weights, forward=forward)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"forward '{forward}'" in err and said in err
