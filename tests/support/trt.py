"""Test doubles of TensorRT, CUDA and polygraphy, and the synthetic build folder they run on (no GPU, no TensorRT needed).

* :class:`RecordingTrtCudaDouble`: TensorRT's runtime API and svsr.device.cuda.CudaApi, recording
  every call and emulating its effect with numpy (streams with CUDA's ordering rules, captures
  replayed on graph launch); :class:`NumpyKernelsBackendDouble` runs the same tiny kernels directly.
* :class:`RecordingTrtBuilderDouble`: the TensorRT builder names svsr uses and, as ``.loaders``, a
  double of polygraphy's TensorRT loaders that records what svsr passes them.
* :func:`synthetic_manifest` / :func:`write_engines`: a manifest (and plan files with build records)
  without real graphs.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np

from svsr.contract.engine_records import BuildEnvironment, cache_key, make_record, plan_filename
from svsr.contract.graphs import GRAPH_NAMES, GRAPHS, STATS_DIMS, concrete_shape
from svsr.contract.manifest import SCHEMA_VERSION, sha256_file, validate_manifest
from svsr.contract.precision import Precision
from svsr.contract.profiles import Profile
from svsr.device.cuda import CudaError
from svsr.runtime.sampling import Backend
from svsr.runtime.sampling.memory_plan import GIB, aligned

H100 = BuildEnvironment("11.4.0.106", "NVIDIA H100 80GB HBM3", "9.0")
# the double's scratch need: this + NEED_PER_PIXEL * h * w (h, w: the LR frame or tile the call implies)
SCRATCH = {"flow": 3000, "flow_x2": 2000, "flow_x1": 1500, "denoise": 5000, "denoise_stats": 2500, "guide_decode": 4000,
           "decode_stats": 600, "warp": 200, "decode": 1000, "blend": 0}  # fmt: skip
NEED_PER_PIXEL = {"flow": 2, "flow_x2": 1, "flow_x1": 1, "denoise": 1, "denoise_stats": 1, "guide_decode": 3, "decode_stats": 1, "warp": 1,
                  "decode": 1, "blend": 0}  # fmt: skip
# the synthetic checkpoint's GroupNorm statistics lengths: the double's "networks" have two groups (means, then variances)
STATS_SIZES = {"denoise_stats": 4, "decode_stats": 2}
PROFILE_MAX_SCRATCH = 1 << 30  # what a context would need at the largest size of a dynamic profile (never asked for)


# -- a manifest without files (the runtime only needs the scheduler and the graph list) -----------
def synthetic_manifest(build_dir: Path | None = None) -> dict[str, Any]:
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    graphs = {}
    for name in GRAPH_NAMES:
        file = f"{name}.onnx"
        sha = "0" * 64
        if build_dir is not None:
            (build_dir / file).write_bytes(f"onnx {name}".encode())
            sha = sha256_file(build_dir / file)
        spec = GRAPHS[name]
        shape = lambda t: [STATS_SIZES[d] if d in STATS_DIMS else d for d in t.shape]  # noqa: E731 - lengths as integers, as exports write them
        graphs[name] = {
            "file": file,
            "sha256": sha,
            "inputs": [{"name": t.name, "dtype": t.dtype, "shape": shape(t)} for t in spec.inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype, "shape": shape(t)} for t in spec.outputs],
            "flops": {"per_call": 1, "lr_height": 32, "lr_width": 32},
        }
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "checkpoint": {"fingerprint": "f" * 16, "source": "/ckpt/tiny", "preset": None},
        "exporter": {"opset": 17, "method": "test"},
        "graphs": graphs,
        "scheduler": {
            "config": {"num_train_timesteps": 1000, "prediction_type": "epsilon", "timestep_spacing": "leading", "steps_offset": 1},
            "alphas_cumprod": alphas_cumprod.tolist(),
        },
        "vae_scaling_factor": 0.18215,
        "latent_channels": 4,
        "sizes": {"min_side": 32, "pad_multiple": 4, "scale": 4},
        "norm_stats": {"denoise_stats": {"size": STATS_SIZES["denoise_stats"], "stride": 2}, "decode_stats": {"size": STATS_SIZES["decode_stats"], "stride": 2}},
        "engines": {},
    }
    return validate_manifest(manifest)


# -- tiny numpy "engines": deterministic, and sensitive to every input ---------------------------
def _up4(x: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(x, 4, axis=2), 4, axis=3)


def k_flow(frame, previous):
    return {"flow": _up4((frame - previous)[:, :2])}


def k_flow_x2(frame, previous):  # another scale, another flow: a run shows which flow graph it used
    return {"flow": _up4((frame - previous)[:, :2]) * np.float32(0.75)}


def k_flow_x1(frame, previous):
    return {"flow": _up4((frame - previous)[:, 1:]) * np.float32(0.5)}


def _pool(x: np.ndarray, k: int) -> np.ndarray:
    """The test double's whole-frame statistic: means over k x k cells (the real graphs subsample every k-th pixel; a mean is
    unchanged by the cells where k divides the sides, which keeps the double's tiled == untiled exact)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // k, k, w // k, k).mean(axis=(3, 5), dtype=np.float64).astype(np.float32)


def _mixed(own: np.ndarray, norm_stats: np.ndarray, shared_norm: np.ndarray) -> np.ndarray:
    """The contract's GroupNorm rule: own + shared_norm * (given - own), per statistic."""
    return own + shared_norm[0] * (norm_stats[0] - own)


def _unet_stats(z, lr, guidance, tcm_scale):
    """The double's "UNet" statistics: two groups' means (z; lr and the guidance) and variances (of z, of lr)."""
    g = _pool(guidance, 4).mean(dtype=np.float64)
    means = [z.mean(dtype=np.float64), lr.mean(dtype=np.float64) + float(tcm_scale[0]) * g]
    return np.array(means + [z.var(dtype=np.float64), lr.var(dtype=np.float64)], np.float32)


# Every kernel is pointwise in the LR grid (a 4x pixel depends on its own LR pixel only) but for the
# GroupNorm-like means (of the whole input, or of the statistics given with shared_norm 1), so tiles
# that are blended with weights summing to one and fed the whole frame's statistics reproduce the
# whole frame up to rounding, and tiles on their own statistics do not.
def k_guide_decode(x0, norm_stats, shared_norm):
    m = _mixed(np.array([x0[:, :3].mean(dtype=np.float64), 1.0], np.float32), norm_stats, shared_norm)
    return {"image": _up4(x0[:, :3] - np.float32(0.5) * m[0]) * np.float32(1.5)}


def k_decode_stats(latent):
    pooled = _pool(latent, 4)
    return {"norm_stats": np.array([[pooled[:, :3].mean(dtype=np.float64), 1.0]], np.float32)}


def k_warp(image, flow):
    return {"guidance": image + np.float32(0.5) * flow.mean(axis=1, keepdims=True)}


def k_denoise(z, lr, guidance, tcm_scale, timestep, step_coeffs, noise, x0_history, norm_stats, shared_norm):
    c = step_coeffs
    g = guidance[:, :, ::4, ::4].mean(axis=1, keepdims=True)
    m = _mixed(_unet_stats(z, lr, guidance, tcm_scale), norm_stats, shared_norm)
    out = (z * np.float32(0.5) + np.float32(0.1) * lr.mean(axis=1, keepdims=True) + tcm_scale[0] * np.float32(0.2) * g
           + timestep[0] * np.float32(1e-3) + np.float32(0.3) * (z - m[0]) + np.float32(0.05) * m[1])  # fmt: skip
    x0 = np.clip(c[0] * z + c[1] * out, -c[5], c[5])
    z_prev = c[2] * x0 + c[3] * z + c[4] * noise + c[6] * out + c[7] * x0_history
    return {"z_prev": z_prev.astype(np.float32), "x0": x0.astype(np.float32)}


def k_denoise_stats(z, lr, guidance, tcm_scale, timestep):
    # the double's cell means at the real graph's stride 2: means of sides that are multiples of 4 stay exact
    return {"norm_stats": _unet_stats(_pool(z, 2), _pool(lr, 2), _pool(guidance, 2), tcm_scale)[None]}


def k_decode(z, norm_stats, shared_norm):
    m = _mixed(np.array([z[:, :3].mean(dtype=np.float64), 1.0], np.float32), norm_stats, shared_norm)
    return {"rgb": np.clip(_up4(z[:, :3] - np.float32(0.5) * m[0]) * np.float32(0.5) + np.float32(0.5), 0, 1)}


def k_blend(acc, tile, weight):
    return {"out": acc + tile * weight}


KERNELS: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    "flow": k_flow, "flow_x2": k_flow_x2, "flow_x1": k_flow_x1, "denoise": k_denoise, "denoise_stats": k_denoise_stats,
    "guide_decode": k_guide_decode, "decode_stats": k_decode_stats, "warp": k_warp, "decode": k_decode, "blend": k_blend,
}  # fmt: skip


class NumpyKernelsBackendDouble(Backend):
    """Test double backend: the same kernels run directly on host arrays (what the TensorRT path must reproduce)."""

    name = "numpy"

    def allocate(self, label, shape, dtype="float32", host_io=True):
        return np.zeros(tuple(shape), dtype)

    def upload(self, buffer, array):
        buffer[...] = array

    def download(self, buffer):
        return buffer.copy()

    def run(self, graph, inputs, outputs):
        for name, value in KERNELS[graph](**inputs).items():
            outputs[name][...] = value

    def copy_region(self, source, target, source_origin, target_origin, size):
        (sy, sx), (ty, tx), (rows, cols) = source_origin, target_origin, size
        target[..., ty : ty + rows, tx : tx + cols] = source[..., sy : sy + rows, sx : sx + cols]

    def zero(self, buffer):
        buffer[...] = 0

    def synchronize(self):
        pass

    def close(self):
        pass


# -- the recording test double of TensorRT + CUDA -------------------------------------------------
class RecordingTrtCudaDouble:
    """Test double (not TensorRT, not CUDA): records every call the backend makes and emulates their effect.

    ``self.trt`` has the TensorRT runtime names the backend may use, ``self.cuda`` the methods of
    svsr.device.cuda.CudaApi. Device and pinned memory are numpy byte arrays (fresh device
    memory is filled with garbage, like cudaMalloc's). Work enqueued on a stream waits in that
    stream's queue: streams in ``self.eager`` run it at once (as far as their event waits allow),
    the others only when forced (event or stream synchronisation, another stream waiting on one of
    their events, a free, which synchronises the device as cudaFree does). Work enqueued on a
    capturing stream goes into the capture and runs on each graph launch. ``fail`` makes one stage
    of a capture fail: "begin", "enqueue" (execute_async_v3 returns False while capturing), "end"
    (cudaStreamEndCapture reports an error but hands back a graph), "last_error" (cudaGetLastError
    reports an error after the capture ended), "instantiate".
    """

    def __init__(
        self, free_bytes: int = 40 * GIB, scratch: dict[str, int] | None = None, dtypes: dict | None = None,
        context_bytes: int = 0, graph_bytes: int = 0,
    ) -> None:
        self.calls: list[tuple] = []
        self.memory: dict[int, np.ndarray] = {}
        self.device_sizes: dict[int, int] = {}
        self.free_bytes = free_bytes
        self.initial_free = free_bytes
        self.scratch = scratch or SCRATCH
        self.dtypes = dtypes or {}
        self.context_bytes, self.graph_bytes = context_bytes, graph_bytes
        self.queues: dict[int, list[tuple[str, Any]]] = {}
        self.eager: set[int] = set()
        self.capturing: dict[int, list[tuple[str, Any]]] = {}
        self.invalidated: set[int] = set()
        self.graphs: dict[int, list[tuple[str, Any]]] = {}
        self.execs: dict[int, list[tuple[str, Any]]] = {}
        self.events: dict[int, int | None] = {}
        self.token_stream: dict[int, int] = {}
        self.done: set[int] = set()
        self.streams: set[int] = set()
        self.contexts: list[ContextRecord] = []
        self.fail: str | None = None
        self.max_lr = (1 << 30, 1 << 30)
        self._draining: set[int] = set()
        self._next = {"dev": 0x1000_0000, "host": 0x7000_0000, "handle": 1}
        self.trt = self._make_trt()
        self.cuda = CudaTestDouble(self)

    def log(self, *call) -> None:
        self.calls.append(call)

    def handle(self) -> int:
        self._next["handle"] += 1
        return self._next["handle"]

    def alloc(self, kind: str, nbytes: int) -> int:
        ptr = self._next[kind]
        self._next[kind] += aligned(max(nbytes, 1), 512)
        self.memory[ptr] = np.full(nbytes, 0xAB, np.uint8)
        return ptr

    def array(self, ptr: int, shape, dtype="float32") -> np.ndarray:
        return self.memory[ptr].view(dtype).reshape(shape)

    def locate(self, ptr: int, nbytes: int) -> tuple[np.ndarray, int]:
        """The allocation holding ``[ptr, ptr + nbytes)`` and the offset into it (an AssertionError if none does)."""
        for base, block in self.memory.items():
            if base <= ptr and ptr + nbytes <= base + block.size:
                return block, ptr - base
        raise AssertionError(f"{nbytes} bytes at {hex(ptr)} are not inside one allocation")

    # -- streams: queues with CUDA's ordering rules ---------------------------------------------
    def enqueue(self, stream: int, item: tuple[str, Any]) -> None:
        if stream in self.capturing:
            self.capturing[stream].append(item)
            return
        self.queues.setdefault(stream, []).append(item)
        if stream in self.eager:
            self.drain(stream)

    def drain(self, stream: int, until: int | None = None) -> None:
        assert stream not in self._draining, "streams wait on each other: a deadlock"
        self._draining.add(stream)
        try:
            queue = self.queues.setdefault(stream, [])
            while queue:
                kind, payload = queue[0]
                if kind == "wait":
                    self.run_until(payload)
                elif kind == "op":
                    payload()
                else:  # record
                    self.done.add(payload)
                queue.pop(0)
                if kind == "record" and payload == until:
                    return
        finally:
            self._draining.discard(stream)

    def run_until(self, token: int) -> None:
        if token not in self.done:
            self.drain(self.token_stream[token], until=token)

    def sync_device(self) -> None:
        for stream in list(self.queues):
            self.drain(stream)

    def _make_trt(self) -> Any:
        double = self
        trt = types.SimpleNamespace(__version__="11.4.0.106")
        trt.ExecutionContextAllocationStrategy = types.SimpleNamespace(STATIC="STATIC", USER_MANAGED="USER_MANAGED")
        trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
        trt.DataType = types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF", BF16="BF16", INT32="INT32", INT64="INT64")

        class Logger:
            WARNING = "WARNING"

            def __init__(self, severity):
                double.log("trt.Logger", severity)

        class Runtime:
            """engine_host_code_allowed is set as an instance attribute only when svsr sets it."""

            def __init__(self, logger, lean_library=None):
                double.log("trt.Runtime")
                self.lean_library = lean_library

            def load_runtime(self, path):
                double.log("runtime.load_runtime", path)
                return Runtime(None, lean_library=path)

            def deserialize_cuda_engine(self, plan):
                graph = plan.decode().split()[1]
                double.log("runtime.deserialize_cuda_engine", graph)
                return EngineTestDouble(double, graph)

        trt.Logger, trt.Runtime = Logger, Runtime
        return trt


class EngineTestDouble:
    """ICudaEngine of the double: only the attributes listed in TRT_RUNTIME_API['ICudaEngine']."""

    def __init__(self, double: RecordingTrtCudaDouble, graph: str) -> None:
        self._d, self._graph = double, graph
        spec = GRAPHS[graph]
        self._io = [(t.name, "INPUT") for t in spec.inputs] + [(t.name, "OUTPUT") for t in spec.outputs]

    @property
    def num_io_tensors(self):
        return len(self._io)

    def get_tensor_name(self, i):
        return self._io[i][0]

    def get_tensor_mode(self, name):
        return dict(self._io)[name]

    def get_tensor_dtype(self, name):
        return self._d.dtypes.get((self._graph, name), "FLOAT")

    def create_execution_context(self, strategy):
        context = ContextTestDouble(self._d, self._graph)
        self._d.log("engine.create_execution_context", self._graph, strategy, context.id)
        return context


class ContextRecord(types.SimpleNamespace):
    """What the double remembers of a context after it is gone: id, graph, alive, the methods called (log), addresses."""


class ContextTestDouble:
    """IExecutionContext of the double: only the attributes listed in TRT_RUNTIME_API['IExecutionContext'].

    ``self.rec`` (kept in ``double.contexts``, outliving the context) logs the names of the methods
    called on this context, in order.
    """

    def __init__(self, double: RecordingTrtCudaDouble, graph: str) -> None:
        self._d, self._graph = double, graph
        self.id = double.handle()
        self.rec = ContextRecord(id=self.id, graph=graph, alive=True, log=[], addresses={}, executed=False)
        self.log = self.rec.log
        self._shapes: dict[str, tuple] = {}
        self._addr = self.rec.addresses
        self.scratch: tuple[int, int] | None = None
        double.free_bytes -= double.context_bytes
        double.contexts.append(self.rec)

    def __del__(self):
        self.rec.alive = False
        self._d.free_bytes += self._d.context_bytes
        self._d.log("ctx.destroy", self._graph, self.id)

    def _lr(self) -> tuple[int, int, int]:
        """(batch, height, width) of the LR frame or tile the input shapes imply (warp: its 4x shape / 4; blend: its own)."""
        spec = next(t for t in GRAPHS[self._graph].inputs if "height" in t.shape or "height4" in t.shape)
        b, _, h, w = self._shapes[spec.name]
        return (b, h // 4, w // 4) if "height4" in spec.shape else (b, h, w)

    def _concrete(self, spec) -> tuple[int, ...]:
        b, h, w = self._lr()
        channels = self._shapes["acc"][1] if self._graph == "blend" else 4
        return concrete_shape(spec, b, h, w, channels=channels, stats=STATS_SIZES)

    def set_input_shape(self, name, shape):
        self.log.append("set_input_shape")
        self._d.log("ctx.set_input_shape", self._graph, name, tuple(shape), self.id)
        if len(shape) == 4 and (shape[2] > self._d.max_lr[0] * 4 or shape[3] > self._d.max_lr[1] * 4):
            return False
        self._shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        self.log.append("get_tensor_shape")
        self._d.log("ctx.get_tensor_shape", self._graph, name, self.id)
        out = next(t for t in GRAPHS[self._graph].outputs if t.name == name)
        return self._concrete(out)

    def update_device_memory_size_for_shapes(self):
        self.log.append("update_device_memory_size_for_shapes")
        self._d.log("ctx.update_device_memory_size_for_shapes", self._graph, self.id)
        _, h, w = self._lr()
        return self._need(h, w)

    def _need(self, h, w):
        return self._d.scratch[self._graph] + NEED_PER_PIXEL[self._graph] * h * w

    def set_device_memory(self, ptr, size):
        self.log.append("set_device_memory")
        self._d.log("ctx.set_device_memory", self._graph, ptr, size, self.id)
        self.scratch = (ptr, size)

    def set_tensor_address(self, name, ptr):
        self.log.append("set_tensor_address")
        self._d.log("ctx.set_tensor_address", self._graph, name, ptr, self.id)
        self._addr[name] = ptr
        return True

    def execute_async_v3(self, stream):
        d = self._d
        self.log.append("execute_async_v3")
        d.log("ctx.execute_async_v3", self._graph, stream, self.id)
        self.rec.executed = True
        if d.fail == "enqueue" and stream in d.capturing:
            return False
        b, h, w = self._lr()
        if self._need(h, w):  # an engine that needs no scratch (blend) runs without one
            assert self.scratch is not None and self.scratch[1] >= self._need(h, w), "scratch not set or too small"
            assert self.scratch[0] in d.memory and d.device_sizes[self.scratch[0]] >= self.scratch[1], "scratch freed"
        spec = GRAPHS[self._graph]
        ins = {t.name: (self._addr[t.name], self._concrete(t)) for t in spec.inputs}
        outs = {t.name: (self._addr[t.name], self._concrete(t)) for t in spec.outputs}
        assert all(p in d.memory for p, _ in [*ins.values(), *outs.values()]), "a tensor address points at freed memory"

        def op():
            result = KERNELS[self._graph](**{n: d.array(p, s).copy() for n, (p, s) in ins.items()})
            for n, (p, s) in outs.items():
                d.array(p, s)[...] = result[n]

        d.enqueue(stream, ("op", op))
        return True


class CudaTestDouble:
    """The CudaApi half of the double (same method names as svsr.device.cuda.CudaApi)."""

    def __init__(self, d: RecordingTrtCudaDouble) -> None:
        self.d = d

    def device_name(self):
        return H100.gpu_name

    def compute_capability(self):
        return H100.compute_capability

    def mem_get_info(self):
        self.d.log("cuda.mem_get_info")
        return self.d.free_bytes, 80 * GIB

    def malloc(self, nbytes):
        ptr = self.d.alloc("dev", nbytes)
        self.d.device_sizes[ptr] = nbytes
        self.d.free_bytes -= aligned(nbytes, 512)
        self.d.log("cuda.malloc", nbytes, ptr)
        return ptr

    def free(self, ptr):
        self.d.log("cuda.free", ptr)
        self.d.sync_device()  # cudaFree synchronises the device
        del self.d.memory[ptr]
        self.d.free_bytes += aligned(self.d.device_sizes.pop(ptr), 512)

    def malloc_host(self, nbytes):
        ptr = self.d.alloc("host", nbytes)
        self.d.log("cuda.malloc_host", nbytes, ptr)
        return ptr

    def free_host(self, ptr):
        self.d.log("cuda.free_host", ptr)
        self.d.sync_device()
        del self.d.memory[ptr]

    def host_view(self, ptr, nbytes):
        return self.d.memory[ptr][:nbytes]

    def memset_async(self, ptr, value, nbytes, stream):
        self.d.log("cuda.memset_async", ptr, value, nbytes, stream)
        self.d.enqueue(stream, ("op", lambda: self.d.memory[ptr][:nbytes].fill(value)))

    def memcpy_2d_dtod_async(self, dst, dpitch, src, spitch, width, height, stream):
        self.d.log("cuda.memcpy_2d_dtod_async", dst, dpitch, src, spitch, width, height, stream)
        assert width <= min(dpitch, spitch), "cudaMemcpy2DAsync: width must not exceed either pitch"
        target, t0 = self.d.locate(dst, dpitch * (height - 1) + width)
        source, s0 = self.d.locate(src, spitch * (height - 1) + width)

        def op():
            for row in range(height):
                target[t0 + row * dpitch : t0 + row * dpitch + width] = source[s0 + row * spitch : s0 + row * spitch + width]

        self.d.enqueue(stream, ("op", op))

    def memcpy_htod_async(self, dst, src, nbytes, stream):
        self.d.log("cuda.memcpy_htod_async", dst, src, nbytes, stream)
        self.d.enqueue(stream, ("op", lambda: self.d.memory[dst].__setitem__(slice(0, nbytes), self.d.memory[src][:nbytes])))

    def memcpy_dtoh_async(self, dst, src, nbytes, stream):
        self.d.log("cuda.memcpy_dtoh_async", dst, src, nbytes, stream)
        self.d.enqueue(stream, ("op", lambda: self.d.memory[dst].__setitem__(slice(0, nbytes), self.d.memory[src][:nbytes])))

    def stream_create(self):
        s = self.d.handle()
        self.d.streams.add(s)
        self.d.log("cuda.stream_create", s)
        return s

    def stream_destroy(self, stream):
        self.d.log("cuda.stream_destroy", stream)
        self.d.drain(stream)
        self.d.streams.remove(stream)

    def stream_synchronize(self, stream):
        self.d.log("cuda.stream_synchronize", stream)
        if stream in self.d.capturing:  # not allowed while capturing: the capture is invalidated
            self.d.invalidated.add(stream)
            raise CudaError("CUDA call cudaStreamSynchronize failed with cudaErrorStreamCaptureUnsupported (test double).")
        self.d.drain(stream)

    def event_create(self):
        e = self.d.handle()
        self.d.events[e] = None
        self.d.log("cuda.event_create", e)
        return e

    def event_destroy(self, event):
        self.d.log("cuda.event_destroy", event)
        del self.d.events[event]

    def event_record(self, event, stream):
        self.d.log("cuda.event_record", event, stream)
        assert stream not in self.d.capturing, "the backend records events only outside captures"
        token = self.d.handle()
        self.d.events[event] = token
        self.d.token_stream[token] = stream
        self.d.enqueue(stream, ("record", token))

    def event_synchronize(self, event):
        self.d.log("cuda.event_synchronize", event)
        token = self.d.events[event]
        if token is not None:
            self.d.run_until(token)

    def stream_wait_event(self, stream, event):
        self.d.log("cuda.stream_wait_event", stream, event)
        if stream in self.d.capturing:  # an event from outside the capture: CUDA refuses it
            raise CudaError("CUDA call cudaStreamWaitEvent failed with cudaErrorStreamCaptureIsolation (test double).")
        token = self.d.events[event]
        if token is not None:
            self.d.enqueue(stream, ("wait", token))

    def begin_capture(self, stream):
        self.d.log("cuda.begin_capture", stream)
        if self.d.fail == "begin":
            raise CudaError("CUDA call cudaStreamBeginCapture failed with cudaErrorStreamCaptureUnsupported (test double).")
        assert stream not in self.d.capturing
        self.d.capturing[stream] = []

    def try_end_capture(self, stream):
        ops = self.d.capturing.pop(stream)
        if stream in self.d.invalidated:
            self.d.invalidated.discard(stream)
            self.d.log("cuda.try_end_capture", stream, 0)
            return 0, CudaError("CUDA call cudaStreamEndCapture failed with cudaErrorStreamCaptureInvalidated (test double).")
        g = self.d.handle()
        self.d.graphs[g] = ops
        self.d.log("cuda.try_end_capture", stream, g)
        if self.d.fail == "end":
            return g, CudaError("CUDA call cudaStreamEndCapture failed with cudaErrorStreamCaptureUnjoined (test double).")
        return g, None

    def get_last_error(self):
        self.d.log("cuda.get_last_error")
        if self.d.fail == "last_error":
            return CudaError("CUDA call cudaGetLastError failed with cudaErrorLaunchFailure (test double).")
        return None

    def graph_instantiate(self, graph):
        if self.d.fail == "instantiate":
            self.d.log("cuda.graph_instantiate", graph, None)
            raise CudaError("CUDA call cudaGraphInstantiate failed with cudaErrorInvalidValue (test double).")
        x = self.d.handle()
        self.d.execs[x] = list(self.d.graphs[graph])
        self.d.free_bytes -= self.d.graph_bytes
        self.d.log("cuda.graph_instantiate", graph, x)
        return x

    def graph_launch(self, graph_exec, stream):
        self.d.log("cuda.graph_launch", graph_exec, stream)
        for item in self.d.execs[graph_exec]:
            self.d.enqueue(stream, item)

    def graph_destroy(self, graph):
        self.d.log("cuda.graph_destroy", graph)
        del self.d.graphs[graph]

    def graph_exec_destroy(self, graph_exec):
        self.d.log("cuda.graph_exec_destroy", graph_exec)
        del self.d.execs[graph_exec]
        self.d.free_bytes += self.d.graph_bytes


PLANS = {g: f"plan {g}".encode() for g in GRAPH_NAMES}


def write_engines(build: Path, manifest: dict, env: BuildEnvironment = H100, precision: str = "fp32", profile: Profile | None = None) -> dict:
    """Plan files and build records of every graph for ``profile`` (default 44x36 static), the flow scales it is too small for skipped."""
    profile = profile or Profile.static(36, 44)
    (build / "engines").mkdir(exist_ok=True)
    chosen = Precision.parse(precision)
    for g in GRAPH_NAMES:
        if profile.skip_reason(g):  # flow_x2 / flow_x1: frames of 44x36 are too small for RAFT at x2 / x1, as svsr-export skips them
            continue
        entry = manifest["graphs"][g]
        key = cache_key(entry["sha256"], env, profile)
        graph_precision = chosen.of(g)  # warp and blend are always fp32 plans, as a real build makes them
        rel = f"engines/{plan_filename(g, graph_precision, key)}"
        (build / rel).write_bytes(f"plan {g}".encode())
        manifest["engines"][f"{g}.{graph_precision}"] = make_record(
            graph=g, precision=graph_precision, plan_file=rel, plan_sha256=sha256_file(build / rel), plan_size=(build / rel).stat().st_size,
            onnx_file=entry["file"], onnx_sha256=entry["sha256"], onnx_source_sha256=entry["sha256"], env=env, profile=profile,
            key=key, device_memory_bytes=SCRATCH[g], stats=STATS_SIZES,
        )
    return validate_manifest(manifest)


class RecordingTrtBuilderDouble:
    """Test double (not TensorRT, not polygraphy) of what the builder uses: records every call, builds fake plans.

    ``self.trt`` offers exactly the names in svsr.engines.builder.TRT_BUILDER_API (plus ``Builder``
    and ``OnnxParser`` markers: a full TensorRT has them); ``self.loaders`` stands in for
    ``polygraphy.backend.trt`` with the loaders svsr.engines.polygraphy_build.POLYGRAPHY_API names.
    ``NetworkFromOnnxPath`` reads the dummy ONNX files the tests write ("onnx <graph>") and declares
    that graph's inputs; a file starting with "bad" fails to parse as polygraphy fails (an exception
    after the parser's errors). ``EngineBytesFromNetwork`` returns None when ``fail_build``; the
    flags the config asks for end up in the plan ("flags=..."), and the timing cache file gets
    "+t" appended per build (polygraphy appends to it). Like TensorRT, the runtime refuses a
    version-compatible plan unless ``engine_host_code_allowed`` was set, and the full runtime refuses
    a plan built without the lean runtime unless it was loaded through ``load_runtime``.
    """

    def __init__(self, version: str = "11.4.0.106", with_builder: bool = True) -> None:
        self.calls: list[tuple] = []
        self.fail_build = False
        d = self

        class Logger:
            WARNING = "WARNING"

            def __init__(self, severity):
                d.calls.append(("Logger", severity))

        class ITensor:
            def __init__(self, name):
                self.name = name

        class INetworkDefinition:
            def __init__(self, graph):
                self._inputs = [ITensor(t.name) for t in GRAPHS[graph].inputs]
                self.graph = graph

            @property
            def num_inputs(self):
                return len(self._inputs)

            def get_input(self, i):
                return self._inputs[i]

        class ICudaEngine:
            def get_device_memory_size_for_profile_v2(self, index):
                return 4096 * (index + 1)

        class Runtime:
            def __init__(self, logger, lean_library=None):
                self._host_code = False
                self._lean_library = lean_library

            @property
            def engine_host_code_allowed(self):
                return self._host_code

            @engine_host_code_allowed.setter
            def engine_host_code_allowed(self, allowed):
                d.calls.append(("runtime.engine_host_code_allowed", allowed))
                self._host_code = bool(allowed)

            def load_runtime(self, path):
                d.calls.append(("runtime.load_runtime", path))
                return Runtime(None, lean_library=path)

            def deserialize_cuda_engine(self, plan):
                d.calls.append(("runtime.deserialize_cuda_engine", self._lean_library))
                if b"VERSION_COMPATIBLE" in bytes(plan) and not self._host_code:
                    return None  # TensorRT refuses version-compatible plans unless host code is allowed
                if b"EXCLUDE_LEAN_RUNTIME" in bytes(plan) and self._lean_library is None:
                    return None  # no runtime inside the plan, and none loaded
                return ICudaEngine()

        self.classes = {"Logger": Logger, "INetworkDefinition": INetworkDefinition, "ITensor": ITensor, "Runtime": Runtime, "ICudaEngine": ICudaEngine}
        trt = types.SimpleNamespace(__version__=version, Logger=Logger, Runtime=Runtime)
        trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        trt.BuilderFlag = types.SimpleNamespace(VERSION_COMPATIBLE="VERSION_COMPATIBLE", EXCLUDE_LEAN_RUNTIME="EXCLUDE_LEAN_RUNTIME")
        if with_builder:  # what tells a full TensorRT from a runtime-only one
            trt.Builder, trt.OnnxParser = object(), object()
        self.trt = trt
        self.loaders = _PolygraphyLoadersDouble(self, INetworkDefinition)


class _PolygraphyLoadersDouble:
    """The polygraphy.backend.trt loaders svsr calls, recording their arguments (see RecordingTrtBuilderDouble)."""

    def __init__(self, double: RecordingTrtBuilderDouble, network_class: Any) -> None:
        d = self.double = double

        class Profile(dict):
            def add(self, name, min, opt, max):
                d.calls.append(("profile.add", name, tuple(min), tuple(opt), tuple(max)))
                self[name] = (tuple(min), tuple(opt), tuple(max))
                return self

        def NetworkFromOnnxPath(path, strongly_typed=None):
            def load():
                text = Path(path).read_text()
                d.calls.append(("NetworkFromOnnxPath", Path(path).name, strongly_typed))
                if text.startswith("bad"):
                    raise RuntimeError("Could not parse ONNX correctly (node Foo: unsupported op; node Bar: bad attribute)")
                return "builder", network_class(text.split()[1]), "parser"

            return load

        def CreateConfig(**kwargs):
            d.calls.append(("CreateConfig", kwargs))
            return kwargs

        def EngineBytesFromNetwork(network, config=None, save_timing_cache=None):
            def build():
                graph = network[1].graph
                d.calls.append(("EngineBytesFromNetwork", graph, save_timing_cache))
                if d.fail_build:
                    return None
                loaded = Path(config["load_timing_cache"]).read_bytes() if config["load_timing_cache"] else b""
                Path(save_timing_cache).write_bytes(loaded + b"+t")
                shapes = json.dumps(config["profiles"][0], sort_keys=True)
                flags = ",".join(sorted(f for f, on in (("VERSION_COMPATIBLE", config["version_compatible"]), ("EXCLUDE_LEAN_RUNTIME", config["exclude_lean_runtime"])) if on))
                return f"plan {graph} {shapes} level={config['builder_optimization_level']} flags={flags}".encode()

            return build

        self.Profile, self.NetworkFromOnnxPath, self.CreateConfig, self.EngineBytesFromNetwork = Profile, NetworkFromOnnxPath, CreateConfig, EngineBytesFromNetwork


class GpuQueryDouble:
    """The two CudaApi queries the builder makes, answering as an H100 would."""

    def device_name(self):
        return H100.gpu_name

    def compute_capability(self):
        return H100.compute_capability
