"""The layers the README promises are the layers the imports show (AST scan of every module)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "svsr"

# folder -> import prefixes its modules must never use (anywhere in the module, lazy imports too)
FORBIDDEN = {
    "runtime": ("svsr.engines", "svsr.export", "svsr.reference", "torch", "torchvision", "diffusers"),
    "engines": ("svsr.runtime",),
    "contract": ("svsr.runtime", "svsr.engines", "svsr.export", "svsr.reference", "svsr.api", "svsr.cli", "svsr.bench", "svsr.sample_clip"),
    "reference": ("svsr.runtime", "svsr.engines", "svsr.export", "svsr.api", "svsr.cli", "svsr.bench"),
}


def imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import statement in ``path``, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.append((node.lineno, module))
            # `from svsr import runtime` imports the package svsr.runtime
            names += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return names


def violations(folder: str) -> list[str]:
    found = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        for line, module in imported_names(path):
            for prefix in FORBIDDEN[folder]:
                if module == prefix or module.startswith(prefix + "."):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_layer_imports_only_what_the_architecture_allows(folder):
    assert (PACKAGE / folder).is_dir()
    assert violations(folder) == []


def test_the_scan_catches_a_forbidden_import(tmp_path, monkeypatch):
    """The check can fail: a runtime module importing the engine builder is reported."""
    fake = tmp_path / "svsr"
    (fake / "runtime").mkdir(parents=True)
    (fake / "runtime" / "bad.py").write_text("def f():\n    from svsr.engines.builder import build_engines\n    import torch\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert violations("runtime") == [
        "svsr/runtime/bad.py:2 imports svsr.engines.builder",
        "svsr/runtime/bad.py:2 imports svsr.engines.builder.build_engines",
        "svsr/runtime/bad.py:3 imports torch",
    ]


def test_contract_modules_import_only_numpy_jsonschema_and_the_standard_library():
    import sys

    allowed_third_party = {"numpy", "jsonschema", "torch", "cuda", "tensorrt"}  # torch/cuda/tensorrt lazily, inside functions
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in sorted((PACKAGE / "contract").rglob("*.py")):
        for line, module in imported_names(path):
            top = module.split(".")[0]
            assert top in stdlib or top in allowed_third_party or top == "svsr", f"{path.name}:{line} imports {module}"
