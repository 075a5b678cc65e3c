"""TensorRT backend: engines with user-managed scratch, clip state on the device, one CUDA graph per sweep.

How it runs a clip (torch-free; CUDA through svsr/contract/cuda.py):

* Engines are deserialised once; each gets an execution context created with
  ``ExecutionContextAllocationStrategy.USER_MANAGED`` and pointed (``set_device_memory``) at ONE
  scratch area sized to the largest ``get_device_memory_size_for_profile_v2(0)``: the graphs run
  one after another on one stream, never concurrently.
* ``allocate`` hands out device buffers by label; the next clip asking for the same label, shape
  and dtype gets the same memory back (zero-filled again), so chunk after chunk of a video binds
  the same addresses and the captured sweeps stay valid.
* ``upload`` copies into a pinned staging slot (two per buffer, each guarded by an event) and
  enqueues an async copy on the compute stream: no host synchronisation inside a step; the host
  waits only when a slot's previous copy, two uploads back, has not run yet.
* ``launch_sweep(key, enqueue)``: the first call for a key runs ``enqueue()`` eagerly (that is this
  step's real work, and lets TensorRT settle its shape-dependent state, as it needs before a
  capture), then captures ``enqueue()`` into a CUDA graph and instantiates it. Later calls replay
  that graph. Before every replay a dry run of ``enqueue()`` (nothing launched) checks that the
  sweep binds exactly the buffers it bound when captured; within a clip a difference is an error,
  for a new clip it means recapture.
* ``download`` copies on a second stream after an event from the compute stream, through pinned
  memory, then waits for that copy only.

TRT_RUNTIME_API lists every TensorRT name used here; tests check each exists in the real
``tensorrt_lean_bindings`` module and run this backend against a recording test double.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from svsr.contract.profiles import Profile, format_size
from svsr.contract.engine_records import (
    BuildEnvironment,
    check_record,
    engine_key,
    onnx_entry,
    rebuild_command,
    validate_engines,
)
from svsr.contract.errors import InputError, ManifestError, MissingDependencyError
from svsr.contract.graphs import GRAPH_NAMES, GRAPHS
from svsr.contract.manifest import sha256_file
from svsr.contract.precision import Precision, PrecisionLike
from svsr.contract.tensorrt import import_tensorrt
from svsr.contract.cuda import CudaError
from svsr.runtime.memory_plan import aligned, check_fits, clip_buffers, plan_memory
from svsr.runtime.sampler import ClipBuffers, Sampler

# Every TensorRT name this module uses, by owner (checked against tensorrt_lean_bindings in tests).
TRT_RUNTIME_API: dict[str, tuple[str, ...]] = {
    "tensorrt": ("__version__", "Logger", "Runtime", "ExecutionContextAllocationStrategy", "TensorIOMode", "DataType"),
    "Logger": ("WARNING",),
    "Runtime": ("deserialize_cuda_engine",),
    "ExecutionContextAllocationStrategy": ("USER_MANAGED",),
    "TensorIOMode": ("INPUT", "OUTPUT"),
    "DataType": ("FLOAT", "HALF", "BF16", "INT32", "INT64"),
    "ICudaEngine": (
        "num_io_tensors",
        "get_tensor_name",
        "get_tensor_mode",
        "get_tensor_dtype",
        "get_device_memory_size_for_profile_v2",
        "create_execution_context",
    ),
    "IExecutionContext": ("set_device_memory", "set_input_shape", "get_tensor_shape", "set_tensor_address", "execute_async_v3"),
}
_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32", "INT64": "int64"}
STAGING_SLOTS = 2



class SweepAddressError(RuntimeError):
    """A captured sweep would replay with other buffers than it was captured with (a schedule bug)."""


class TensorRTError(RuntimeError):
    """A TensorRT call reported failure."""


@dataclass(eq=False)
class DeviceBuffer:
    """A device allocation of one tensor (the backend's Buffer)."""

    label: str
    shape: tuple[int, ...]
    dtype: str
    ptr: int
    nbytes: int


@dataclass(eq=False)
class _PinnedSlot:
    ptr: int
    view: np.ndarray
    event: int
    pending: bool = False


@dataclass(eq=False)
class _Staging:
    nbytes: int
    slots: list[_PinnedSlot]
    next: int = 0


@dataclass(eq=False)
class _Sweep:
    graph: int
    graph_exec: int
    trace: list[tuple[Any, ...]]
    clip: int


_EAGER = object()  # a sweep that could not be captured: it runs eagerly from then on


@dataclass(eq=False)
class _Engine:
    name: str
    engine: Any
    context: Any
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    scratch_bytes: int
    shapes: tuple[tuple[int, ...], ...] | None = None
    bound: dict[str, int] = field(default_factory=dict)


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
        verify_replay: bool = True,
        rebuild: Callable[[Profile | None], str] | None = None,
    ) -> None:
        self.trt, self.cuda = trt, cuda
        self.profiles = dict(profiles or {})
        self.cuda_graphs = cuda_graphs
        self.verify_replay = verify_replay
        self._rebuild = rebuild or _default_rebuild
        self._buffers: dict[str, DeviceBuffer] = {}
        self._staging: dict[str, _Staging] = {}
        self._download: dict[str, _Staging] = {}
        self._sweeps: dict[str, Any] = {}
        self._mode = "eager"  # eager | capture | dry
        self._trace: list[tuple[Any, ...]] | None = None
        self._clip = 0
        self._launched = False
        self._closed = False
        self.scratch_ptr = 0
        self._peak_bytes = 0

        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engines: dict[str, _Engine] = {}
        for graph, plan in plans.items():
            engine = self._runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise ManifestError(
                    f"TensorRT could not load the {graph} engine (see its message above); rebuild it with: {self._rebuild(self.profiles.get(graph))}"
                )
            inputs, outputs = self._check_io(graph, engine)
            context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
            if context is None:
                raise TensorRTError(f"TensorRT could not create an execution context for the {graph} engine.")
            scratch = int(engine.get_device_memory_size_for_profile_v2(0))
            self.engines[graph] = _Engine(graph, engine, context, inputs, outputs, scratch)

        self.scratch_bytes = aligned(max((e.scratch_bytes for e in self.engines.values()), default=0), 256)
        self.stream = cuda.stream_create()
        self.copy_stream = cuda.stream_create()
        self._ready = cuda.event_create()
        self._copied = cuda.event_create()
        if self.scratch_bytes:
            self.scratch_ptr = cuda.malloc(self.scratch_bytes)
        for e in self.engines.values():  # one scratch area for all: they never run concurrently
            e.context.set_device_memory(self.scratch_ptr, self.scratch_bytes)

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

    def peak_device_bytes(self) -> int:
        """Most device memory this backend held at once for scratch and clip buffers (engines excluded)."""
        return max(self._peak_bytes, self.scratch_bytes)

    # -- Backend protocol -----------------------------------------------------------------------
    def allocate(self, label: str, shape: Sequence[int], dtype: str = "float32") -> DeviceBuffer:
        if self._launched:  # the first allocation after launches starts a new clip
            self._clip += 1
            self._launched = False
        shape = tuple(int(s) for s in shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        buf = self._buffers.get(label)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            if buf is not None:
                self._release(label)
            buf = DeviceBuffer(label, shape, dtype, self.cuda.malloc(nbytes), nbytes)
            self._buffers[label] = buf
            self._peak_bytes = max(self._peak_bytes, self.scratch_bytes + sum(b.nbytes for b in self._buffers.values()))
        self.cuda.memset_async(buf.ptr, 0, nbytes, self.stream)
        return buf

    def upload(self, buffer: DeviceBuffer, array: np.ndarray) -> None:
        if self._mode != "eager":
            raise RuntimeError("upload inside a sweep: per-step uploads must come before launch_sweep.")
        data = np.ascontiguousarray(array, dtype=buffer.dtype)
        if data.nbytes != buffer.nbytes:
            raise ValueError(f"cannot upload an array of shape {data.shape} into buffer {buffer.label} of shape {buffer.shape}.")
        slot = self._slot(self._staging, buffer, STAGING_SLOTS)
        if slot.pending:  # that slot's copy (two uploads back) must have read it before we overwrite it
            self.cuda.event_synchronize(slot.event)
        slot.view[: buffer.nbytes] = data.reshape(-1).view(np.uint8)
        self.cuda.memcpy_htod_async(buffer.ptr, slot.ptr, buffer.nbytes, self.stream)
        self.cuda.event_record(slot.event, self.stream)
        slot.pending = True

    def download(self, buffer: DeviceBuffer) -> np.ndarray:
        if self._mode != "eager":
            raise RuntimeError("download inside a sweep is not allowed.")
        slot = self._slot(self._download, buffer, 1)
        self.cuda.event_record(self._ready, self.stream)
        self.cuda.stream_wait_event(self.copy_stream, self._ready)
        self.cuda.memcpy_dtoh_async(slot.ptr, buffer.ptr, buffer.nbytes, self.copy_stream)
        self.cuda.event_record(self._copied, self.copy_stream)
        self.cuda.stream_wait_event(self.stream, self._copied)  # later writes to the buffer wait for the copy
        self.cuda.event_synchronize(self._copied)
        return slot.view[: buffer.nbytes].view(buffer.dtype).reshape(buffer.shape).copy()

    def run(self, graph: str, inputs: Mapping[str, DeviceBuffer], outputs: Mapping[str, DeviceBuffer]) -> None:
        e = self.engines[graph]
        bound = {**inputs, **outputs}
        if set(bound) != set(e.inputs) | set(e.outputs):
            raise ValueError(f"run({graph!r}) binds {sorted(bound)}; the engine needs {sorted(e.inputs + e.outputs)}.")
        shapes = tuple(bound[n].shape for n in e.inputs)
        if shapes != e.shapes:
            if self._mode == "capture":
                raise SweepAddressError(f"the {graph} input shapes changed inside a captured sweep.")
            self._set_shapes(e, bound, shapes)
        names = e.inputs + e.outputs
        entry = (graph, shapes, tuple(bound[n].ptr for n in names), names)
        if self._mode == "dry":
            self._trace.append(entry)  # type: ignore[union-attr]
            return
        for name in names:
            ptr = bound[name].ptr
            if e.bound.get(name) != ptr:
                if not e.context.set_tensor_address(name, ptr):
                    raise TensorRTError(f"TensorRT refused the address of {graph}.{name}.")
                e.bound[name] = ptr
        if not e.context.execute_async_v3(self.stream):
            raise TensorRTError(f"TensorRT could not enqueue the {graph} engine (see its message above).")
        if self._trace is not None:
            self._trace.append(entry)
        self._launched = True

    def _set_shapes(self, e: _Engine, bound: Mapping[str, DeviceBuffer], shapes: tuple[tuple[int, ...], ...]) -> None:
        for spec in GRAPHS[e.name].inputs:
            name = spec.name
            if not any(isinstance(d, str) for d in spec.shape):  # fixed in the graph: nothing to set
                if bound[name].shape != spec.shape:
                    raise ValueError(f"{e.name}.{name} has fixed shape {spec.shape}, not {bound[name].shape}.")
                continue
            if not e.context.set_input_shape(name, bound[name].shape):
                profile = self.profiles.get(e.name)
                where = f" (the engine's profile is {profile.describe()})" if profile else ""
                raise InputError(
                    f"the {e.name} engine does not accept {name} of shape {bound[name].shape}{where}; "
                    f"rebuild the engines for this size with: {self._rebuild(_lr_profile(e.name, name, bound[name].shape))}"
                )
        for name in e.outputs:
            got = tuple(e.context.get_tensor_shape(name))
            if got != bound[name].shape:
                raise ValueError(f"the {e.name} engine makes {name} of shape {got}, but its buffer has shape {bound[name].shape}.")
        e.shapes = shapes

    def launch_sweep(self, key: str, enqueue: Callable[[], None]) -> None:
        """Capture ``enqueue()`` into a CUDA graph on first use of ``key``; replay it afterwards."""
        if self._mode != "eager":
            raise RuntimeError("launch_sweep cannot be nested.")
        self._launched = True
        sweep = self._sweeps.get(key)
        if not self.cuda_graphs or sweep is _EAGER:
            enqueue()
            return
        if sweep is not None:
            if not self.verify_replay and sweep.clip == self._clip:
                self.cuda.graph_launch(sweep.graph_exec, self.stream)
                return
            trace = self._traced(enqueue, "dry")
            if trace == sweep.trace:
                sweep.clip = self._clip
                self.cuda.graph_launch(sweep.graph_exec, self.stream)
                return
            if sweep.clip == self._clip:
                raise SweepAddressError(
                    f"the {key} sweep binds other buffers than when it was captured ({_first_difference(sweep.trace, trace, self._labels())}); "
                    "within a clip each sweep direction must reuse the same buffers."
                )
            self._destroy_sweep(sweep)  # a new clip with other buffers or frames: capture anew
            del self._sweeps[key]
        trace = self._traced(enqueue, "eager")
        self._sweeps[key] = self._capture(key, enqueue, trace)

    def _traced(self, enqueue: Callable[[], None], mode: str) -> list[tuple[Any, ...]]:
        self._mode, self._trace = mode, []
        try:
            enqueue()
            return self._trace
        finally:
            self._mode, self._trace = "eager", None

    def _capture(self, key: str, enqueue: Callable[[], None], trace: list[tuple[Any, ...]]) -> Any:
        cuda = self.cuda
        try:
            cuda.begin_capture(self.stream)
        except CudaError as exc:
            return self._capture_failed(key, exc)
        graph = None
        try:
            captured = self._traced(enqueue, "capture")
        except (CudaError, TensorRTError) as exc:
            try:
                cuda.end_capture(self.stream)
            except CudaError:
                pass
            return self._capture_failed(key, exc)
        except BaseException:
            try:
                cuda.end_capture(self.stream)
            except CudaError:
                pass
            raise
        try:
            graph = cuda.end_capture(self.stream)
            graph_exec = cuda.graph_instantiate(graph)
        except CudaError as exc:
            if graph is not None:
                cuda.graph_destroy(graph)
            return self._capture_failed(key, exc)
        if captured != trace:
            cuda.graph_exec_destroy(graph_exec)
            cuda.graph_destroy(graph)
            raise SweepAddressError(
                f"the {key} sweep bound other buffers while captured than when run ({_first_difference(trace, captured, self._labels())})."
            )
        return _Sweep(graph, graph_exec, captured, self._clip)

    def _capture_failed(self, key: str, exc: Exception) -> Any:
        # This step's work was already done by the eager run, so falling back loses nothing but speed.
        warnings.warn(f"svsr: the {key} sweep could not be captured as a CUDA graph ({exc}); it runs without one.", RuntimeWarning, stacklevel=3)
        return _EAGER

    def synchronize(self) -> None:
        self.cuda.stream_synchronize(self.stream)
        self.cuda.stream_synchronize(self.copy_stream)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        cuda = self.cuda
        self.synchronize()
        for sweep in self._sweeps.values():
            if sweep is not _EAGER:
                self._destroy_sweep(sweep)
        self._sweeps.clear()
        for e in self.engines.values():  # contexts before engines before the scratch they use
            e.context = None
        self.engines.clear()
        self._runtime = None
        if self.scratch_ptr:
            cuda.free(self.scratch_ptr)
            self.scratch_ptr = 0
        for label in list(self._buffers):
            self._release(label, synchronize=False)
        for event in (self._ready, self._copied):
            cuda.event_destroy(event)
        for stream in (self.stream, self.copy_stream):
            cuda.stream_destroy(stream)

    # -- clip preparation (memory plan) ---------------------------------------------------------
    def prepare_clip(self, manifest: Mapping[str, Any], num_frames: int, height: int, width: int) -> None:
        """Before a clip's buffers are allocated: check the size against the engines' profiles and the free memory.

        Held buffers the clip will not reuse are released first; raises DeviceMemoryError with the
        largest chunk that fits when the clip does not.
        """
        for graph, profile in self.profiles.items():
            if not profile.covers(1, height, width):
                raise InputError(
                    f"frames padded to {format_size((height, width))} are outside the {graph} engine's profile "
                    f"{profile.describe()}; rebuild the engines for this size with: {self._rebuild(Profile.static(height, width))}"
                )
        plan = plan_memory(manifest, num_frames, height, width, scratch_bytes=self.scratch_bytes)
        free, _total = self.cuda.mem_get_info()
        held = sum(aligned(b.nbytes) for b in self._buffers.values())
        check_fits(plan, free + held + self.scratch_bytes)  # cannot fit even reusing every held buffer
        wanted = {b.label: (b.shape, b.dtype) for b in clip_buffers(manifest, num_frames, height, width)}
        reused = 0
        for label, buf in list(self._buffers.items()):
            if wanted.get(label) == (buf.shape, buf.dtype):
                reused += aligned(buf.nbytes)
            else:
                self._release(label)
        if reused != held:
            free, _total = self.cuda.mem_get_info()
        check_fits(plan, free + reused + self.scratch_bytes)

    # -- helpers ----------------------------------------------------------------------------------
    def _slot(self, table: dict[str, _Staging], buffer: DeviceBuffer, count: int) -> _PinnedSlot:
        staging = table.get(buffer.label)
        if staging is None or staging.nbytes < buffer.nbytes:
            if staging is not None:
                self._free_staging(staging)
            slots = []
            for _ in range(count):
                ptr = self.cuda.malloc_host(buffer.nbytes)
                slots.append(_PinnedSlot(ptr, self.cuda.host_view(ptr, buffer.nbytes), self.cuda.event_create()))
            staging = table[buffer.label] = _Staging(buffer.nbytes, slots)
        slot = staging.slots[staging.next]
        staging.next = (staging.next + 1) % len(staging.slots)
        return slot

    def _free_staging(self, staging: _Staging) -> None:
        for slot in staging.slots:
            if slot.pending:
                self.cuda.event_synchronize(slot.event)
            self.cuda.event_destroy(slot.event)
            self.cuda.free_host(slot.ptr)

    def _release(self, label: str, synchronize: bool = True) -> None:
        """Free a held buffer (after the work that may use it) and its staging."""
        if synchronize:
            self.synchronize()
        buf = self._buffers.pop(label)
        for table in (self._staging, self._download):
            staging = table.pop(label, None)
            if staging is not None:
                self._free_staging(staging)
        for e in self.engines.values():  # never leave a context pointing at freed memory
            e.bound = {n: p for n, p in e.bound.items() if p != buf.ptr}
        self.cuda.free(buf.ptr)

    def _labels(self) -> dict[int, str]:
        return {b.ptr: b.label for b in self._buffers.values()}

    def _destroy_sweep(self, sweep: _Sweep) -> None:
        self.cuda.graph_exec_destroy(sweep.graph_exec)
        self.cuda.graph_destroy(sweep.graph)


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


def _first_difference(a: Sequence[Any], b: Sequence[Any], labels: Mapping[int, str]) -> str:
    """Where two sweep traces first differ, in buffer labels."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x == y:
            continue
        if x[0] != y[0] or x[1] != y[1]:
            return f"launch {i} was {x[0]} with input shapes {x[1]} and is now {y[0]} with {y[1]}"
        changed = [
            f"{name} to {labels.get(q, hex(q))} instead of {labels.get(p, hex(p))}"
            for name, p, q in zip(x[3], x[2], y[2])
            if p != q
        ]
        return f"launch {i} ({x[0]}) binds " + ", ".join(changed)
    return f"{len(a)} launches were captured, {len(b)} are asked for"


class TrtSampler(Sampler):
    """The Sampler, with the memory plan and profile check run before a clip's buffers are allocated."""

    backend: TrtBackend

    def allocate(self, num_frames: int, height: int, width: int) -> ClipBuffers:
        self.backend.prepare_clip(self.manifest, num_frames, height, width)
        return super().allocate(num_frames, height, width)


# -- opening a build folder ----------------------------------------------------------------------
def choose_precision(manifest: Mapping[str, Any], precision: PrecisionLike) -> Precision:
    """``precision`` resolved for TensorRT: ``auto`` takes, per graph, the fastest precision with a built engine."""
    engines = manifest.get("engines") or {}
    return Precision.parse(precision).resolve(lambda graph, prec: engine_key(graph, prec) in engines)


def open_trt_backend(
    build_dir: str | Path,
    manifest: Mapping[str, Any],
    precision: PrecisionLike = "auto",
    *,
    trt: Any = None,
    cuda: Any = None,
    cuda_graphs: bool = True,
) -> TrtBackend:
    """Load the build folder's engines for ``precision`` after checking their records against this machine."""
    build_dir = Path(build_dir)
    trt = trt if trt is not None else import_tensorrt("--backend trt")
    if cuda is None:
        from svsr.contract.cuda import CudaApi

        cuda = CudaApi(0)
    env = BuildEnvironment(str(trt.__version__), cuda.device_name(), cuda.compute_capability())
    engines = validate_engines(manifest.get("engines") or {}, str(build_dir / "manifest.json"))
    chosen = choose_precision(manifest, precision)
    plans: dict[str, bytes] = {}
    profiles: dict[str, Profile] = {}
    for graph, prec in chosen.per_graph().items():
        record = engines.get(engine_key(graph, prec))
        if record is None:
            raise ManifestError(
                f"{build_dir} has no {prec} TensorRT engine for the {graph} graph; build it with: "
                f"{rebuild_command(manifest, build_dir, chosen)} (plus --resolution WxH or --min/--max)."
            )
        onnx_sha = onnx_entry(manifest, graph, prec, build_dir)["sha256"]
        check_record(record, env, manifest, build_dir, onnx_sha256=onnx_sha, precisions=chosen)
        profile = Profile.from_json(record["profile"])
        command = rebuild_command(manifest, build_dir, chosen, profile)
        path = build_dir / record["file"]
        if not path.exists():
            raise ManifestError(f"the {graph} {prec} engine {path} named in the manifest is missing; rebuild it with: {command}")
        if sha256_file(path) != record["sha256"]:
            raise ManifestError(f"the {graph} {prec} engine {path} does not match its recorded sha256; rebuild it with: {command}")
        plans[graph] = path.read_bytes()
        profiles[graph] = profile
    def rebuild(profile: Profile | None) -> str:
        return rebuild_command(manifest, build_dir, chosen, profile)

    return TrtBackend(plans, trt=trt, cuda=cuda, profiles=profiles, cuda_graphs=cuda_graphs, rebuild=rebuild)


def open_trt_sampler(build_dir: str | Path, manifest: Mapping[str, Any], precision: PrecisionLike = "auto") -> Sampler:
    """What ``svsr-run --backend trt`` runs: a Sampler over this build folder's TensorRT engines."""
    return TrtSampler(open_trt_backend(build_dir, manifest, precision), manifest)
