"""Device memory of one frame size on the TensorRT backend, decided before anything is allocated (plain Python).

The sampler keeps a fixed set of slot buffers per LR size (``Sampler.slots``), so the device memory
does not depend on the number of frames. The plan is:

* the slot buffers, exactly as ``Sampler.slots`` asks for them (found by running it against a
  shape-recording stand-in, so the plan cannot drift from the schedule), each rounded up to the
  allocation granularity;
* one TensorRT scratch area shared by every execution context (they run one after another on one
  stream), sized by the contexts' own need for the shapes in use;
* the engines' weights when they are not loaded yet;
* a reserve: a base for the CUDA context's own small allocations and fragmentation, plus every
  execution context and every instantiated CUDA graph the schedule makes. How many there are is
  found by running the sampler on a tiny clip against the same stand-in (one context per distinct
  binding, one graph per frame-step program); what each costs is an estimate
  (``CONTEXT_ESTIMATE``, ``GRAPH_ESTIMATE``) until the backend has measured it (``cudaMemGetInfo``
  around creating contexts and instantiating graphs), then the measured value.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from svsr.contract.errors import InputError
from svsr.runtime.sampling.backend import Backend

ALIGNMENT = 512  # cudaMalloc hands out at least 256-byte aligned blocks; plan with a little slack
BASE_RESERVE = 128 * 1024**2  # CUDA context odds and ends (streams, events, TensorRT's small allocations), fragmentation
CONTEXT_ESTIMATE = 16 * 1024**2  # device memory of one TensorRT execution context (user-managed scratch), before measuring
GRAPH_ESTIMATE = 8 * 1024**2  # device memory of one instantiated CUDA graph of a frame-step, before measuring
GIB = 1024**3
MIB = 1024**2


class DeviceMemoryError(InputError):
    """A frame size does not fit in the GPU's free memory."""


@dataclass(frozen=True)
class BufferSpec:
    label: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def aligned(nbytes: int, alignment: int = ALIGNMENT) -> int:
    return -(-int(nbytes) // alignment) * alignment


class _ShapeRecorder(Backend):
    """Stands in for a backend while the sampler runs: records buffers, bindings and programs; computes nothing."""

    name = "shape-recorder"

    def __init__(self) -> None:
        self.buffers: list[BufferSpec] = []
        self.bindings: set[tuple[Any, ...]] = set()
        self.programs: set[str] = set()

    def allocate(self, label: str, shape: Sequence[int], dtype: str = "float32", host_io: bool = True) -> BufferSpec:
        spec = BufferSpec(label, tuple(int(s) for s in shape), dtype)
        self.buffers.append(spec)
        return spec

    def upload(self, buffer: BufferSpec, array: np.ndarray) -> None:
        pass

    def download(self, buffer: BufferSpec) -> np.ndarray:
        return np.zeros(buffer.shape, buffer.dtype)

    def run(self, graph: str, inputs: Mapping[str, BufferSpec], outputs: Mapping[str, BufferSpec]) -> None:
        self.bindings.add((graph, tuple(sorted((n, b.label) for n, b in {**inputs, **outputs}.items()))))

    def launch(self, key: str, enqueue: Callable[[], None]) -> None:
        self.programs.add(key)
        enqueue()



def slot_buffers(manifest: Mapping[str, Any], height: int, width: int) -> list[BufferSpec]:
    """Every buffer ``Sampler.slots`` allocates for padded LR frames of ``height`` x ``width``."""
    from svsr.runtime.sampling.sampler import Sampler

    recorder = _ShapeRecorder()
    Sampler(recorder, manifest).slots(height, width)  # type: ignore[arg-type]
    return recorder.buffers


_BINDINGS: tuple[int, int] | None = None


def binding_counts(manifest: Mapping[str, Any]) -> tuple[int, int]:
    """(distinct graph bindings, distinct frame-step programs) the sampler uses for one frame size.

    Found by upscaling a 3-frame, 2-step clip of the smallest size on the shape recorder (every
    binding and program appears from the third frame on; more frames or steps reuse them). The
    counts depend on the schedule only, so they are computed once per process.
    """
    global _BINDINGS
    if _BINDINGS is None:
        from svsr.contract.noise import NumpyNoise
        from svsr.contract.sizes import MIN_SIDE
        from svsr.runtime.sampling.sampler import Sampler

        recorder = _ShapeRecorder()
        frames = [np.zeros((MIN_SIDE, MIN_SIDE, 3), np.uint8)] * 3
        with tempfile.TemporaryDirectory(prefix="svsr-plan-") as folder:
            Sampler(recorder, manifest).upscale(frames, num_inference_steps=2, noise=NumpyNoise(0), host_memory=1 << 30, work_dir=folder)  # type: ignore[arg-type]
        _BINDINGS = (len(recorder.bindings), len(recorder.programs))
    return _BINDINGS


@dataclass(frozen=True)
class MemoryPlan:
    height: int  # padded LR size
    width: int
    slot_bytes: int  # all slot buffers, aligned
    scratch_bytes: int  # one TensorRT scratch area shared by every context
    engine_bytes: int  # engine weights still to be loaded (0 when already on the device)
    base_reserve_bytes: int
    contexts: int
    per_context_bytes: int
    programs: int  # CUDA graphs (0 without CUDA graphs)
    per_program_bytes: int
    measured_contexts: bool = False  # per-context bytes measured on this device (else the estimate)
    measured_programs: bool = False

    @property
    def reserve_bytes(self) -> int:
        return self.base_reserve_bytes + self.contexts * self.per_context_bytes + self.programs * self.per_program_bytes

    @property
    def total_bytes(self) -> int:
        return self.slot_bytes + self.scratch_bytes + self.engine_bytes + self.reserve_bytes

    def describe(self) -> str:
        parts = [f"slot buffers {self.slot_bytes / GIB:.2f} GiB", f"TensorRT scratch {self.scratch_bytes / GIB:.2f} GiB"]
        if self.engine_bytes:
            parts.append(f"engines {self.engine_bytes / GIB:.2f} GiB")
        how = lambda measured: "measured" if measured else "estimated"  # noqa: E731
        reserve = (
            f"reserve {self.reserve_bytes / GIB:.2f} GiB for {self.contexts} execution contexts "
            f"of {self.per_context_bytes / MIB:.0f} MiB ({how(self.measured_contexts)})"
        )
        if self.programs:
            reserve += f", {self.programs} CUDA graphs of {self.per_program_bytes / MIB:.0f} MiB ({how(self.measured_programs)})"
        parts.append(reserve + f" and {self.base_reserve_bytes / MIB:.0f} MiB more")
        return f"{self.total_bytes / GIB:.2f} GiB ({' + '.join(parts)})"


def plan_memory(
    manifest: Mapping[str, Any],
    height: int,
    width: int,
    scratch_bytes: int,
    engine_bytes: int = 0,
    *,
    per_context_bytes: int | None = None,
    per_program_bytes: int | None = None,
    cuda_graphs: bool = True,
    base_reserve_bytes: int = BASE_RESERVE,
) -> MemoryPlan:
    """Device bytes for padded LR frames of ``height`` x ``width``, whatever the number of frames.

    ``per_context_bytes`` / ``per_program_bytes``: measured costs of one execution context / one
    instantiated CUDA graph (None: the estimates ``CONTEXT_ESTIMATE`` / ``GRAPH_ESTIMATE``).
    """
    if height < 1 or width < 1:
        raise InputError(f"a frame size needs positive sides, not {width}x{height}.")
    contexts, programs = binding_counts(manifest)
    return MemoryPlan(
        height=height,
        width=width,
        slot_bytes=sum(aligned(b.nbytes) for b in slot_buffers(manifest, height, width)),
        scratch_bytes=int(scratch_bytes),
        engine_bytes=int(engine_bytes),
        base_reserve_bytes=int(base_reserve_bytes),
        contexts=contexts,
        per_context_bytes=int(CONTEXT_ESTIMATE if per_context_bytes is None else per_context_bytes),
        programs=programs if cuda_graphs else 0,
        per_program_bytes=int(GRAPH_ESTIMATE if per_program_bytes is None else per_program_bytes),
        measured_contexts=per_context_bytes is not None,
        measured_programs=per_program_bytes is not None,
    )


def check_fits(plan: MemoryPlan, available_bytes: int) -> None:
    """Raise DeviceMemoryError (one sentence: the size, the need, the free memory) when ``plan`` does not fit."""
    if plan.total_bytes <= available_bytes:
        return
    raise DeviceMemoryError(
        f"frames of {plan.width}x{plan.height} (padded LR size) need {plan.describe()} of GPU memory "
        f"but only {available_bytes / GIB:.2f} GiB is free; free GPU memory (other processes), or use smaller frames or fp16 engines."
    )
