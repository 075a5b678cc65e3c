"""The small interface every runtime backend implements (torch-free).

The schedule (svsr/runtime/sampling/sampler.py) only allocates buffers, uploads host arrays, runs graphs on
named buffers, downloads results and synchronises. ONNX Runtime and TensorRT implement it; tests
use a recording double.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

import numpy as np

Buffer = Any  # a backend-specific device (or host) tensor handle


class Backend(Protocol):
    name: str

    def allocate(self, label: str, shape: Sequence[int], dtype: str = "float32", host_io: bool = True) -> Buffer:
        """A zero-filled buffer that lives until the backend is closed; ``host_io=False``: never uploaded or downloaded."""

    def upload(self, buffer: Buffer, array: np.ndarray) -> None:
        """Copy a host array into a buffer of the same shape."""

    def download(self, buffer: Buffer) -> np.ndarray:
        """Copy a buffer back to the host."""

    def run(self, graph: str, inputs: Mapping[str, Buffer], outputs: Mapping[str, Buffer]) -> None:
        """Run one graph reading ``inputs`` and writing ``outputs`` (names as in svsr/contract/graphs.py)."""

    def synchronize(self) -> None:
        """Wait for all queued work."""

    def close(self) -> None:
        """Release every buffer and session."""
