"""Every YAML under configs/ parses with the parser that reads it, and a typo fails at parse time."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cam_audit import CamAudit, ShortcutPolicy
from cam_audit.probe.spec import SyntheticProbe

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

    from cam_audit.cli.scenes import SceneClassifier, SceneDataModule

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
    monitors = [c.monitor for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert "cam_audit/focus_lift" in monitors


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
    assert init.model == "cam_audit.cli.scenes.SceneClassifier"
    assert init.probe == SyntheticProbe(n=96, watermark="correlated", seed=20000)
    assert init.policy == ShortcutPolicy()  # the config spells out the defaults
    assert init.target_layer == "features" and init.method == "gradcam++" and init.worst == 8


def test_audit_config_typo_fails_at_parse_time(tmp_path):
    from cam_audit.cli.audit_cmd import main

    def typo(data):
        data["policy"]["max_spurious_lfit"] = data["policy"].pop("max_spurious_lift")

    assert main(["--config", str(_with(CONFIGS / "audit.yaml", tmp_path, typo))]) == 2
