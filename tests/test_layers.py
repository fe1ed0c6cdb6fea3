"""The package's layers (../shared/ARCHITECTURE.md): a module imports only from its own layer or lower ones.

Every module's imports are read with `ast` (lazy imports inside functions included), so the picture in
ARCHITECTURE.md and README's module map stays true. A module missing from LAYERS fails too: place it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vision3d_kd"

# top-level module or sub-package of vision3d_kd -> layer (0 lowest). Keep in step with ARCHITECTURE.md.
LAYERS: dict[str, int] = {
    "kernels": 0, "cameras": 0, "config": 0, "checkpoint": 0, "errors": 0, "parallel": 0, "assets": 0,
    "fields": 1, "data": 1,
    "render": 2,
    "evaluate": 3, "runs": 3, "metrics": 3,
    "train": 4, "guidance": 4,
    "export": 5,
    "generation": 6, "distill": 6,
    "viewer": 7,
    "bench": 8, "batch": 8,
    "cli": 9,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of vision3d_kd in the file (or in `source`, read as if it
    were that file), relative ones resolved."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "vision3d_kd":  # `from vision3d_kd import x`: x is the module
                out += [(node.lineno, f"vision3d_kd.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return [(line, t) for line, t in out if t.startswith("vision3d_kd.")]


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_up_the_layers(path: Path) -> None:
    own = _layer(_module_name(path))
    assert own is not None, f"{_module_name(path)} is in no layer: add it to LAYERS (and ARCHITECTURE.md)"
    upward = [f"line {line}: {target} (layer {_layer(target)})" for line, target in _imported(path)
              if (_layer(target) or 0) > own]
    assert not upward, f"{_module_name(path)} (layer {own}) imports upward: " + "; ".join(upward)


def test_the_checker_sees_an_upward_import() -> None:
    """The rule is not vacuous: a lazy import of the CLI inside a function of fields/ is found and is upward."""
    source = "import torch\n\n\ndef f():\n    from ..cli.render import render_command\n"
    imports = _imported(PACKAGE / "fields" / "base.py", source)
    assert imports == [(5, "vision3d_kd.cli.render")]
    assert _layer(imports[0][1]) > _layer("vision3d_kd.fields.base")
