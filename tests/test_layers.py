"""The layers the README promises are the layers the imports show (AST scan of every module).

Imports are followed wherever they are written (inside functions too) and transitively through
svsr's own modules, so a lazy import two modules away counts as well.
"""

from __future__ import annotations

import ast
import sys
from functools import lru_cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "svsr"
LAYERS = ("svsr.engines", "svsr.export", "svsr.reference", "svsr.runtime", "svsr.api")
CLI_TOOLS = ("svsr/cli.py", "svsr/cli_options.py", "svsr/doctor.py", "svsr/bench.py", "svsr/checks", "svsr/evaluate.py")
RUNTIME_ROOMS = ("sampling", "video", "jobs")

# folder -> import prefixes its modules must never use, directly or through svsr modules they import
FORBIDDEN = {
    "runtime": ("svsr.engines", "svsr.export", "svsr.reference", "svsr.api", "svsr.cli", "torchvision", "diffusers"),
    "engines": ("svsr.runtime",),
    "contract": ("svsr.runtime", "svsr.engines", "svsr.export", "svsr.reference", "svsr.device", "svsr.api", "svsr.cli", "svsr.bench", "svsr.sample_clip", "torch", "cuda", "tensorrt"),
    "device": ("svsr.runtime", "svsr.engines", "svsr.export", "svsr.reference", "svsr.api", "svsr.cli"),
    "reference": ("svsr.runtime", "svsr.engines", "svsr.export", "svsr.api", "svsr.cli", "svsr.bench"),
    "quality": ("svsr.engines", "svsr.export", "svsr.reference", "svsr.api", "svsr.cli"),
}


def imported_names(path: Path, *, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, dotted module) of every import statement in ``path``, relative imports resolved.

    ``top_level_only``: only the imports that run when the module is imported (not inside a def).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    nodes = _top_level_nodes(tree) if top_level_only else ast.walk(tree)
    names = []
    for node in nodes:
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


def _top_level_nodes(tree: ast.AST):
    """Nodes executed at import time: everything but function bodies (class bodies and ifs included)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                stack.append(child)


def module_file(module: str) -> Path | None:
    """The file of an svsr module (package __init__ included), or None for anything else."""
    if module != "svsr" and not module.startswith("svsr."):
        return None
    base = PACKAGE.parent.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=None)
def reachable(path: Path, top_level_only: bool = False) -> frozenset[tuple[str, str]]:
    """Every (module, via) reachable from ``path`` through svsr modules; ``via`` names the first hop.

    ``path``'s own imports count wherever they are written (lazy ones too); a module reached through
    them counts with what it imports when it is imported (its own lazy imports run only if its
    functions are called, which a scan of names cannot tell).
    """
    seen: dict[str, str] = {}
    queue = [(path, None, top_level_only)]
    visited = set()
    while queue:
        current, via, top_only = queue.pop()
        if (current, top_only) in visited:
            continue
        visited.add((current, top_only))
        for line, module in imported_names(current, top_level_only=top_only):
            hop = via or f"{current.relative_to(PACKAGE.parent)}:{line}"
            seen.setdefault(module, hop)
            target = module_file(module)
            if target is not None:
                queue.append((target, hop, True))
                # importing svsr.a.b also runs svsr/__init__ and svsr/a/__init__, but only their
                # import-time code (svsr/__init__'s lazy __getattr__ is not called by it)
                parents = [module_file(".".join(module.split(".")[:i])) for i in range(1, module.count(".") + 1)]
                queue += [(p, hop, True) for p in parents if p is not None and p != target]
    return frozenset(seen.items())


def violations(folder: str) -> list[str]:
    found = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        for module, via in sorted(reachable(path)):
            for prefix in FORBIDDEN[folder]:
                if module == prefix or module.startswith(prefix + "."):
                    found.append(f"{path.relative_to(PACKAGE.parent)} reaches {module} (via {via})")
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_layer_imports_only_what_the_architecture_allows(folder):
    assert (PACKAGE / folder).is_dir()
    assert violations(folder) == []


def test_the_scan_catches_a_forbidden_import(tmp_path, monkeypatch):
    """The check can fail: a runtime module importing the engine builder, directly or through a helper, is reported."""
    fake = tmp_path / "svsr"
    (fake / "runtime").mkdir(parents=True)
    (fake / "runtime" / "bad.py").write_text("def f():\n    from svsr.engines.builder import build_engines\n")
    (fake / "runtime" / "indirect.py").write_text("from svsr.runtime import helper\n")
    (fake / "runtime" / "helper.py").write_text("import diffusers\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    reachable.cache_clear()
    try:
        assert violations("runtime") == [
            "svsr/runtime/bad.py reaches svsr.engines.builder (via svsr/runtime/bad.py:2)",
            "svsr/runtime/bad.py reaches svsr.engines.builder.build_engines (via svsr/runtime/bad.py:2)",
            "svsr/runtime/helper.py reaches diffusers (via svsr/runtime/helper.py:1)",
            "svsr/runtime/indirect.py reaches diffusers (via svsr/runtime/indirect.py:1)",
        ]
    finally:
        reachable.cache_clear()


def test_runtime_and_quality_import_no_torch_at_import_time():
    """Lazily (the torch noise source on the device floor, LPIPS) is allowed; at import time it is not."""
    for path in sorted([*(PACKAGE / "runtime").rglob("*.py"), *(PACKAGE / "quality").rglob("*.py")]):
        bad = [f"{module} via {via}" for module, via in reachable(path, True) if module.split(".")[0] in ("torch", "torchvision", "diffusers")]
        assert bad == [], f"{path.relative_to(PACKAGE.parent)} imports torch at import time: {bad}"


def test_contract_modules_import_only_numpy_jsonschema_and_the_standard_library():
    allowed_third_party = {"numpy", "jsonschema"}
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in sorted((PACKAGE / "contract").rglob("*.py")):
        for line, module in imported_names(path):
            top = module.split(".")[0]
            ok = top in stdlib or top in allowed_third_party or module == "svsr.contract" or module.startswith("svsr.contract.")
            assert ok, f"{path.name}:{line} imports {module}"


def test_runtime_is_three_rooms_with_one_door_each():
    rooms = sorted(p.name for p in (PACKAGE / "runtime").iterdir() if p.is_dir() and p.name != "__pycache__")
    assert rooms == sorted(RUNTIME_ROOMS)
    assert sorted(p.name for p in (PACKAGE / "runtime").glob("*.py")) == ["__init__.py"]
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own_room = path.parent.name if path.parent.parent == PACKAGE / "runtime" else None
        for line, module in imported_names(path):
            parts = module.split(".")
            if parts[:2] == ["svsr", "runtime"] and len(parts) > 3 and parts[2] in RUNTIME_ROOMS and parts[2] != own_room:
                door = ".".join(parts[:3])
                # `from svsr.runtime.video import probe` names a function of the door, not a module
                if module_file(".".join(parts[:4])) is not None and ".".join(parts[:-1]) != door:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module} past the door {door}")
    assert found == []


def test_no_module_imports_another_modules_private_names():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("svsr"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {private} from {node.module}")
    assert found == []


def test_cli_tools_go_through_the_python_api_only():
    """svsr-export, svsr-run, svsr-bench and svsr-doctor (and the doctor's checks) reach no layer but
    through svsr.api: nothing under runtime, engines, export or reference, lazily neither."""
    paths = []
    for tool in CLI_TOOLS:
        where = PACKAGE.parent / tool
        paths += sorted(where.rglob("*.py")) if where.is_dir() else [where]
    assert all(p.is_file() for p in paths) and len(paths) >= len(CLI_TOOLS)
    layers = (["svsr", "runtime"], ["svsr", "engines"], ["svsr", "export"], ["svsr", "reference"])
    found = [
        f"{path.relative_to(PACKAGE.parent)} reaches {module} (via {via})"
        for path in paths
        for module, via in sorted(reachable(path))
        if module.split(".")[:2] in layers
    ]
    assert found == []
