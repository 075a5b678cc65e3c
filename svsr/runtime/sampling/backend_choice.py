"""The backend chooser: open a build folder on ONNX Runtime or TensorRT (`auto` prefers engines made for this GPU).

Before the TensorRT path is taken (``--backend trt``, or ``auto`` for a build folder with engines
where TensorRT imports), the NVIDIA driver is checked against the CUDA runtime that cuda-python
links: a driver too old for it is one sentence naming both versions and the extra to install,
not a silent fallback to ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from svsr.device.cuda import check_cuda_driver
from svsr.contract.errors import InputError, MissingDependencyError
from svsr.contract.manifest import load_manifest
from svsr.contract.precision import PrecisionLike
from svsr.device.tensorrt import INSTALL_FULL, INSTALL_LEAN, import_tensorrt_runtime, tensorrt_importable
from svsr.runtime.sampling.sampler import Sampler


def engines_match_this_machine(manifest: Mapping[str, Any]) -> bool:
    """Every graph has an engine record made with this machine's TensorRT version and GPU model.

    With only TensorRT's lean runtime, only version-compatible records (``svsr-export --lean``) count.
    """
    from svsr.contract.graphs import GRAPH_NAMES
    from svsr.device.cuda import CudaApi

    try:
        trt, flavour, _name = import_tensorrt_runtime()
        cuda = CudaApi(0)
        here = (str(trt.__version__), cuda.device_name(), cuda.compute_capability())
    except Exception:  # noqa: BLE001 - no TensorRT or no usable GPU: TensorRT cannot run here
        return False
    matching = {
        record.get("graph")
        for record in (manifest.get("engines") or {}).values()
        if (record.get("tensorrt_version"), record.get("gpu_name"), record.get("compute_capability")) == here
        and (flavour == "full" or record.get("version_compatible"))
    }
    return matching >= set(GRAPH_NAMES)


def open_sampler(build_dir: str | Path, backend: str = "auto", precision: PrecisionLike = "auto", threads: int = 0) -> tuple[Sampler, str]:
    """A Sampler over ``build_dir`` on ``backend`` (auto|ort|trt) and a label for progress output.

    ``precision`` auto: TensorRT takes the lowest-precision engine built per graph (fp16 > bf16 >
    fp32); ONNX Runtime runs the float32 graphs. A mapping {graph: precision} fixes each graph.
    """
    build_dir = Path(build_dir)
    if not build_dir.is_dir():
        raise InputError(f"--model {build_dir} is not a folder; run svsr-export --out {build_dir} first.")
    manifest = load_manifest(build_dir)
    if backend == "auto":
        backend = "ort"
        if manifest.get("engines") and tensorrt_importable():
            check_cuda_driver()  # a driver too old for cuda-python is said, not silently run on ONNX Runtime
            if engines_match_this_machine(manifest):
                backend = "trt"
    if backend == "trt":
        check_cuda_driver()
        if not tensorrt_importable():
            raise MissingDependencyError(
                "--backend trt needs TensorRT (the full library or its lean runtime) and cuda-python on a machine with an NVIDIA GPU; "
                f"install it with {INSTALL_FULL} or {INSTALL_LEAN}, or use --backend ort."
            )
        from svsr.runtime.sampling.trt_backend import open_trt_sampler

        return open_trt_sampler(build_dir, manifest, precision), "trt"
    if backend != "ort":
        raise InputError(f"unknown backend {backend!r}; use auto, ort or trt.")
    from svsr.runtime.sampling.ort_backend import OrtBackend

    ort_backend = OrtBackend(build_dir, manifest, precision=precision, threads=threads)
    return Sampler(ort_backend, manifest), f"ort-{ort_backend.device}"
