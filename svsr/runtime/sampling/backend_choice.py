"""The backend chooser: open a build folder on ONNX Runtime or TensorRT (`auto` prefers engines made for this GPU).

Whether an engine runs here is decided once, by ``svsr.contract.engine_records.problems(record,
env)`` against this machine's :class:`~svsr.contract.engine_records.MachineEnv`
(``svsr.device.machine.machine_env()``): ``auto`` takes TensorRT when the engine of every graph
has no problem, the TensorRT loader raises the first problem, and the doctor prints them all
(:func:`engine_problems`).

Before the TensorRT path is taken (``trt``, or ``auto`` for a build folder with engines where
TensorRT imports), the NVIDIA driver is checked against the CUDA runtime that cuda-python links:
a driver too old for it is one sentence naming both versions and the extra to install, not a
silent fallback to ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from svsr.contract.backends import ORT, TRT, Auto, BackendLike, Reference, backend_options
from svsr.contract.engine_records import MachineEnv, choose_precision, engine_key, problems
from svsr.contract.errors import InputError, MissingDependencyError
from svsr.contract.graphs import GRAPH_NAMES
from svsr.contract.manifest import load_manifest
from svsr.contract.precision import PrecisionLike
from svsr.device.cuda import check_cuda_driver
from svsr.device.tensorrt import INSTALL_FULL, INSTALL_LEAN, tensorrt_importable
from svsr.runtime.sampling.sampler import Sampler
from svsr.runtime.sampling.trt_plans import skipped_by_profile


def engine_problems(manifest: Mapping[str, Any], env: MachineEnv, precision: PrecisionLike = "auto") -> dict[str, list[str]]:
    """Per graph, why its engine at ``precision`` cannot run on ``env`` (empty lists for all: TensorRT runs here).

    The engine judged is the one the TensorRT loader would load (``auto``: the fastest precision
    built per graph); a graph without one says so.
    """
    engines = manifest.get("engines") or {}
    try:
        chosen = choose_precision(manifest, precision).per_graph()
    except Exception as exc:  # noqa: BLE001 - e.g. guide_decode and decode built in different precisions
        return {graph: [str(exc)] for graph in GRAPH_NAMES}
    found: dict[str, list[str]] = {}
    for graph in GRAPH_NAMES:
        record = engines.get(engine_key(graph, chosen[graph]))
        if record is None and skipped_by_profile(engines, graph):  # a flow scale the build's frames are too small for: none on purpose
            found[graph] = []
            continue
        found[graph] = [f"has no {chosen[graph]} engine"] if record is None else problems(record, env)
    return found


def engines_match_this_machine(manifest: Mapping[str, Any], precision: PrecisionLike = "auto") -> bool:
    """The engine of every graph runs on this machine (:func:`engine_problems` finds nothing); False without TensorRT or a GPU."""
    from svsr.device.machine import machine_env_or_reason

    env, _why = machine_env_or_reason()
    return env is not None and not any(engine_problems(manifest, env, precision).values())


def _check_tensorrt_usable() -> None:
    check_cuda_driver()
    if not tensorrt_importable():
        raise MissingDependencyError(
            "--backend trt needs TensorRT (the full library or its lean runtime) and cuda-python on a machine with an NVIDIA GPU; "
            f"install it with {INSTALL_FULL} or {INSTALL_LEAN}, or use --backend ort."
        )


def open_sampler(build_dir: str | Path, backend: BackendLike = "auto", precision: PrecisionLike = "auto") -> Sampler:
    """A Sampler over ``build_dir`` on ``backend``: ``"auto"``, ``"ort"``, ``"trt"`` or their options (``svsr.ORT(threads=2)``, ``svsr.TRT(cuda_graphs=False)``).

    ``sampler.backend.name`` says which backend was chosen and ``sampler.backend.device`` where it
    runs. ``precision`` auto: TensorRT takes the lowest-precision engine built per graph (fp16 >
    bf16 > fp32); ONNX Runtime runs the float32 graphs. A mapping {graph: precision} fixes each graph.
    """
    options = backend_options(backend)
    if isinstance(options, Reference):
        raise InputError("the reference backend runs a checkpoint, not a build folder; open it with svsr.Upscaler.open(backend='reference', weights=...).")
    build_dir = Path(build_dir)
    if not build_dir.is_dir():
        raise InputError(f"--model {build_dir} is not a folder; run svsr-export --out {build_dir} first.")
    manifest = load_manifest(build_dir)
    if isinstance(options, Auto):
        chosen: ORT | TRT = ORT(threads=options.threads)
        if manifest.get("engines") and tensorrt_importable():
            check_cuda_driver()  # a driver too old for cuda-python is said, not silently run on ONNX Runtime
            if engines_match_this_machine(manifest, precision):
                chosen = TRT()
        options = chosen
    if isinstance(options, TRT):
        _check_tensorrt_usable()
        from svsr.runtime.sampling.trt_backend import open_trt_backend

        return Sampler(open_trt_backend(build_dir, manifest, precision, cuda_graphs=options.cuda_graphs, device=options.device), manifest)
    from svsr.runtime.sampling.ort_backend import OrtBackend

    return Sampler(OrtBackend(build_dir, manifest, precision=precision, threads=options.threads), manifest)
