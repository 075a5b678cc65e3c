"""Backend options as small frozen dataclasses (in vs-mlrt's spirit): ``svsr.ORT(threads=2)``,
``svsr.TRT(cuda_graphs=False)``, ``svsr.Reference(weights="./StableVSR")``.

``Upscaler.open(build, backend=...)`` takes one of these or a name (``auto``, ``ort``, ``trt``,
``reference``); :func:`backend_options` turns either into options, so the rest of svsr sees one type.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Union

from svsr.contract.errors import InputError

__all__ = ["AUTO", "BACKEND_NAMES", "ORT", "TRT", "Auto", "BackendLike", "BackendOptions", "Reference", "backend_options"]

BACKEND_NAMES = ("auto", "ort", "trt", "reference")


@dataclass(frozen=True)
class Auto:
    """TensorRT where every graph has an engine built for this GPU and TensorRT version, else ONNX Runtime."""

    name = "auto"
    threads: int = 0  # passed on to ONNX Runtime when it is chosen


@dataclass(frozen=True)
class ORT:
    """ONNX Runtime (CPU here; typed graphs run through their float32 emulation twins)."""

    name = "ort"
    threads: int = 0  # intra-op threads; 0 = ONNX Runtime's default

    def __post_init__(self) -> None:
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise InputError(f"ORT(threads={self.threads!r}) must be a whole number >= 0 (0 = ONNX Runtime's default).")


@dataclass(frozen=True)
class TRT:
    """TensorRT engines of the build folder (the full library, or the lean runtime for --lean plans)."""

    name = "trt"
    cuda_graphs: bool = True  # capture one CUDA graph per frame-step program and replay it
    device: int = 0  # CUDA device ordinal


@dataclass(frozen=True)
class Reference:
    """The exact PyTorch reference on a checkpoint folder (or Hugging Face id); needs svsr[export]."""

    name = "reference"
    weights: Union[str, "os.PathLike[str]", None] = None


AUTO = Auto()
BackendOptions = Union[Auto, ORT, TRT, Reference]
BackendLike = Union[str, BackendOptions]


def backend_options(backend: BackendLike, *, threads: int = 0, weights: Union[str, "os.PathLike[str]", None] = None) -> BackendOptions:
    """Options for ``backend`` (a name or options already); ``threads``/``weights`` fill a name's options."""
    if isinstance(backend, (Auto, ORT, TRT, Reference)):
        return backend
    if backend == "auto":
        return Auto(threads=threads)
    if backend == "ort":
        return ORT(threads=threads)
    if backend == "trt":
        return TRT()
    if backend == "reference":
        return Reference(weights=weights)
    raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKEND_NAMES)}.")
