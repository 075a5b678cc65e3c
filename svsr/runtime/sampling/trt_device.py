"""Device buffers, the two streams and the per-buffer events of the TensorRT backend (CUDA through svsr/device/cuda.py).

* ``allocate(label, shape, dtype)``: a zero-filled device buffer per label (the same label, shape
  and dtype gets the same memory back, zero-filled again), made together with its pinned staging
  area and its two events, never inside a step. Device-only buffers (``host_io=False``) get no
  staging.
* Two streams. Uploads (and the zero fill) copy through the buffer's pinned staging on the copy
  stream, after the copy stream has waited for the buffer's ``used`` event (the compute that last
  read or wrote it), and record the buffer's ``copied`` event. Compute first waits
  (:meth:`DeviceMemory.wait_uploads`) for the ``copied`` event of each buffer it touches that has an
  upload it has not waited for, and records each touched buffer's ``used`` event after
  (:meth:`DeviceMemory.mark_used`). ``download`` copies on the copy stream after the buffer's
  ``used`` event and waits for that copy only.
* Region copies and zero fills the schedule asks for (``Backend.copy_region`` / ``Backend.zero``:
  tiles cut out of and put back into whole-frame buffers) are compute work, not transfers: they go
  on the compute stream like a graph launch (so a frame-step's capture records them) as
  ``cudaMemcpy2DAsync`` per leading plane (:func:`region_copies`) and ``cudaMemsetAsync``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from svsr.runtime.sampling.memory_plan import aligned


@dataclass(eq=False)
class DeviceBuffer:
    """A device allocation of one tensor (the TensorRT backend's Buffer), with its pinned staging and events."""

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

    def check_live(self) -> None:
        if self.released:
            raise RuntimeError(f"buffer {self.label} was released (the backend moved to another frame size or closed); allocate it again.")

    def check_host_io(self, what: str) -> None:
        if not self.host:
            raise ValueError(f"cannot {what} buffer {self.label}: it was allocated device-only (host_io=False).")


class DeviceMemory:
    """The buffers by label, the compute and copy streams, and the event waits between them."""

    def __init__(self, cuda: Any) -> None:
        self.cuda = cuda
        self.buffers: dict[str, DeviceBuffer] = {}
        self.stream = cuda.stream_create()  # compute
        self.copy_stream = cuda.stream_create()  # uploads, zero fills, downloads

    # -- buffers ----------------------------------------------------------------------------------
    def find(self, label: str, shape: tuple[int, ...], dtype: str, host_io: bool) -> DeviceBuffer | None:
        """The held buffer of ``label`` if it has this shape, dtype and staging; else None."""
        buf = self.buffers.get(label)
        return buf if buf is not None and (buf.shape, buf.dtype, bool(buf.host)) == (shape, dtype, host_io) else None

    def make(self, label: str, shape: tuple[int, ...], dtype: str, host_io: bool) -> DeviceBuffer:
        """A new buffer with its staging and events (the label must not be held)."""
        cuda, made = self.cuda, []
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
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
        buf = self.buffers[label] = DeviceBuffer(label, shape, dtype, ptr, nbytes, host, view, copied, used)
        return buf

    def zero(self, buf: DeviceBuffer) -> None:
        """Zero-fill on the copy stream, ordered after the compute that last used it and before the next compute."""
        self.copy_after_compute(buf)
        self.cuda.memset_async(buf.ptr, 0, buf.nbytes, self.copy_stream)
        self.cuda.event_record(buf.copied, self.copy_stream)
        buf.upload_pending = True

    def release(self, label: str) -> None:
        """Free a held buffer with its staging and events (whatever is bound to it must be gone already)."""
        buf = self.buffers.pop(label)
        self.synchronize()
        buf.released = True
        self.cuda.free(buf.ptr)
        if buf.host:
            self.cuda.free_host(buf.host)
        self.cuda.event_destroy(buf.copied)
        self.cuda.event_destroy(buf.used)

    def held_bytes(self) -> int:
        return sum(aligned(b.nbytes) for b in self.buffers.values())

    def total_bytes(self) -> int:
        return sum(b.nbytes for b in self.buffers.values())

    def labels(self) -> dict[int, str]:
        """Buffer labels by device address (for error messages)."""
        return {b.ptr: b.label for b in self.buffers.values()}

    # -- copies -----------------------------------------------------------------------------------
    def upload(self, buffer: DeviceBuffer, array: np.ndarray) -> None:
        buffer.check_live()
        buffer.check_host_io("upload")
        data = np.ascontiguousarray(array, dtype=buffer.dtype)
        if data.nbytes != buffer.nbytes:
            raise ValueError(f"cannot upload an array of shape {data.shape} into buffer {buffer.label} of shape {buffer.shape}.")
        if buffer.staging_busy:  # the previous upload through this staging area must have read it
            self.cuda.event_synchronize(buffer.copied)
            buffer.staging_busy = False
        buffer.view[:] = data.reshape(-1).view(np.uint8)
        self.copy_after_compute(buffer)
        self.cuda.memcpy_htod_async(buffer.ptr, buffer.host, buffer.nbytes, self.copy_stream)
        self.cuda.event_record(buffer.copied, self.copy_stream)
        buffer.staging_busy = buffer.upload_pending = True

    def download(self, buffer: DeviceBuffer) -> np.ndarray:
        buffer.check_live()
        buffer.check_host_io("download")
        self.copy_after_compute(buffer)
        self.cuda.memcpy_dtoh_async(buffer.host, buffer.ptr, buffer.nbytes, self.copy_stream)
        self.cuda.event_record(buffer.copied, self.copy_stream)
        self.cuda.event_synchronize(buffer.copied)  # this copy only: the compute stream keeps running
        for buf in self.buffers.values():  # the copy stream runs in order: every earlier upload has read its staging
            buf.staging_busy = False
        return buffer.view.view(buffer.dtype).reshape(buffer.shape).copy()

    # -- ordering between the streams ---------------------------------------------------------------
    def wait_uploads(self, buffers: Iterable[DeviceBuffer]) -> None:
        """The compute stream waits for the uploads (and zero fills) of these buffers it has not waited for."""
        for buf in buffers:
            if buf.upload_pending:
                self.cuda.stream_wait_event(self.stream, buf.copied)
                buf.upload_pending = False

    def mark_used(self, buffers: Iterable[DeviceBuffer]) -> None:
        """Record each buffer's ``used`` event after the compute just enqueued."""
        for buf in buffers:
            self.cuda.event_record(buf.used, self.stream)
            buf.compute_pending = True

    def copy_after_compute(self, buf: DeviceBuffer) -> None:
        """The copy stream waits for the compute that last used ``buf`` before copying into or out of it."""
        if buf.compute_pending:
            self.cuda.stream_wait_event(self.copy_stream, buf.used)
            buf.compute_pending = False

    def synchronize(self) -> None:
        if self.stream:
            self.cuda.stream_synchronize(self.stream)
        if self.copy_stream:
            self.cuda.stream_synchronize(self.copy_stream)

    def close(self, attempt: Callable[..., None]) -> None:
        """Free every buffer and both streams through ``attempt`` (which collects failures and goes on)."""
        cuda = self.cuda
        for buf in self.buffers.values():
            buf.released = True
            attempt(cuda.free, buf.ptr)
            if buf.host:
                attempt(cuda.free_host, buf.host)
            attempt(cuda.event_destroy, buf.copied)
            attempt(cuda.event_destroy, buf.used)
        self.buffers.clear()
        for stream in (self.stream, self.copy_stream):
            if stream:
                attempt(cuda.stream_destroy, stream)
        self.stream = self.copy_stream = 0


@dataclass(frozen=True)
class RowCopy:
    """One ``cudaMemcpy2DAsync`` of a region copy: ``height`` rows of ``width`` bytes, device to device."""

    dst: int
    dpitch: int
    src: int
    spitch: int
    width: int
    height: int


def region_copies(
    source: DeviceBuffer, target: DeviceBuffer, source_origin: tuple[int, int], target_origin: tuple[int, int], size: tuple[int, int]
) -> list[RowCopy]:
    """The 2D copies that move ``source[..., sy:sy+rows, sx:sx+cols]`` to ``target[..., ty:ty+rows, tx:tx+cols]``.

    One per leading plane (batch x channel), each a pitched copy of the window's rows; when both
    windows are whole planes the planes are contiguous in both and one copy moves them all. Bad
    windows (out of bounds, other leading dims or dtype) are a ValueError: a schedule bug.
    """
    (sy, sx), (ty, tx), (rows, cols) = source_origin, target_origin, size
    for buf, (y, x) in ((source, (sy, sx)), (target, (ty, tx))):
        if len(buf.shape) < 2 or min(y, x) < 0 or rows < 1 or cols < 1 or y + rows > buf.shape[-2] or x + cols > buf.shape[-1]:
            raise ValueError(f"the {rows}x{cols} window at ({y}, {x}) does not fit buffer {buf.label} of shape {buf.shape}.")
    if source.shape[:-2] != target.shape[:-2] or source.dtype != target.dtype:
        raise ValueError(
            f"copy_region from {source.label} {source.shape} {source.dtype} to {target.label} {target.shape} {target.dtype}: "
            "the leading dims and the dtype must agree."
        )
    item = np.dtype(source.dtype).itemsize
    (sh, sw), (th, tw) = source.shape[-2:], target.shape[-2:]
    planes = int(np.prod(source.shape[:-2], dtype=np.int64))
    if (rows, cols) == (sh, sw) == (th, tw):  # whole planes on both sides: one contiguous block
        return [RowCopy(target.ptr, tw * item, source.ptr, sw * item, cols * item, rows * planes)]
    return [
        RowCopy(
            dst=target.ptr + ((p * th + ty) * tw + tx) * item,
            dpitch=tw * item,
            src=source.ptr + ((p * sh + sy) * sw + sx) * item,
            spitch=sw * item,
            width=cols * item,
            height=rows,
        )
        for p in range(planes)
    ]


def enqueue_region_copy(cuda: Any, copies: Sequence[RowCopy], stream: int) -> None:
    for c in copies:
        cuda.memcpy_2d_dtod_async(c.dst, c.dpitch, c.src, c.spitch, c.width, c.height, stream)


def touched(buffers: Sequence[Sequence[DeviceBuffer]]) -> list[DeviceBuffer]:
    """The distinct buffers of several launches, in first-use order."""
    return list({id(b): b for group in buffers for b in group}.values())
