"""svsr: a TensorRT deployment toolkit for StableVSR (video super-resolution with diffusion).

The Python API (what the command-line tools map onto): :func:`export_model`, :class:`Upscaler`
and :func:`upscale_videos`, with :class:`VideoOptions` (how a video is upscaled), the backend
options :class:`ORT`, :class:`TRT` and :class:`Reference`, and :class:`Precision` to say which
precision each graph runs in. Layers (README "Layout"): ``svsr.contract`` (torch-free shared rules),
``svsr.device`` (CUDA/TensorRT adapters), ``svsr.reference`` (exact PyTorch pipeline),
``svsr.export`` (ONNX graphs + manifest), ``svsr.engines`` (typed ONNX and TensorRT plans),
``svsr.runtime`` (torch-free sampling, video I/O and jobs).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["ORT", "TRT", "Precision", "Reference", "Upscaler", "VideoOptions", "evaluate", "export_model", "upscale_videos", "__version__"]

# lazy, so `import svsr` stays light and torch-free: name -> the module that defines it
_LAZY = {
    "export_model": "svsr.api",
    "Upscaler": "svsr.api",
    "upscale_videos": "svsr.api",
    "evaluate": "svsr.api",
    "Precision": "svsr.contract.precision",
    "VideoOptions": "svsr.contract.video_options",
    "ORT": "svsr.contract.backends",
    "TRT": "svsr.contract.backends",
    "Reference": "svsr.contract.backends",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'svsr' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module), name)
