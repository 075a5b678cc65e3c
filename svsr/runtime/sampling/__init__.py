"""Sampling: StableVSR's frame-wise bidirectional schedule over the exported graphs.

The sampler streams each frame's state between a host clip store and fixed device slots; backends
(ONNX Runtime, TensorRT) run the graphs; the memory plan sizes the slots; the backend choice opens
the right backend for a build folder.
"""

from svsr.runtime.sampling.backend import Backend, Buffer
from svsr.runtime.sampling.backend_choice import engines_match_this_machine, open_sampler
from svsr.runtime.sampling.clip_store import (
    ClipStore,
    FileFrameArray,
    FrameArray,
    StoreLayout,
    default_host_memory,
    parse_memory_size,
)
from svsr.runtime.sampling.ort_backend import OrtBackend
from svsr.runtime.sampling.sampler import Sampler, to_model_input
from svsr.runtime.sampling.trt_backend import lean_rebuild_command, open_trt_backend

__all__ = [
    "Backend",
    "Buffer",
    "ClipStore",
    "FileFrameArray",
    "FrameArray",
    "OrtBackend",
    "Sampler",
    "StoreLayout",
    "default_host_memory",
    "engines_match_this_machine",
    "lean_rebuild_command",
    "open_trt_backend",
    "open_sampler",
    "parse_memory_size",
    "to_model_input",
]
