"""The base class every runtime backend derives from (torch-free).

The schedule (svsr/runtime/sampling/sampler.py) only prepares a frame size, allocates buffers,
uploads host arrays, runs graphs on named buffers (grouped into frame-step programs by
``launch``), moves windows between buffers (``copy_region``, tiles), zeroes buffers, downloads
results and synchronises. ONNX Runtime and TensorRT implement it; tests
use recording doubles derived from it. The sampler calls every method directly: a backend that
has nothing to do for ``prepare`` or ``launch`` keeps the defaults here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from svsr.contract.tiles import TileLayout

Buffer = Any  # a backend-specific device (or host) tensor handle

# Graphs only some runs use: the flow graphs of the smaller flow scales and the statistics graphs of
# tiled runs (the denoise_stats one holds a second copy of the UNet + TCM weights). Backends open them
# when a frame size that runs them is prepared (or on first run), not when the build is opened.
ON_DEMAND_GRAPHS = ("flow_x2", "flow_x1", "denoise_stats", "decode_stats")


class Backend:
    """What the sampler needs from a backend.

    ``name``: ``"ort"`` or ``"trt"`` (progress output, reports); ``device``: where the graphs run,
    ``"cpu"`` or ``"cuda:<ordinal>"``.
    """

    name: str = "backend"
    device: str = "cpu"

    def prepare(
        self, manifest: Mapping[str, Any], height: int, width: int, *, tiles: "TileLayout | None" = None, graphs: Sequence[str] | None = None
    ) -> None:
        """Called before the slot buffers of padded LR frames ``height`` x ``width`` are allocated.

        ``tiles``: the tile layout the tiled graphs will run at (None: whole frames). ``graphs``: the
        graphs this size runs (``frame_step.graphs_used``: the flow graph of the run's flow scale; the
        statistics graphs when tiled); None: those of an untiled run at flow scale 4 (tiled: with the
        blend and statistics graphs). Backends open what they have not opened yet (``ON_DEMAND_GRAPHS``);
        TensorRT checks the sizes against its engines' profiles and the free memory here; the default
        has nothing to check.
        """

    def launch(self, key: str, enqueue: Callable[[], None]) -> None:
        """Run one frame-step program: ``enqueue()`` makes its graph launches on fixed buffers.

        ``key`` names the program (one per slot set and TCM use), so a backend may capture it once and
        replay it (TensorRT with CUDA graphs); the default just runs it.
        """
        enqueue()

    def allocate(self, label: str, shape: Sequence[int], dtype: str = "float32", host_io: bool = True) -> Buffer:
        """A zero-filled buffer that lives until the backend is closed; ``host_io=False``: never uploaded or downloaded."""
        raise NotImplementedError

    def upload(self, buffer: Buffer, array: np.ndarray) -> None:
        """Copy a host array into a buffer of the same shape."""
        raise NotImplementedError

    def download(self, buffer: Buffer) -> np.ndarray:
        """Copy a buffer back to the host."""
        raise NotImplementedError

    def run(self, graph: str, inputs: Mapping[str, Buffer], outputs: Mapping[str, Buffer]) -> None:
        """Run one graph reading ``inputs`` and writing ``outputs`` (names as in svsr/contract/graphs.py)."""
        raise NotImplementedError

    def copy_region(
        self,
        source: Buffer,
        target: Buffer,
        source_origin: tuple[int, int],
        target_origin: tuple[int, int],
        size: tuple[int, int],
    ) -> None:
        """Copy a (rows, cols) window of the last two dims, every leading index (batch, channel) alike.

        ``source[..., sy:sy+rows, sx:sx+cols]`` -> ``target[..., ty:ty+rows, tx:tx+cols]``, queued like a
        graph run (tiles: cut a tile out of a whole-frame buffer, put a blended region back). A buffer
        move, no arithmetic: the blend itself is the ``blend`` graph.
        """
        raise NotImplementedError

    def zero(self, buffer: Buffer) -> None:
        """Fill a buffer with zeros, queued like a graph run (a whole-frame sum before its tiles are added)."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for all queued work (nothing to wait for by default: runs return when done)."""

    def close(self) -> None:
        """Release every buffer and session (nothing held by default)."""
