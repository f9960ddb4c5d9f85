"""Every YAML under configs/ parses with the parser that reads it, and a typo fails at parse time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from cam_audit import CamAudit, ShortcutPolicy
from cam_audit.errors import CamAuditError
from cam_audit.probe.sources import CsvProbe
from cam_audit.synthetic import SyntheticProbe

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _lightning_cli(config: Path):
    from pytorch_lightning.cli import LightningCLI

    return LightningCLI(run=False, args=["--config", str(config), "--trainer.logger=false"])


def _with(config: Path, folder: Path, edit) -> Path:
    data = yaml.safe_load(config.read_text())
    edit(data)
    path = folder / config.name
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_config_is_covered():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == ["audit.yaml", "demo.yaml"]


def test_demo_config_builds_trainer_with_the_audit_and_a_checkpoint_on_focus_lift():
    from pytorch_lightning.callbacks import ModelCheckpoint

    from cam_audit.lightning.scenes import SceneClassifier, SceneDataModule

    cli = _lightning_cli(CONFIGS / "demo.yaml")
    assert isinstance(cli.model, SceneClassifier) and isinstance(cli.datamodule, SceneDataModule)
    audits = [c for c in cli.trainer.callbacks if isinstance(c, CamAudit)]
    assert len(audits) == 1
    audit = audits[0]
    assert audit.target_layer == "features" and audit.every_n_epochs == 1
    assert len(audit.probe) == 96 and audit.probe.has_spurious
    declared = SyntheticProbe(n=96, watermark="correlated", seed=20000)
    assert audit.probe.fingerprint() == declared.load().fingerprint()
    assert audit.policy == ShortcutPolicy()  # the config spells out the defaults
    assert audit.discover is False
    monitors = [c.monitor for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert "cam_audit/focus_lift" in monitors


def test_demo_config_switches_discovery_on_and_checks_its_type(tmp_path, capsys):
    def discover(value):
        def edit(data):
            data["trainer"]["callbacks"][0]["init_args"]["discover"] = value

        return edit

    cli = _lightning_cli(_with(CONFIGS / "demo.yaml", tmp_path, discover(True)))
    (audit,) = [c for c in cli.trainer.callbacks if isinstance(c, CamAudit)]
    assert audit.discover is True and audit.budget is None
    with pytest.raises(SystemExit) as stop:
        _lightning_cli(_with(CONFIGS / "demo.yaml", tmp_path, discover("sometimes")))
    assert stop.value.code == 2 and "discover" in capsys.readouterr().err


def test_demo_config_typo_fails_at_parse_time(tmp_path, capsys):
    def typo(data):
        init = data["trainer"]["callbacks"][0]["init_args"]
        init["every_n_epoch"] = init.pop("every_n_epochs")

    with pytest.raises(SystemExit) as stop:
        _lightning_cli(_with(CONFIGS / "demo.yaml", tmp_path, typo))
    assert stop.value.code == 2
    assert "every_n_epoch" in capsys.readouterr().err


def test_audit_config_parses_to_typed_objects(tmp_path):
    from cam_audit.cli.audit_cmd import build_parser

    parser = build_parser()
    config = parser.parse_args(["--config", str(CONFIGS / "audit.yaml")])
    init = parser.instantiate(config)
    assert init.model == "cam_audit.lightning.scenes.SceneClassifier"
    assert init.probe == SyntheticProbe(n=96, watermark="correlated", seed=20000)
    assert init.policy == ShortcutPolicy()  # the config spells out the defaults
    assert init.target_layer == "features" and init.method == "gradcam++" and init.worst == 8


def test_audit_config_typo_fails_at_parse_time(tmp_path):
    from cam_audit.cli.audit_cmd import main

    def typo(data):
        data["policy"]["max_spurious_lfit"] = data["policy"].pop("max_spurious_lift")

    assert main(["--config", str(_with(CONFIGS / "audit.yaml", tmp_path, typo))]) == 2


def test_a_probe_source_takes_a_transform_from_yaml_and_resizes_images_with_their_regions(tmp_path):
    from PIL import Image

    from cam_audit.cli.audit_cmd import build_parser

    for name, (height, width) in {"a.png": (12, 16), "b.png": (24, 20)}.items():
        Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "probe.csv").write_text(
        "image,label,role,x_min,y_min,x_max,y_max,mask\na.png,cat,object,0,0,8,6,\nb.png,dog,object,0,0,10,24,\n"
    )
    probe_yaml = {
        "class_path": "cam_audit.probe.sources.CsvProbe",
        "init_args": {
            "manifest_csv": str(tmp_path / "probe.csv"),
            "transform": {"class_path": "torchvision.transforms.v2.Resize", "init_args": {"size": [8, 8]}},
        },
    }
    parser = build_parser()
    config = parser.parse_object({"model": "m", "checkpoint": "c", "probe": probe_yaml})
    probe = parser.instantiate(config).probe.load()
    batch = next(probe.batches(2))  # 12x16 and 24x20 images share a batch once resized
    assert tuple(batch.images.shape) == (2, 3, 8, 8)
    assert batch.regions[0].sum() == 4 * 4 and batch.regions[1].sum() == 4 * 8  # boxes resized with them
    without = CsvProbe(tmp_path / "probe.csv")
    with pytest.raises(CamAuditError, match="Resize"):
        next(without.load().batches(2))
