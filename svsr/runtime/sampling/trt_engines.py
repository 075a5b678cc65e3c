"""Deserialised engines and their execution contexts, bound once, on one shared scratch area.

Execution contexts are made lazily, one per distinct binding (a graph and the buffers of all its
tensors): ``create_execution_context(USER_MANAGED)``, the input shapes,
``update_device_memory_size_for_shapes()`` (the scratch the context needs for those shapes),
``set_device_memory`` and every ``set_tensor_address``. After that a context only ever gets
``execute_async_v3``: it is never re-pointed. All contexts share one scratch area (they run one
after another on one stream); when it must grow, every context is dropped first and made again on
next use. The device memory of each context is measured (cudaMemGetInfo around making it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from svsr.contract.errors import InputError, ManifestError
from svsr.contract.graphs import GRAPHS
from svsr.contract.profiles import Profile
from svsr.runtime.sampling.memory_plan import aligned
from svsr.runtime.sampling.trt_device import DeviceBuffer

_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32", "INT64": "int64"}
SCRATCH_ALIGNMENT = 256  # set_device_memory wants 256-byte aligned memory; cudaMalloc gives that

Binding = tuple[str, tuple[int, ...], tuple[tuple[int, ...], ...]]  # (graph, pointers of all tensors, input shapes)
Rebuild = Callable[[Profile | None], str]


class TensorRTError(RuntimeError):
    """A TensorRT call reported failure."""


@dataclass(eq=False)
class LoadedEngine:
    name: str
    engine: Any
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return self.inputs + self.outputs

    def binding(self, buffers: tuple[DeviceBuffer, ...]) -> Binding:
        return (self.name, tuple(b.ptr for b in buffers), tuple(b.shape for b in buffers[: len(self.inputs)]))


@dataclass(eq=False)
class BoundContext:
    binding: Binding
    context: Any
    buffers: tuple[DeviceBuffer, ...]  # in the engine's tensor order
    overhead: int  # measured device bytes of making it


def load_engine(trt: Any, runtime: Any, graph: str, plan: bytes, rebuild: str) -> LoadedEngine:
    """Deserialise one plan and check its tensors' names, directions and dtypes against svsr/contract/graphs.py."""
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise ManifestError(f"TensorRT could not load the {graph} engine (see its message above); rebuild it with: {rebuild}")
    found: dict[str, tuple[Any, str]] = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dtype = engine.get_tensor_dtype(name)
        found[name] = (engine.get_tensor_mode(name), next((v for k, v in _DTYPES.items() if getattr(trt.DataType, k) == dtype), str(dtype)))
    spec = GRAPHS[graph]
    want = {t.name: (trt.TensorIOMode.INPUT, t.dtype) for t in spec.inputs}
    want.update({t.name: (trt.TensorIOMode.OUTPUT, t.dtype) for t in spec.outputs})
    if set(found) != set(want):
        raise ManifestError(f"the {graph} engine has tensors {sorted(found)} but the graph has {sorted(want)}; rebuild it with: {rebuild}")
    for name, (mode, dtype) in want.items():
        if found[name][0] != mode or found[name][1] != dtype:
            raise ManifestError(
                f"the {graph} engine's tensor {name} is {found[name][1]}, not {dtype} as the runtime passes it "
                f"(typed graphs must keep float32 inputs/outputs); rebuild it with: {rebuild}"
            )
    return LoadedEngine(graph, engine, tuple(t.name for t in spec.inputs), tuple(t.name for t in spec.outputs))


class ContextPool:
    """Every bound execution context, and the scratch area they share.

    ``before_drop(bindings)`` is called with the bindings about to go (after the streams are
    synchronised), so whatever captured them (CUDA graphs) goes first.
    """

    def __init__(
        self, trt: Any, cuda: Any, engines: Mapping[str, LoadedEngine], profiles: Mapping[str, Profile], rebuild: Rebuild,
        *, synchronize: Callable[[], None], before_drop: Callable[[set[Binding]], None], note_peak: Callable[[], None],
    ) -> None:  # fmt: skip
        self.trt, self.cuda = trt, cuda
        self.engines, self.profiles, self.rebuild = engines, profiles, rebuild
        self._synchronize, self._before_drop, self._note_peak = synchronize, before_drop, note_peak
        self.contexts: dict[Binding, BoundContext] = {}
        self.samples: list[int] = []  # measured bytes of every context made (probes included)
        self._needs: dict[tuple[tuple[str, tuple[int, ...]], ...], int] = {}
        self.scratch_ptr = 0
        self.scratch_bytes = 0

    # -- what it holds ----------------------------------------------------------------------------
    def mean_bytes(self) -> int | None:
        return sum(self.samples) // len(self.samples) if self.samples else None

    def held_bytes(self) -> int:
        return sum(c.overhead for c in self.contexts.values())

    # -- scratch ----------------------------------------------------------------------------------
    def scratch_need(self, shapes: Mapping[str, Mapping[str, tuple[int, ...]]]) -> int:
        """The most scratch the engines of ``shapes``' graphs need for those input shapes (temporary contexts ask TensorRT)."""
        key = tuple(sorted((f"{g}.{n}", s) for g, inputs in shapes.items() for n, s in inputs.items()))
        need = self._needs.get(key)
        if need is None:
            need = 0
            for graph in shapes:  # the graphs a frame size runs (their engines loaded by then)
                e = self.engines[graph]
                context, _overhead = self._new_context(e, shapes[graph])
                need = max(need, int(context.update_device_memory_size_for_shapes()))
                del context
            self._needs[key] = need
        return aligned(need, SCRATCH_ALIGNMENT)

    def set_scratch(self, nbytes: int) -> None:
        """Replace the scratch area; every context (and graph) pointing at the old one is dropped first."""
        self.drop(lambda c: True)
        self._synchronize()
        if self.scratch_ptr:
            self.cuda.free(self.scratch_ptr)
            self.scratch_ptr, self.scratch_bytes = 0, 0
        if nbytes:
            self.scratch_ptr = self.cuda.malloc(nbytes)
            self.scratch_bytes = nbytes
            self._note_peak()

    # -- contexts ---------------------------------------------------------------------------------
    def get(self, binding: Binding) -> BoundContext | None:
        return self.contexts.get(binding)

    def make(self, e: LoadedEngine, buffers: tuple[DeviceBuffer, ...]) -> BoundContext:
        """The context of one binding: shapes, scratch and every tensor address set now, never again."""
        binding = e.binding(buffers)
        context, overhead = self._new_context(e, {n: b.shape for n, b in zip(e.inputs, buffers)})
        for name, buf in zip(e.outputs, buffers[len(e.inputs) :]):
            got = tuple(context.get_tensor_shape(name))
            if got != buf.shape:
                raise ValueError(f"the {e.name} engine makes {name} of shape {got}, but its buffer {buf.label} has shape {buf.shape}.")
        need = aligned(int(context.update_device_memory_size_for_shapes()), SCRATCH_ALIGNMENT)
        if need > self.scratch_bytes:  # a size prepare did not see: every other context is dropped
            self.set_scratch(need)
        if self.scratch_bytes:
            context.set_device_memory(self.scratch_ptr, self.scratch_bytes)
        for name, buf in zip(e.names, buffers):
            if not context.set_tensor_address(name, buf.ptr):
                raise TensorRTError(f"TensorRT refused the address of {e.name}.{name} (buffer {buf.label}).")
        made = self.contexts[binding] = BoundContext(binding, context, buffers, overhead)
        return made

    def make_all(self, launches: Iterable[tuple[Binding, tuple[DeviceBuffer, ...]]]) -> None:
        """Every context a program needs, before anything of it runs (a scratch growth restarts the list)."""
        launches = list(launches)
        for _ in range(len(launches) + 1):
            missing = [(binding, buffers) for binding, buffers in launches if binding not in self.contexts]
            if not missing:
                return
            binding, buffers = missing[0]
            self.make(self.engines[binding[0]], buffers)
        raise TensorRTError("the execution contexts of a frame-step program kept needing more scratch.")  # pragma: no cover

    def drop(self, doomed: Callable[[BoundContext], bool]) -> None:
        """Drop contexts (after the work that may use them) and, first, whatever captured them."""
        keys = [k for k, c in self.contexts.items() if doomed(c)]
        if not keys:
            return
        self._synchronize()
        self._before_drop(set(keys))
        for key in keys:
            del self.contexts[key]

    def drop_bound_to(self, buf: DeviceBuffer) -> None:
        self.drop(lambda c: any(b is buf for b in c.buffers))  # never leave a context pointing at freed memory

    def clear(self) -> None:
        self.contexts.clear()

    def _new_context(self, e: LoadedEngine, shapes: Mapping[str, tuple[int, ...]]) -> tuple[Any, int]:
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
                    f"rebuild the engines for this size with: {self.rebuild(lr_profile(e.name, spec.name, shape))}"
                )
        free_after, _ = self.cuda.mem_get_info()
        overhead = max(0, free_before - free_after)
        self.samples.append(overhead)
        return context, overhead


def lr_profile(graph: str, tensor: str, shape: tuple[int, ...]) -> Profile | None:
    """The static profile of the LR size a tensor shape implies (None when it cannot tell)."""
    spec = GRAPHS[graph].input(tensor)
    scale = {"width": 1, "width4": 4}.get(str(spec.shape[-1]))
    if scale is None or shape[-2] % scale or shape[-1] % scale:
        return None
    try:
        return Profile.static(shape[-2] // scale, shape[-1] // scale, batch=shape[0])
    except InputError:
        return None
