"""ONNX Runtime backend: CPU by default, CUDA with I/O binding when onnxruntime-gpu and a GPU exist.

Sessions of the graphs every run uses are opened (files checked) with the backend, so a damaged build
folder is refused before any work; those only some runs use (``backend.ON_DEMAND_GRAPHS``: the flow
graphs of flow scales 2 and 1, the statistics graphs of tiled runs, whose ``denoise_stats`` holds a
second copy of the UNet + TCM weights) when a frame size that runs them is prepared.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from svsr.contract.errors import InputError, ManifestError
from svsr.contract.graphs import GRAPH_NAMES
from svsr.contract.manifest import check_onnx_graph
from svsr.contract.precision import Precision, PrecisionLike
from svsr.runtime.sampling.backend import ON_DEMAND_GRAPHS, Backend, Buffer

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
# ONNX Runtime's own log lines never reach the user: only fatal ones (the failures become sentences below)
LOG_FATAL_ONLY = 4
# what ONNX Runtime says when an allocation fails (CPU: std::bad_alloc; its arenas and CUDA: "Failed to allocate memory")
_OUT_OF_MEMORY = ("bad_alloc", "failed to allocate memory", "out of memory", "cudaerrormemoryallocation")
# ValueError: a damaged file's strings fail ONNX Runtime's UTF-8 decoding (UnicodeDecodeError)
_ORT_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, ValueError, MemoryError)
try:  # ONNX Runtime's exception classes (Fail, InvalidGraph, InvalidProtobuf, ...) derive from Exception only
    from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

    _ORT_ERRORS += tuple(
        v for k, v in vars(_ort_state).items() if isinstance(v, type) and issubclass(v, Exception) and k[:1].isupper()
    )
except ImportError:  # pragma: no cover - every onnxruntime wheel has it
    pass


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an ONNX Runtime failure is an allocation that did not fit."""
    return isinstance(exc, MemoryError) or any(m in str(exc).lower() for m in _OUT_OF_MEMORY)


def open_session(path: Path, graph: str, options: ort.SessionOptions, providers: list[str], build_dir: Path) -> ort.InferenceSession:
    """An InferenceSession for a (sha- and path-checked) graph file; ONNX Runtime's refusals become one sentence."""
    try:
        # ONNX Runtime's Python layer prints its provider fallback ("EP Error ... Falling back") to stdout
        with contextlib.redirect_stdout(io.StringIO()):
            return ort.InferenceSession(str(path), options, providers=providers)
    except _ORT_ERRORS as exc:
        if is_out_of_memory(exc):
            raise InputError(
                f"loading the {graph} graph ({path}) ran out of memory; free memory on this machine or use one with more."
            ) from None
        raise ManifestError(
            f"ONNX Runtime refused the {graph} graph {path} (a damaged file or external data it cannot read); "
            f"re-export it with svsr-export --force --out {build_dir}."
        ) from None


_shared_arena: bool | None = None  # registered once per process; None: not tried yet, False: unavailable


def low_memory_options(options: ort.SessionOptions) -> None:
    """Session options that keep ONNX Runtime's host memory near one graph's needs.

    By default every session keeps its own CPU arena at its own peak, and memory patterns
    pre-plan one more block per input shape, so the six sessions together hold the sum of their
    peaks (the guide_decode and decode sessions each hold the VAE attention). Instead all sessions
    share one process-wide arena that grows by what is asked (``kSameAsRequested``), and memory
    patterns are off. Measured once (tiny preset, 3 frames of 96x128, 2 steps, 2 threads, on a busy
    2-core machine), peak RSS / time: default 5317 MiB / 26.5 s; patterns off 2800 MiB / 26.6-28.0 s;
    no arena 1412-1494 MiB / 33.8-42.0 s; shared arena + patterns off 1454-1456 MiB / 27.3-30.2 s.
    """
    global _shared_arena
    if _shared_arena is None:
        memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        try:
            ort.create_and_register_allocator(memory, ort.OrtArenaCfg({"arena_extend_strategy": 1}))  # 1: kSameAsRequested
            _shared_arena = True
        except _ORT_ERRORS as exc:  # registered before by someone else in this process: use it; else no arena at all
            _shared_arena = "already registered" in str(exc)
    if _shared_arena:
        options.add_session_config_entry("session.use_env_allocators", "1")
    else:
        options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False


def cuda_available() -> bool:
    return "CUDAExecutionProvider" in ort.get_available_providers()


def graph_file(build_dir: Path, manifest: Mapping[str, Any], name: str, precision: str, device: str = "cpu") -> Path:
    """The ONNX file of graph ``name`` at ``precision`` ('fp32' is the exported graph), checked (paths, sha256, external data).

    On the CPU a typed graph runs through its emulation twin (``ort_cpu_file``: float32 arithmetic
    with every fp16/bf16 value rounded where it is produced), because ONNX Runtime's CPU provider has
    almost no bf16 kernels and silently runs fp16 nodes without a CPU kernel in float32, which would
    hide exactly the overflows the typed graph has on a GPU.
    """
    entry = manifest["graphs"][name]
    if precision != "fp32":
        typed = entry.get("typed", {})
        if precision not in typed:
            raise ManifestError(
                f"{build_dir} has no {precision} {name} graph; run svsr-export --precision {precision} --onnx-only --out {build_dir}."
            )
        entry = typed[precision]
        if device == "cpu" and entry.get("ort_cpu_file"):
            entry = {"file": entry["ort_cpu_file"], "sha256": entry["ort_cpu_sha256"]}
    return check_onnx_graph(build_dir, name, entry)  # paths, sha256 and external data before ONNX Runtime opens it


def frame_size(inputs: Mapping[str, Buffer]) -> str:
    """``"WxH low-resolution"``: the smallest 4-d input of a call (the LR frame or tile; others are 4x)."""
    shapes = [tuple(v.shape()) for v in inputs.values() if len(v.shape()) == 4]
    if not shapes:
        return "this"
    height, width = min(shapes, key=lambda s: s[2] * s[3])[2:]
    return f"{width}x{height} low-resolution"


class OrtBackend(Backend):
    """Buffers are OrtValues on the session's device; every run binds them by name (no copies on CPU).

    ``device``: ``"auto"`` (CUDA where onnxruntime-gpu sees a GPU), ``"cpu"`` or ``"cuda"``; the
    backend's ``device`` then reads ``"cpu"`` or ``"cuda:0"``. ``graphs``: the sessions opened now
    (None: every graph but ``ON_DEMAND_GRAPHS``); any other graph opens when :meth:`prepare` names it
    or it first runs.
    """

    name = "ort"

    def __init__(
        self,
        build_dir: str | Path,
        manifest: Mapping[str, Any],
        device: str = "auto",
        precision: PrecisionLike = "fp32",
        graphs: Sequence[str] | None = None,
        threads: int = 0,
    ) -> None:
        kind = ("cuda" if cuda_available() else "cpu") if device == "auto" else device.split(":")[0]
        if kind not in PROVIDERS:
            raise ValueError(f"ONNX Runtime runs on 'cpu' or 'cuda', not {device!r}.")
        self.device = "cuda:0" if kind == "cuda" else "cpu"
        self._ort_device = kind
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        ort.set_default_logger_severity(LOG_FATAL_ONLY)  # the environment's logger (provider loading) as well
        options.log_severity_level = LOG_FATAL_ONLY
        options.log_verbosity_level = 0
        low_memory_options(options)
        self._build_dir, self._manifest, self._options = Path(build_dir), manifest, options
        self.sessions: dict[str, ort.InferenceSession] = {}
        self._host_arrays: dict[int, tuple[Any, np.ndarray]] = {}  # id(OrtValue) -> (it, the numpy array it shares)
        # ONNX Runtime runs the exported float32 graphs unless a precision is asked for
        self.precision = Precision.parse(precision).resolve(lambda graph, prec: prec == "fp32")
        for name in [g for g in GRAPH_NAMES if g not in ON_DEMAND_GRAPHS] if graphs is None else graphs:
            self._session(name)

    def _session(self, graph: str) -> ort.InferenceSession:
        """The session of ``graph``, opened (its file checked: paths, sha256, external data) on first use."""
        session = self.sessions.get(graph)
        if session is None:
            if graph not in self._manifest["graphs"]:
                raise ManifestError(f"{self._build_dir} has no {graph} graph; re-export it with svsr-export --force --out {self._build_dir}.")
            prec = self.precision.of(graph)
            path = graph_file(self._build_dir, self._manifest, graph, prec, self._ort_device)
            session = self.sessions[graph] = open_session(path, graph, self._options, PROVIDERS[self._ort_device], self._build_dir)
        return session

    @property
    def precisions(self) -> dict[str, str]:
        """The precision each graph runs at (opened now or on demand)."""
        return {graph: self.precision.of(graph) for graph in GRAPH_NAMES}

    def prepare(self, manifest: Mapping[str, Any], height: int, width: int, *, tiles: Any = None, graphs: Sequence[str] | None = None) -> None:
        """Open the sessions this frame size runs that are not open yet (``graphs``; None: the default flow scale's)."""
        from svsr.runtime.sampling.frame_step import graphs_used

        for graph in graphs_used(tiles is not None and not tiles.single) if graphs is None else graphs:
            self._session(graph)

    def allocate(self, label: str, shape: Sequence[int], dtype: str = "float32", host_io: bool = True) -> Buffer:
        array = np.zeros(tuple(shape), dtype=dtype)
        value = ort.OrtValue.ortvalue_from_numpy(array, self._ort_device, 0)
        if self._ort_device == "cpu":  # a CPU OrtValue made from numpy shares that array's memory: windows move in place
            self._host_arrays[id(value)] = (value, array)
        return value

    def _host_array(self, buffer: Buffer) -> np.ndarray | None:
        entry = self._host_arrays.get(id(buffer))
        return entry[1] if entry is not None and entry[0] is buffer else None

    def copy_region(
        self,
        source: Buffer,
        target: Buffer,
        source_origin: tuple[int, int],
        target_origin: tuple[int, int],
        size: tuple[int, int],
    ) -> None:
        (sy, sx), (ty, tx), (rows, cols) = source_origin, target_origin, size
        src, dst = self._host_array(source), self._host_array(target)
        if dst is not None:
            window = (src if src is not None else source.numpy())[..., sy : sy + rows, sx : sx + cols]
            dst[..., ty : ty + rows, tx : tx + cols] = window
            return
        whole = target.numpy()  # a CUDA buffer: through the host (ONNX Runtime has no device-side window copy)
        whole[..., ty : ty + rows, tx : tx + cols] = (src if src is not None else source.numpy())[..., sy : sy + rows, sx : sx + cols]
        target.update_inplace(np.ascontiguousarray(whole))

    def zero(self, buffer: Buffer) -> None:
        array = self._host_array(buffer)
        if array is not None:
            array.fill(0)
        else:
            buffer.update_inplace(np.zeros_like(buffer.numpy()))

    def upload(self, buffer: Buffer, array: np.ndarray) -> None:
        buffer.update_inplace(np.ascontiguousarray(array, dtype=np.float32))

    def download(self, buffer: Buffer) -> np.ndarray:
        return np.array(buffer.numpy())  # a CPU OrtValue's numpy() is a view of the buffer: later runs would change it

    def run(self, graph: str, inputs: Mapping[str, Buffer], outputs: Mapping[str, Buffer]) -> None:
        session = self._session(graph)
        binding = session.io_binding()
        for name, value in inputs.items():
            binding.bind_ortvalue_input(name, value)
        for name, value in outputs.items():
            binding.bind_ortvalue_output(name, value)
        try:
            session.run_with_iobinding(binding)
        except _ORT_ERRORS as exc:
            if not is_out_of_memory(exc):
                raise  # anything else is a bug of ours or of ONNX Runtime: the internal-error sentence says so
            raise InputError(
                f"the {graph} graph ran out of {'GPU' if self._ort_device == 'cuda' else 'host'} memory on a "
                f"{frame_size(inputs)} frame; use a smaller frame (or tiles) or a machine with more memory."
            ) from None

    def close(self) -> None:
        self.sessions.clear()
        self._host_arrays.clear()
