"""svsr-doctor: what this machine can run, checked, with a one-line fix for everything that is missing.

The checks live in svsr/checks/ (machine, pipeline, TensorRT clip, per-graph comparison, build
folder); this module runs them in table order and reports: the aligned table on stdout, ``--json
FILE`` with every check's name, status, value, fix and figures, and the exit code (1 when a check
that could run failed, else 0; WARNs never fail the doctor). A missing GPU or TensorRT is a WARN
that says what runs instead (ONNX Runtime on the CPU) and how to install the rest.

The command-line parser lives in svsr/cli.py (``svsr-doctor``) and maps onto :func:`doctor`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from svsr.checks.check import FAIL, OK, STATUSES, WARN, Check, Report, silent
from svsr.checks.pipeline import CLIP_STEPS, ClipOptions, TensorRTHere, clip_checks

__all__ = ["FAIL", "OK", "STATUSES", "WARN", "Check", "doctor", "exit_code", "format_table", "main", "machine_checks", "run_checks", "to_json", "write_json"]


def machine_checks(trt: Any = None, cuda: Any = None) -> tuple[list[Check], TensorRTHere]:
    """The machine's checks in table order, and what it offers TensorRT (``trt``/``cuda``: doubles in tests)."""
    from svsr.checks import machine
    from svsr.device.tensorrt import TensorRTModule, tensorrt_status

    driver, runtime, package = machine.probe_cuda_python()
    smi_driver, smi_cuda = machine.probe_nvidia_smi()
    cuda_check = machine.check_cuda_runtime(driver, runtime, package)
    checks = [machine.check_svsr(), machine.check_driver(driver, smi_driver, smi_cuda), cuda_check]
    if trt is not None:
        found = TensorRTModule(trt, "full" if hasattr(trt, "Builder") else "lean", getattr(trt, "__name__", "tensorrt"))
        why = found.describe()
    else:
        found, why = tensorrt_status()
    checks.append(machine.check_tensorrt(found, why, driver))
    gpu_check, cuda_api = machine.check_gpu(cuda)
    checks.append(gpu_check)
    checks += [machine.check_onnxruntime(), machine.check_pyav(), machine.check_ray(), machine.check_scenedetect(), machine.check_export_extra()]
    return checks, TensorRTHere(found=found, cuda=cuda_api, driver_ok=cuda_check.status != FAIL, trt=trt)


def _machine_env(here: TensorRTHere) -> tuple[Any, str]:
    """This machine's MachineEnv for the engine verdict, or (None, why not)."""
    from svsr.device.machine import machine_env

    if here.found is None or here.cuda is None:
        return None, "no TensorRT" if here.found is None else "no NVIDIA GPU"
    try:
        return machine_env(trt=here.found.module, lean=here.found.lean, cuda=here.cuda), ""
    except Exception as exc:  # noqa: BLE001 - a driver or library failure while asking
        return None, " ".join(str(exc).split()) or type(exc).__name__


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
    report: Report = silent,
) -> list[Check]:
    """Every check, in table order.

    ``model``: a build folder whose engine records to check against this machine. ``tiny_build``: an
    exported tiny-preset build folder to use as it is (no export); else the tiny preset is exported
    into ``work_dir`` (reused when up to date) or a temporary folder. ``clip``: run the end-to-end
    clip (False: machine checks only); ``parity``: compare it with the PyTorch reference.
    ``trt``/``cuda``: TensorRT module and CUDA API to use (tests pass doubles).
    """
    from svsr.checks.build_folder import check_model

    report("svsr-doctor: checking the machine")
    checks, here = machine_checks(trt, cuda)
    if clip:
        options = ClipOptions(
            work_dir=Path(work_dir) if work_dir is not None else None, tiny_build=Path(tiny_build) if tiny_build is not None else None,
            parity=parity, frames=tuple(frames) if frames is not None else None, steps=steps, report=report,
        )  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="svsr-doctor-") as tmp:
            checks += clip_checks(Path(tmp), options, here)
    if model is not None:
        report(f"svsr-doctor: checking {model}")
        env, why_not = _machine_env(here)
        checks += check_model(model, env, why_not)
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
