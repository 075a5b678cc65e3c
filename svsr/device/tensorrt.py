"""The one way svsr imports TensorRT (the builder and the runtime both come through here).

TensorRT is an optional, GPU-only dependency in two flavours:

* the full library (``tensorrt``; ``tensorrt_bindings`` when only NVIDIA's split wheels are
  installed): builds engines and runs every plan of its own version;
* the lean runtime (``tensorrt_lean``; ``tensorrt_lean_bindings`` from the
  ``tensorrt-lean-cu13-bindings`` / ``-libs`` wheels that ``svsr[tensorrt-lean-cu13]`` installs):
  about 100 MB instead of gigabytes, cannot build, and runs only version-compatible plans
  (``svsr-export --lean``) built with the same TensorRT version.

:func:`import_tensorrt_runtime` returns whichever is usable, full first, and says which;
:func:`import_tensorrt` returns the full library only (building needs it). An import may fail
because the package is missing or because its libraries are (a stub that never downloaded); either
way the caller gets one sentence saying what to install, and :func:`tensorrt_importable` answers
without raising. Module names are strings here (importlib), so this module imports nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

from svsr.contract.errors import MissingDependencyError

FULL_MODULES = ("tensorrt", "tensorrt_bindings")
LEAN_MODULES = ("tensorrt_lean", "tensorrt_lean_bindings")
NVIDIA_INDEX = "https://pypi.nvidia.com"
INSTALL_FULL = (
    f"pip install --extra-index-url {NVIDIA_INDEX} 'svsr[tensorrt-cu13]' "
    "(svsr[tensorrt-cu12] on CUDA 12 drivers; README: TensorRT)"
)
INSTALL_LEAN = "pip install 'svsr[tensorrt-lean-cu13]' (runs engines built with svsr-export --lean)"
INSTALL_HINT = f"install it from NVIDIA's index: {INSTALL_FULL}"


class TensorRTModule(NamedTuple):
    """An imported TensorRT: the module, ``"full"`` or ``"lean"``, and the module name imported."""

    module: Any
    flavour: str
    name: str

    @property
    def lean(self) -> bool:
        return self.flavour == "lean"

    @property
    def version(self) -> str:
        return str(getattr(self.module, "__version__", "?"))

    def describe(self) -> str:
        what = "full: builds and runs engines" if not self.lean else "lean runtime: runs version-compatible (--lean) engines, cannot build"
        return f"TensorRT {self.version} ({what}; module {self.name})"


def _first(names: tuple[str, ...], flavour: str, failures: list[str]) -> TensorRTModule | None:
    for name in names:
        try:
            return TensorRTModule(importlib.import_module(name), flavour, name)
        except Exception as exc:  # noqa: BLE001 - ImportError, or a stub/library failure while importing
            if not isinstance(exc, ModuleNotFoundError) or exc.name not in (name, name.split(".")[0]):
                failures.append(f"{name}: {' '.join(str(exc).split())}")  # installed but unusable: say why
    return None


def _missing(feature: str, failures: list[str], lean_found: TensorRTModule | None = None) -> MissingDependencyError:
    why = f" ({'; '.join(failures)})" if failures else ""
    if lean_found is not None:
        return MissingDependencyError(
            f"{feature} need the full TensorRT, but only its lean runtime ({lean_found.name} {lean_found.version}) "
            f"is usable here{why}, which runs engines but cannot build them; {INSTALL_HINT}."
        )
    state = "not usable here" if failures else "not installed"
    return MissingDependencyError(f"TensorRT is {state}{why}, and {feature} need it; {INSTALL_HINT}.")


def import_tensorrt(feature: str = "TensorRT engines") -> Any:
    """The full ``tensorrt`` module (the builder needs it), or MissingDependencyError naming ``feature`` and how to install it."""
    failures: list[str] = []
    found = _first(FULL_MODULES, "full", failures)
    if found is None:
        raise _missing(feature, failures, _first(LEAN_MODULES, "lean", []))
    return found.module


def import_tensorrt_runtime(feature: str = "TensorRT engines") -> TensorRTModule:
    """The TensorRT that runs engines here: the full library if it imports, else the lean runtime.

    Returns ``(module, flavour, name)`` with flavour ``"full"`` or ``"lean"``: the lean runtime
    (``import tensorrt_lean as trt``) runs only version-compatible plans, and the loader must know.
    """
    failures: list[str] = []
    found = _first(FULL_MODULES, "full", failures) or _first(LEAN_MODULES, "lean", failures)
    if found is None:
        raise MissingDependencyError(
            f"TensorRT is {'not usable here' if failures else 'not installed'}"
            f"{' (' + '; '.join(failures) + ')' if failures else ''}, and {feature} need it; "
            f"{INSTALL_HINT}, or for running only: {INSTALL_LEAN}."
        )
    return found


def tensorrt_status() -> tuple[TensorRTModule | None, str]:
    """(the usable TensorRT or None, one sentence: what is installed and what it can do, or why not)."""
    failures: list[str] = []
    full = _first(FULL_MODULES, "full", failures)
    if full is not None:
        return full, full.describe()
    lean = _first(LEAN_MODULES, "lean", failures)
    why = f"; the full library is not usable ({'; '.join(failures)})" if failures else ""
    if lean is not None:
        return lean, lean.describe() + why
    return None, f"not installed{' or not usable (' + '; '.join(failures) + ')' if failures else ''}"


def tensorrt_importable() -> bool:
    """A TensorRT runtime (full or lean) and cuda-python both import (found is not enough: a stub is found but fails to import)."""
    try:
        import_tensorrt_runtime()
        importlib.import_module("cuda.bindings.runtime")
    except Exception:  # noqa: BLE001 - any failure means TensorRT cannot run here
        return False
    return True


# -- runtimes for plans ---------------------------------------------------------------------------
LEAN_LIBRARY = "libnvinfer_lean.so.{major}"  # the lean runtime a --lean plan leaves out (trtexec's --leanDLLPath)
LEAN_LIBRARY_PACKAGES = ("tensorrt_lean_libs", "tensorrt_libs")  # NVIDIA's wheels that ship it


def lean_library_path(version: str) -> str:
    """Where TensorRT ``version``'s lean runtime library is: inside NVIDIA's libs wheels, else its soname for the loader's search path."""
    import importlib.util
    from pathlib import Path

    name = LEAN_LIBRARY.format(major=str(version).split(".")[0])
    for package in LEAN_LIBRARY_PACKAGES:
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec is not None else []:
            if (Path(folder) / name).exists():
                return str(Path(folder) / name)
    return name


class PlanRuntime(NamedTuple):
    """The TensorRT runtime that deserialises a build folder's plans, and the runtime that made it (kept alive with it)."""

    runtime: Any
    parent: Any = None


def open_plan_runtime(trt: Any, logger: Any, *, version_compatible: bool, lean: bool, lean_library: str | None = None) -> PlanRuntime:
    """The runtime for plans built with (or without) ``--lean``, made the way trtexec makes it.

    ``lean``: ``trt`` is TensorRT's lean runtime itself, which runs version-compatible plans
    directly. On the full library, a version-compatible plan built with EXCLUDE_LEAN_RUNTIME has no
    runtime inside, so (as trtexec with ``--leanDLLPath``) the full runtime loads the lean library
    with ``Runtime.load_runtime`` and that runtime deserialises the plan. Either way a
    version-compatible plan needs ``engine_host_code_allowed`` (TensorRT refuses it otherwise).
    """
    parent = trt.Runtime(logger)
    runtime = parent
    if version_compatible and not lean:
        path = lean_library or lean_library_path(str(trt.__version__))
        runtime = parent.load_runtime(path)
        if runtime is None:
            raise MissingDependencyError(
                f"TensorRT could not load its lean runtime library {path}, which runs plans built with svsr-export --lean; "
                f"install {INSTALL_LEAN.split(' (')[0]} beside the full TensorRT, or rebuild the engines without --lean."
            )
    else:
        parent = None
    if version_compatible:
        runtime.engine_host_code_allowed = True
    return PlanRuntime(runtime, parent)
