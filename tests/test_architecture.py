"""The layering promised in DESIGN.md: what may import what."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cam_audit"
LIGHTNING = ("pytorch_lightning", "lightning")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(*relative: str) -> list[Path]:
    files: list[Path] = []
    for rel in relative:
        target = PACKAGE / rel
        files.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return files


def _importing(prefixes: tuple[str, ...]) -> list[str]:
    return [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if any(name == p or name.startswith(p + ".") for name in _imports(path) for p in prefixes)
    ]


def test_only_the_callback_and_the_cli_import_lightning():
    offenders = [m for m in _importing(LIGHTNING) if not m.startswith(("lightning/", "cli/"))]
    assert offenders == []


@pytest.mark.parametrize("path", _modules("metrics"), ids=lambda p: p.name)
def test_metrics_score_any_map_without_the_engine(path):
    assert not any(name.startswith("cam_audit.cam") for name in _imports(path))


def test_report_imports_no_torch_so_the_gate_runs_anywhere():
    for path in _modules("report", "errors.py", "cli/gate.py"):
        assert not any(name == "torch" or name.startswith("torch.") for name in _imports(path)), path.name


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("regions.py", ("cam_audit.cam", "cam_audit.metrics", "cam_audit.probe", "cam_audit.pipeline")),
        ("cam", ("cam_audit.metrics", "cam_audit.probe", "cam_audit.pipeline", "cam_audit.report")),
        ("probe", ("cam_audit.cam", "cam_audit.metrics", "cam_audit.pipeline", "cam_audit.lightning")),
        ("audit.py", ("cam_audit.lightning", "cam_audit.cli")),
    ],
)
def test_imports_point_down_the_layers(lower, upper):
    for path in _modules(lower):
        bad = [n for n in _imports(path) if any(n == u or n.startswith(u + ".") for u in upper)]
        assert bad == [], f"{path.relative_to(PACKAGE)} imports {bad}"


def test_the_audit_function_survives_the_import_of_its_module():
    import subprocess
    import sys

    code = (
        "import cam_audit.pipeline, cam_audit.lightning\n"
        "from cam_audit import audit, CamAudit\n"
        "import inspect\n"
        "assert inspect.isfunction(audit) and audit.__module__ == 'cam_audit.pipeline', audit\n"
        "assert inspect.isclass(CamAudit)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
