"""svsr: a TensorRT deployment toolkit for StableVSR (video super-resolution with diffusion).

The Python API (what the command-line tools map onto): :func:`export_model` and :class:`Upscaler`,
with :class:`Precision` to say which precision each graph runs in. Layers (README "Layout"):
``svsr.contract`` (torch-free shared rules), ``svsr.reference`` (exact PyTorch pipeline),
``svsr.export`` (ONNX graphs + manifest), ``svsr.engines`` (typed ONNX and TensorRT plans),
``svsr.runtime`` (torch-free streaming sampler, backends, video I/O).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Precision", "Upscaler", "export_model", "__version__"]


def __getattr__(name: str) -> Any:
    # lazy, so `import svsr` stays light and torch-free
    if name in ("export_model", "Upscaler"):
        from svsr import api

        return getattr(api, name)
    if name == "Precision":
        from svsr.contract.precision import Precision

        return Precision
    raise AttributeError(f"module 'svsr' has no attribute {name!r}")
