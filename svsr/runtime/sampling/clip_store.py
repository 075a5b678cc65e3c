"""The host-side clip store: every frame's state between the device's fixed slots (torch-free).

StableVSR is defined on a whole clip, so the sampler needs every frame's state at every timestep:
the LR input, the latent of the last completed step and the one being written, and the two flows.
The store holds them in RAM up to a byte budget (``--host-memory``) and beyond it in files of the
work folder, so host memory is bounded whatever the clip length.

Files are read and written with ``os.pread``/``os.pwrite`` rather than ``np.memmap``: pages of a
memory map that were touched count towards the process's resident memory until the kernel
reclaims them, so a mapped 3000-frame store would look like (and can become) a 3000-frame RSS;
positioned reads go through the page cache instead and leave RSS flat.

Latents are always in a file of the work folder: they are the resume checkpoint. Two latent
planes ping-pong by step parity (step ``s`` reads plane ``s % 2`` and writes plane ``(s+1) % 2``),
so a crash in the middle of a sweep never touches the last completed step.

Multistep schedulers (DPM-Solver++ 2M) keep one more thing per frame: its x0 of the previous step
(the solver's history). It lives in two more file planes by step parity, exactly like the latents
(``history{p}.f32``: step ``s`` reads plane ``s % 2`` and writes plane ``(s+1) % 2``), so the history
of the last completed step is part of the resume checkpoint too.

Every frame record written to a file gets a CRC-32 (:meth:`FileFrameArray.record`), which the job's
checkpoint stores; a resumed run checks the files against it (:meth:`ClipStore.damage`) before it
trusts them, so a truncated or bit-flipped file is found, never silently used.
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from svsr.contract.errors import InputError
from svsr.contract.video_options import parse_memory_size  # the one parser of memory sizes, re-exported here

FLOAT32 = np.dtype(np.float32)
LATENT_CHANNELS = 4  # Stable Diffusion's VAE; the sampler passes the manifest's count (Sampler.store_layout)


class FrameArray:
    """``count`` float32 items of one shape, indexed by frame; in RAM."""

    in_file = False

    def __init__(self, count: int, item_shape: Sequence[int]) -> None:
        self.count = count
        self.item_shape = tuple(item_shape)
        self._data = np.zeros((count, *self.item_shape), FLOAT32)

    @property
    def item_bytes(self) -> int:
        return int(np.prod(self.item_shape)) * FLOAT32.itemsize

    def read(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            return self._data[index].copy()
        out[...] = self._data[index]
        return out

    def write(self, index: int, value: np.ndarray) -> None:
        self._data[index] = value.reshape(self.item_shape)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._data = np.zeros((0, *self.item_shape), FLOAT32)


class FileFrameArray(FrameArray):
    """The same, in a file: item ``i`` at byte ``i * item_bytes``; survives the process (resume)."""

    in_file = True

    def __init__(self, path: Path, count: int, item_shape: Sequence[int], *, keep: bool = False) -> None:
        self.count = count
        self.item_shape = tuple(item_shape)
        self.path = path
        size = count * self.item_bytes
        self.found_size = path.stat().st_size if path.exists() else None  # before any reservation: what a resume found
        existed = self.found_size == size
        if not keep or not existed:
            _reserve(path, size)
        self._fd = os.open(path, os.O_RDWR)
        self.reused = keep and existed
        self._crc: dict[int, int] = {}  # frame -> CRC-32 of the record written there (by this run or a verified one)

    def read(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty(self.item_shape, FLOAT32) if out is None else out
        view = memoryview(out.reshape(-1).view(np.uint8))
        got = os.preadv(self._fd, [view], index * self.item_bytes)
        if got != self.item_bytes:
            raise OSError(f"{self.path} is shorter than expected (read {got} of {self.item_bytes} bytes at item {index})")
        return out

    def write(self, index: int, value: np.ndarray) -> None:
        data = np.ascontiguousarray(value, FLOAT32).reshape(-1).view(np.uint8)
        written = os.pwrite(self._fd, memoryview(data), index * self.item_bytes)
        if written != self.item_bytes:
            raise OSError(f"could not write {self.item_bytes} bytes to {self.path}")
        self._crc[index] = _crc32(data)

    def record(self) -> dict[str, object]:
        """Size and per-frame CRC-32s of what was written (None: a frame never written), for a checkpoint."""
        return {"size": self.count * self.item_bytes, "crc32": [self._crc.get(k) for k in range(self.count)]}

    def damage(self, record: dict) -> str | None:
        """How the file differs from ``record`` (what a checkpoint wrote), or None; a match adopts its checksums."""
        size, crcs = record.get("size"), record.get("crc32") or []
        if self.found_size is None:
            return "it is missing"
        if self.found_size != size:
            return f"it is {self.found_size} bytes, {size} were written"
        buffer = np.empty(self.item_shape, FLOAT32)
        for index, expected in enumerate(crcs):
            if expected is not None and _crc32(self.read(index, buffer).reshape(-1).view(np.uint8)) != expected:
                return f"frame record {index} differs from the checksum written with it"
        self._crc = {k: c for k, c in enumerate(crcs) if c is not None}
        return None

    def flush(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


_CHECKSUMS = [0.0, 0]  # seconds spent in the store's CRC-32s and their count, in this process (svsr-bench's cost row)


def _crc32(data: memoryview | np.ndarray) -> int:
    start = time.perf_counter()
    crc = zlib.crc32(data)
    _CHECKSUMS[0] += time.perf_counter() - start
    _CHECKSUMS[1] += 1
    return crc


def checksum_time() -> tuple[float, int]:
    """Seconds the clip stores of this process spent computing CRC-32s (spill files, latent and history planes), and how many."""
    return _CHECKSUMS[0], int(_CHECKSUMS[1])


def _reserve(path: Path, size: int) -> None:
    """Create ``path`` with ``size`` bytes actually allocated, so a full disk fails now, in one sentence."""
    tmp = path.with_name(f".{path.name}.partial")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            os.posix_fallocate(fd, 0, size) if size else None
        except OSError as exc:
            raise InputError(
                f"the work folder {path.parent} has no room for {size / 2**20:.0f} MiB of clip state ({exc.strerror}); "
                "free space there or choose another folder with --work-dir."
            ) from None
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True)
class StoreLayout:
    """Sizes of one clip's per-frame state (LR size already padded to a multiple of 4)."""

    num_frames: int
    height: int
    width: int
    latent_channels: int = LATENT_CHANNELS  # the manifest's latent_channels (the sampler's)
    history: bool = False  # one x0 per frame and plane (multistep schedulers: svsr.contract.scheduler.needs_history)

    @property
    def lr_shape(self) -> tuple[int, ...]:
        return (1, 3, self.height, self.width)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (1, self.latent_channels, self.height, self.width)

    @property
    def flow_shape(self) -> tuple[int, ...]:
        return (1, 2, 4 * self.height, 4 * self.width)

    def bytes_of(self, part: str) -> int:
        n = self.num_frames
        item = {"lr": self.lr_shape, "latents": self.latent_shape, "history": self.latent_shape, "flows": self.flow_shape}[part]
        count = {"lr": n, "latents": 2 * n, "history": 2 * n if self.history else 0, "flows": 2 * max(n - 1, 0)}[part]
        return count * int(np.prod(item)) * FLOAT32.itemsize


def default_host_memory() -> int:
    """Half of the memory available now (MemAvailable), at least 256 MiB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return max(256 * 2**20, int(line.split()[1]) * 1024 // 2)
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
    return max(256 * 2**20, pages * os.sysconf("SC_PAGE_SIZE") // 2) if pages else 4 * 2**30


class ClipStore:
    """LR frames, two latent planes (two x0 history planes with ``layout.history``) and the forward/backward flows of one clip.

    ``budget`` bytes of RAM are given to the LR frames first, then the flows; what does not fit goes
    to files in ``folder``. Latents and histories are always files in ``folder`` (see the module docstring).
    ``resume=True`` keeps existing latent, history and flow files of the right size instead of clearing them.
    ``lr``: LR frames already written (e.g. streamed from a decoder into a file); moved to RAM when
    the budget allows.
    """

    def __init__(
        self, layout: StoreLayout, folder: Path, budget: int, *, resume: bool = False, store_flows: bool = True, lr: FrameArray | None = None
    ) -> None:
        self.layout = layout
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        n = layout.num_frames
        remaining = budget

        def place(name: str, count: int, shape: tuple[int, ...], nbytes: int) -> FrameArray:
            nonlocal remaining
            if nbytes <= remaining:
                remaining -= nbytes
                return FrameArray(count, shape)
            return FileFrameArray(folder / f"{name}.f32", count, shape, keep=resume)

        if lr is None:
            self.lr = place("lr", n, layout.lr_shape, layout.bytes_of("lr"))
        elif lr.in_file and layout.bytes_of("lr") <= remaining:
            self.lr = FrameArray(n, layout.lr_shape)
            for k in range(n):
                self.lr.write(k, lr.read(k))
            lr.close()
            remaining -= layout.bytes_of("lr")
        else:
            self.lr = lr
        self.latents = [FileFrameArray(folder / f"latents{p}.f32", n, layout.latent_shape, keep=resume) for p in (0, 1)]
        self.history = (
            [FileFrameArray(folder / f"history{p}.f32", n, layout.latent_shape, keep=resume) for p in (0, 1)] if layout.history else None
        )
        self.store_flows = store_flows
        half = layout.bytes_of("flows") // 2
        self.fwd = place("flows_fwd", n - 1, layout.flow_shape, half) if store_flows else None
        self.bwd = place("flows_bwd", n - 1, layout.flow_shape, half) if store_flows else None

    def flows(self, direction: str) -> FrameArray:
        array = self.fwd if direction == "fwd" else self.bwd
        if array is None:
            raise RuntimeError("this store does not keep flows (they are recomputed per frame-step)")
        return array

    @property
    def in_ram_bytes(self) -> int:
        arrays = [self.lr, self.fwd, self.bwd]
        return sum(a.count * a.item_bytes for a in arrays if a is not None and not a.in_file)

    @property
    def spilled(self) -> list[str]:
        """Names of the parts kept in files beyond the latents (for progress output and tests)."""
        names = {"lr": self.lr, "flows_fwd": self.fwd, "flows_bwd": self.bwd}
        return [name for name, a in names.items() if a is not None and a.in_file]

    def files(self) -> dict[str, FileFrameArray]:
        """The arrays kept in files, by file name."""
        arrays = (self.lr, *self.latents, *(self.history or ()), self.fwd, self.bwd)
        return {a.path.name: a for a in arrays if isinstance(a, FileFrameArray)}

    def step_files(self, steps_done: int) -> list[str]:
        """The files holding the state after ``steps_done`` steps (what a checkpoint relies on): the latent plane, and the history plane with one."""
        names = [f"latents{steps_done % 2}.f32"]
        return names + [f"history{steps_done % 2}.f32"] if self.history is not None else names

    def records(self, names: Sequence[str]) -> dict[str, dict]:
        """Size and per-frame checksums of the named files (those of ``names`` kept in files)."""
        files = self.files()
        return {name: files[name].record() for name in names if name in files}

    def damage(self, records: dict[str, dict]) -> dict[str, str]:
        """File name -> how it differs from its record, for each recorded file this store keeps in a file."""
        files = self.files()
        found = {name: files[name].damage(record) for name, record in records.items() if name in files}
        return {name: problem for name, problem in found.items() if problem}

    def flush(self) -> None:
        for array in (self.lr, *self.latents, *(self.history or ()), self.fwd, self.bwd):
            if array is not None:
                array.flush()

    def close(self) -> None:
        for array in (self.lr, *self.latents, *(self.history or ()), self.fwd, self.bwd):
            if array is not None:
                array.close()
