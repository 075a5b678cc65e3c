"""Sampling: StableVSR's frame-wise bidirectional schedule over the exported graphs.

The sampler streams each frame's state between a host clip store and fixed device slots; backends
(ONNX Runtime, TensorRT; both derive from :class:`Backend`) run the graphs; the memory plan sizes
the slots; the backend choice opens the right backend for a build folder and judges engines with
the one verdict (:func:`engine_problems`).
"""

from svsr.runtime.sampling.backend import Backend, Buffer
from svsr.contract.engine_records import choose_precision
from svsr.runtime.sampling.backend_choice import engine_problems, engines_match_this_machine, open_sampler
from svsr.runtime.sampling.clip_store import (
    ClipStore,
    FileFrameArray,
    FrameArray,
    StoreLayout,
    default_host_memory,
    parse_memory_size,
)
from svsr.runtime.sampling.ort_backend import OrtBackend
from svsr.runtime.sampling.sampler import Sampler, latent_channels, to_model_input
from svsr.runtime.sampling.trt_backend import TrtBackend, open_trt_backend

__all__ = [
    "Backend",
    "Buffer",
    "ClipStore",
    "FileFrameArray",
    "FrameArray",
    "OrtBackend",
    "Sampler",
    "StoreLayout",
    "TrtBackend",
    "choose_precision",
    "default_host_memory",
    "engine_problems",
    "engines_match_this_machine",
    "latent_channels",
    "open_trt_backend",
    "open_sampler",
    "parse_memory_size",
    "to_model_input",
]
