"""Frame-step programs of the TensorRT backend: a dry run, an eager run with capture, replays.

A frame-step program is what the sampler's ``enqueue`` launches for one key (slot set and TCM
use). Every ``launch(key, enqueue)`` first runs ``enqueue()`` as a :class:`DryRun` (nothing is
launched) to learn the bindings it makes. The first call for a key runs it eagerly as a
:class:`TracedRun` (this frame-step's real work), synchronises the stream (as trtexec does between
warm-up and capture), captures ``enqueue()`` into a CUDA graph, checks ``cudaGetLastError`` (as
trtexec does after a capture) and instantiates it: a :class:`CapturedProgram`, replayed for every
frame, step, clip and video of that size. Region copies and zero fills inside ``enqueue`` (tiles)
are traced and captured with the graph launches (:data:`BUFFER_OPS`). A replay whose dry run binds other buffers than the
capture is an error (ProgramBindingError). A capture that fails at any stage destroys whatever
graph it made and leaves a :class:`FailedCapture`: that key runs eagerly, with a warning, until the
frame size changes, when it is tried again.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from svsr.contract.graphs import GRAPHS
from svsr.device.cuda import CudaError
from svsr.runtime.sampling.trt_device import DeviceBuffer
from svsr.runtime.sampling.trt_engines import Binding, TensorRTError

Launch = tuple[Binding, tuple[DeviceBuffer, ...]]
# Buffer moves inside a program are traced like graph launches (a "binding" of the op, its buffers'
# addresses and its window), so a replay that moves other windows is caught as other bindings are.
COPY_OP, ZERO_OP = "copy_region", "zero"
BUFFER_OPS = (COPY_OP, ZERO_OP)


class ProgramBindingError(RuntimeError):
    """A captured frame-step program would replay with other buffers than it was captured with (a schedule bug)."""


# -- what a run() inside a program does ---------------------------------------------------------------
class DryRun:
    """Records each launch's binding; launches nothing."""

    executes = False

    def __init__(self, key: str) -> None:
        self.key = key
        self.launches: list[Launch] = []

    def accept(self, binding: Binding, buffers: tuple[DeviceBuffer, ...], labels: Callable[[], Mapping[int, str]]) -> None:
        self.launches.append((binding, buffers))

    def finish(self) -> None:
        pass


class TracedRun:
    """Launches for real (eagerly or into a capture), each one checked against the dry run's trace, in order."""

    executes = True

    def __init__(self, key: str, trace: Sequence[Launch]) -> None:
        self.key, self.trace, self.index = key, trace, 0

    def accept(self, binding: Binding, buffers: tuple[DeviceBuffer, ...], labels: Callable[[], Mapping[int, str]]) -> None:
        expected = self.trace[self.index][0] if self.index < len(self.trace) else None
        if expected != binding:
            raise ProgramBindingError(
                f"the {self.key} program's enqueue made launch {self.index} ({binding[0]}) with other buffers than its dry run "
                f"({difference(expected, binding, labels())}); a frame-step must bind the same buffers every time."
            )
        self.index += 1

    def finish(self) -> None:
        if self.index != len(self.trace):
            raise ProgramBindingError(f"the {self.key} program's enqueue made {self.index} launches; its dry run made {len(self.trace)}.")


# -- what a key has become ----------------------------------------------------------------------------
@dataclass(eq=False)
class CapturedProgram:
    key: str
    graph: int
    graph_exec: int
    trace: tuple[Binding, ...]
    overhead: int  # measured device bytes of instantiating it


@dataclass(eq=False)
class FailedCapture:
    key: str
    reason: str


class Programs:
    """The captured programs and failed captures by key; captures programs when asked."""

    def __init__(self, cuda: Any) -> None:
        self.cuda = cuda
        self.captured: dict[str, CapturedProgram] = {}
        self.failed: dict[str, FailedCapture] = {}
        self.samples: list[int] = []  # measured bytes of every graph instantiated

    def mean_bytes(self) -> int | None:
        return sum(self.samples) // len(self.samples) if self.samples else None

    def held_bytes(self) -> int:
        return sum(p.overhead for p in self.captured.values())

    def report(self, cuda_graphs: bool) -> dict[str, Any]:
        """See :meth:`TrtBackend.capture_report`."""
        return {
            "cuda_graphs": cuda_graphs,
            "captured": len(self.captured),
            "captured_keys": sorted(self.captured),
            "failed": sorted(self.failed),
            "reasons": {key: f.reason for key, f in sorted(self.failed.items())},
        }

    def check_replay(self, program: CapturedProgram, trace: Sequence[Launch], labels: Mapping[int, str]) -> None:
        bindings = tuple(b for b, _ in trace)
        if program.trace != bindings:
            raise ProgramBindingError(
                f"the {program.key} program binds other buffers than when it was captured "
                f"({first_difference(program.trace, bindings, labels)}); a frame-step program must reuse the same slot buffers."
            )

    def capture(self, key: str, stream: int, run_traced: Callable[[], None], trace: Sequence[Launch]) -> None:
        """Capture ``run_traced()`` on ``stream`` into a CUDA graph for ``key`` (the eager warm-up has been enqueued)."""
        cuda = self.cuda
        cuda.stream_synchronize(stream)  # the eager warm-up has finished before the capture starts (as trtexec)
        free_before, _ = cuda.mem_get_info()
        try:
            cuda.begin_capture(stream)
        except CudaError as exc:
            return self._failed(key, exc)
        try:
            run_traced()
        except BaseException as exc:
            graph, _error = cuda.try_end_capture(stream)
            if graph:
                cuda.graph_destroy(graph)
            if isinstance(exc, (CudaError, TensorRTError)):
                return self._failed(key, exc)
            raise
        graph, error = cuda.try_end_capture(stream)
        if error is None:
            error = cuda.get_last_error()  # as trtexec: a launch may have failed without the capture noticing
        if error is not None:
            if graph:
                cuda.graph_destroy(graph)
            return self._failed(key, error)
        try:
            graph_exec = cuda.graph_instantiate(graph)
        except CudaError as exc:
            cuda.graph_destroy(graph)
            return self._failed(key, exc)
        free_after, _ = cuda.mem_get_info()
        overhead = max(0, free_before - free_after)
        self.samples.append(overhead)
        self.captured[key] = CapturedProgram(key, graph, graph_exec, tuple(b for b, _ in trace), overhead)

    def _failed(self, key: str, exc: BaseException) -> None:
        # This frame-step's work was already done by the eager run, so running eagerly loses nothing but speed.
        warnings.warn(f"svsr: the {key} frame-step could not be captured as a CUDA graph ({exc}); it runs without one.", RuntimeWarning, stacklevel=5)
        self.failed[key] = FailedCapture(key, str(exc))

    def retry_failed(self) -> None:
        """Forget failed captures (a new frame size: new contexts and buffers may capture)."""
        self.failed.clear()

    def forget_bound(self, gone: set[Binding]) -> None:
        """Destroy every captured program that launches one of these bindings (their contexts are going)."""
        for key, program in list(self.captured.items()):
            if gone.intersection(program.trace):
                self.destroy(program)
                del self.captured[key]

    def forget_touching(self, ptr: int) -> None:
        """Destroy every captured program that reads or writes the buffer at ``ptr`` (it is being freed)."""
        for key, program in list(self.captured.items()):
            if any(ptr in binding[1] for binding in program.trace):
                self.destroy(program)
                del self.captured[key]

    def destroy(self, program: CapturedProgram) -> None:
        self.cuda.graph_exec_destroy(program.graph_exec)
        self.cuda.graph_destroy(program.graph)

    def close(self, attempt: Callable[..., None]) -> None:
        for program in self.captured.values():
            attempt(self.cuda.graph_exec_destroy, program.graph_exec)
            attempt(self.cuda.graph_destroy, program.graph)
        self.captured.clear()


def difference(a: Binding | None, b: Binding, labels: Mapping[int, str]) -> str:
    """How two bindings differ, in buffer labels."""
    if a is None:
        return f"the dry run made no launch {b[0]}"
    if a[0] in BUFFER_OPS or b[0] in BUFFER_OPS:
        def show(x: Binding) -> str:
            window = f" window {x[2]}" if x[2] else ""
            return f"{x[0]} of {', '.join(labels.get(p, hex(p)) for p in x[1])}{window}"

        return f"was {show(a)} and is now {show(b)}"
    if a[0] != b[0] or a[2] != b[2]:
        return f"was {a[0]} with input shapes {a[2]} and is now {b[0]} with {b[2]}"
    tensors = GRAPHS[a[0]].inputs + GRAPHS[a[0]].outputs
    changed = [f"{t.name} to {labels.get(q, hex(q))} instead of {labels.get(p, hex(p))}" for t, p, q in zip(tensors, a[1], b[1]) if p != q]
    return "binds " + ", ".join(changed)


def first_difference(a: Sequence[Binding], b: Sequence[Binding], labels: Mapping[int, str]) -> str:
    """Where two program traces first differ, in buffer labels."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"launch {i} ({x[0]}) {difference(x, y, labels)}"
    return f"{len(a)} launches were captured, {len(b)} are asked for"
