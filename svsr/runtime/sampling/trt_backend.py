"""TensorRT backend on the sampler's fixed slot buffers: contexts bound once, one CUDA graph per frame-step program.

How it runs (torch-free; CUDA through svsr/device/cuda.py):

* Engines are deserialised once. Execution contexts are made lazily, one per distinct binding (a
  graph and the buffers of all its tensors), at the first ``run`` with that binding:
  ``create_execution_context(USER_MANAGED)``, the input shapes,
  ``update_device_memory_size_for_shapes()`` (the scratch the context needs for those shapes),
  ``set_device_memory`` and every ``set_tensor_address``. After that a context only ever gets
  ``execute_async_v3``: it is never re-pointed. All contexts share one scratch area (they run one
  after another on one stream).
* ``prepare_slots(manifest, h, w)``, which the sampler calls before allocating the slots of a frame
  size: checks the size against the engines' profiles; asks a temporary context per engine for its
  scratch need at this size; releases the buffers the new size does not reuse, and with them the
  contexts and CUDA graphs bound to them (no context is left pointing at freed memory); refuses,
  in one sentence, a size whose memory plan (svsr/runtime/sampling/memory_plan.py) does not fit the free
  memory; and sizes the scratch for this size (when it must grow at another time, every context
  and graph is dropped first and made again on next use).
* ``allocate(label, shape, dtype)``: a zero-filled device buffer per label (the same label, shape
  and dtype gets the same memory back, zero-filled again), made together with its pinned staging
  area and its two events, never inside a step.
* Two streams and per-buffer events. Uploads (and the zero fill) copy through the buffer's pinned
  staging on the copy stream, after the copy stream has waited for the buffer's ``used`` event
  (the compute that last read or wrote it), and record the buffer's ``copied`` event. Compute
  (``run``, ``launch``) first waits for the ``copied`` event of each buffer it touches that has an
  upload it has not waited for, and records each touched buffer's ``used`` event after. So frame
  k+1's upload, into the other slot set, overlaps frame k's compute. ``download`` copies on the copy
  stream after the buffer's ``used`` event and waits for that copy only: frame k's decoded image
  comes back while decode k+1 runs.
* ``launch(key, enqueue)``: each call first runs ``enqueue()`` dry (nothing is launched) to learn
  the bindings it makes. The first call for a key makes the contexts it needs, runs it eagerly
  (this frame-step's real work), synchronises the stream (as trtexec does between warm-up and
  capture), captures ``enqueue()`` into a CUDA graph and instantiates it. Later calls replay that
  graph: one capture per program for every frame, step, clip and video of a frame size. A replay
  whose dry run binds other buffers than the capture is an error (ProgramBindingError). A capture
  that fails (in the enqueue, cudaStreamEndCapture or cudaGraphInstantiate) destroys whatever
  graph it made, and that key runs eagerly, with a warning, from then on.
* The device memory of each context and CUDA graph is measured (cudaMemGetInfo around making it);
  ``measured_overhead_bytes()`` reports it and the next memory plan uses it instead of the
  estimates.
* ``close()`` releases everything (graph execs, graphs, contexts, engines, scratch, buffers, pinned
  memory, events, streams), once; later calls do nothing.
* Opening a build folder checks each plan file's sha256 against its record. The hash is cached
  next to the plan (``<plan>.sha256.json``, keyed by file name, size and mtime), so a multi-GB plan
  is hashed again only when it changed.
* TensorRT comes from svsr/device/tensorrt.py: the full library, or else the lean runtime
  (``tensorrt_lean``), which runs only version-compatible plans (``svsr-export --lean``); any other
  plan is refused in one sentence with the command that rebuilds it with ``--lean``. For
  version-compatible plans ``Runtime.engine_host_code_allowed`` is set before deserialising (TensorRT
  refuses them otherwise).

TRT_RUNTIME_API lists every TensorRT name used here; tests check each exists in the real
``tensorrt_lean_bindings`` module and run this backend against a recording test double.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from svsr.device.cuda import CudaError
from svsr.contract.engine_records import (
    BuildEnvironment,
    check_record,
    engine_key,
    onnx_entry,
    rebuild_command,
    validate_engines,
)
from svsr.contract.errors import InputError, ManifestError
from svsr.contract.graphs import GRAPHS, concrete_shape
from svsr.contract.manifest import sha256_file
from svsr.contract.precision import Precision, PrecisionLike
from svsr.contract.profiles import Profile, format_size
from svsr.device.tensorrt import import_tensorrt_runtime
from svsr.runtime.sampling.memory_plan import MemoryPlan, aligned, check_fits, plan_memory, slot_buffers
from svsr.runtime.sampling.sampler import Sampler

# Every TensorRT name this module uses, by owner (checked against tensorrt_lean_bindings in tests).
TRT_RUNTIME_API: dict[str, tuple[str, ...]] = {
    "tensorrt": ("__version__", "Logger", "Runtime", "ExecutionContextAllocationStrategy", "TensorIOMode", "DataType"),
    "Logger": ("WARNING",),
    "Runtime": ("deserialize_cuda_engine", "engine_host_code_allowed"),
    "ExecutionContextAllocationStrategy": ("USER_MANAGED",),
    "TensorIOMode": ("INPUT", "OUTPUT"),
    "DataType": ("FLOAT", "HALF", "BF16", "INT32", "INT64"),
    "ICudaEngine": ("num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_dtype", "create_execution_context"),
    "IExecutionContext": (
        "set_input_shape",
        "get_tensor_shape",
        "update_device_memory_size_for_shapes",
        "set_device_memory",
        "set_tensor_address",
        "execute_async_v3",
    ),
}
_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32", "INT64": "int64"}
SCRATCH_ALIGNMENT = 256  # set_device_memory wants 256-byte aligned memory; cudaMalloc gives that


class ProgramBindingError(RuntimeError):
    """A captured frame-step program would replay with other buffers than it was captured with (a schedule bug)."""


class TensorRTError(RuntimeError):
    """A TensorRT call reported failure."""


@dataclass(eq=False)
class DeviceBuffer:
    """A device allocation of one tensor (the backend's Buffer), with its pinned staging and events."""

    label: str
    shape: tuple[int, ...]
    dtype: str
    ptr: int
    nbytes: int
    host: int  # pinned staging area of nbytes, for uploads and downloads (0: a device-only buffer)
    view: np.ndarray  # uint8 view of the staging area
    copied: int  # event recorded on the copy stream after each copy (upload, zero fill, download)
    used: int  # event recorded on the compute stream after each run or launch that touched it
    upload_pending: bool = False  # the compute stream has not waited for the last upload yet
    compute_pending: bool = False  # the copy stream has not waited for the last compute use yet
    staging_busy: bool = False  # an upload from the staging area may still be in flight
    released: bool = False


@dataclass(eq=False)
class _Engine:
    name: str
    engine: Any
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return self.inputs + self.outputs


Binding = tuple[str, tuple[int, ...], tuple[tuple[int, ...], ...]]  # (graph, pointers of all tensors, input shapes)


@dataclass(eq=False)
class _Context:
    binding: Binding
    context: Any
    buffers: tuple[DeviceBuffer, ...]  # in the engine's tensor order
    overhead: int  # measured device bytes of making it
    enqueued: bool = False


@dataclass(eq=False)
class _Program:
    key: str
    graph: int
    graph_exec: int
    trace: tuple[Binding, ...]
    overhead: int  # measured device bytes of instantiating it


_EAGER = object()  # a program that could not be captured: it runs eagerly from then on
_Trace = list[tuple[Binding, tuple[DeviceBuffer, ...]]]


class TrtBackend:
    """Runs the four graphs' TensorRT engines on one device (see the module docstring)."""

    name = "trt"

    def __init__(
        self,
        plans: Mapping[str, bytes],
        *,
        trt: Any,
        cuda: Any,
        profiles: Mapping[str, Profile] | None = None,
        cuda_graphs: bool = True,
        rebuild: Callable[[Profile | None], str] | None = None,
        host_code_allowed: bool = False,
    ) -> None:
        self.trt, self.cuda = trt, cuda
        self.profiles = dict(profiles or {})
        self.cuda_graphs = cuda_graphs
        self._rebuild = rebuild or _default_rebuild
        self._buffers: dict[str, DeviceBuffer] = {}
        self._contexts: dict[Binding, _Context] = {}
        self._programs: dict[str, Any] = {}
        self._needs: dict[tuple[int, int], int] = {}
        self._context_samples: list[int] = []
        self._program_samples: list[int] = []
        self._mode = "idle"  # idle | dry | launch | capture
        self._key = ""
        self._trace: _Trace = []
        self._index = 0
        self._closed = False
        self._peak_bytes = 0
        self.scratch_ptr = 0
        self.scratch_bytes = 0
        self.last_plan: MemoryPlan | None = None
        self.stream = self.copy_stream = 0

        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if host_code_allowed:  # version-compatible (--lean) plans: TensorRT refuses them otherwise
            self._runtime.engine_host_code_allowed = True
        self.engines: dict[str, _Engine] = {}
        for graph, plan in plans.items():
            engine = self._runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise ManifestError(
                    f"TensorRT could not load the {graph} engine (see its message above); rebuild it with: {self._rebuild(self.profiles.get(graph))}"
                )
            inputs, outputs = self._check_io(graph, engine)
            self.engines[graph] = _Engine(graph, engine, inputs, outputs)
        self.stream = cuda.stream_create()  # compute
        self.copy_stream = cuda.stream_create()  # uploads, zero fills, downloads

    # -- loading --------------------------------------------------------------------------------
    def _check_io(self, graph: str, engine: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The engine's input/output names in graph order, after checking names and dtypes against svsr/contract/graphs.py."""
        trt = self.trt
        found: dict[str, tuple[Any, str]] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = engine.get_tensor_dtype(name)
            found[name] = (engine.get_tensor_mode(name), next((v for k, v in _DTYPES.items() if getattr(trt.DataType, k) == dtype), str(dtype)))
        spec = GRAPHS[graph]
        want = {t.name: (trt.TensorIOMode.INPUT, t.dtype) for t in spec.inputs}
        want.update({t.name: (trt.TensorIOMode.OUTPUT, t.dtype) for t in spec.outputs})
        if set(found) != set(want):
            raise ManifestError(f"the {graph} engine has tensors {sorted(found)} but the graph has {sorted(want)}; rebuild it with: {self._rebuild(self.profiles.get(graph))}")
        for name, (mode, dtype) in want.items():
            if found[name][0] != mode or found[name][1] != dtype:
                raise ManifestError(
                    f"the {graph} engine's tensor {name} is {found[name][1]}, not {dtype} as the runtime passes it "
                    f"(typed graphs must keep float32 inputs/outputs); rebuild it with: {self._rebuild(self.profiles.get(graph))}"
                )
        return tuple(t.name for t in spec.inputs), tuple(t.name for t in spec.outputs)

    # -- what it holds ----------------------------------------------------------------------------
    def peak_device_bytes(self) -> int:
        """Most device memory this backend held at once for scratch and buffers (engines, contexts and graphs excluded)."""
        return self._peak_bytes

    def measured_overhead_bytes(self) -> dict[str, Any]:
        """Device memory of execution contexts and CUDA graphs, measured with cudaMemGetInfo when each was made.

        ``per_context`` / ``per_program``: the mean over every one made so far (None before the
        first); ``contexts`` / ``programs``: how many are alive; ``context_bytes`` /
        ``program_bytes``: what those alive took.
        """
        mean = lambda samples: sum(samples) // len(samples) if samples else None  # noqa: E731
        programs = [p for p in self._programs.values() if isinstance(p, _Program)]
        return {
            "per_context": mean(self._context_samples),
            "per_program": mean(self._program_samples),
            "contexts": len(self._contexts),
            "context_bytes": sum(c.overhead for c in self._contexts.values()),
            "programs": len(programs),
            "program_bytes": sum(p.overhead for p in programs),
        }

    def memory_plan(self, manifest: Mapping[str, Any], height: int, width: int) -> MemoryPlan:
        """The device memory padded LR frames of ``height`` x ``width`` need here (engines are loaded already)."""
        scratch = aligned(self._scratch_need(height, width), SCRATCH_ALIGNMENT)  # first: its probe contexts are measured too
        measured = self.measured_overhead_bytes()
        return plan_memory(
            manifest,
            height,
            width,
            scratch_bytes=scratch,
            per_context_bytes=measured["per_context"],
            per_program_bytes=measured["per_program"],
            cuda_graphs=self.cuda_graphs,
        )

    # -- a frame size -----------------------------------------------------------------------------
    def prepare_slots(self, manifest: Mapping[str, Any], height: int, width: int) -> None:
        """Before the slot buffers of a frame size are allocated: profile check, scratch size, memory check.

        Held buffers the new size does not reuse are released first (with the contexts and graphs
        bound to them); raises DeviceMemoryError when the size does not fit the free memory.
        """
        self._check_idle("prepare_slots")
        for graph, profile in self.profiles.items():
            if not profile.covers(1, height, width):
                raise InputError(
                    f"frames padded to {format_size((height, width))} are outside the {graph} engine's profile "
                    f"{profile.describe()}; rebuild the engines for this size with: {self._rebuild(Profile.static(height, width))}"
                )
        plan = self.memory_plan(manifest, height, width)  # also probes the scratch need
        wanted = {b.label: (b.shape, b.dtype) for b in slot_buffers(manifest, height, width)}
        for label, buf in list(self._buffers.items()):
            if wanted.get(label) != (buf.shape, buf.dtype):
                self._release(label)
        if not self._contexts and self.scratch_bytes not in (0, plan.scratch_bytes):
            self._set_scratch(0)  # sized again for this size below, once the plan is known to fit
        free, _total = self.cuda.mem_get_info()
        check_fits(plan, free + self._held_bytes())
        if plan.scratch_bytes > self.scratch_bytes:
            self._set_scratch(plan.scratch_bytes)
        self.last_plan = plan

    def _held_bytes(self) -> int:
        """Device memory this backend holds now that a plan for its current size counts again."""
        measured = self.measured_overhead_bytes()
        buffers = sum(aligned(b.nbytes) for b in self._buffers.values())
        return buffers + self.scratch_bytes + measured["context_bytes"] + measured["program_bytes"]

    def _scratch_need(self, height: int, width: int) -> int:
        """The most scratch any engine's context needs for frames of this size (temporary contexts ask TensorRT)."""
        need = self._needs.get((height, width))
        if need is None:
            need = 0
            for e in self.engines.values():
                context, _overhead = self._new_context(e, {t.name: concrete_shape(t, 1, height, width) for t in GRAPHS[e.name].inputs})
                need = max(need, int(context.update_device_memory_size_for_shapes()))
                del context
            self._needs[(height, width)] = need
        return need

    def _set_scratch(self, nbytes: int) -> None:
        """Replace the scratch area; every context (and graph) pointing at the old one is dropped first."""
        self._drop_contexts(lambda c: True)
        self._synchronize_streams()
        if self.scratch_ptr:
            self.cuda.free(self.scratch_ptr)
            self.scratch_ptr, self.scratch_bytes = 0, 0
        if nbytes:
            self.scratch_ptr = self.cuda.malloc(nbytes)
            self.scratch_bytes = nbytes
            self._note_peak()

    # -- Backend protocol -----------------------------------------------------------------------
    def allocate(self, label: str, shape: Sequence[int], dtype: str = "float32", host_io: bool = True) -> DeviceBuffer:
        """A zero-filled device buffer; ``host_io=False`` (device-only: never uploaded or downloaded) gets no pinned staging."""
        self._check_idle("allocate")
        shape = tuple(int(s) for s in shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        buf = self._buffers.get(label)
        if buf is not None and (buf.shape, buf.dtype, bool(buf.host)) != (shape, dtype, host_io):
            self._release(label)
            buf = None
        if buf is None:
            buf = self._new_buffer(label, shape, dtype, nbytes, host_io)
            self._buffers[label] = buf
            self._note_peak()
        self._copy_after_compute(buf)
        self.cuda.memset_async(buf.ptr, 0, nbytes, self.copy_stream)
        self.cuda.event_record(buf.copied, self.copy_stream)
        buf.upload_pending = True
        return buf

    def _new_buffer(self, label: str, shape: tuple[int, ...], dtype: str, nbytes: int, host_io: bool = True) -> DeviceBuffer:
        cuda, made = self.cuda, []
        host = 0
        try:
            ptr = cuda.malloc(nbytes)
            made.append((cuda.free, ptr))
            if host_io:
                host = cuda.malloc_host(nbytes)  # the pinned staging, now: never inside a step
                made.append((cuda.free_host, host))
            copied = cuda.event_create()
            made.append((cuda.event_destroy, copied))
            used = cuda.event_create()
        except BaseException:
            for undo, handle in reversed(made):
                undo(handle)
            raise
        view = cuda.host_view(host, nbytes) if host else np.zeros(0, np.uint8)
        return DeviceBuffer(label, shape, dtype, ptr, nbytes, host, view, copied, used)

    def upload(self, buffer: DeviceBuffer, array: np.ndarray) -> None:
        self._check_idle("upload", buffer)
        self._check_host_io(buffer, "upload")
        data = np.ascontiguousarray(array, dtype=buffer.dtype)
        if data.nbytes != buffer.nbytes:
            raise ValueError(f"cannot upload an array of shape {data.shape} into buffer {buffer.label} of shape {buffer.shape}.")
        if buffer.staging_busy:  # the previous upload through this staging area must have read it
            self.cuda.event_synchronize(buffer.copied)
            buffer.staging_busy = False
        buffer.view[:] = data.reshape(-1).view(np.uint8)
        self._copy_after_compute(buffer)
        self.cuda.memcpy_htod_async(buffer.ptr, buffer.host, buffer.nbytes, self.copy_stream)
        self.cuda.event_record(buffer.copied, self.copy_stream)
        buffer.staging_busy = buffer.upload_pending = True

    def download(self, buffer: DeviceBuffer) -> np.ndarray:
        self._check_idle("download", buffer)
        self._check_host_io(buffer, "download")
        self._copy_after_compute(buffer)
        self.cuda.memcpy_dtoh_async(buffer.host, buffer.ptr, buffer.nbytes, self.copy_stream)
        self.cuda.event_record(buffer.copied, self.copy_stream)
        self.cuda.event_synchronize(buffer.copied)  # this copy only: the compute stream keeps running
        for buf in self._buffers.values():  # the copy stream runs in order: every earlier upload has read its staging
            buf.staging_busy = False
        return buffer.view.view(buffer.dtype).reshape(buffer.shape).copy()

    def run(self, graph: str, inputs: Mapping[str, DeviceBuffer], outputs: Mapping[str, DeviceBuffer]) -> None:
        self._check_open()
        e = self.engines.get(graph)
        if e is None:
            raise ValueError(f"there is no {graph!r} engine; this backend has {sorted(self.engines)}.")
        bound = {**inputs, **outputs}
        if set(bound) != set(e.names):
            raise ValueError(f"run({graph!r}) binds {sorted(bound)}; the engine needs {sorted(e.names)}.")
        buffers = tuple(bound[n] for n in e.names)
        for buf in buffers:
            self._check_live(buf)
        binding: Binding = (graph, tuple(b.ptr for b in buffers), tuple(b.shape for b in buffers[: len(e.inputs)]))
        if self._mode == "dry":
            self._trace.append((binding, buffers))
            return
        if self._mode != "idle":  # inside launch: the same launches as the dry run, in order
            expected = self._trace[self._index][0] if self._index < len(self._trace) else None
            if expected != binding:
                raise ProgramBindingError(
                    f"the {self._key} program's enqueue made launch {self._index} ({graph}) with other buffers than its dry run "
                    f"({_difference(expected, binding, self._labels())}); a frame-step must bind the same buffers every time."
                )
            self._index += 1
        context = self._contexts.get(binding)
        if context is None:
            if self._mode != "idle":
                raise ProgramBindingError(f"the {self._key} program needs a new {graph} context while it runs; contexts are made before.")
            context = self._make_context(e, binding, buffers)
        if self._mode == "idle":
            self._wait_uploads(buffers)
        if not context.context.execute_async_v3(self.stream):
            raise TensorRTError(f"TensorRT could not enqueue the {graph} engine (see its message above).")
        context.enqueued = True
        if self._mode == "idle":
            self._mark_used(buffers)

    def launch(self, key: str, enqueue: Callable[[], None]) -> None:
        """One frame-step program: captured into a CUDA graph on first use of ``key``, replayed afterwards."""
        self._check_idle("launch")
        trace = self._run_mode("dry", key, enqueue, [])
        self._make_contexts(trace)  # may drop graphs when the scratch must grow
        program = self._programs.get(key)
        bindings = tuple(b for b, _ in trace)
        if isinstance(program, _Program) and program.trace != bindings:
            raise ProgramBindingError(
                f"the {key} program binds other buffers than when it was captured "
                f"({_first_difference(program.trace, bindings, self._labels())}); a frame-step program must reuse the same slot buffers."
            )
        touched = list({id(b): b for _, buffers in trace for b in buffers}.values())
        self._wait_uploads(touched)
        if isinstance(program, _Program):
            self.cuda.graph_launch(program.graph_exec, self.stream)
        else:
            self._run_mode("launch", key, enqueue, trace)
            if self.cuda_graphs and program is None:
                self._programs[key] = self._capture(key, enqueue, trace)
        self._mark_used(touched)

    def synchronize(self) -> None:
        self._check_open()
        self._synchronize_streams()

    def close(self) -> None:
        """Release everything this backend holds; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        cuda, errors = self.cuda, []

        def attempt(call: Callable[..., Any], *args: Any) -> None:
            try:
                call(*args)
            except Exception as exc:  # noqa: BLE001 - release the rest, then report the first failure
                errors.append(exc)

        attempt(self._synchronize_streams)
        for program in self._programs.values():
            if isinstance(program, _Program):
                attempt(cuda.graph_exec_destroy, program.graph_exec)
                attempt(cuda.graph_destroy, program.graph)
        self._programs.clear()
        self._contexts.clear()  # contexts before engines before the runtime, and before the memory they point at
        self.engines.clear()
        self._runtime = None
        if self.scratch_ptr:
            attempt(cuda.free, self.scratch_ptr)
            self.scratch_ptr, self.scratch_bytes = 0, 0
        for buf in self._buffers.values():
            buf.released = True
            attempt(cuda.free, buf.ptr)
            if buf.host:
                attempt(cuda.free_host, buf.host)
            attempt(cuda.event_destroy, buf.copied)
            attempt(cuda.event_destroy, buf.used)
        self._buffers.clear()
        for stream in (self.stream, self.copy_stream):
            if stream:
                attempt(cuda.stream_destroy, stream)
        self.stream = self.copy_stream = 0
        if errors:
            raise errors[0]

    # -- contexts ---------------------------------------------------------------------------------
    def _new_context(self, e: _Engine, shapes: Mapping[str, tuple[int, ...]]) -> tuple[Any, int]:
        """A user-managed context with the input shapes set, and the device bytes making it took."""
        free_before, _ = self.cuda.mem_get_info()
        context = e.engine.create_execution_context(self.trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if context is None:
            raise TensorRTError(f"TensorRT could not create an execution context for the {e.name} engine.")
        for spec in GRAPHS[e.name].inputs:
            shape = tuple(shapes[spec.name])
            if not any(isinstance(d, str) for d in spec.shape):  # fixed in the graph: nothing to set
                if shape != spec.shape:
                    raise ValueError(f"{e.name}.{spec.name} has fixed shape {spec.shape}, not {shape}.")
                continue
            if not context.set_input_shape(spec.name, shape):
                profile = self.profiles.get(e.name)
                where = f" (the engine's profile is {profile.describe()})" if profile else ""
                raise InputError(
                    f"the {e.name} engine does not accept {spec.name} of shape {shape}{where}; "
                    f"rebuild the engines for this size with: {self._rebuild(_lr_profile(e.name, spec.name, shape))}"
                )
        free_after, _ = self.cuda.mem_get_info()
        overhead = max(0, free_before - free_after)
        self._context_samples.append(overhead)
        return context, overhead

    def _make_context(self, e: _Engine, binding: Binding, buffers: tuple[DeviceBuffer, ...]) -> _Context:
        """The context of one binding: shapes, scratch and every tensor address set now, never again."""
        context, overhead = self._new_context(e, {n: b.shape for n, b in zip(e.inputs, buffers)})
        for name, buf in zip(e.outputs, buffers[len(e.inputs) :]):
            got = tuple(context.get_tensor_shape(name))
            if got != buf.shape:
                raise ValueError(f"the {e.name} engine makes {name} of shape {got}, but its buffer {buf.label} has shape {buf.shape}.")
        need = aligned(int(context.update_device_memory_size_for_shapes()), SCRATCH_ALIGNMENT)
        if need > self.scratch_bytes:  # a size prepare_slots did not see: every other context is dropped
            self._set_scratch(need)
        if self.scratch_bytes:
            context.set_device_memory(self.scratch_ptr, self.scratch_bytes)
        for name, buf in zip(e.names, buffers):
            if not context.set_tensor_address(name, buf.ptr):
                raise TensorRTError(f"TensorRT refused the address of {e.name}.{name} (buffer {buf.label}).")
        made = self._contexts[binding] = _Context(binding, context, buffers, overhead)
        return made

    def _make_contexts(self, trace: _Trace) -> None:
        """Every context a program needs, before anything of it runs (a scratch growth restarts the list)."""
        for _ in range(len(trace) + 1):
            missing = [(binding, buffers) for binding, buffers in trace if binding not in self._contexts]
            if not missing:
                return
            binding, buffers = missing[0]
            self._make_context(self.engines[binding[0]], binding, buffers)
        raise TensorRTError("the execution contexts of a frame-step program kept needing more scratch.")  # pragma: no cover

    def _drop_contexts(self, doomed: Callable[[_Context], bool]) -> None:
        """Drop contexts (after the work that may use them) and every captured program that used one."""
        keys = [k for k, c in self._contexts.items() if doomed(c)]
        if not keys:
            return
        self._synchronize_streams()
        gone = set(keys)
        for key, program in list(self._programs.items()):
            if isinstance(program, _Program) and gone.intersection(program.trace):
                self._destroy_program(program)
                del self._programs[key]
        for key in keys:
            del self._contexts[key]

    # -- launches ---------------------------------------------------------------------------------
    def _run_mode(self, mode: str, key: str, enqueue: Callable[[], None], trace: _Trace) -> _Trace:
        self._mode, self._key, self._trace, self._index = mode, key, trace, 0
        try:
            enqueue()
            if mode != "dry" and self._index != len(trace):
                raise ProgramBindingError(f"the {key} program's enqueue made {self._index} launches; its dry run made {len(trace)}.")
            return self._trace
        finally:
            self._mode, self._key, self._trace, self._index = "idle", "", [], 0

    def _capture(self, key: str, enqueue: Callable[[], None], trace: _Trace) -> Any:
        cuda = self.cuda
        cuda.stream_synchronize(self.stream)  # the eager warm-up has finished before the capture starts (as trtexec)
        free_before, _ = cuda.mem_get_info()
        try:
            cuda.begin_capture(self.stream)
        except CudaError as exc:
            return self._capture_failed(key, exc)
        try:
            self._run_mode("capture", key, enqueue, trace)
        except BaseException as exc:
            graph, _error = cuda.try_end_capture(self.stream)
            if graph:
                cuda.graph_destroy(graph)
            if isinstance(exc, (CudaError, TensorRTError)):
                return self._capture_failed(key, exc)
            raise
        graph, error = cuda.try_end_capture(self.stream)
        if error is not None:
            if graph:
                cuda.graph_destroy(graph)
            return self._capture_failed(key, error)
        try:
            graph_exec = cuda.graph_instantiate(graph)
        except CudaError as exc:
            cuda.graph_destroy(graph)
            return self._capture_failed(key, exc)
        free_after, _ = cuda.mem_get_info()
        overhead = max(0, free_before - free_after)
        self._program_samples.append(overhead)
        return _Program(key, graph, graph_exec, tuple(b for b, _ in trace), overhead)

    def _capture_failed(self, key: str, exc: BaseException) -> Any:
        # This frame-step's work was already done by the eager run, so running eagerly loses nothing but speed.
        warnings.warn(f"svsr: the {key} frame-step could not be captured as a CUDA graph ({exc}); it runs without one.", RuntimeWarning, stacklevel=4)
        return _EAGER

    def _destroy_program(self, program: _Program) -> None:
        self.cuda.graph_exec_destroy(program.graph_exec)
        self.cuda.graph_destroy(program.graph)

    # -- streams and events -----------------------------------------------------------------------
    def _wait_uploads(self, buffers: Sequence[DeviceBuffer]) -> None:
        """The compute stream waits for the uploads (and zero fills) of these buffers it has not waited for."""
        for buf in buffers:
            if buf.upload_pending:
                self.cuda.stream_wait_event(self.stream, buf.copied)
                buf.upload_pending = False

    def _mark_used(self, buffers: Sequence[DeviceBuffer]) -> None:
        for buf in buffers:
            self.cuda.event_record(buf.used, self.stream)
            buf.compute_pending = True

    def _copy_after_compute(self, buf: DeviceBuffer) -> None:
        """The copy stream waits for the compute that last used ``buf`` before copying into or out of it."""
        if buf.compute_pending:
            self.cuda.stream_wait_event(self.copy_stream, buf.used)
            buf.compute_pending = False

    def _synchronize_streams(self) -> None:
        if self.stream:
            self.cuda.stream_synchronize(self.stream)
        if self.copy_stream:
            self.cuda.stream_synchronize(self.copy_stream)

    # -- helpers ----------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the TensorRT backend is closed; open a new one.")

    def _check_idle(self, what: str, buf: DeviceBuffer | None = None) -> None:
        self._check_open()
        if self._mode != "idle":
            raise RuntimeError(f"{what} inside the {self._key} frame-step program: a program only launches graphs on fixed buffers.")
        if buf is not None:
            self._check_live(buf)

    @staticmethod
    def _check_live(buf: DeviceBuffer) -> None:
        if buf.released:
            raise RuntimeError(f"buffer {buf.label} was released (the backend moved to another frame size or closed); allocate it again.")

    @staticmethod
    def _check_host_io(buffer: DeviceBuffer, what: str) -> None:
        if not buffer.host:
            raise ValueError(f"cannot {what} buffer {buffer.label}: it was allocated device-only (host_io=False).")

    def _release(self, label: str) -> None:
        """Free a held buffer, its staging and events, and drop the contexts and graphs bound to it."""
        buf = self._buffers.pop(label)
        self._drop_contexts(lambda c: any(b is buf for b in c.buffers))  # never leave a context pointing at freed memory
        self._synchronize_streams()
        buf.released = True
        self.cuda.free(buf.ptr)
        if buf.host:
            self.cuda.free_host(buf.host)
        self.cuda.event_destroy(buf.copied)
        self.cuda.event_destroy(buf.used)

    def _note_peak(self) -> None:
        self._peak_bytes = max(self._peak_bytes, self.scratch_bytes + sum(b.nbytes for b in self._buffers.values()))

    def _labels(self) -> dict[int, str]:
        return {b.ptr: b.label for b in self._buffers.values()}


def _lr_profile(graph: str, tensor: str, shape: tuple[int, ...]) -> Profile | None:
    """The static profile of the LR size a tensor shape implies (None when it cannot tell)."""
    spec = GRAPHS[graph].input(tensor)
    scale = {"width": 1, "width4": 4}.get(str(spec.shape[-1]))
    if scale is None or shape[-2] % scale or shape[-1] % scale:
        return None
    try:
        return Profile.static(shape[-2] // scale, shape[-1] // scale, batch=shape[0])
    except InputError:
        return None


def _default_rebuild(profile: Profile | None) -> str:
    return " ".join(["svsr-export --weights CHECKPOINT --out BUILD", *(profile.cli_args() if profile else []), "--force"])


def _difference(a: Binding | None, b: Binding, labels: Mapping[int, str]) -> str:
    """How two bindings differ, in buffer labels."""
    if a is None:
        return f"the dry run made no launch {b[0]}"
    if a[0] != b[0] or a[2] != b[2]:
        return f"was {a[0]} with input shapes {a[2]} and is now {b[0]} with {b[2]}"
    tensors = GRAPHS[a[0]].inputs + GRAPHS[a[0]].outputs
    changed = [f"{t.name} to {labels.get(q, hex(q))} instead of {labels.get(p, hex(p))}" for t, p, q in zip(tensors, a[1], b[1]) if p != q]
    return "binds " + ", ".join(changed)


def _first_difference(a: Sequence[Binding], b: Sequence[Binding], labels: Mapping[int, str]) -> str:
    """Where two program traces first differ, in buffer labels."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"launch {i} ({x[0]}) {_difference(x, y, labels)}"
    return f"{len(a)} launches were captured, {len(b)} are asked for"


# -- opening a build folder ----------------------------------------------------------------------
def choose_precision(manifest: Mapping[str, Any], precision: PrecisionLike) -> Precision:
    """``precision`` resolved for TensorRT: ``auto`` takes, per graph, the fastest precision with a built engine."""
    engines = manifest.get("engines") or {}
    return Precision.parse(precision).resolve(lambda graph, prec: engine_key(graph, prec) in engines)


def hash_sidecar(path: Path) -> Path:
    """Where the verified sha256 of a plan file is cached: ``<plan>.sha256.json`` next to it."""
    return path.with_name(path.name + ".sha256.json")


def cached_sha256(path: str | Path) -> str:
    """The sha256 of ``path``, hashed only when the file changed since the cached hash was made.

    The cache is keyed by the file's name, size and modification time (ns); a missing, stale or
    unreadable sidecar means hashing the file again and rewriting it (when the folder is writable).
    """
    path = Path(path)
    st = path.stat()
    key = {"file": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    sidecar = hash_sidecar(path)
    try:
        cached = json.loads(sidecar.read_text())
        if isinstance(cached, dict) and all(cached.get(k) == v for k, v in key.items()) and isinstance(cached.get("sha256"), str):
            return cached["sha256"]
    except (OSError, ValueError):
        pass
    digest = sha256_file(path)
    tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({**key, "sha256": digest}))
        os.replace(tmp, sidecar)
    except OSError:  # a read-only build folder: hash again next time
        tmp.unlink(missing_ok=True)
    return digest


def lean_rebuild_command(command: str) -> str:
    """``command`` (an svsr-export line) with ``--lean``, which makes plans the lean runtime can run."""
    return command if command.split()[-1:] == ["--lean"] or " --lean " in f" {command} " else f"{command} --lean"


def check_lean_record(record: Mapping[str, Any], build_dir: str | Path, command: str, trt_version: str) -> None:
    """Refuse (one sentence, with the ``--lean`` rebuild command) a plan the lean runtime cannot run."""
    if record.get("version_compatible"):
        return
    raise ManifestError(
        f"only TensorRT's lean runtime ({trt_version}) is installed here, and it runs only version-compatible plans, "
        f"but the {record['graph']} {record['precision']} engine in {build_dir} is not one; "
        f"rebuild the engines with: {lean_rebuild_command(command)}"
    )


def open_trt_backend(
    build_dir: str | Path,
    manifest: Mapping[str, Any],
    precision: PrecisionLike = "auto",
    *,
    trt: Any = None,
    cuda: Any = None,
    cuda_graphs: bool = True,
    lean: bool | None = None,
) -> TrtBackend:
    """Load the build folder's engines for ``precision`` after checking their records against this machine.

    ``trt``: the TensorRT module (default: the full library, else the lean runtime, from
    svsr/device/tensorrt.py); ``lean``: whether ``trt`` is the lean runtime (default: what the
    import found; False for a module passed in).
    """
    build_dir = Path(build_dir)
    if trt is None:
        found = import_tensorrt_runtime("--backend trt")
        trt, lean = found.module, found.lean if lean is None else lean
    lean = bool(lean)
    if cuda is None:
        from svsr.device.cuda import CudaApi

        cuda = CudaApi(0)
    env = BuildEnvironment(str(trt.__version__), cuda.device_name(), cuda.compute_capability())
    engines = validate_engines(manifest.get("engines") or {}, str(build_dir / "manifest.json"))
    chosen = choose_precision(manifest, precision)
    plans: dict[str, bytes] = {}
    profiles: dict[str, Profile] = {}
    host_code = False
    for graph, prec in chosen.per_graph().items():
        record = engines.get(engine_key(graph, prec))
        if record is None:
            raise ManifestError(
                f"{build_dir} has no {prec} TensorRT engine for the {graph} graph; build it with: "
                f"{rebuild_command(manifest, build_dir, chosen)}{' --lean' if lean else ''} (plus --resolution WxH or --min/--max)."
            )
        profile = Profile.from_json(record["profile"])
        command = rebuild_command(manifest, build_dir, chosen, profile)
        if record.get("lean") or lean:
            command = lean_rebuild_command(command)
        if lean:
            check_lean_record(record, build_dir, command, env.tensorrt_version)
        onnx_sha = onnx_entry(manifest, graph, prec, build_dir)["sha256"]
        try:
            check_record(record, env, manifest, build_dir, onnx_sha256=onnx_sha, precisions=chosen)
        except ManifestError as exc:
            text = str(exc)
            if record.get("lean") or lean:  # the rebuild must make lean plans again
                text = lean_rebuild_command(text)
            raise ManifestError(text) from None
        path = build_dir / record["file"]
        if not path.exists():
            raise ManifestError(f"the {graph} {prec} engine {path} named in the manifest is missing; rebuild it with: {command}")
        if cached_sha256(path) != record["sha256"]:
            raise ManifestError(f"the {graph} {prec} engine {path} does not match its recorded sha256; rebuild it with: {command}")
        plans[graph] = path.read_bytes()
        profiles[graph] = profile
        host_code = host_code or bool(record.get("version_compatible"))

    def rebuild(profile: Profile | None) -> str:
        command = rebuild_command(manifest, build_dir, chosen, profile)
        return lean_rebuild_command(command) if lean or host_code else command

    return TrtBackend(plans, trt=trt, cuda=cuda, profiles=profiles, cuda_graphs=cuda_graphs, rebuild=rebuild, host_code_allowed=host_code)


def open_trt_sampler(build_dir: str | Path, manifest: Mapping[str, Any], precision: PrecisionLike = "auto") -> Sampler:
    """What ``svsr-run --backend trt`` runs: a Sampler over this build folder's TensorRT engines."""
    return Sampler(open_trt_backend(build_dir, manifest, precision), manifest)
