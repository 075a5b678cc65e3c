"""Sampling: StableVSR's frame-wise bidirectional schedule over the exported graphs.

The sampler streams each frame's state between a host clip store and fixed device slots, whole
frames or tiles of the latent plane blended back (svsr/runtime/sampling/frame_step.py); backends
(ONNX Runtime, TensorRT; both derive from :class:`Backend`) run the graphs; the memory plan sizes
the slots and picks ``--tile auto`` (:func:`choose_tile`) and ``--flow-scale auto`` (:func:`choose_flow_scale`); the backend choice opens the right backend for a build folder and judges engines with
the one verdict (:func:`engine_problems`).
"""

from svsr.runtime.sampling.backend import Backend, Buffer
from svsr.contract.engine_records import choose_precision
from svsr.runtime.sampling.backend_choice import engine_problems, engines_match_this_machine, open_sampler
from svsr.runtime.sampling.clip_store import (
    checksum_time,
    ClipStore,
    FileFrameArray,
    FrameArray,
    StoreLayout,
    default_host_memory,
    parse_memory_size,
)
from svsr.runtime.sampling.memory_plan import DeviceMemoryError, choose_flow_scale, choose_tile
from svsr.runtime.sampling.ort_backend import OrtBackend
from svsr.runtime.sampling.sampler import Sampler, latent_channels, to_model_input

_TENSORRT_NAMES = ("TrtBackend", "open_trt_backend")


def __getattr__(name: str):  # the TensorRT backend's modules load when first asked for, not with every ONNX Runtime run
    if name in _TENSORRT_NAMES:
        from svsr.runtime.sampling import trt_backend

        return getattr(trt_backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "checksum_time",
    "Backend",
    "Buffer",
    "ClipStore",
    "DeviceMemoryError",
    "FileFrameArray",
    "FrameArray",
    "OrtBackend",
    "Sampler",
    "StoreLayout",
    "TrtBackend",
    "choose_flow_scale",
    "choose_precision",
    "choose_tile",
    "default_host_memory",
    "engine_problems",
    "engines_match_this_machine",
    "latent_channels",
    "open_trt_backend",
    "open_sampler",
    "parse_memory_size",
    "to_model_input",
]
