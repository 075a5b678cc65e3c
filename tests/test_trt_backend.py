"""TensorRT backend on a CPU: memory plan, and every call the backend makes, against a recording test double.

RecordingTrtCudaDouble stands in for TensorRT and the CUDA runtime. It keeps a fake device and
pinned memory in numpy arrays, runs tiny numpy "engines" when TensorRT would enqueue them, records
captured work per stream and replays it on graph launch, so the schedule's results through the
backend can be compared with the same numpy kernels run directly. The real TensorRT runtime API is
checked separately against the `tensorrt_lean_bindings` wheel, which imports without a GPU.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from svsr.contract.profiles import Profile
from svsr.contract.engine_records import BuildEnvironment, cache_key, make_record, plan_filename
from svsr.contract.errors import InputError, ManifestError
from svsr.contract.graphs import GRAPH_NAMES, GRAPHS, concrete_shape
from svsr.contract.manifest import sha256_file, validate_manifest
from svsr.contract.noise import NumpyNoise
from svsr.contract import cuda as cuda_api
from svsr.contract.cuda import CudaApi, CudaError
from svsr.runtime.memory_plan import DeviceMemoryError, aligned, check_fits, clip_buffers, plan_memory
from svsr.runtime.sampler import Sampler
from svsr.runtime.trt_backend import (
    TRT_RUNTIME_API,
    SweepAddressError,
    TrtBackend,
    TrtSampler,
    open_trt_backend,
)
from tests.conftest import random_frames

H100 = BuildEnvironment("11.4.0.106", "NVIDIA H100 80GB HBM3", "9.0")
SCRATCH = {"flow": 3000, "denoise": 5000, "guide": 4000, "decode": 1000}


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
        graphs[name] = {
            "file": file,
            "sha256": sha,
            "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in spec.inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in spec.outputs],
            "flops": {"per_call": 1, "lr_height": 32, "lr_width": 32},
        }
    manifest = {
        "schema_version": 1,
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
        "engines": {},
    }
    return validate_manifest(manifest)


# -- tiny numpy "engines": deterministic, and sensitive to every input ---------------------------
def _up4(x: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(x, 4, axis=2), 4, axis=3)


def k_flow(frame, previous):
    return {"flow": _up4((frame - previous)[:, :2])}


def k_guide(x0, flow):
    return {"guidance": _up4(x0[:, :3]) + np.float32(0.5) * flow.mean(axis=1, keepdims=True)}


def k_denoise(z, lr, guidance, tcm_scale, timestep, step_coeffs, noise):
    c = step_coeffs
    g = guidance[:, :, ::4, ::4].mean(axis=1, keepdims=True)
    x0 = z * c[1] + np.float32(0.1) * lr.mean(axis=1, keepdims=True) + tcm_scale[0] * np.float32(0.2) * g + timestep[0] * np.float32(1e-3)
    z_prev = x0 * c[2] + z * c[3] + noise * c[4]
    return {"z_prev": z_prev.astype(np.float32), "x0": x0.astype(np.float32)}


def k_decode(z):
    return {"rgb": np.clip(_up4(z[:, :3]) * np.float32(0.5) + np.float32(0.5), 0, 1)}


KERNELS: dict[str, Callable[..., dict[str, np.ndarray]]] = {"flow": k_flow, "guide": k_guide, "denoise": k_denoise, "decode": k_decode}


class NumpyBackend:
    """The same kernels run directly on host arrays: what the TensorRT path must reproduce."""

    name = "numpy"

    def allocate(self, label, shape, dtype="float32"):
        return np.zeros(tuple(shape), dtype)

    def upload(self, buffer, array):
        buffer[...] = array

    def download(self, buffer):
        return buffer.copy()

    def run(self, graph, inputs, outputs):
        for name, value in KERNELS[graph](**inputs).items():
            outputs[name][...] = value

    def synchronize(self):
        pass

    def close(self):
        pass


# -- the recording test double of TensorRT + CUDA -------------------------------------------------
class RecordingTrtCudaDouble:
    """Test double (not TensorRT, not CUDA): records every call the backend makes and emulates their effect.

    ``self.trt`` has the TensorRT runtime names the backend may use, ``self.cuda`` the methods of
    svsr.contract.cuda.CudaApi. Device and pinned memory are numpy byte arrays (fresh device
    memory is filled with garbage, like cudaMalloc's); work enqueued on a capturing stream is kept
    in the capture and runs on each graph launch; other work runs at once.
    """

    def __init__(self, free_bytes: int = 40 * 1024**3, scratch: dict[str, int] | None = None, dtypes: dict | None = None) -> None:
        self.calls: list[tuple] = []
        self.memory: dict[int, np.ndarray] = {}
        self.free_bytes = free_bytes
        self.scratch = scratch or SCRATCH
        self.dtypes = dtypes or {}
        self.capturing: dict[int, list[Callable[[], None]]] = {}
        self.graphs: dict[int, list[Callable[[], None]]] = {}
        self.execs: dict[int, list[Callable[[], None]]] = {}
        self.fail_capture = False
        self.max_lr = (1 << 30, 1 << 30)
        self._next = {"dev": 0x1000_0000, "host": 0x7000_0000, "handle": 1}
        self.trt = self._make_trt()
        self.cuda = _FakeCuda(self)

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

    def enqueue(self, stream: int, op: Callable[[], None]) -> None:
        if stream in self.capturing:
            self.capturing[stream].append(op)
        else:
            op()

    def array(self, ptr: int, shape, dtype="float32") -> np.ndarray:
        return self.memory[ptr].view(dtype).reshape(shape)

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
            def __init__(self, logger):
                double.log("trt.Runtime")

            def deserialize_cuda_engine(self, plan):
                graph = plan.decode().split()[1]
                double.log("runtime.deserialize_cuda_engine", graph)
                return FakeEngine(double, graph)

        trt.Logger, trt.Runtime = Logger, Runtime
        return trt


class FakeEngine:
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

    def get_device_memory_size_for_profile_v2(self, profile):
        assert profile == 0
        return self._d.scratch[self._graph]

    def create_execution_context(self, strategy):
        self._d.log("engine.create_execution_context", self._graph, strategy)
        return FakeContext(self._d, self._graph)


class FakeContext:
    """IExecutionContext of the double: only the attributes listed in TRT_RUNTIME_API['IExecutionContext']."""

    def __init__(self, double: RecordingTrtCudaDouble, graph: str) -> None:
        self._d, self._graph = double, graph
        self._shapes: dict[str, tuple] = {}
        self._addr: dict[str, int] = {}
        self.scratch: tuple[int, int] | None = None

    def set_device_memory(self, ptr, size):
        self._d.log("ctx.set_device_memory", self._graph, ptr, size)
        self.scratch = (ptr, size)

    def set_input_shape(self, name, shape):
        self._d.log("ctx.set_input_shape", self._graph, name, tuple(shape))
        if len(shape) == 4 and (shape[2] > self._d.max_lr[0] * 4 or shape[3] > self._d.max_lr[1] * 4):
            return False
        self._shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        self._d.log("ctx.get_tensor_shape", self._graph, name)
        spec = next(t for t in GRAPHS[self._graph].inputs if "height" in t.shape)
        b, _, h, w = self._shapes[spec.name]
        out = next(t for t in GRAPHS[self._graph].outputs if t.name == name)
        return concrete_shape(out, b, h, w)

    def set_tensor_address(self, name, ptr):
        self._d.log("ctx.set_tensor_address", self._graph, name, ptr)
        self._addr[name] = ptr
        return True

    def execute_async_v3(self, stream):
        d = self._d
        d.log("ctx.execute_async_v3", self._graph, stream)
        assert self.scratch is not None and self.scratch[1] >= d.scratch[self._graph], "scratch not set"
        spec = GRAPHS[self._graph]
        b, _, h, w = next(self._shapes[t.name] for t in spec.inputs if "height" in t.shape)
        ins = {t.name: (self._addr[t.name], concrete_shape(t, b, h, w)) for t in spec.inputs}
        outs = {t.name: (self._addr[t.name], concrete_shape(t, b, h, w)) for t in spec.outputs}

        def op():
            result = KERNELS[self._graph](**{n: d.array(p, s).copy() for n, (p, s) in ins.items()})
            for n, (p, s) in outs.items():
                d.array(p, s)[...] = result[n]

        d.enqueue(stream, op)
        return True


class _FakeCuda:
    """The CudaApi half of the double (same method names as svsr.contract.cuda.CudaApi)."""

    def __init__(self, d: RecordingTrtCudaDouble) -> None:
        self.d = d

    def device_name(self):
        return H100.gpu_name

    def compute_capability(self):
        return H100.compute_capability

    def mem_get_info(self):
        self.d.log("cuda.mem_get_info")
        return self.d.free_bytes, 80 * 1024**3

    def malloc(self, nbytes):
        ptr = self.d.alloc("dev", nbytes)
        self.d.log("cuda.malloc", nbytes, ptr)
        return ptr

    def free(self, ptr):
        self.d.log("cuda.free", ptr)
        del self.d.memory[ptr]

    def malloc_host(self, nbytes):
        ptr = self.d.alloc("host", nbytes)
        self.d.log("cuda.malloc_host", nbytes, ptr)
        return ptr

    def free_host(self, ptr):
        self.d.log("cuda.free_host", ptr)
        del self.d.memory[ptr]

    def host_view(self, ptr, nbytes):
        return self.d.memory[ptr][:nbytes]

    def memset_async(self, ptr, value, nbytes, stream):
        self.d.log("cuda.memset_async", ptr, value, nbytes, stream)
        self.d.enqueue(stream, lambda: self.d.memory[ptr][:nbytes].fill(value))

    def memcpy_htod_async(self, dst, src, nbytes, stream):
        self.d.log("cuda.memcpy_htod_async", dst, src, nbytes, stream)
        self.d.enqueue(stream, lambda: self.d.memory[dst].__setitem__(slice(0, nbytes), self.d.memory[src][:nbytes]))

    def memcpy_dtoh_async(self, dst, src, nbytes, stream):
        self.d.log("cuda.memcpy_dtoh_async", dst, src, nbytes, stream)
        self.d.enqueue(stream, lambda: self.d.memory[dst].__setitem__(slice(0, nbytes), self.d.memory[src][:nbytes]))

    def stream_create(self):
        s = self.d.handle()
        self.d.log("cuda.stream_create", s)
        return s

    def stream_destroy(self, stream):
        self.d.log("cuda.stream_destroy", stream)

    def stream_synchronize(self, stream):
        self.d.log("cuda.stream_synchronize", stream)

    def event_create(self):
        e = self.d.handle()
        self.d.log("cuda.event_create", e)
        return e

    def event_destroy(self, event):
        self.d.log("cuda.event_destroy", event)

    def event_record(self, event, stream):
        self.d.log("cuda.event_record", event, stream)

    def event_synchronize(self, event):
        self.d.log("cuda.event_synchronize", event)

    def stream_wait_event(self, stream, event):
        self.d.log("cuda.stream_wait_event", stream, event)

    def begin_capture(self, stream):
        self.d.log("cuda.begin_capture", stream)
        assert stream not in self.d.capturing
        self.d.capturing[stream] = []

    def end_capture(self, stream):
        ops = self.d.capturing.pop(stream)
        if self.d.fail_capture:
            self.d.log("cuda.end_capture", stream, None)
            raise CudaError("CUDA call cudaStreamEndCapture failed with cudaErrorStreamCaptureUnsupported (test double).")
        g = self.d.handle()
        self.d.graphs[g] = ops
        self.d.log("cuda.end_capture", stream, g)
        return g

    def graph_instantiate(self, graph):
        x = self.d.handle()
        self.d.execs[x] = list(self.d.graphs[graph])
        self.d.log("cuda.graph_instantiate", graph, x)
        return x

    def graph_launch(self, graph_exec, stream):
        self.d.log("cuda.graph_launch", graph_exec, stream)
        for op in self.d.execs[graph_exec]:
            self.d.enqueue(stream, op)

    def graph_destroy(self, graph):
        self.d.log("cuda.graph_destroy", graph)
        del self.d.graphs[graph]

    def graph_exec_destroy(self, graph_exec):
        self.d.log("cuda.graph_exec_destroy", graph_exec)
        del self.d.execs[graph_exec]


def make_backend(double: RecordingTrtCudaDouble | None = None, **kwargs) -> tuple[TrtBackend, RecordingTrtCudaDouble]:
    double = double or RecordingTrtCudaDouble()
    plans = {g: f"plan {g}".encode() for g in GRAPH_NAMES}
    return TrtBackend(plans, trt=double.trt, cuda=double.cuda, **kwargs), double


def names(calls, *prefixes):
    return [c for c in calls if c[0].startswith(prefixes)]


# -- memory plan ----------------------------------------------------------------------------------
def test_clip_buffers_are_what_the_sampler_allocates():
    manifest = synthetic_manifest()
    bufs = clip_buffers(manifest, 3, 36, 44)
    labels = [b.label for b in bufs]
    assert labels[:3] == ["lr0", "lr1", "lr2"]
    assert len(labels) == 3 + 6 + 3 + 2 + 2 + 7
    by = {b.label: b for b in bufs}
    assert by["zA1"].shape == (1, 4, 36, 44) and by["fwd1"].shape == (1, 2, 144, 176)
    assert by["guidance"].nbytes == 3 * 144 * 176 * 4 and by["step_coeffs"].shape == (6,)


def test_memory_plan_is_linear_in_frames_and_gives_the_largest_chunk():
    manifest = synthetic_manifest()
    h, w = 180, 320
    plans = [plan_memory(manifest, n, h, w, scratch_bytes=3 << 30, engine_bytes=1 << 30) for n in (1, 2, 7)]
    per = plans[1].total_bytes - plans[0].total_bytes
    lr, latent, flow = 3 * h * w * 4, 4 * h * w * 4, 2 * 16 * h * w * 4
    assert per == aligned(lr) + 3 * aligned(latent) + 2 * aligned(flow)  # lr, zA, zB, noise, fwd, bwd
    assert plans[2].total_bytes == plans[0].total_bytes + 6 * per
    assert plans[2].total_bytes == plans[2].fixed_bytes + 7 * plans[2].per_frame_bytes
    assert plans[2].total_bytes == plans[2].clip_bytes + (3 << 30) + (1 << 30) + plans[2].reserve_bytes
    assert plans[2].clip_bytes == sum(aligned(b.nbytes) for b in clip_buffers(manifest, 7, h, w))
    available = plans[2].total_bytes - 1
    chunk = plans[2].largest_chunk(available)
    assert chunk == 6
    assert plan_memory(manifest, chunk, h, w, 3 << 30, 1 << 30).total_bytes <= available
    check_fits(plans[2], plans[2].total_bytes)  # exactly enough is enough


def test_memory_plan_errors_name_the_largest_chunk():
    manifest = synthetic_manifest()
    plan = plan_memory(manifest, 64, 180, 320, scratch_bytes=2 << 30)
    fits = plan_memory(manifest, 20, 180, 320, scratch_bytes=2 << 30).total_bytes
    with pytest.raises(DeviceMemoryError, match=r"a clip of 64 frames at 320x180 .* GiB\) of GPU memory but only 2.* GiB is free; use --chunk 20 or fewer"):
        check_fits(plan, fits)
    with pytest.raises(DeviceMemoryError, match="not even for one frame"):
        check_fits(plan, 1 << 30)
    with pytest.raises(InputError):
        plan_memory(manifest, 0, 180, 320, 0)


# -- the backend against the recording double -----------------------------------------------------
def test_engines_share_one_user_managed_scratch_area():
    backend, d = make_backend()
    assert [c[1:] for c in names(d.calls, "engine.create_execution_context")] == [(g, "USER_MANAGED") for g in GRAPH_NAMES]
    scratch = aligned(max(SCRATCH.values()), 256)
    assert backend.scratch_bytes == scratch
    mallocs = names(d.calls, "cuda.malloc")
    assert [m[1] for m in mallocs] == [scratch]  # nothing else is allocated up front
    ptr = mallocs[0][2]
    assert [c[1:] for c in names(d.calls, "ctx.set_device_memory")] == [(g, ptr, scratch) for g in GRAPH_NAMES]
    backend.close()
    assert ("cuda.free", ptr) in d.calls


def run_clip(sampler: Sampler, frames, steps: int, seed: int = 3):
    return sampler.upscale(frames, num_inference_steps=steps, noise=NumpyNoise(seed))


def test_results_equal_the_kernels_run_directly_across_clips():
    manifest = synthetic_manifest()
    backend, d = make_backend()
    trt_sampler = TrtSampler(backend, manifest)
    ref = Sampler(NumpyBackend(), manifest)
    clips = [random_frames(3, 36, 44, seed=1), random_frames(3, 36, 44, seed=2), random_frames(2, 36, 44, seed=5)]
    for i, frames in enumerate(clips):
        got, want = run_clip(trt_sampler, frames, 4, seed=i), run_clip(ref, frames, 4, seed=i)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        if i == 1:  # a second clip of the same size reuses buffers and the captured graphs
            assert len(names(d.calls, "cuda.graph_instantiate")) == 2
            assert len(names(d.calls, "cuda.graph_launch")) == 2 + 4
    # the 2-frame clip binds other sweeps: both directions were captured anew
    assert len(names(d.calls, "cuda.graph_instantiate")) == 4
    assert len(names(d.calls, "cuda.graph_exec_destroy")) == 2
    backend.close()
    assert not [p for p in d.memory if p < 0x7000_0000], "device memory left allocated"
    assert not d.memory, "pinned memory left allocated"


def test_capture_and_replay_call_sequence_of_two_steps_of_a_three_frame_clip():
    """Step 0 (fwd) and 1 (bwd) run eagerly then are captured; steps 2 and 3 replay with uploads only."""
    manifest = synthetic_manifest()
    backend, d = make_backend()
    sampler = TrtSampler(backend, manifest)
    frames = random_frames(3, 36, 44, seed=9)
    mark = len(d.calls)
    run_clip(sampler, frames, 4)
    calls = d.calls[mark:]
    label = {b.ptr: b.label for b in backend._buffers.values()}
    main, copy = backend.stream, backend.copy_stream

    launches = [i for i, c in enumerate(calls) if c[0] in ("cuda.begin_capture", "cuda.graph_launch")]
    sweep_ops = [
        (c[0], c[1]) if c[0] == "ctx.execute_async_v3" else (c[0],)
        for c in calls
        if c[0] in ("ctx.execute_async_v3", "cuda.begin_capture", "cuda.end_capture", "cuda.graph_instantiate", "cuda.graph_launch")
    ]
    fwd = [("ctx.execute_async_v3", "denoise"), *[("ctx.execute_async_v3", "guide"), ("ctx.execute_async_v3", "denoise")] * 2]
    capture = lambda sweep: [*sweep, ("cuda.begin_capture",), *sweep, ("cuda.end_capture",), ("cuda.graph_instantiate",)]  # noqa: E731
    flows = [("ctx.execute_async_v3", "flow")] * 4
    decode = [("ctx.execute_async_v3", "decode")] * 3
    assert sweep_ops == flows + capture(fwd) + capture(fwd) + [("cuda.graph_launch",)] * 2 + decode
    assert all(c[-1] == main for c in calls if c[0] in ("ctx.execute_async_v3", "cuda.begin_capture", "cuda.graph_launch"))

    # what the captured forward sweep binds, frame by frame (addresses set only when they change)
    begin = next(i for i, c in enumerate(calls) if c[0] == "cuda.begin_capture")
    end = next(i for i, c in enumerate(calls) if c[0] == "cuda.end_capture")
    inside = [c for c in calls[begin + 1 : end]]
    assert {c[0] for c in inside} == {"ctx.set_tensor_address", "ctx.execute_async_v3"}
    bound = [(c[1], c[2], label[c[3]]) for c in inside if c[0] == "ctx.set_tensor_address"]
    assert ("denoise", "z", "zA0") in bound and ("denoise", "z_prev", "zB0") in bound and ("denoise", "tcm_scale", "tcm_off") in bound
    assert ("guide", "flow", "fwd0") in bound and ("guide", "flow", "fwd1") in bound
    assert bound.index(("guide", "flow", "fwd1")) > bound.index(("denoise", "z", "zA1"))

    # the exact calls of the captured forward sweep, in buffer labels
    def show(c):
        return tuple(label.get(x, x) if isinstance(x, int) else x for x in c)

    def sets(graph, *pairs):
        return [("ctx.set_tensor_address", graph, name, buf) for name, buf in pairs]

    ex = lambda graph: [("ctx.execute_async_v3", graph, main)]  # noqa: E731
    assert [show(c) for c in inside] == [
        *sets("denoise", ("z", "zA0"), ("lr", "lr0"), ("tcm_scale", "tcm_off"), ("noise", "noise0"), ("z_prev", "zB0")), *ex("denoise"),
        *sets("guide", ("flow", "fwd0")), *ex("guide"),
        *sets("denoise", ("z", "zA1"), ("lr", "lr1"), ("tcm_scale", "tcm_on"), ("noise", "noise1"), ("z_prev", "zB1")), *ex("denoise"),
        *sets("guide", ("flow", "fwd1")), *ex("guide"),
        *sets("denoise", ("z", "zA2"), ("lr", "lr2"), ("noise", "noise2"), ("z_prev", "zB2")), *ex("denoise"),
    ]  # fmt: skip

    # per step: timestep, coefficients, then noise in sweep order, each from pinned memory on the main stream
    instantiated = [i for i, c in enumerate(calls) if c[0] == "cuda.graph_instantiate"]
    step2 = calls[instantiated[1] + 1 : launches[2] + 1]
    copies = [label[c[1]] for c in step2 if c[0] == "cuda.memcpy_htod_async"]
    assert copies == ["timestep", "step_coeffs", "noise0", "noise1", "noise2"]
    assert all(c[4] == main for c in step2 if c[0] == "cuda.memcpy_htod_async")
    step3 = calls[launches[2] + 1 : launches[3] + 1]
    assert [label[c[1]] for c in step3 if c[0] == "cuda.memcpy_htod_async"] == ["timestep", "step_coeffs", "noise2", "noise1", "noise0"]
    for step in (step2, step3):
        assert not names(step, "cuda.stream_synchronize", "ctx.", "cuda.malloc")
        # the only host waits are for pinned slots whose copy was enqueued in an earlier step
        for i, c in enumerate(step):
            if c[0] == "cuda.event_synchronize":
                assert ("cuda.event_record", c[1], main) not in step[:i]

    # downloads: after an event on the main stream, on the copy stream, waiting only for that copy
    tail = calls[launches[-1] + 1 :]
    wanted = {"ctx.execute_async_v3", "cuda.event_record", "cuda.stream_wait_event", "cuda.memcpy_dtoh_async", "cuda.event_synchronize", "cuda.stream_synchronize"}
    rgb = next(b for b in backend._buffers.values() if b.label == "rgb")
    slot = names(tail, "cuda.memcpy_dtoh_async")[0][1]
    ready, copied = backend._ready, backend._copied
    one_frame = [
        ("ctx.execute_async_v3", "decode", main),
        ("cuda.event_record", ready, main),
        ("cuda.stream_wait_event", copy, ready),
        ("cuda.memcpy_dtoh_async", slot, rgb.ptr, rgb.nbytes, copy),
        ("cuda.event_record", copied, copy),
        ("cuda.stream_wait_event", main, copied),
        ("cuda.event_synchronize", copied),
    ]
    assert [c for c in tail if c[0] in wanted] == one_frame * 3 + [("cuda.stream_synchronize", main), ("cuda.stream_synchronize", copy)]


def test_new_buffers_are_zero_filled_and_reused_buffers_zeroed_again():
    backend, d = make_backend()
    a = backend.allocate("x", (1, 4, 8, 8))
    np.testing.assert_array_equal(d.array(a.ptr, a.shape), 0)
    backend.upload(a, np.ones((1, 4, 8, 8), np.float32))
    backend.run("decode", {"z": a}, {"rgb": backend.allocate("rgb", (1, 3, 32, 32))})  # a launch: next allocate is a new clip
    again = backend.allocate("x", (1, 4, 8, 8))
    assert again is a and backend._clip == 1
    np.testing.assert_array_equal(d.array(a.ptr, a.shape), 0)
    bigger = backend.allocate("x", (1, 4, 8, 12))
    assert bigger.ptr != a.ptr and ("cuda.free", a.ptr) in d.calls
    with pytest.raises(ValueError, match="cannot upload"):
        backend.upload(bigger, np.ones((1, 4, 8, 8), np.float32))


def test_uploads_use_two_pinned_slots_per_buffer_and_wait_only_on_reuse():
    backend, d = make_backend()
    buf = backend.allocate("noise0", (1, 4, 8, 8))
    mark = len(d.calls)
    for i in range(3):
        backend.upload(buf, np.full((1, 4, 8, 8), i, np.float32))
    calls = d.calls[mark:]
    assert len(names(calls, "cuda.malloc_host")) == 2
    waits = names(calls, "cuda.event_synchronize")
    records = names(calls, "cuda.event_record")
    assert len(waits) == 1 and waits[0][1] == records[0][1]  # the third upload reuses the first slot
    np.testing.assert_array_equal(backend.download(buf), 2)


def test_replay_with_other_buffers_in_the_same_clip_is_an_error():
    backend, d = make_backend()
    z = [backend.allocate(f"z{i}", (1, 4, 8, 8)) for i in range(2)]
    rgb = backend.allocate("rgb", (1, 3, 32, 32))
    backend.launch_sweep("fwd", lambda: backend.run("decode", {"z": z[0]}, {"rgb": rgb}))
    backend.launch_sweep("fwd", lambda: backend.run("decode", {"z": z[0]}, {"rgb": rgb}))
    assert len(names(d.calls, "cuda.graph_launch")) == 1
    with pytest.raises(SweepAddressError, match=r"the fwd sweep binds other buffers than when it was captured \(launch 0 \(decode\) binds z to z1 instead of z0\)"):
        backend.launch_sweep("fwd", lambda: backend.run("decode", {"z": z[1]}, {"rgb": rgb}))


def test_a_sweep_that_cannot_be_captured_runs_eagerly():
    manifest = synthetic_manifest()
    double = RecordingTrtCudaDouble()
    double.fail_capture = True
    backend, d = make_backend(double)
    frames = random_frames(3, 36, 44, seed=4)
    with pytest.warns(RuntimeWarning, match="could not be captured"):
        got = run_clip(TrtSampler(backend, manifest), frames, 4)
    want = run_clip(Sampler(NumpyBackend(), manifest), frames, 4)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert not names(d.calls, "cuda.graph_launch")
    assert len(names(d.calls, "cuda.begin_capture")) == 2  # tried once per direction, then eager


def test_without_cuda_graphs_every_sweep_is_eager():
    manifest = synthetic_manifest()
    backend, d = make_backend(cuda_graphs=False)
    frames = random_frames(2, 36, 44, seed=4)
    got = run_clip(TrtSampler(backend, manifest), frames, 3)
    want = run_clip(Sampler(NumpyBackend(), manifest), frames, 3)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert not names(d.calls, "cuda.begin_capture")


def test_clip_that_does_not_fit_is_refused_before_allocation():
    manifest = synthetic_manifest()
    double = RecordingTrtCudaDouble(free_bytes=0)
    backend, d = make_backend(double)
    plan = plan_memory(manifest, 5, 36, 44, backend.scratch_bytes)
    double.free_bytes = plan.total_bytes - backend.scratch_bytes - 1  # one byte short (scratch is already held)
    mark = len(d.calls)
    with pytest.raises(DeviceMemoryError, match="use --chunk 4 or fewer"):
        TrtSampler(backend, manifest).upscale(random_frames(5, 36, 44), 2)
    assert not names(d.calls[mark:], "cuda.malloc")


def test_frames_outside_the_engine_profile_are_refused_with_the_rebuild_command():
    manifest = synthetic_manifest()
    profiles = {g: Profile.static(36, 44) for g in GRAPH_NAMES}
    backend, _ = make_backend(profiles=profiles)
    with pytest.raises(InputError, match=r"frames padded to 48x40 are outside the flow engine's profile 44x36 \(static\).*--resolution 48x40 --force"):
        TrtSampler(backend, manifest).upscale(random_frames(2, 40, 48), 2)
    double = RecordingTrtCudaDouble()
    double.max_lr = (36, 44)
    backend, _ = make_backend(double)  # no profile known: TensorRT's own refusal is turned into a sentence
    with pytest.raises(InputError, match="does not accept .* --resolution 48x40"):
        TrtSampler(backend, manifest).upscale(random_frames(2, 40, 48), 2)


def test_engine_with_other_io_dtypes_is_refused():
    double = RecordingTrtCudaDouble(dtypes={("denoise", "z"): "HALF"})
    with pytest.raises(ManifestError, match="tensor z is float16, not float32 .* keep float32 inputs/outputs"):
        make_backend(double)


# -- opening a build folder: records checked against this machine ---------------------------------
def write_engines(build: Path, manifest: dict, env: BuildEnvironment = H100, precision: str = "fp32") -> dict:
    profile = Profile.static(36, 44)
    (build / "engines").mkdir(exist_ok=True)
    for g in GRAPH_NAMES:
        entry = manifest["graphs"][g]
        key = cache_key(entry["sha256"], env, profile)
        rel = f"engines/{plan_filename(g, precision, key)}"
        (build / rel).write_bytes(f"plan {g}".encode())
        manifest["engines"][f"{g}.{precision}"] = make_record(
            graph=g, precision=precision, plan_file=rel, plan_sha256=sha256_file(build / rel), plan_size=(build / rel).stat().st_size,
            onnx_file=entry["file"], onnx_sha256=entry["sha256"], onnx_source_sha256=entry["sha256"], env=env, profile=profile,
            key=key, device_memory_bytes=SCRATCH[g],
        )
    return validate_manifest(manifest)


def test_open_build_folder_loads_checked_engines(tmp_path):
    manifest = write_engines(tmp_path, synthetic_manifest(tmp_path))
    double = RecordingTrtCudaDouble()
    backend = open_trt_backend(tmp_path, manifest, "auto", trt=double.trt, cuda=double.cuda)
    assert set(backend.engines) == set(GRAPH_NAMES)
    assert backend.profiles["denoise"] == Profile.static(36, 44)
    got = run_clip(TrtSampler(backend, manifest), random_frames(2, 36, 44), 2)
    want = run_clip(Sampler(NumpyBackend(), manifest), random_frames(2, 36, 44), 2)
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize(
    "env, phrase",
    [
        (BuildEnvironment("10.13.0.35", H100.gpu_name, "9.0"), "was built with TensorRT 10.13.0.35 but this machine has TensorRT 11.4.0.106"),
        (BuildEnvironment(H100.tensorrt_version, "NVIDIA A100-SXM4-80GB", "8.0"), "was built for NVIDIA A100-SXM4-80GB .compute capability 8.0. but this machine has NVIDIA H100"),
    ],
)
def test_engines_from_another_machine_are_refused_with_the_command(tmp_path, env, phrase):
    manifest = write_engines(tmp_path, synthetic_manifest(tmp_path), env=env, precision="fp16")
    for g in GRAPH_NAMES:
        manifest["graphs"][g]["typed"] = {"fp16": {"file": manifest["graphs"][g]["file"], "sha256": manifest["graphs"][g]["sha256"], "precision": "fp16"}}
    double = RecordingTrtCudaDouble()
    with pytest.raises(ManifestError) as info:
        open_trt_backend(tmp_path, manifest, "fp16", trt=double.trt, cuda=double.cuda)
    message = str(info.value)
    assert phrase.replace(".", "") in message.replace(".", "") or re.search(phrase, message)
    assert message.endswith(f"rebuild it with: svsr-export --weights /ckpt/tiny --precision fp16 --out {tmp_path} --resolution 44x36 --force")
    assert message.count(".") <= 8 and "\n" not in message


def test_missing_changed_or_absent_engines_name_the_fix(tmp_path):
    manifest = write_engines(tmp_path, synthetic_manifest(tmp_path))
    double = RecordingTrtCudaDouble()
    with pytest.raises(ManifestError, match="has no fp16 TensorRT engine for the flow graph; build it with: svsr-export --weights /ckpt/tiny --precision fp16"):
        open_trt_backend(tmp_path, manifest, "fp16", trt=double.trt, cuda=double.cuda)
    plan = tmp_path / manifest["engines"]["guide.fp32"]["file"]
    plan.write_bytes(b"plan guide changed")
    with pytest.raises(ManifestError, match="guide fp32 engine .* does not match its recorded sha256; rebuild it with: svsr-export"):
        open_trt_backend(tmp_path, manifest, "fp32", trt=double.trt, cuda=double.cuda)
    plan.unlink()
    with pytest.raises(ManifestError, match="is missing; rebuild it with"):
        open_trt_backend(tmp_path, manifest, "fp32", trt=double.trt, cuda=double.cuda)
    plan.write_bytes(b"plan guide")
    manifest["graphs"]["decode"]["sha256"] = "1" * 64
    with pytest.raises(ManifestError, match="decode fp32 engine .* was built from another version of its ONNX graph"):
        open_trt_backend(tmp_path, manifest, "fp32", trt=double.trt, cuda=double.cuda)


# -- the double and the backend use only real TensorRT / cuda-python names ------------------------
def _public(cls) -> set[str]:
    return {n for n in vars(cls) if not n.startswith("_")}


def test_the_double_offers_only_the_declared_tensorrt_names():
    assert _public(FakeEngine) <= set(TRT_RUNTIME_API["ICudaEngine"])
    assert _public(FakeContext) <= set(TRT_RUNTIME_API["IExecutionContext"])
    double = RecordingTrtCudaDouble()
    assert {n for n in vars(double.trt)} - {"__version__"} <= set(TRT_RUNTIME_API["tensorrt"])
    assert _public(double.trt.Runtime) <= set(TRT_RUNTIME_API["Runtime"])
    # the CUDA half has exactly CudaApi's methods (less the device queries the backend never calls)
    assert _public(_FakeCuda) <= _public(CudaApi)


def test_every_tensorrt_runtime_name_exists_in_the_real_lean_bindings():
    trt = pytest.importorskip("tensorrt_lean_bindings", reason="install tensorrt-lean-cu13-bindings and tensorrt-lean-cu13-libs (dev extra)")
    assert trt.__version__.startswith("11.")
    missing = []
    for owner, attrs in TRT_RUNTIME_API.items():
        holder = trt if owner == "tensorrt" else getattr(trt, owner, None)
        if holder is None:
            missing.append(owner)
            continue
        missing += [f"{owner}.{a}" for a in attrs if not hasattr(holder, a)]
    assert not missing, f"not in tensorrt_lean_bindings {trt.__version__}: {missing}"
    # set_device_memory takes (ptr, size) and create_execution_context a strategy, as the backend calls them
    assert "memory" in trt.IExecutionContext.set_device_memory.__doc__ and "size" in trt.IExecutionContext.set_device_memory.__doc__
    assert "ExecutionContextAllocationStrategy" in trt.ICudaEngine.create_execution_context.__doc__


def test_cuda_api_calls_exist_in_cuda_python():
    runtime = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed")
    source = inspect.getsource(cuda_api)
    called = set(re.findall(r"\brt\.(cuda\w+)", source))
    assert {"cudaMalloc", "cudaMallocHost", "cudaMemcpyAsync", "cudaStreamBeginCapture", "cudaGraphLaunch"} <= called
    missing = sorted(n for n in called if not hasattr(runtime, n))
    assert not missing, f"not in cuda.bindings.runtime: {missing}"


def test_cuda_api_without_a_gpu_says_why():
    if importlib.util.find_spec("cuda") is None:
        pytest.skip("cuda-python is not installed")
    ok, why = cuda_api.cuda_device_status()
    if ok:
        pytest.skip(f"a GPU is present ({why})")
    assert "GPU" in why or "cuda-python" in why
    with pytest.raises(CudaError, match=r"CUDA call cudaSetDevice failed with cuda\w+ \("):
        CudaApi(0)


def test_host_view_writes_through_to_the_memory():
    import ctypes

    block = (ctypes.c_uint8 * 16)()
    view = CudaApi.host_view(None, ctypes.addressof(block), 16)  # type: ignore[arg-type]
    view[:] = np.arange(16, dtype=np.uint8)
    assert bytes(block) == bytes(range(16))
