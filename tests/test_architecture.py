"""The layout promised in DESIGN.md ("Architecture"): what may import what, and how big a piece may grow.

Each top-level module or package of ``cam_audit`` sits on one layer; it may import the layers below it
and its own package, never a layer above or a neighbour on its own layer. On top of that: metrics score
any map without the CAM engine, the report (and so ``cam-audit gate``) runs without torch, and only the
Lightning front end and the command line import Lightning.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cam_audit"
LIGHTNING = ("pytorch_lightning", "lightning")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

#: Layer of every top-level module or package, lowest first.
LAYERS = {
    "errors": 0,
    "keys": 0,
    "regions": 1,
    "cam": 2,
    "metrics": 2,
    "probe": 2,
    "report": 2,
    "counterfactual": 3,
    "render": 3,
    "synthetic": 3,
    "pipeline": 4,
    "lightning": 5,
    "cli": 6,
}
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def _component(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


def test_every_module_has_a_layer():
    unplaced = sorted({_component(p) for p in MODULES} - set(LAYERS) - {"__init__"})
    assert unplaced == [], f"add {unplaced} to LAYERS (and to DESIGN.md's architecture)"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_imports_point_down_the_layers(path):
    own = _component(path)
    if own == "__init__":  # the lazy public names of the package
        return
    bad = []
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] != "cam_audit" or len(parts) == 1:
            continue
        other = parts[1]
        if other != own and LAYERS[other] >= LAYERS[own]:
            bad.append(name)
    assert bad == [], f"{_rel(path)} (layer {LAYERS[own]}) imports {sorted(bad)} from its layer or above"


@pytest.mark.parametrize("path", sorted((PACKAGE / "metrics").rglob("*.py")), ids=_rel)
def test_metrics_score_any_map_without_the_engine(path):
    assert not any(name.startswith("cam_audit.cam") for name in _imports(path))


TORCH_FREE = [
    *sorted((PACKAGE / "report").rglob("*.py")),
    *(PACKAGE / p for p in ("keys.py", "errors.py", "cli/gate.py")),
]


@pytest.mark.parametrize("path", TORCH_FREE, ids=_rel)
def test_the_report_imports_no_torch_so_the_gate_runs_anywhere(path):
    assert not any(name.split(".")[0] in ("torch", "torchvision", "torchmetrics") for name in _imports(path))


def test_the_gate_runs_without_importing_torch_or_lightning(tmp_path):
    code = (
        "import sys, cam_audit.cli, cam_audit.cli.gate, cam_audit.report, cam_audit.keys\n"
        "heavy = [m for m in ('torch', 'pytorch_lightning', 'lightning') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_only_the_lightning_front_end_and_the_cli_import_lightning():
    offenders = [
        _rel(p)
        for p in MODULES
        if _component(p) not in ("lightning", "cli")
        and any(n.split(".")[0] in LIGHTNING for n in _imports(p))
    ]
    assert offenders == []


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_no_module_is_over_the_size_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_rel(path)} has {lines} lines: one file, one idea"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_no_function_body_is_over_the_size_limit(path):
    long = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            # the docstring documents, it does not count as body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:] or body
            length = body[-1].end_lineno - body[0].lineno + 1
            if length > MAX_FUNCTION_LINES:
                long.append(f"{node.name} ({length} lines)")
    assert long == [], f"{_rel(path)}: {long}"


def test_no_module_shares_a_name_with_a_public_function():
    import cam_audit

    clashes = [
        name
        for name in cam_audit.__all__
        if (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()
    ]
    assert clashes == []


def test_the_audit_function_is_a_function_after_every_module_is_imported():
    code = (
        "import importlib, inspect, pkgutil, cam_audit\n"
        "for info in pkgutil.walk_packages(cam_audit.__path__, 'cam_audit.'):\n"
        "    if not info.name.endswith('__main__'):\n"
        "        importlib.import_module(info.name)\n"
        "from cam_audit import audit, CamAudit\n"
        "assert inspect.isfunction(audit), audit\n"
        "assert inspect.isfunction(cam_audit.audit), cam_audit.audit\n"
        "assert inspect.isclass(CamAudit)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_pipeline_attribute_can_be_patched_by_its_dotted_name(monkeypatch):
    import cam_audit.pipeline

    marker = object()
    monkeypatch.setattr("cam_audit.pipeline.model_fingerprint", marker)
    assert cam_audit.pipeline.model_fingerprint is marker


def test_the_package_ships_its_type_information():
    assert (PACKAGE / "py.typed").is_file()
