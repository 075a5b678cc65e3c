"""TensorRT backend on the sampler's fixed slot buffers: contexts bound once, one CUDA graph per frame-step program.

Torch-free; CUDA through svsr/device/cuda.py. The backend ties four small parts together:

* verified plans (svsr/runtime/sampling/trt_plans.py): records checked against this machine, plan
  files against their sha256 (cached);
* device buffers, streams and events (trt_device.py): uploads on a copy stream overlap compute;
* engines and their execution contexts, bound once on a shared scratch area (trt_engines.py);
* frame-step programs (trt_programs.py): dry run, eager run + capture, replay.

It serves the graphs of svsr/contract/graphs.py, one engine each (``warp`` and ``blend`` are
always float32 engines: the precision type says so). The engines of the graphs only some runs use
(``backend.ON_DEMAND_GRAPHS``: the flow graphs of flow scales 2 and 1, the statistics graphs of tiled
runs) are deserialised when ``prepare`` first sees a size that runs them, after checking that their
weights fit the free memory; the others when the backend opens. Tiles add two buffer moves the schedule asks
for, :meth:`TrtBackend.copy_region` (``cudaMemcpy2DAsync`` per leading plane) and
:meth:`TrtBackend.zero` (``cudaMemsetAsync``); both go on the compute stream like a graph launch,
so a frame-step program's capture records them with its launches.

``prepare(manifest, h, w, tiles, graphs)``, which the sampler calls before allocating the slots of a frame
size, checks the frame size (flow, warp, the statistics graphs) and the tile shape (denoise,
guide_decode, decode) against the profiles of the engines that size runs; loads those not loaded
yet; asks a temporary context per engine it runs for its
scratch need at this size; releases the buffers the new size does not reuse, and with them the
contexts and CUDA graphs bound to them; refuses, in one sentence, a size whose memory plan
(memory_plan.py) does not fit the free memory; sizes the scratch; and lets keys whose capture
failed be captured again. ``capture_report()`` says how many programs were captured and which keys
failed to capture (the doctor FAILs on those). ``close()`` releases everything once.

Plans are deserialised by the runtime svsr/device/tensorrt.py ``open_plan_runtime`` makes: the
lean runtime runs version-compatible (``--lean``) plans directly; the full library loads the lean
library with ``Runtime.load_runtime`` first, as trtexec does for plans built with
``--excludeLeanRuntime``. TRT_RUNTIME_API lists every TensorRT name used here; tests check each
exists in the real ``tensorrt_lean_bindings`` module and run this backend against a recording
test double.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from svsr.contract.errors import InputError, ManifestError
from svsr.contract.precision import PrecisionLike
from svsr.contract.profiles import Profile, format_size
from svsr.device.tensorrt import open_plan_runtime
from svsr.runtime.sampling.backend import ON_DEMAND_GRAPHS, Backend
from svsr.contract.graphs import FLOW_GRAPH_NAMES, TILED_GRAPHS
from svsr.contract.tiles import TileLayout
from svsr.runtime.sampling.frame_step import graphs_used
from svsr.runtime.sampling.memory_plan import GIB, DeviceMemoryError, MemoryPlan, check_fits, engine_input_shapes, plan_memory, slot_buffers
from svsr.runtime.sampling.trt_device import DeviceBuffer, DeviceMemory, enqueue_region_copy, region_copies, touched
from svsr.runtime.sampling.trt_engines import ContextPool, LoadedEngine, TensorRTError, load_engine
from svsr.runtime.sampling.trt_programs import BUFFER_OPS, COPY_OP, ZERO_OP, DryRun, Programs, ProgramBindingError, TracedRun

FLOW_SCALE_OF = {graph: scale for scale, graph in FLOW_GRAPH_NAMES.items() if scale != 4}

__all__ = ["TRT_RUNTIME_API", "ProgramBindingError", "TensorRTError", "TrtBackend", "open_trt_backend"]

# Every TensorRT name the backend uses, by owner (checked against tensorrt_lean_bindings in tests).
TRT_RUNTIME_API: dict[str, tuple[str, ...]] = {
    "tensorrt": ("__version__", "Logger", "Runtime", "ExecutionContextAllocationStrategy", "TensorIOMode", "DataType"),
    "Logger": ("WARNING",),
    "Runtime": ("deserialize_cuda_engine", "engine_host_code_allowed", "load_runtime"),
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


def _default_rebuild(profile: Profile | None) -> str:
    return " ".join(["svsr-export --weights CHECKPOINT --out BUILD", *(profile.cli_args() if profile else []), "--force"])


class TrtBackend(Backend):
    """Runs the graphs' TensorRT engines on one device (see the module docstring).

    ``plans``: per graph, the plan's bytes or an object whose ``read()`` gives them and whose
    ``size`` says how many (``trt_plans.PlanFile``); those of ``ON_DEMAND_GRAPHS`` load when a
    prepared size runs them, the rest now. ``version_compatible``: the plans were built with ``svsr-export --lean``; ``lean``: ``trt`` is
    TensorRT's lean runtime (else the full library, which loads the lean runtime for such plans).
    """

    name = "trt"

    def __init__(
        self,
        plans: Mapping[str, Any],
        *,
        trt: Any,
        cuda: Any,
        profiles: Mapping[str, Profile] | None = None,
        cuda_graphs: bool = True,
        rebuild: Callable[[Profile | None], str] | None = None,
        version_compatible: bool = False,
        lean: bool = False,
        device: int = 0,
        precision: Any = None,
    ) -> None:
        self.trt, self.cuda = trt, cuda
        self.precision = precision  # the engines' Precision (what the memory estimate of --tile auto plans with)
        self.device = f"cuda:{device}"
        self.profiles = dict(profiles or {})
        self.cuda_graphs = cuda_graphs
        self._rebuild = rebuild or _default_rebuild
        self._closed = False
        self._peak_bytes = 0
        self._program_run: DryRun | TracedRun | None = None  # the program whose enqueue() is running, if any
        self.last_plan: MemoryPlan | None = None

        self._logger = trt.Logger(trt.Logger.WARNING)
        loaded = open_plan_runtime(trt, self._logger, version_compatible=version_compatible, lean=lean)
        self._runtime, self._parent_runtime = loaded.runtime, loaded.parent  # the parent outlives nothing it made
        self._plans: dict[str, Any] = dict(plans)  # what is not deserialised yet
        self.engines: dict[str, LoadedEngine] = {}
        for graph in [g for g in plans if g not in ON_DEMAND_GRAPHS]:
            self._load(graph)
        self.memory = DeviceMemory(cuda)
        self.programs = Programs(cuda)
        self.contexts = ContextPool(
            trt, cuda, self.engines, self.profiles, self._rebuild,
            synchronize=self.memory.synchronize, before_drop=self.programs.forget_bound, note_peak=self._note_peak,
        )  # fmt: skip

    # -- what it holds ----------------------------------------------------------------------------
    @property
    def runtime(self) -> Any:
        """The TensorRT runtime that deserialised the plans (the loaded lean runtime for --lean plans on the full library)."""
        return self._runtime

    @property
    def stream(self) -> int:
        """The compute stream."""
        return self.memory.stream

    @property
    def copy_stream(self) -> int:
        """The stream of uploads, zero fills and downloads."""
        return self.memory.copy_stream

    @property
    def scratch_bytes(self) -> int:
        return self.contexts.scratch_bytes

    @property
    def scratch_ptr(self) -> int:
        return self.contexts.scratch_ptr

    def buffers(self) -> dict[str, DeviceBuffer]:
        """The buffers held now, by label."""
        return dict(self.memory.buffers)

    def capture_report(self) -> dict[str, Any]:
        """How the frame-step programs fared: ``{"cuda_graphs": on or off, "captured": how many programs replay
        as CUDA graphs, "captured_keys": their keys, "failed": the keys whose capture failed (they run
        eagerly), "reasons": why, per key}``.

        A failed capture is retried after the next frame-size change; the doctor reports FAIL while any is listed.
        """
        return self.programs.report(self.cuda_graphs)

    def peak_device_bytes(self) -> int:
        """Most device memory this backend held at once for scratch and buffers (engines, contexts and graphs excluded)."""
        return self._peak_bytes

    def measured_overhead_bytes(self) -> dict[str, Any]:
        """Device memory of execution contexts and CUDA graphs, measured with cudaMemGetInfo when each was made.

        ``per_context`` / ``per_program``: the mean over every one made so far (None before the
        first); ``contexts`` / ``programs``: how many are alive; ``context_bytes`` /
        ``program_bytes``: what those alive took.
        """
        return {
            "per_context": self.contexts.mean_bytes(),
            "per_program": self.programs.mean_bytes(),
            "contexts": len(self.contexts.contexts),
            "context_bytes": self.contexts.held_bytes(),
            "programs": len(self.programs.captured),
            "program_bytes": self.programs.held_bytes(),
        }

    @property
    def loaded_graphs(self) -> tuple[str, ...]:
        """The graphs whose engines are deserialised (on the device) now."""
        return tuple(self.engines)

    def memory_plan(self, manifest: Mapping[str, Any], height: int, width: int, tiles: TileLayout | None = None,
                    graphs: Sequence[str] | None = None) -> MemoryPlan:  # fmt: skip
        """The device memory padded LR frames of ``height`` x ``width`` need here (the engines of ``graphs`` are loaded already).

        ``tiles``: the layout the sampler runs (None or one tile: untiled); the tiled graphs' scratch
        is asked for at the tile shape, the flow, warp and statistics graphs at the frame size.
        ``graphs``: what this size runs (None: ``frame_step.graphs_used`` of the layout at flow scale 4).
        """
        used = graphs_used(tiles is not None and not tiles.single) if graphs is None else tuple(graphs)
        shapes = engine_input_shapes(manifest, height, width, tiles)
        scratch = self.contexts.scratch_need({g: s for g, s in shapes.items() if g in used and g in self.engines})  # first: its probe contexts are measured too
        return plan_memory(
            manifest,
            height,
            width,
            tiles=tiles,
            scratch_bytes=scratch,
            per_context_bytes=self.contexts.mean_bytes(),
            per_program_bytes=self.programs.mean_bytes(),
            cuda_graphs=self.cuda_graphs,
        )

    # -- a frame size -----------------------------------------------------------------------------
    def prepare(self, manifest: Mapping[str, Any], height: int, width: int, *, tiles: TileLayout | None = None,
                graphs: Sequence[str] | None = None) -> None:  # fmt: skip
        """Before the slot buffers of a frame size are allocated: profile check, engines, scratch size, memory check.

        ``tiles``: the layout the sampler will run (None or one tile: untiled); ``graphs``: the graphs
        it runs (None: ``frame_step.graphs_used`` of the layout at flow scale 4), whose engines are
        loaded here if they are not yet. Held buffers the new size does not reuse are released first
        (with the contexts and graphs bound to them); raises DeviceMemoryError when the size does not
        fit the free memory.
        """
        self._check_idle("prepare")
        tiled = tiles is not None and not tiles.single
        used = graphs_used(tiled) if graphs is None else tuple(graphs)
        for graph in used:
            profile = self.profiles.get(graph)
            if graph == "blend" or profile is None:  # blend: latent and pixel tiles alike, TensorRT's own refusal names the shape
                continue
            size = tiles.tile_shape if tiled and graph in TILED_GRAPHS else (height, width)
            built_tile = getattr(profile, "tile", None)
            if graph in TILED_GRAPHS and built_tile is not None:  # svsr-export --tile: that tile shape only
                if tuple(size) != tuple(built_tile):
                    what = f"tiles of {format_size(size)}" if tiled else f"whole frames of {format_size(size)}"
                    raise InputError(
                        f"{what} do not fit the {graph} engine, built for {built_tile[0]}x{built_tile[1]} tiles only "
                        f"(svsr-export --tile {built_tile[0]}x{built_tile[1]}); use --tile {built_tile[0]}x{built_tile[1]} (or auto)."
                    )
                continue
            if not profile.covers(1, *size):
                what = f"tiles of {format_size(size)}" if size != (height, width) else f"frames padded to {format_size(size)}"
                raise InputError(
                    f"{what} are outside the {graph} engine's profile {profile.describe()}; "
                    f"rebuild the engines for this size with: {self._rebuild(Profile.static(*size))}"
                )
        self._load_missing(used)
        plan = self.memory_plan(manifest, height, width, tiles, used)  # also probes the scratch need
        wanted = {b.label: (b.shape, b.dtype) for b in slot_buffers(manifest, height, width, tiles)}
        for label, buf in list(self.memory.buffers.items()):
            if wanted.get(label) != (buf.shape, buf.dtype):
                self._release(label)
        if not self.contexts.contexts and self.scratch_bytes not in (0, plan.scratch_bytes):
            self.contexts.set_scratch(0)  # sized again for this size below, once the plan is known to fit
        free, _total = self.cuda.mem_get_info()
        check_fits(plan, free + self.held_device_bytes())
        if plan.scratch_bytes > self.scratch_bytes:
            self.contexts.set_scratch(plan.scratch_bytes)
        self.programs.retry_failed()  # new contexts and buffers: a capture that failed may work now
        self.last_plan = plan

    def held_device_bytes(self) -> int:
        """Device memory this backend holds now that a plan for its current size counts again."""
        return self.memory.held_bytes() + self.scratch_bytes + self.contexts.held_bytes() + self.programs.held_bytes()

    # -- Backend ----------------------------------------------------------------------------------
    def allocate(self, label: str, shape: Sequence[int], dtype: str = "float32", host_io: bool = True) -> DeviceBuffer:
        """A zero-filled device buffer; ``host_io=False`` (device-only: never uploaded or downloaded) gets no pinned staging."""
        self._check_idle("allocate")
        shape = tuple(int(s) for s in shape)
        buf = self.memory.find(label, shape, dtype, host_io)
        if buf is None:
            if label in self.memory.buffers:
                self._release(label)
            buf = self.memory.make(label, shape, dtype, host_io)
            self._note_peak()
        self.memory.zero(buf)
        return buf

    def upload(self, buffer: DeviceBuffer, array: np.ndarray) -> None:
        self._check_idle("upload")
        self.memory.upload(buffer, array)

    def download(self, buffer: DeviceBuffer) -> np.ndarray:
        self._check_idle("download")
        return self.memory.download(buffer)

    def run(self, graph: str, inputs: Mapping[str, DeviceBuffer], outputs: Mapping[str, DeviceBuffer]) -> None:
        self._check_open()
        e = self.engines.get(graph) or (self._load(graph) if graph in self._plans else None)  # a run without prepare: loaded now
        if e is None:
            raise ValueError(f"there is no {graph!r} engine; this backend has {sorted(self.engines)}.")
        bound = {**inputs, **outputs}
        if set(bound) != set(e.names):
            raise ValueError(f"run({graph!r}) binds {sorted(bound)}; the engine needs {sorted(e.names)}.")
        buffers = tuple(bound[n] for n in e.names)
        for buf in buffers:
            buf.check_live()
        binding = e.binding(buffers)
        program = self._program_run
        if program is not None:  # inside launch(): recorded (dry run) or checked against the dry run, then enqueued
            program.accept(binding, buffers, self.memory.labels)
            if not program.executes:
                return
            context = self.contexts.get(binding)
            if context is None:
                raise ProgramBindingError(f"the {program.key} program needs a new {graph} context while it runs; contexts are made before.")
            self._execute(graph, context.context)
            return
        context = self.contexts.get(binding) or self.contexts.make(e, buffers)
        self.memory.wait_uploads(buffers)
        self._execute(graph, context.context)
        self.memory.mark_used(buffers)

    def copy_region(
        self,
        source: DeviceBuffer,
        target: DeviceBuffer,
        source_origin: tuple[int, int],
        target_origin: tuple[int, int],
        size: tuple[int, int],
    ) -> None:
        """A window of the last two dims, device to device on the compute stream (captured inside a program)."""
        self._check_open()
        for buf in (source, target):
            buf.check_live()
        copies = region_copies(source, target, tuple(source_origin), tuple(target_origin), tuple(size))  # type: ignore[arg-type]
        window = (tuple(source_origin), tuple(target_origin), tuple(size))
        self._buffer_op((COPY_OP, (source.ptr, target.ptr), window), (source, target), lambda: enqueue_region_copy(self.cuda, copies, self.stream))

    def zero(self, buffer: DeviceBuffer) -> None:
        """Zero-fill on the compute stream, ordered like a graph launch (captured inside a program)."""
        self._check_open()
        buffer.check_live()
        self._buffer_op((ZERO_OP, (buffer.ptr,), ()), (buffer,), lambda: self.cuda.memset_async(buffer.ptr, 0, buffer.nbytes, self.stream))

    def launch(self, key: str, enqueue: Callable[[], None]) -> None:
        """One frame-step program: captured into a CUDA graph on first use of ``key``, replayed afterwards."""
        self._check_idle("launch")
        dry = DryRun(key)
        self._in_program(dry, enqueue)
        trace = dry.launches
        self.contexts.make_all([t for t in trace if t[0][0] not in BUFFER_OPS])  # may drop graphs when the scratch must grow
        captured = self.programs.captured.get(key)
        if captured is not None:
            self.programs.check_replay(captured, trace, self.memory.labels())
        buffers = touched([b for _, b in trace])
        self.memory.wait_uploads(buffers)
        if captured is not None:
            self.cuda.graph_launch(captured.graph_exec, self.stream)
        else:
            self._in_program(TracedRun(key, trace), enqueue)
            if self.cuda_graphs and key not in self.programs.failed:
                self.programs.capture(key, self.stream, lambda: self._in_program(TracedRun(key, trace), enqueue), trace)
        self.memory.mark_used(buffers)

    def synchronize(self) -> None:
        self._check_open()
        self.memory.synchronize()

    def close(self) -> None:
        """Release everything this backend holds; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []

        def attempt(call: Callable[..., Any], *args: Any) -> None:
            try:
                call(*args)
            except Exception as exc:  # noqa: BLE001 - release the rest, then report the first failure
                errors.append(exc)

        attempt(self.memory.synchronize)
        self.programs.close(attempt)
        self.contexts.clear()  # contexts before engines before the runtime, and before the memory they point at
        self.engines.clear()
        self._runtime = self._parent_runtime = None
        if self.contexts.scratch_ptr:
            attempt(self.cuda.free, self.contexts.scratch_ptr)
            self.contexts.scratch_ptr, self.contexts.scratch_bytes = 0, 0
        self.memory.close(attempt)
        if errors:
            raise errors[0]

    # -- helpers ----------------------------------------------------------------------------------
    def _load(self, graph: str) -> LoadedEngine:
        """Deserialise ``graph``'s plan (read now where it is a plan file) and check its tensors."""
        plan = self._plans.pop(graph)
        data = plan if isinstance(plan, (bytes, bytearray, memoryview)) else plan.read()
        engine = self.engines[graph] = load_engine(self.trt, self._runtime, graph, bytes(data), self._rebuild(self.profiles.get(graph)))
        return engine

    def _load_missing(self, graphs: Sequence[str]) -> None:
        """The engines of ``graphs`` not loaded yet, after checking that their weights fit the free memory (one sentence otherwise)."""
        missing = [g for g in graphs if g not in self.engines]
        absent = [g for g in missing if g not in self._plans]
        if absent:
            flow = FLOW_SCALE_OF.get(absent[0])
            why = f" (its frames were too small for RAFT at --flow-scale {flow})" if flow else ""
            fix = "use --flow-scale 4, or rebuild the engines for larger frames with" if flow else "rebuild the engines with"
            raise ManifestError(
                f"this build has no TensorRT engine for the {absent[0]} graph{why}, which this run needs; {fix}: "
                f"{self._rebuild(self.profiles.get(absent[0]))}"
            )
        if not missing:
            return
        need = sum(len(p) if isinstance(p, (bytes, bytearray, memoryview)) else int(p.size) for p in (self._plans[g] for g in missing))
        free, _total = self.cuda.mem_get_info()
        if need > free:
            raise DeviceMemoryError(
                f"the {', '.join(missing)} engine{'s' if len(missing) > 1 else ''} this run needs take {need / GIB:.2f} GiB of GPU memory "
                f"but only {free / GIB:.2f} GiB is free; free GPU memory (other processes) or use a machine with more memory."
            )
        for graph in missing:
            self._load(graph)

    def _execute(self, graph: str, context: Any) -> None:
        if not context.execute_async_v3(self.stream):
            raise TensorRTError(f"TensorRT could not enqueue the {graph} engine (see its message above).")

    def _buffer_op(self, binding: Any, buffers: tuple[DeviceBuffer, ...], enqueue: Callable[[], None]) -> None:
        """A buffer move: traced (and enqueued unless dry) inside a program, else ordered against uploads like a run."""
        program = self._program_run
        if program is not None:
            program.accept(binding, buffers, self.memory.labels)
            if program.executes:
                enqueue()
            return
        self.memory.wait_uploads(buffers)
        enqueue()
        self.memory.mark_used(buffers)

    def _in_program(self, program: DryRun | TracedRun, enqueue: Callable[[], None]) -> None:
        self._program_run = program
        try:
            enqueue()
            program.finish()
        finally:
            self._program_run = None

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the TensorRT backend is closed; open a new one.")

    def _check_idle(self, what: str) -> None:
        self._check_open()
        if self._program_run is not None:
            raise RuntimeError(f"{what} inside the {self._program_run.key} frame-step program: a program only launches graphs on fixed buffers.")

    def _release(self, label: str) -> None:
        """Free a held buffer, after dropping the contexts and graphs bound to it."""
        buf = self.memory.buffers[label]
        self.contexts.drop_bound_to(buf)
        self.memory.synchronize()
        self.programs.forget_touching(buf.ptr)  # a program that only copies into it goes too
        self.memory.release(label)

    def _note_peak(self) -> None:
        self._peak_bytes = max(self._peak_bytes, self.scratch_bytes + self.memory.total_bytes())


# -- opening a build folder ----------------------------------------------------------------------
def open_trt_backend(
    build_dir: str | Path,
    manifest: Mapping[str, Any],
    precision: PrecisionLike = "auto",
    *,
    trt: Any = None,
    cuda: Any = None,
    cuda_graphs: bool = True,
    lean: bool | None = None,
    device: int = 0,
) -> TrtBackend:
    """Load the build folder's engines for ``precision`` after checking their records against this machine.

    ``trt``: the TensorRT module (default: the full library, else the lean runtime, from
    svsr/device/tensorrt.py); ``lean``: whether ``trt`` is the lean runtime (default: what the
    import found; False for a module passed in); ``cuda``: a CudaApi (default: device ``device``).
    """
    from svsr.device.machine import machine_env
    from svsr.device.tensorrt import import_tensorrt_runtime
    from svsr.runtime.sampling.trt_plans import verify_plans

    if trt is None:
        found = import_tensorrt_runtime("--backend trt")
        trt, lean = found.module, found.lean if lean is None else lean
    lean = bool(lean)
    if cuda is None:
        from svsr.device.cuda import CudaApi

        cuda = CudaApi(device)
    env = machine_env(device, trt=trt, lean=lean, cuda=cuda)
    verified = verify_plans(build_dir, manifest, precision, env)
    return TrtBackend(
        verified.plans,
        trt=trt,
        cuda=cuda,
        profiles=verified.profiles,
        cuda_graphs=cuda_graphs,
        rebuild=lambda profile: verified.rebuild(manifest, build_dir, profile, lean=lean),
        version_compatible=verified.version_compatible,
        lean=lean,
        device=device,
        precision=verified.precision,
    )
