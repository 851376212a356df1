"""The package's layout: layers whose imports point down only, no cycle, no module over 400 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "castinspect"
LAYOUT_CHECK = PACKAGE.parents[2] / "shared" / "tools" / "layout_check.py"
# Bottom to top (docs/architecture.md). A module may import its own layer and the layers below.
LAYERS = ("core", "data", "models", "inference", "evaluation", "training", "lab", "station", "cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every castinspect module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n == "castinspect" or n.startswith("castinspect.")}


def layer(module: str) -> int | None:
    """The rank of a module's layer; None for the package's face (castinspect/__init__ and __main__)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_lives_in_a_layer():
    loose = [module_name(f) for f in PACKAGE.glob("*.py") if f.name not in ("__init__.py", "__main__.py")]
    assert not loose, f"modules outside the layers: {loose}"
    assert {d.name for d in PACKAGE.iterdir() if (d / "__init__.py").exists()} == set(LAYERS)


def test_imports_point_down_the_layers():
    upward = []
    for f in PACKAGE.rglob("*.py"):
        source = module_name(f)
        rank = layer(source)
        if rank is None:
            continue  # the public face imports from every layer
        for target in imported(f):
            target_rank = layer(target)
            if target_rank is None:
                upward.append(f"{source} -> {target} (the package face)")
            elif target_rank > rank:
                upward.append(f"{source} -> {target}")
    assert not upward, "imports pointing up the layers:\n" + "\n".join(sorted(upward))


@pytest.mark.skipif(not LAYOUT_CHECK.is_file(), reason="../shared/tools/layout_check.py is not beside the project")
def test_shared_layout_check_passes():
    r = subprocess.run([sys.executable, str(LAYOUT_CHECK), str(PACKAGE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_package_face_loads_no_pytorch():
    code = "import sys, castinspect; castinspect.__version__; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr
