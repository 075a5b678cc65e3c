"""Device memory of one clip on the TensorRT backend, decided before anything is allocated (plain Python).

The clip state is exactly the buffers ``Sampler.allocate`` asks for (found by running it against a
shape-recording stand-in, so this plan cannot drift from the schedule), each rounded up to the
allocation granularity, plus one TensorRT scratch area shared by all engines (they never run
concurrently), plus the engines' weights when they are not loaded yet, plus a fixed reserve for the
CUDA context's own needs (graphs, streams, kernels). Per-frame buffers make the total linear in the
number of frames, which gives the largest chunk that fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from svsr.contract.errors import InputError

ALIGNMENT = 512  # cudaMalloc hands out at least 256-byte aligned blocks; plan with a little slack
DEFAULT_RESERVE = 256 * 1024**2  # CUDA graphs, streams, TensorRT's small allocations, fragmentation
GIB = 1024**3


class DeviceMemoryError(InputError):
    """A clip does not fit in the GPU's free memory."""


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


class _ShapeRecorder:
    """Stands in for a backend while Sampler.allocate runs: records every buffer, allocates nothing."""

    name = "shape-recorder"

    def __init__(self) -> None:
        self.buffers: list[BufferSpec] = []

    def allocate(self, label: str, shape: Sequence[int], dtype: str = "float32") -> BufferSpec:
        spec = BufferSpec(label, tuple(int(s) for s in shape), dtype)
        self.buffers.append(spec)
        return spec


def clip_buffers(manifest: Mapping[str, Any], num_frames: int, height: int, width: int) -> list[BufferSpec]:
    """Every buffer the sampler allocates for ``num_frames`` padded LR frames of ``height`` x ``width``."""
    from svsr.runtime.sampler import Sampler

    recorder = _ShapeRecorder()
    Sampler(recorder, manifest).allocate(num_frames, height, width)  # type: ignore[arg-type]
    return recorder.buffers


@dataclass(frozen=True)
class MemoryPlan:
    num_frames: int
    height: int  # padded LR size
    width: int
    clip_bytes: int  # all clip buffers, aligned
    scratch_bytes: int  # one TensorRT scratch area shared by every engine
    engine_bytes: int  # engine weights still to be loaded (0 when already on the device)
    reserve_bytes: int
    per_frame_bytes: int  # what one more frame adds
    fixed_bytes: int  # the rest: total = fixed + per_frame * num_frames

    @property
    def total_bytes(self) -> int:
        return self.clip_bytes + self.scratch_bytes + self.engine_bytes + self.reserve_bytes

    def largest_chunk(self, available_bytes: int) -> int:
        """The most frames that fit in ``available_bytes`` (0 when not even one does)."""
        room = available_bytes - self.fixed_bytes
        return max(0, room // self.per_frame_bytes) if self.per_frame_bytes else 0

    def describe(self) -> str:
        parts = [f"clip state {self.clip_bytes / GIB:.2f} GiB", f"TensorRT scratch {self.scratch_bytes / GIB:.2f} GiB"]
        if self.engine_bytes:
            parts.append(f"engines {self.engine_bytes / GIB:.2f} GiB")
        parts.append(f"reserve {self.reserve_bytes / GIB:.2f} GiB")
        return f"{self.total_bytes / GIB:.2f} GiB ({' + '.join(parts)})"


def plan_memory(
    manifest: Mapping[str, Any],
    num_frames: int,
    height: int,
    width: int,
    scratch_bytes: int,
    engine_bytes: int = 0,
    reserve_bytes: int = DEFAULT_RESERVE,
) -> MemoryPlan:
    """Device bytes for a clip of ``num_frames`` padded LR frames of ``height`` x ``width``.

    Computed from the buffers of 1- and 2-frame clips (the state is linear in the frame count), so
    asking about a huge clip costs nothing.
    """
    if num_frames < 1:
        raise InputError(f"a clip needs at least one frame, not {num_frames}.")
    one = sum(aligned(b.nbytes) for b in clip_buffers(manifest, 1, height, width))
    two = sum(aligned(b.nbytes) for b in clip_buffers(manifest, 2, height, width))
    per_frame = two - one
    overhead = scratch_bytes + engine_bytes + reserve_bytes
    return MemoryPlan(
        num_frames=num_frames,
        height=height,
        width=width,
        clip_bytes=one + (num_frames - 1) * per_frame,
        scratch_bytes=int(scratch_bytes),
        engine_bytes=int(engine_bytes),
        reserve_bytes=int(reserve_bytes),
        per_frame_bytes=per_frame,
        fixed_bytes=one - per_frame + overhead,
    )


def check_fits(plan: MemoryPlan, available_bytes: int) -> None:
    """Raise DeviceMemoryError (one sentence, with the largest chunk that fits) when ``plan`` does not fit."""
    if plan.total_bytes <= available_bytes:
        return
    size = f"{plan.width}x{plan.height}"
    head = (
        f"a clip of {plan.num_frames} frames at {size} (padded LR size) needs {plan.describe()} of GPU memory "
        f"but only {available_bytes / GIB:.2f} GiB is free"
    )
    chunk = plan.largest_chunk(available_bytes)
    if chunk >= 1:
        raise DeviceMemoryError(f"{head}; use --chunk {chunk} or fewer frames per chunk.")
    raise DeviceMemoryError(
        f"{head}, not even for one frame; free GPU memory (other processes), or use smaller frames or fp16 engines."
    )
