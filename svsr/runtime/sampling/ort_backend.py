"""ONNX Runtime backend: CPU by default, CUDA with I/O binding when onnxruntime-gpu and a GPU exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from svsr.contract.errors import ManifestError
from svsr.contract.manifest import check_graph_file
from svsr.contract.precision import Precision, PrecisionLike
from svsr.runtime.sampling.backend import Backend, Buffer

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def cuda_available() -> bool:
    return "CUDAExecutionProvider" in ort.get_available_providers()


def graph_file(build_dir: Path, manifest: Mapping[str, Any], name: str, precision: str, device: str = "cpu") -> Path:
    """The ONNX file of graph ``name`` at ``precision`` ('fp32' is the exported graph), sha-checked.

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
    return check_graph_file(build_dir, name, entry)


class OrtBackend(Backend):
    """Buffers are OrtValues on the session's device; every run binds them by name (no copies on CPU).

    ``device``: ``"auto"`` (CUDA where onnxruntime-gpu sees a GPU), ``"cpu"`` or ``"cuda"``; the
    backend's ``device`` then reads ``"cpu"`` or ``"cuda:0"``.
    """

    name = "ort"

    def __init__(
        self,
        build_dir: str | Path,
        manifest: Mapping[str, Any],
        device: str = "auto",
        precision: PrecisionLike = "fp32",
        graphs: Sequence[str] = ("flow", "denoise", "guide", "decode"),
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
        options.log_severity_level = 3
        build_dir = Path(build_dir)
        self.sessions: dict[str, ort.InferenceSession] = {}
        self.precisions: dict[str, str] = {}
        # ONNX Runtime runs the exported float32 graphs unless a precision is asked for
        self.precision = Precision.parse(precision).resolve(lambda graph, prec: prec == "fp32")
        for name in graphs:
            path = graph_file(build_dir, manifest, name, self.precision.of(name), kind)
            self.sessions[name] = ort.InferenceSession(str(path), options, providers=PROVIDERS[kind])
            self.precisions[name] = self.precision.of(name)
        self._input_types = {
            name: {i.name: i.type for i in s.get_inputs()} for name, s in self.sessions.items()
        }

    def allocate(self, label: str, shape: Sequence[int], dtype: str = "float32", host_io: bool = True) -> Buffer:
        return ort.OrtValue.ortvalue_from_numpy(np.zeros(tuple(shape), dtype=dtype), self._ort_device, 0)

    def upload(self, buffer: Buffer, array: np.ndarray) -> None:
        buffer.update_inplace(np.ascontiguousarray(array, dtype=np.float32))

    def download(self, buffer: Buffer) -> np.ndarray:
        return buffer.numpy()

    def run(self, graph: str, inputs: Mapping[str, Buffer], outputs: Mapping[str, Buffer]) -> None:
        session = self.sessions[graph]
        binding = session.io_binding()
        for name, value in inputs.items():
            binding.bind_ortvalue_input(name, value)
        for name, value in outputs.items():
            binding.bind_ortvalue_output(name, value)
        session.run_with_iobinding(binding)

    def close(self) -> None:
        self.sessions.clear()
