"""The machine: NVIDIA driver, CUDA runtime, TensorRT (and its wheel's CUDA major), GPU, ONNX Runtime,
PyAV's encoders, Ray, PySceneDetect and the export extra.

Probes return plain values; checks judge them, so tests hand checks the values (or the recording
CUDA double) instead of a GPU.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from typing import Any, Iterable

from svsr.checks.check import FAIL, GIB, OK, WARN, Check, cc_tuple, fix, module_version, sentence
from svsr.contract.errors import SvsrError

MIN_COMPUTE_CAPABILITY = (7, 5)  # TensorRT 10/11: Turing or newer
# NVIDIA's TensorRT wheels name the CUDA major they link: tensorrt-cu13, tensorrt-lean-cu12-bindings, ...
TENSORRT_WHEEL = re.compile(r"^tensorrt[-_](?:(?:lean|dispatch)[-_])?cu(\d+)(?:[-_].*)?$")


def install_extra(driver_major: int | None) -> str:
    """The TensorRT install command for a driver of this CUDA major (CUDA 13 when unknown: see :func:`install_fix`)."""
    from svsr.device.tensorrt import NVIDIA_INDEX

    flavour = "tensorrt-cu12" if driver_major == 12 else "tensorrt-cu13"
    return f"pip install --extra-index-url {NVIDIA_INDEX} 'svsr[{flavour}]'"


def install_fix(why: str, driver_major: int | None) -> str:
    """``why``, then the TensorRT install command for this driver; with the driver unknown, which flavour fits which driver."""
    if driver_major is None:
        why += ", with an R580+ driver (with an R525+ CUDA 12 driver the extra is svsr[tensorrt-cu12] instead)"
    return fix(why, install_extra(driver_major))


# -- probes -----------------------------------------------------------------------------------------
def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def probe_cuda_python() -> tuple[int | None, int | None, str | None]:
    """(driver CUDA version or None, cuda-python's CUDA runtime version or None, cuda-python's package version or None)."""
    from svsr.device.cuda import cuda_versions

    try:
        driver, runtime = cuda_versions()
    except Exception:  # noqa: BLE001 - CudaError without cuda-python, or a broken install: treat as absent
        return None, None, None
    return driver, runtime, _dist_version("cuda-python") or _dist_version("cuda-bindings")


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


def tensorrt_wheel_cuda_majors(names: Iterable[str] | None = None) -> dict[str, int]:
    """Installed TensorRT wheels and the CUDA major each links, read from the distribution names (``tensorrt-cu13-libs`` -> 13)."""
    if names is None:
        from importlib.metadata import distributions

        names = (d.metadata["Name"] or "" for d in distributions())
    found = {}
    for name in names:
        match = TENSORRT_WHEEL.match(name.lower())
        if match:
            found[name.lower().replace("_", "-")] = int(match.group(1))
    return dict(sorted(found.items()))


def wheel_driver_problem(wheels: dict[str, int], driver: int | None) -> str | None:
    """The sentence saying why this driver cannot run the installed TensorRT wheels, or None when it can (or is unknown)."""
    from svsr.device.cuda import DRIVER_BRANCH, TENSORRT_EXTRA, format_cuda_version, parse_cuda_version

    if not driver or not wheels:
        return None
    driver_major = parse_cuda_version(driver)[0]
    newer = {name: major for name, major in wheels.items() if major > driver_major}
    if not newer:
        return None
    major = max(newer.values())
    update = f"update the driver to {DRIVER_BRANCH[major]}+" if major in DRIVER_BRANCH else f"update the driver to one for CUDA {major}"
    instead = f"install svsr[{TENSORRT_EXTRA[driver_major]}] instead or " if driver_major in TENSORRT_EXTRA else ""
    return (
        f"the TensorRT wheels {', '.join(newer)} are built for CUDA {major} but the NVIDIA driver supports CUDA "
        f"{format_cuda_version(driver)}; {instead}{update}."
    )


# -- checks -----------------------------------------------------------------------------------------
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
        install_fix("for TensorRT, on a machine with an NVIDIA GPU", None),
    )


def check_cuda_runtime(driver: int | None, runtime: int | None, package: str | None = None) -> Check:
    """cuda-python's CUDA runtime against the driver: newer major than the driver is a FAIL with the fix."""
    from svsr.device.cuda import DRIVER_BRANCH, TENSORRT_EXTRA, driver_problem, format_cuda_version, parse_cuda_version

    name = "CUDA runtime (cuda-python)"
    driver_major = parse_cuda_version(driver)[0] if driver else None
    if runtime is None:
        return Check(
            name, WARN, "cuda-python is not installed: no TensorRT path (ONNX Runtime runs on the CPU)",
            install_fix("for TensorRT", driver_major),
        )  # fmt: skip
    pkg = f"cuda-python {package}" if package else "cuda-python"
    r_major, _ = parse_cuda_version(runtime)
    value = f"{pkg}, CUDA runtime {format_cuda_version(runtime)}"
    figures = {"runtime": runtime, "driver": driver, "package": package}
    if not driver:
        branch = DRIVER_BRANCH.get(r_major, f"a CUDA {r_major}")
        return Check(name, WARN, f"{value}; no NVIDIA driver to run it", fix(f"on a GPU machine it needs a CUDA {r_major} driver ({branch}+); check the driver there with", "nvidia-smi"), figures)
    problem = driver_problem(driver, runtime)
    if problem:
        return Check(name, FAIL, f"{value} on a CUDA {format_cuda_version(driver)} driver", runtime_fix(problem, driver_major), figures)
    note = ""
    if parse_cuda_version(runtime) > parse_cuda_version(driver):
        note = f" (CUDA {format_cuda_version(driver)} driver: minor version compatibility)"
    extra = TENSORRT_EXTRA.get(r_major)
    return Check(name, OK, f"{value}{note}" + (f"; matches svsr[{extra}]" if extra else ""), figures=figures)


def runtime_fix(problem: str, driver_major: int) -> str:
    """A driver/runtime mismatch: the sentence, then the install command of the flavour this driver runs (or, without one, nvidia-smi to check the updated driver)."""
    from svsr.device.cuda import TENSORRT_EXTRA

    if driver_major in TENSORRT_EXTRA:
        return fix(f"{problem.rstrip('.')}; the {TENSORRT_EXTRA[driver_major]} flavour runs on this driver", install_extra(driver_major))
    return fix(f"{problem.rstrip('.')}; then check the driver with", "nvidia-smi")


def check_tensorrt(found: Any = None, why: str | None = None, driver: int | None = None, wheels: dict[str, int] | None = None) -> Check:
    """TensorRT: the full library (builds and runs), the lean runtime (runs --lean engines only), or WARN without it.

    ``wheels``: installed TensorRT wheels and their CUDA major (default: read from the installed
    distributions); a wheel for a newer CUDA major than the driver's is a FAIL.
    """
    from svsr.api import tensorrt_build_problem
    from svsr.device.cuda import parse_cuda_version
    from svsr.device.tensorrt import tensorrt_status

    if found is None and why is None:
        found, why = tensorrt_status()
    driver_major = parse_cuda_version(driver)[0] if driver else None
    if found is None:
        return Check(
            "TensorRT", WARN, f"{why}: svsr runs the graphs on ONNX Runtime (CPU) instead",
            install_fix("for TensorRT engines (to run svsr-export --lean engines only, the extra is svsr[tensorrt-lean-cu13])", driver_major),
        )  # fmt: skip
    wheels = tensorrt_wheel_cuda_majors() if wheels is None else wheels
    figures = {"version": found.version, "flavour": found.flavour, "module": found.name, "wheels": wheels}
    mismatch = wheel_driver_problem(wheels, driver)
    if mismatch:
        return Check("TensorRT", FAIL, why or found.describe(), runtime_fix(mismatch, driver_major or 0), figures)
    if found.lean:
        return Check("TensorRT", WARN, why or found.describe(), install_fix("to build engines here install the full TensorRT", driver_major), figures)
    problem = tensorrt_build_problem(found.module)
    if problem:
        return Check("TensorRT", FAIL, problem, install_fix("reinstall TensorRT", driver_major), figures)
    return Check("TensorRT", OK, why or found.describe(), figures=figures)


def check_gpu(cuda: Any = None) -> tuple[Check, Any]:
    """The GPU CUDA sees: name, compute capability, free memory (WARN without one). Returns (check, cuda api or None)."""
    if cuda is None:
        from svsr.device.cuda import CudaApi, cuda_device_status

        ok, what = cuda_device_status()
        if not ok:
            return Check(
                "GPU", WARN, f"{what}: svsr-run uses ONNX Runtime on the CPU",
                fix("for TensorRT, run the doctor on a machine with an NVIDIA GPU (compute capability 7.5+, Turing or newer)", "svsr-doctor"),
            ), None  # fmt: skip
        try:
            cuda = CudaApi(0)
        except SvsrError as exc:
            return Check("GPU", WARN, f"{exc}: svsr-run uses ONNX Runtime on the CPU", fix("check that the driver sees the GPU and that CUDA_VISIBLE_DEVICES allows it", "nvidia-smi")), None
    name, cc = cuda.device_name(), cuda.compute_capability()
    free, total = cuda.mem_get_info()
    value = f"{name}, compute capability {cc}, {free / GIB:.1f} of {total / GIB:.1f} GiB free"
    figures = {"name": name, "compute_capability": cc, "free_bytes": int(free), "total_bytes": int(total)}
    cc_t = cc_tuple(cc)
    if cc_t is not None and cc_t < MIN_COMPUTE_CAPABILITY:
        return Check("GPU", WARN, value, fix("TensorRT 10/11 need compute capability 7.5+ (Turing or newer); run on ONNX Runtime here", "svsr-run <INPUT> --backend ort --model <BUILD_DIR>"), figures), cuda
    return Check("GPU", OK, value, figures=figures), cuda


def check_onnxruntime() -> Check:
    try:
        import onnxruntime as ort
    except Exception as exc:  # noqa: BLE001
        return Check("ONNX Runtime", FAIL, f"does not import ({sentence(exc)})", "reinstall svsr (onnxruntime is a base dependency): pip install --force-reinstall onnxruntime")
    providers = list(ort.get_available_providers())
    return Check("ONNX Runtime", OK, f"onnxruntime {ort.__version__}, providers {', '.join(providers)}", figures={"version": ort.__version__, "providers": providers})


def check_pyav(encoders: dict[str, bool] | None = None) -> Check:
    """PyAV's encoders for every codec of svsr's codec table (``encoders``: codec -> encodable, default: asked of the video room)."""
    from svsr.contract.codecs import CODECS

    version = module_version("av")
    if version is None:
        return Check("PyAV encoders", FAIL, "PyAV does not import", "reinstall svsr (av is a base dependency): pip install --force-reinstall av")
    if encoders is None:
        from svsr.api import video_encoders

        encoders = video_encoders()
    have = [codec for codec in CODECS if encoders.get(codec)]
    missing = [codec for codec in CODECS if not encoders.get(codec)]
    value = f"av {version}: " + ", ".join([*have, *(f"{c} missing" for c in missing)])
    figures = {"version": version, "encoders": have, "missing": missing}
    if not have:
        return Check("PyAV encoders", FAIL, value, f"this PyAV build encodes none of {'/'.join(CODECS)}: pip install --force-reinstall av", figures)
    if missing:
        advice = fix(
            f"for {', '.join(missing)} install a PyAV built on an FFmpeg with {', '.join(CODECS[c].encoder for c in missing)} "
            f"(until then svsr-run --codec {'/'.join(have)} works); with that FFmpeg's development files installed",
            "pip install --force-reinstall --no-binary av av",
        )
        return Check("PyAV encoders", WARN, value, advice, figures)
    return Check("PyAV encoders", OK, value, figures=figures)


def check_ray() -> Check:
    version = module_version("ray")
    if version is None:
        return Check("Ray", WARN, "not installed: svsr-run --ray is unavailable (shots run in one process)", "pip install 'svsr[ray]'")
    return Check("Ray", OK, f"ray {version} (svsr-run --ray)", figures={"version": version})


def check_scenedetect() -> Check:
    version = module_version("scenedetect")
    if version is None:
        return Check(
            "PySceneDetect", WARN, "not installed: no scene cuts (every input is one shot)",
            fix("install svsr's base dependency (or run svsr-run --no-scene-split)", "pip install scenedetect-headless"),
        )  # fmt: skip
    return Check("PySceneDetect", OK, f"scenedetect {version} (scene cuts)", figures={"version": version})


def check_export_extra() -> Check:
    torch, diffusers = module_version("torch"), module_version("diffusers")
    if torch is None or diffusers is None:
        missing = " and ".join(n for n, v in (("PyTorch", torch), ("diffusers", diffusers)) if v is None)
        return Check(
            "export extra", WARN, f"{missing} not installed: no svsr-export, no PyTorch reference, no tiny-preset export here",
            fix("for svsr-export and the PyTorch reference (svsr-run needs neither)", "pip install 'svsr[export]'"),
        )  # fmt: skip
    return Check("export extra", OK, f"torch {torch}, diffusers {diffusers}", figures={"torch": torch, "diffusers": diffusers})
