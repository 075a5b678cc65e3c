"""svsr-doctor: what this machine can run, checked, with a one-line fix for everything that is missing.

Each check is a small function returning a :class:`Check` (name, OK / WARN / FAIL, value, fix):

* the machine: NVIDIA driver (cuda-python's ``cudaDriverGetVersion``, else ``nvidia-smi``), the
  CUDA runtime cuda-python links against that driver (a runtime newer than the driver's CUDA major
  is a FAIL with the sentence ``svsr-run`` also says), TensorRT (full library: builds and runs;
  lean runtime: runs ``--lean`` engines only), the GPU (name, compute capability, free memory),
  ONNX Runtime's providers, PyAV's encoders, Ray, PySceneDetect and the export extra;
* the pipeline, end to end on the tiny preset (random weights, exported here or reused): a
  4-frame x 3-step clip of 32x32 frames through ONNX Runtime on the CPU (seconds per frame-step),
  against the PyTorch reference with the same ``--noise torch`` draws (max abs difference
  <= 1e-4); where the full TensorRT and a GPU exist, fp32 and fp16 engines built in a temporary
  folder (build time) and the same clip through TensorRT eagerly and with CUDA graphs: fp32 within
  2/255 and fp16 within 8/255 of ONNX Runtime, CUDA graphs bit-equal to eager, time per frame-step;
* ``--model BUILD``: the build folder's engine records against this machine (TensorRT version,
  GPU, precision, lean runtime), with the command that rebuilds them here where they differ.

A missing GPU or TensorRT is a WARN that says what the user gets instead (ONNX Runtime on the CPU)
and how to install the rest. The exit code is 1 when a check that could run failed, else 0.
``--json FILE`` writes every check (name, status, value, fix, figures) for a bug report.

The GPU checks take ``trt`` / ``cuda`` so tests drive them with the recording TensorRT/CUDA test
doubles; the command-line parser lives in svsr/cli.py (``svsr-doctor``) and maps onto :func:`doctor`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from svsr.contract.errors import SvsrError

OK, WARN, FAIL = "OK", "WARN", "FAIL"
STATUSES = (OK, WARN, FAIL)
CLIP_FRAMES, CLIP_STEPS, CLIP_SIZE = 4, 3, (32, 32)  # the end-to-end clip: frames x steps of HxW
TOLERANCE = {"fp32": 2 / 255, "fp16": 8 / 255, "bf16": 8 / 255}  # TensorRT vs ONNX Runtime (float32), max abs
PARITY_TOLERANCE = 1e-4  # ONNX Runtime vs the PyTorch reference, same torch noise draws
MIN_COMPUTE_CAPABILITY = (7, 5)  # TensorRT 10/11: Turing or newer
BF16_COMPUTE_CAPABILITY = (8, 0)
ENCODERS = {"h264": "libx264", "h265": "libx265", "vp9": "libvpx-vp9", "ffv1": "ffv1"}
GIB = 1 << 30

Report = Callable[[str], None]


def _silent(_message: str) -> None:
    pass


@dataclass
class Check:
    """One line of the doctor's table: what was checked, OK / WARN / FAIL, what was found, how to fix it."""

    name: str
    status: str
    value: str
    fix: str = ""
    figures: dict[str, Any] = field(default_factory=dict)  # numbers behind the value (JSON only)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check status {self.status!r} is not one of {', '.join(STATUSES)}")
        self.value = " ".join(str(self.value).split())
        self.fix = " ".join(str(self.fix).split())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Here:
    """What the engine records of a build folder are compared with: this machine's TensorRT and GPU."""

    tensorrt_version: str | None = None
    lean: bool = False
    gpu_name: str | None = None
    compute_capability: str | None = None


def _sentence(exc: BaseException) -> str:
    if isinstance(exc, SvsrError):
        return str(exc)
    what = " ".join(str(exc).split())[:300] or "no message"
    return f"{type(exc).__name__}: {what}"


def _cc_tuple(cc: str | None) -> tuple[int, int] | None:
    if not cc:
        return None
    try:
        major, minor = (int(p) for p in str(cc).split(".")[:2])
    except ValueError:
        return None
    return major, minor


def _install_extra(driver_major: int | None) -> str:
    """The TensorRT install line for a driver of this CUDA major (both flavours when unknown)."""
    from svsr.device.tensorrt import NVIDIA_INDEX

    if driver_major == 12:
        return f"pip install --extra-index-url {NVIDIA_INDEX} 'svsr[tensorrt-cu12]'"
    if driver_major is not None and driver_major >= 13:
        return f"pip install --extra-index-url {NVIDIA_INDEX} 'svsr[tensorrt-cu13]'"
    return (
        f"pip install --extra-index-url {NVIDIA_INDEX} 'svsr[tensorrt-cu13]' on an R580+ driver "
        "(svsr[tensorrt-cu12] on R525+ CUDA 12 drivers)"
    )


# -- probes: what is installed (each returns plain values; the checks below judge them) -----------
def probe_cuda_python() -> tuple[int | None, int | None, str | None]:
    """(driver CUDA version or None, cuda-python's CUDA runtime version or None, cuda-python's package version or None)."""
    from svsr.device.cuda import CudaError, cuda_versions

    try:
        driver, runtime = cuda_versions()
    except CudaError:
        return None, None, None
    except Exception:  # noqa: BLE001 - a broken cuda-python install: treat as absent
        return None, None, None
    try:
        from importlib.metadata import version

        package = version("cuda-python") if _dist_exists("cuda-python") else version("cuda-bindings")
    except Exception:  # noqa: BLE001
        package = None
    return driver, runtime, package


def _dist_exists(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(name)
        return True
    except PackageNotFoundError:
        return False


def probe_nvidia_smi(timeout: float = 10.0) -> tuple[str | None, str | None]:
    """(driver version like "550.54.15", CUDA version like "12.4") from ``nvidia-smi``, or Nones when it is absent or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, None
    try:
        out = subprocess.run([exe], capture_output=True, text=True, timeout=timeout).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    driver = re.search(r"Driver Version:\s*([\d.]+)", out)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", out)
    return (driver.group(1) if driver else None), (cuda.group(1) if cuda else None)


# -- the machine ------------------------------------------------------------------------------------
def check_svsr() -> Check:
    import svsr

    return Check("svsr", OK, f"svsr {svsr.__version__}, Python {platform.python_version()} on {platform.system()} {platform.machine()}")


def check_driver(driver: int | None, smi_driver: str | None = None, smi_cuda: str | None = None) -> Check:
    """The NVIDIA driver: the CUDA version it supports (cuda-python), or what ``nvidia-smi`` says, or WARN without one."""
    from svsr.device.cuda import format_cuda_version

    branch = f"driver {smi_driver}, " if smi_driver else ""
    if driver:
        return Check("NVIDIA driver", OK, f"{branch}supports CUDA {format_cuda_version(driver)}", figures={"cuda": driver, "driver": smi_driver})
    if smi_driver or smi_cuda:
        return Check("NVIDIA driver", OK, f"{branch}supports CUDA {smi_cuda or '?'} (nvidia-smi)", figures={"cuda": smi_cuda, "driver": smi_driver})
    return Check(
        "NVIDIA driver",
        WARN,
        "no NVIDIA driver: svsr runs the graphs on ONNX Runtime on the CPU (slow for real models)",
        "for TensorRT, use a machine with an NVIDIA GPU and driver: R580+ (CUDA 13, svsr[tensorrt-cu13]) or R525+ (CUDA 12, svsr[tensorrt-cu12])",
    )


def check_cuda_runtime(driver: int | None, runtime: int | None, package: str | None = None) -> Check:
    """cuda-python's CUDA runtime against the driver: newer major than the driver is a FAIL with the fix."""
    from svsr.device.cuda import DRIVER_BRANCH, TENSORRT_EXTRA, driver_problem, format_cuda_version, parse_cuda_version

    name = "CUDA runtime (cuda-python)"
    driver_major = parse_cuda_version(driver)[0] if driver else None
    if runtime is None:
        return Check(
            name, WARN, "cuda-python is not installed: no TensorRT path (ONNX Runtime runs on the CPU)",
            f"for TensorRT: {_install_extra(driver_major)}",
        )  # fmt: skip
    pkg = f"cuda-python {package}" if package else "cuda-python"
    r_major, _ = parse_cuda_version(runtime)
    value = f"{pkg}, CUDA runtime {format_cuda_version(runtime)}"
    figures = {"runtime": runtime, "driver": driver, "package": package}
    if not driver:
        branch = DRIVER_BRANCH.get(r_major, f"a CUDA {r_major}")
        return Check(name, WARN, f"{value}; no NVIDIA driver to run it", f"on a GPU machine it needs a CUDA {r_major} driver ({branch}+)", figures)
    problem = driver_problem(driver, runtime)
    if problem:
        return Check(name, FAIL, f"{value} on a CUDA {format_cuda_version(driver)} driver", problem, figures)
    note = ""
    if parse_cuda_version(runtime) > parse_cuda_version(driver):
        note = f" (CUDA {format_cuda_version(driver)} driver: minor version compatibility)"
    extra = TENSORRT_EXTRA.get(r_major)
    return Check(name, OK, f"{value}{note}" + (f"; matches svsr[{extra}]" if extra else ""), figures=figures)


def check_tensorrt(found: Any = None, why: str | None = None, driver: int | None = None) -> Check:
    """TensorRT: the full library (builds and runs), the lean runtime (runs --lean engines only), or WARN without it."""
    from svsr.device.cuda import parse_cuda_version
    from svsr.device.tensorrt import INSTALL_LEAN, tensorrt_status

    if found is None and why is None:
        found, why = tensorrt_status()
    driver_major = parse_cuda_version(driver)[0] if driver else None
    install = _install_extra(driver_major)
    if found is None:
        return Check(
            "TensorRT", WARN, f"{why}: svsr runs the graphs on ONNX Runtime (CPU) instead",
            f"for TensorRT engines: {install}; for running --lean engines only: {INSTALL_LEAN}",
        )  # fmt: skip
    figures = {"version": found.version, "flavour": found.flavour, "module": found.name}
    if found.lean:
        return Check("TensorRT", WARN, why or found.describe(), f"to build engines here install the full TensorRT: {install}", figures)
    from svsr.contract.errors import MissingDependencyError
    from svsr.engines.builder import check_tensorrt_version

    try:
        check_tensorrt_version(found.module)
    except MissingDependencyError as exc:
        return Check("TensorRT", FAIL, str(exc), install, figures)
    return Check("TensorRT", OK, why or found.describe(), figures=figures)


def check_gpu(cuda: Any = None) -> tuple[Check, Any]:
    """The GPU CUDA sees: name, compute capability, free memory (WARN without one). Returns (check, cuda api or None)."""
    if cuda is None:
        from svsr.device.cuda import CudaApi, cuda_device_status

        ok, what = cuda_device_status()
        if not ok:
            return Check(
                "GPU", WARN, f"{what}: svsr-run uses ONNX Runtime on the CPU",
                "for TensorRT, run on a machine with an NVIDIA GPU (compute capability 7.5+, Turing or newer)",
            ), None  # fmt: skip
        try:
            cuda = CudaApi(0)
        except SvsrError as exc:
            return Check("GPU", WARN, f"{exc}: svsr-run uses ONNX Runtime on the CPU", "check the driver and CUDA_VISIBLE_DEVICES"), None
    name, cc = cuda.device_name(), cuda.compute_capability()
    free, total = cuda.mem_get_info()
    value = f"{name}, compute capability {cc}, {free / GIB:.1f} of {total / GIB:.1f} GiB free"
    figures = {"name": name, "compute_capability": cc, "free_bytes": int(free), "total_bytes": int(total)}
    cc_t = _cc_tuple(cc)
    if cc_t is not None and cc_t < MIN_COMPUTE_CAPABILITY:
        return Check("GPU", WARN, value, "TensorRT 10/11 need compute capability 7.5+ (Turing or newer); use ONNX Runtime here", figures), cuda
    return Check("GPU", OK, value, figures=figures), cuda


def check_onnxruntime() -> Check:
    try:
        import onnxruntime as ort
    except Exception as exc:  # noqa: BLE001
        return Check("ONNX Runtime", FAIL, f"does not import ({_sentence(exc)})", "reinstall svsr (onnxruntime is a base dependency): pip install --force-reinstall onnxruntime")
    providers = list(ort.get_available_providers())
    return Check("ONNX Runtime", OK, f"onnxruntime {ort.__version__}, providers {', '.join(providers)}", figures={"version": ort.__version__, "providers": providers})


def check_pyav() -> Check:
    try:
        import av
    except Exception as exc:  # noqa: BLE001
        return Check("PyAV encoders", FAIL, f"PyAV does not import ({_sentence(exc)})", "reinstall svsr (av is a base dependency): pip install --force-reinstall av")
    have, missing = [], []
    for codec, encoder in ENCODERS.items():
        try:
            av.codec.Codec(encoder, "w")
            have.append(codec)
        except Exception:  # noqa: BLE001 - any failure means this FFmpeg build cannot encode it
            missing.append(codec)
    value = f"av {av.__version__}: " + ", ".join([*have, *(f"{c} missing" for c in missing)])
    figures = {"version": av.__version__, "encoders": have, "missing": missing}
    if not have:
        return Check("PyAV encoders", FAIL, value, "this PyAV build encodes none of h264/h265/vp9/ffv1: pip install --force-reinstall av", figures)
    if missing:
        fix = f"svsr-run --codec {'/'.join(have)} works; for {', '.join(missing)} install a PyAV build whose FFmpeg has {', '.join(ENCODERS[c] for c in missing)}"
        return Check("PyAV encoders", WARN, value, fix, figures)
    return Check("PyAV encoders", OK, value, figures=figures)


def _module_version(module: str) -> str | None:
    import importlib

    try:
        return str(getattr(importlib.import_module(module), "__version__", "installed"))
    except Exception:  # noqa: BLE001 - missing or broken: not available
        return None


def check_ray() -> Check:
    version = _module_version("ray")
    if version is None:
        return Check("Ray", WARN, "not installed: svsr-run --ray is unavailable (shots run in one process)", "pip install 'svsr[ray]'")
    return Check("Ray", OK, f"ray {version} (svsr-run --ray)", figures={"version": version})


def check_scenedetect() -> Check:
    version = _module_version("scenedetect")
    if version is None:
        return Check(
            "PySceneDetect", WARN, "not installed: no scene cuts (every input is one shot)",
            "pip install scenedetect-headless (a base dependency of svsr), or run svsr-run --no-scene-split",
        )  # fmt: skip
    return Check("PySceneDetect", OK, f"scenedetect {version} (scene cuts)", figures={"version": version})


def check_export_extra() -> Check:
    torch, diffusers = _module_version("torch"), _module_version("diffusers")
    if torch is None or diffusers is None:
        missing = " and ".join(n for n, v in (("PyTorch", torch), ("diffusers", diffusers)) if v is None)
        return Check(
            "export extra", WARN, f"{missing} not installed: no svsr-export, no PyTorch reference, no tiny-preset check here",
            "pip install 'svsr[export]' (the runtime needs neither: svsr-run works on exported build folders)",
        )  # fmt: skip
    return Check("export extra", OK, f"torch {torch}, diffusers {diffusers}", figures={"torch": torch, "diffusers": diffusers})


# -- the pipeline on the tiny preset --------------------------------------------------------------
def clip_frames(num_frames: int = CLIP_FRAMES, size: tuple[int, int] = CLIP_SIZE, seed: int = 0) -> list[np.ndarray]:
    """The doctor's LR clip: ``num_frames`` HxWx3 uint8 frames, deterministic."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(num_frames)]


def check_tiny_export(work_dir: str | Path, report: Report = _silent) -> tuple[Check, Path | None]:
    """Export the tiny preset (random weights) into ``work_dir`` (reused when up to date): the export path works here."""
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return Check(
            "tiny preset export", WARN, "skipped: PyTorch/diffusers are not installed",
            "pip install 'svsr[export]' to export (or export elsewhere and copy the build folder)",
        ), None  # fmt: skip
    import svsr

    start = time.perf_counter()
    try:
        svsr.export_model("preset:tiny", work_dir, engines=False)
    except Exception as exc:  # noqa: BLE001 - the check reports it
        return Check("tiny preset export", FAIL, f"failed: {_sentence(exc)}", "rerun svsr-doctor with --debug and attach its --json to a bug report"), None
    seconds = time.perf_counter() - start
    return Check("tiny preset export", OK, f"float32 graphs in {seconds:.1f} s ({work_dir})", figures={"seconds": round(seconds, 3)}), Path(work_dir)


def _per_frame_step(seconds: float, frames: Sequence[np.ndarray], steps: int) -> float:
    return seconds / max(1, len(frames) * steps)


def check_ort_clip(build: Path, frames: Sequence[np.ndarray], steps: int, noise: str) -> tuple[Check, list[np.ndarray] | None]:
    """The clip through ONNX Runtime on the CPU: OK with seconds per frame-step."""
    import svsr

    name = "ONNX Runtime clip (CPU)"
    h, w = frames[0].shape[:2]
    try:
        with svsr.Upscaler.open(build, backend="ort") as upscaler:
            start = time.perf_counter()
            out = upscaler.upscale(frames, steps, seed=0, noise=noise)
            seconds = time.perf_counter() - start
            label = upscaler.label
    except Exception as exc:  # noqa: BLE001
        return Check(name, FAIL, f"{len(frames)} frames x {steps} steps failed: {_sentence(exc)}", "rerun with --debug and attach the --json to a bug report"), None
    per = _per_frame_step(seconds, frames, steps)
    value = f"{len(frames)} frames x {steps} steps of {w}x{h} in {seconds:.2f} s: {per:.3f} s per frame-step ({label}, noise {noise})"
    figures = {"frames": len(frames), "steps": steps, "size": [w, h], "seconds": round(seconds, 4), "seconds_per_frame_step": round(per, 5), "noise": noise}
    return Check(name, OK, value, figures=figures), out


def max_abs_diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    if len(a) != len(b):
        return float("inf")
    return max((float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) for x, y in zip(a, b)), default=0.0)


def check_reference_parity(build: Path, frames: Sequence[np.ndarray], steps: int, ort_out: Sequence[np.ndarray]) -> Check:
    """ONNX Runtime against the PyTorch reference with the same ``--noise torch`` draws: max abs diff <= 1e-4."""
    import svsr

    name = "ONNX Runtime vs PyTorch reference"
    weights = Path(build) / "checkpoint"
    if not weights.is_dir():
        return Check(name, WARN, f"skipped: {build} has no checkpoint/ folder to run the reference from", "point --work-dir at a tiny-preset build")
    try:
        start = time.perf_counter()
        with svsr.Upscaler.open(backend="reference", weights=weights) as reference:
            ref = reference.upscale(frames, steps, seed=0, noise="torch")
        seconds = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001
        return Check(name, FAIL, f"the reference failed: {_sentence(exc)}", "rerun with --debug and attach the --json to a bug report")
    diff = max_abs_diff(ort_out, ref)
    figures = {"max_abs_diff": diff, "tolerance": PARITY_TOLERANCE, "reference_seconds": round(seconds, 3), "noise": "torch"}
    value = f"max abs diff {diff:.2e} (<= {PARITY_TOLERANCE:.0e}), same torch noise draws"
    if diff <= PARITY_TOLERANCE:
        return Check(name, OK, value, figures=figures)
    return Check(name, FAIL, value.replace("<=", "over"), "the exported graphs do not reproduce the reference: re-export with svsr-export --force and report it", figures)


def check_typed_graphs(build: Path, frames: Sequence[np.ndarray], precision: str = "fp16") -> Check:
    """fp16 typed graphs (ModelOpt AutoCast, calibrated on the clip) beside the float32 ones, for fp16 engines."""
    import svsr
    from svsr.contract.errors import MissingDependencyError

    name = f"{precision} graphs"
    start = time.perf_counter()
    try:
        svsr.export_model("preset:tiny", build, precision=precision, engines=False, calibration_frames=list(frames), calibration_steps=2)
    except MissingDependencyError as exc:
        return Check(name, WARN, f"skipped: {exc}", "pip install 'svsr[precision]' for fp16/bf16 graphs and engines")
    except Exception as exc:  # noqa: BLE001
        return Check(name, FAIL, f"AutoCast failed: {_sentence(exc)}", "rerun with --debug and attach the --json to a bug report")
    seconds = time.perf_counter() - start
    return Check(name, OK, f"typed graphs in {seconds:.1f} s", figures={"seconds": round(seconds, 3)})


def check_engine_build(
    build: Path, manifest: Mapping[str, Any], precision: str, profile: Any, *, trt: Any = None, cuda: Any = None, lean: bool = False
) -> tuple[Check, dict[str, Any]]:
    """Build (fresh) ``precision`` engines for ``profile`` in ``build``: OK with the build time. Returns the manifest with them."""
    from svsr.contract.manifest import write_manifest
    from svsr.engines.builder import build_engines

    name = f"TensorRT {precision} engines"
    start = time.perf_counter()
    try:
        engines = build_engines(build, manifest, precision, profile, _silent, force=True, lean=lean, trt=trt, cuda=cuda)
    except Exception as exc:  # noqa: BLE001
        return Check(name, FAIL, f"build failed: {_sentence(exc)}", "rerun with --debug and attach the --json to a bug report"), dict(manifest)
    seconds = time.perf_counter() - start
    updated = {**manifest, "engines": engines}
    write_manifest(build, updated)
    size = sum(r.get("size_bytes", 0) for k, r in engines.items() if k.endswith(f".{precision}"))
    figures = {"build_seconds": round(seconds, 3), "plan_bytes": size, "profile": profile.to_json()}
    count = sum(k.endswith(f".{precision}") for k in engines)
    return Check(name, OK, f"{count} plans ({size / 1e6:.1f} MB) built in {seconds:.1f} s for {profile.describe()}", figures=figures), updated


def _trt_run(
    build: Path, manifest: Mapping[str, Any], precision: str, frames: Sequence[np.ndarray], steps: int, noise: str,
    *, cuda_graphs: bool, runs: int, trt: Any, cuda: Any, lean: bool | None,
) -> tuple[list[list[np.ndarray]], float]:  # fmt: skip
    """Outputs of ``runs`` runs of the clip on one TensorRT backend, and the seconds of the last one."""
    from svsr.device.noise import make_noise
    from svsr.runtime.sampling import Sampler
    from svsr.runtime.sampling import open_trt_backend

    backend = open_trt_backend(build, manifest, precision, trt=trt, cuda=cuda, cuda_graphs=cuda_graphs, lean=lean)
    sampler = Sampler(backend, manifest)
    outputs, seconds = [], 0.0
    try:
        for _ in range(runs):
            start = time.perf_counter()
            outputs.append(sampler.upscale(frames, num_inference_steps=steps, noise=make_noise(noise, 0)))
            seconds = time.perf_counter() - start
    finally:
        sampler.close()
    return outputs, seconds


def check_trt_clip(
    build: Path, manifest: Mapping[str, Any], precision: str, frames: Sequence[np.ndarray], steps: int, noise: str,
    reference: Sequence[np.ndarray], *, trt: Any = None, cuda: Any = None, lean: bool | None = None,
) -> list[Check]:  # fmt: skip
    """The clip through TensorRT eagerly (vs ONNX Runtime, within TOLERANCE) and with CUDA graphs (bit-equal to eager)."""
    tol = TOLERANCE[precision]
    eager_name, graphs_name = f"TensorRT {precision} eager vs ONNX Runtime", f"TensorRT {precision} CUDA graphs vs eager"
    try:
        # twice: the first run makes the execution contexts, the second is the steady eager speed
        (_, eager), eager_s = _trt_run(build, manifest, precision, frames, steps, noise, cuda_graphs=False, runs=2, trt=trt, cuda=cuda, lean=lean)
    except Exception as exc:  # noqa: BLE001
        fail = Check(eager_name, FAIL, f"the clip failed: {_sentence(exc)}", "rerun with --debug and attach the --json to a bug report")
        return [fail, Check(graphs_name, WARN, "skipped: the eager run failed", "fix the eager run first")]
    diff = max_abs_diff(eager, reference)
    per = _per_frame_step(eager_s, frames, steps)
    figures = {"max_abs_diff": diff, "tolerance": tol, "seconds_per_frame_step": round(per, 6)}
    value = f"max abs diff {diff:.2e} (<= {tol * 255:.0f}/255); {per * 1e3:.2f} ms per frame-step"
    checks = [
        Check(eager_name, OK, value, figures=figures)
        if diff <= tol
        else Check(eager_name, FAIL, value.replace("<=", "over"), f"the {precision} engines drift from the float32 graphs: attach the --json to a bug report", figures)
    ]
    try:
        runs, graph_s = _trt_run(build, manifest, precision, frames, steps, noise, cuda_graphs=True, runs=2, trt=trt, cuda=cuda, lean=lean)
    except Exception as exc:  # noqa: BLE001
        checks.append(Check(graphs_name, FAIL, f"the clip with CUDA graphs failed: {_sentence(exc)}", "attach the --json to a bug report"))
        return checks
    worst = max(max_abs_diff(run, eager) for run in runs)
    equal = all(len(run) == len(eager) and all(np.array_equal(a, b) for a, b in zip(run, eager)) for run in runs)
    per_g = _per_frame_step(graph_s, frames, steps)
    figures = {"bit_equal": equal, "max_abs_diff": worst, "seconds_per_frame_step": round(per_g, 6), "eager_seconds_per_frame_step": round(per, 6)}
    if equal:
        checks.append(Check(graphs_name, OK, f"bit-equal (capture and replay); {per_g * 1e3:.2f} ms per frame-step (eager {per * 1e3:.2f})", figures=figures))
    else:
        checks.append(Check(graphs_name, FAIL, f"differ from eager by up to {worst:.2e}", "a CUDA-graph replay bug: attach the --json to a bug report", figures))
    return checks


def trt_pipeline_checks(
    build: Path, frames: Sequence[np.ndarray], steps: int, noise: str, reference: Sequence[np.ndarray], work: Path,
    *, trt: Any = None, cuda: Any = None, precisions: Sequence[str] = ("fp32", "fp16"), report: Report = _silent,
) -> list[Check]:  # fmt: skip
    """Engines built in ``work`` (a copy of ``build``) for the clip's size, then the clip through them."""
    from svsr.contract.manifest import load_manifest
    from svsr.contract.profiles import Profile, pad_side

    trt_dir = Path(work) / "trt"
    if trt_dir.exists():
        shutil.rmtree(trt_dir)
    shutil.copytree(build, trt_dir, ignore=shutil.ignore_patterns("engines", "*.plan"))
    h, w = frames[0].shape[:2]
    profile = Profile.static(pad_side(h), pad_side(w))
    checks: list[Check] = []
    for precision in precisions:
        manifest = load_manifest(trt_dir)
        if precision != "fp32" and not all(precision in (g.get("typed") or {}) for g in manifest["graphs"].values()):
            report(f"svsr-doctor: {precision} graphs (ModelOpt AutoCast)")
            typed = check_typed_graphs(trt_dir, frames, precision)
            if typed.status != OK:
                checks.append(typed)
                continue
            manifest = load_manifest(trt_dir)
        report(f"svsr-doctor: building TensorRT {precision} engines")
        built, manifest = check_engine_build(trt_dir, manifest, precision, profile, trt=trt, cuda=cuda)
        checks.append(built)
        if built.status != OK:
            continue
        report(f"svsr-doctor: the clip through TensorRT {precision}")
        checks += check_trt_clip(trt_dir, manifest, precision, frames, steps, noise, reference, trt=trt, cuda=cuda)
    return checks


# -- a build folder's engines against this machine ------------------------------------------------
def _engine_groups(engines: Mapping[str, Mapping[str, Any]]) -> dict[tuple, dict[str, Mapping[str, Any]]]:
    groups: dict[tuple, dict[str, Mapping[str, Any]]] = {}
    for key, record in engines.items():
        where = (record.get("tensorrt_version"), record.get("gpu_name"), record.get("compute_capability"), bool(record.get("version_compatible")))
        groups.setdefault(where, {})[key] = record
    return groups


def check_model(build_dir: str | Path, here: Here) -> list[Check]:
    """The build folder's manifest and engine records against this machine (TensorRT, GPU, precision, lean runtime)."""
    from svsr.contract.engine_records import rebuild_command, validate_engines
    from svsr.contract.graphs import GRAPH_NAMES
    from svsr.contract.manifest import load_manifest
    from svsr.contract.precision import Precision
    from svsr.contract.profiles import Profile
    from svsr.runtime.sampling import lean_rebuild_command

    build_dir = Path(build_dir)
    try:
        manifest = load_manifest(build_dir)
        engines = validate_engines(manifest.get("engines") or {}, str(build_dir / "manifest.json"))
    except Exception as exc:  # noqa: BLE001
        return [Check("model", FAIL, f"{build_dir} cannot be used", _sentence(exc))]
    typed = sorted({p for g in manifest["graphs"].values() for p in (g.get("typed") or {})})
    source = (manifest.get("checkpoint") or {}).get("source") or "?"
    checks = [Check("model", OK, f"{build_dir}: graphs {', '.join(manifest['graphs'])} (float32{''.join(', ' + p for p in typed)}) from {source}")]
    where_here = "this machine" if here.gpu_name else "the GPU machine that will run them"
    if not engines:
        precision = "fp16" if all("fp16" in (g.get("typed") or {}) for g in manifest["graphs"].values()) else "fp32"
        command = rebuild_command(manifest, build_dir, precision, Profile.from_args(resolution="320x180")).replace(" --force", "")
        checks.append(Check("model engines", WARN, "no TensorRT engines: svsr-run uses ONNX Runtime", f"build them on {where_here} with: {command}"))
        return checks
    for (version, gpu, cc, compatible), records in _engine_groups(engines).items():
        keys = sorted(records, key=lambda k: (GRAPH_NAMES.index(records[k]["graph"]), k))
        try:
            per_graph = Precision.parse("auto").resolve(lambda g, p: f"{g}.{p}" in records)
        except SvsrError:  # guide and decode built in different precisions: rebuild both in fp32
            per_graph = Precision.parse("fp32")
        first = records[keys[0]]
        profile = Profile.from_json(first["profile"])
        lean = compatible or bool(first.get("lean"))
        problems = []
        if here.tensorrt_version is None:
            problems.append("this machine has no TensorRT")
        elif here.tensorrt_version != version:
            problems.append(f"built with TensorRT {version} but this machine has TensorRT {here.tensorrt_version}{' (lean runtime)' if here.lean else ''}")
        if here.gpu_name is None:
            problems.append("this machine has no NVIDIA GPU")
        elif (here.gpu_name, here.compute_capability) != (gpu, cc):
            problems.append(f"built for {gpu} (compute capability {cc}) but this machine has {here.gpu_name} (compute capability {here.compute_capability})")
        if here.lean and not compatible:
            problems.append("not version-compatible, and this machine has only TensorRT's lean runtime")
        here_cc = _cc_tuple(here.compute_capability)
        if here_cc is not None and here_cc < BF16_COMPUTE_CAPABILITY and any(r["precision"] == "bf16" for r in records.values()):
            problems.append(f"bf16 engines need compute capability 8.0+, this GPU has {here.compute_capability}")
        missing = [g for g in GRAPH_NAMES if not any(r["graph"] == g for r in records.values())]
        if missing:
            problems.append(f"no engine for {', '.join(missing)}")
        value = (
            f"{', '.join(keys)} for {gpu} (compute capability {cc}), TensorRT {version}"
            f"{', version-compatible (lean)' if lean else ''}, {profile.describe()}"
        )
        figures = {"engines": keys, "tensorrt_version": version, "gpu_name": gpu, "compute_capability": cc, "version_compatible": compatible}
        if not problems:
            checks.append(Check("model engines", OK, value + ": run here", figures=figures))
            continue
        command = rebuild_command(manifest, build_dir, per_graph, profile)
        if lean or here.lean:
            command = lean_rebuild_command(command)
        fix = f"{'; '.join(problems)}; rebuild on {where_here} with: {command}"
        checks.append(Check("model engines", WARN, value + ": svsr-run uses ONNX Runtime instead", fix, figures))
    return checks


# -- everything -----------------------------------------------------------------------------------
def run_checks(
    model: str | Path | None = None,
    *,
    work_dir: str | Path | None = None,
    tiny_build: str | Path | None = None,
    clip: bool = True,
    parity: bool = True,
    frames: Sequence[np.ndarray] | None = None,
    steps: int = CLIP_STEPS,
    trt: Any = None,
    cuda: Any = None,
    report: Report = _silent,
) -> list[Check]:
    """Every check, in table order.

    ``model``: a build folder whose engine records to check against this machine. ``tiny_build``: an
    exported tiny-preset build folder to use as it is (no export); else the tiny preset is exported
    into ``work_dir`` (reused when up to date) or a temporary folder. ``clip``: run the end-to-end
    clip (False: machine checks only); ``parity``: compare it with the PyTorch reference.
    ``trt``/``cuda``: TensorRT module and CUDA API to use (tests pass doubles).
    """
    report("svsr-doctor: checking the machine")
    driver, runtime, package = probe_cuda_python()
    smi_driver, smi_cuda = probe_nvidia_smi()
    cuda_check = check_cuda_runtime(driver, runtime, package)
    checks = [check_svsr(), check_driver(driver, smi_driver, smi_cuda), cuda_check]
    if trt is not None:
        from svsr.device.tensorrt import TensorRTModule

        found = TensorRTModule(trt, "full" if hasattr(trt, "Builder") else "lean", getattr(trt, "__name__", "tensorrt"))
        checks.append(check_tensorrt(found, found.describe(), driver))
    else:
        from svsr.device.tensorrt import tensorrt_status

        found, why = tensorrt_status()
        checks.append(check_tensorrt(found, why, driver))
    gpu_check, cuda_api = check_gpu(cuda)
    checks.append(gpu_check)
    checks += [check_onnxruntime(), check_pyav(), check_ray(), check_scenedetect(), check_export_extra()]
    driver_ok = cuda_check.status != FAIL
    here = Here(
        tensorrt_version=found.version if found is not None else None,
        lean=bool(found is not None and found.lean),
        gpu_name=gpu_check.figures.get("name"),
        compute_capability=gpu_check.figures.get("compute_capability"),
    )

    if clip:
        with tempfile.TemporaryDirectory(prefix="svsr-doctor-") as tmp:
            checks += _clip_checks(Path(tmp), work_dir, tiny_build, parity, frames, steps, found, cuda_api, driver_ok, gpu_check, trt, report)
    if model is not None:
        report(f"svsr-doctor: checking {model}")
        checks += check_model(model, here)
    return checks


def _clip_checks(tmp: Path, work_dir, tiny_build, parity, frames, steps, found, cuda_api, driver_ok, gpu_check, trt, report) -> list[Check]:
    checks: list[Check] = []
    if tiny_build is not None:
        build: Path | None = Path(tiny_build)
        checks.append(Check("tiny preset export", OK, f"reused {build}"))
    else:
        report("svsr-doctor: exporting the tiny preset (random weights)")
        export, build = check_tiny_export(Path(work_dir) if work_dir is not None else tmp / "tiny", report)
        checks.append(export)
    if build is None:
        checks.append(Check("ONNX Runtime clip (CPU)", WARN, "skipped: no tiny-preset build to run", "pip install 'svsr[export]', or pass --work-dir with a tiny-preset build"))
        return checks
    frames = list(frames) if frames is not None else clip_frames()
    has_torch = _module_version("torch") is not None
    noise = "torch" if has_torch else "philox"
    report(f"svsr-doctor: {len(frames)} frames x {steps} steps through ONNX Runtime")
    ort_check, ort_out = check_ort_clip(build, frames, steps, noise)
    checks.append(ort_check)
    if ort_out is not None and parity:
        if has_torch:
            report("svsr-doctor: the same clip through the PyTorch reference")
            checks.append(check_reference_parity(build, frames, steps, ort_out))
        else:
            checks.append(Check("ONNX Runtime vs PyTorch reference", WARN, "skipped: PyTorch is not installed", "pip install 'svsr[export]'"))
    can_build = found is not None and not found.lean and cuda_api is not None and driver_ok
    if not can_build:
        reasons = [
            *(["no NVIDIA GPU"] if cuda_api is None else []),
            *(["no TensorRT"] if found is None else ["only TensorRT's lean runtime, which cannot build engines"] if found.lean else []),
            *([] if driver_ok else ["the NVIDIA driver cannot run cuda-python's CUDA runtime"]),
        ]
        checks.append(Check(
            "TensorRT clip", WARN, f"skipped ({'; '.join(reasons)}): svsr-run uses ONNX Runtime on the CPU here",
            "see the TensorRT, GPU and driver lines above for what to install",
        ))  # fmt: skip
        return checks
    if ort_out is None:
        checks.append(Check("TensorRT clip", WARN, "skipped: no ONNX Runtime result to compare with", "fix the ONNX Runtime clip first"))
        return checks
    checks += trt_pipeline_checks(build, frames, steps, noise, ort_out, tmp, trt=trt, cuda=cuda_api, report=report)
    return checks


def exit_code(checks: Sequence[Check]) -> int:
    """1 when a check that could run failed, else 0 (WARNs never fail the doctor)."""
    return 1 if any(c.status == FAIL for c in checks) else 0


def format_table(checks: Sequence[Check]) -> str:
    """The human table: one aligned row per check, its fix indented on the next line."""
    width = max([len("check"), *(len(c.name) for c in checks)])
    lines = [f"{'check':{width}s}  {'status':6s}  value", f"{'-' * width}  {'-' * 6}  {'-' * 5}"]
    for c in checks:
        lines.append(f"{c.name:{width}s}  {c.status:6s}  {c.value}")
        if c.fix:
            lines.append(f"{'':{width}s}  {'':6s}  fix: {c.fix}")
    failed, warned = sum(c.status == FAIL for c in checks), sum(c.status == WARN for c in checks)
    lines.append("")
    lines.append(f"{len(checks)} checks: {len(checks) - failed - warned} OK, {warned} WARN, {failed} FAIL")
    return "\n".join(lines)


def to_json(checks: Sequence[Check]) -> dict[str, Any]:
    import svsr

    return {
        "svsr": svsr.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "exit_code": exit_code(checks),
        "checks": [c.to_json() for c in checks],
    }


def write_json(path: str | Path, checks: Sequence[Check]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(to_json(checks), indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def doctor(
    model: str | Path | None = None,
    json_path: str | Path | None = None,
    work_dir: str | Path | None = None,
    *,
    out: Report = print,
    report: Report | None = None,
) -> int:
    """What ``svsr-doctor`` does: run every check, print the table, write the JSON; returns the exit code."""
    from svsr.contract.errors import InputError

    if report is None:
        report = lambda message: print(message, file=sys.stderr)  # noqa: E731 - progress on stderr, the table on stdout
    if model is not None and not Path(model).is_dir():
        raise InputError(f"--model {model} is not a folder; give a build folder written by svsr-export.")
    if work_dir is not None and Path(work_dir).exists() and not Path(work_dir).is_dir():
        raise InputError(f"--work-dir {work_dir} is a file; give a folder for the tiny preset's build.")
    if json_path is not None and Path(json_path).is_dir():
        raise InputError(f"--json {json_path} is a folder; give a file name like doctor.json.")
    checks = run_checks(model, work_dir=work_dir, report=report)
    out(format_table(checks))
    if json_path is not None:
        write_json(json_path, checks)
        report(f"svsr-doctor: wrote {json_path}")
    return exit_code(checks)


def main(argv: Sequence[str] | None = None) -> int:
    """``svsr-doctor`` (the parser lives in svsr.cli, like the other tools')."""
    from svsr.cli import doctor_main

    return doctor_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
