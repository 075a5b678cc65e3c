"""The one way svsr imports TensorRT (the builder and the runtime both come through here).

TensorRT is an optional, GPU-only dependency that PyPI serves as stubs; an import may fail because
the package is missing or because its libraries are (a stub that never downloaded). Either way the
caller gets one sentence saying what to install, and ``tensorrt_importable`` answers without raising.
"""

from __future__ import annotations

import importlib
from typing import Any

from svsr.contract.errors import MissingDependencyError

INSTALL_HINT = "install it from NVIDIA's index (pip install svsr[tensorrt], README: TensorRT)"


def import_tensorrt(feature: str = "TensorRT engines") -> Any:
    """The ``tensorrt`` module, or MissingDependencyError naming ``feature`` and how to install it."""
    try:
        return importlib.import_module("tensorrt")
    except Exception as exc:  # noqa: BLE001 - ImportError, or a stub/library failure while importing
        raise MissingDependencyError(f"{feature} need TensorRT, which is not usable here ({exc}); {INSTALL_HINT}.") from None


def tensorrt_importable() -> bool:
    """TensorRT and cuda-python both import (found is not enough: a stub is found but fails to import)."""
    try:
        importlib.import_module("tensorrt")
        importlib.import_module("cuda.bindings.runtime")
    except Exception:  # noqa: BLE001 - any failure means TensorRT cannot run here
        return False
    return True
