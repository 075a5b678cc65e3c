"""Wrappers around a sampler's backend that note what the doctor needs to know while a clip runs.

They go between ``upscaler.pipeline`` and its backend for one run (:func:`recording`) and pass
every other call through, so the sampler runs exactly as it does without them.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import numpy as np


class GraphInputRecorder:
    """Keeps a host copy of the inputs of the first run of each graph (for the per-graph comparison)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.inputs: dict[str, dict[str, np.ndarray]] = {}

    def run(self, graph: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        if graph not in self.inputs:
            self.inputs[graph] = {name: np.array(self.inner.download(buffer), copy=True) for name, buffer in inputs.items()}
        self.inner.run(graph, inputs, outputs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class LaunchRecorder:
    """Notes each frame-step program key the sampler launches: the programs a clip needs captured."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.keys: list[str] = []

    def launch(self, key: str, enqueue: Callable[[], None]) -> None:
        if key not in self.keys:
            self.keys.append(key)
        self.inner.launch(key, enqueue)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextmanager
def recording(upscaler: Any, recorder_type: type) -> Iterator[Any]:
    """``upscaler.pipeline``'s backend wrapped in ``recorder_type`` for the duration of the block."""
    pipeline = upscaler.pipeline
    inner = pipeline.backend
    recorder = recorder_type(inner)
    pipeline.backend = recorder
    try:
        yield recorder
    finally:
        pipeline.backend = inner
