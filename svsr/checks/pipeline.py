"""The pipeline end to end on the tiny preset (random weights): export, a clip through ONNX Runtime
on the CPU, the same clip through the PyTorch reference, then (where TensorRT can build) through
TensorRT engines (svsr/checks/tensorrt_clip.py).

A host without PyTorch cannot export or run the reference, but it still runs an exported tiny build
(``--work-dir`` holding one) through ONNX Runtime and TensorRT; the reference comparison is then a
WARN saying why it was skipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from svsr.checks.check import BUG_REPORT, FAIL, OK, WARN, Check, Report, bug_report, doctor_command, fix, module_version, sentence, silent
from svsr.checks.recorders import GraphInputRecorder, recording

CLIP_FRAMES, CLIP_STEPS, CLIP_SIZE = 4, 3, (32, 32)  # the end-to-end clip: frames x steps of HxW
PARITY_TOLERANCE = 1e-4  # ONNX Runtime vs the PyTorch reference, same torch noise draws
ORT_CLIP = "ONNX Runtime clip (CPU)"
PARITY = "ONNX Runtime vs PyTorch reference"


@dataclass(frozen=True)
class ClipOptions:
    """What the end-to-end clip runs on: which tiny build, which frames, how many steps, parity or not."""

    work_dir: Path | None = None  # the tiny preset is exported here (kept, reused when up to date); None: a temporary folder
    tiny_build: Path | None = None  # an exported tiny-preset build used as it is (no export)
    parity: bool = True  # compare ONNX Runtime with the PyTorch reference
    frames: tuple[np.ndarray, ...] | None = None  # default: clip_frames()
    steps: int = CLIP_STEPS
    report: Report = silent


@dataclass(frozen=True)
class TensorRTHere:
    """What this machine offers TensorRT: the TensorRT found (or None), the CUDA API (or None), a usable driver.

    ``trt``: the module to build and run with, ``loaders``: polygraphy's TensorRT loaders (tests pass
    the recording doubles); None: ``found``'s module and polygraphy's own loaders.
    """

    found: Any = None  # svsr.device.tensorrt.TensorRTModule
    cuda: Any = None
    driver_ok: bool = True
    trt: Any = None
    loaders: Any = None

    def why_not(self) -> list[str]:
        """Why engines cannot be built and run here (empty: they can)."""
        return [
            *(["no NVIDIA GPU"] if self.cuda is None else []),
            *(["no TensorRT"] if self.found is None else ["only TensorRT's lean runtime, which cannot build engines"] if self.found.lean else []),
            *([] if self.driver_ok else ["the NVIDIA driver cannot run cuda-python's CUDA runtime"]),
        ]


def clip_frames(num_frames: int = CLIP_FRAMES, size: tuple[int, int] = CLIP_SIZE, seed: int = 0) -> list[np.ndarray]:
    """The doctor's LR clip: ``num_frames`` HxWx3 uint8 frames, deterministic."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(num_frames)]


def per_frame_step(seconds: float, frames: Sequence[np.ndarray], steps: int) -> float:
    return seconds / max(1, len(frames) * steps)


def max_abs_diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    if len(a) != len(b):
        return float("inf")
    return max((float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) for x, y in zip(a, b)), default=0.0)


def torch_available() -> bool:
    return module_version("torch") is not None


DEFAULT_TINY_DIR = "svsr-tiny"  # where the printed fix puts the tiny build (relative: run it where svsr-doctor runs)


def tiny_build_fix(work_dir: Path | None) -> str:
    """Commands that, run as printed, give the doctor a tiny-preset build to run the clip on (without PyTorch here)."""
    import shlex

    folder = work_dir if work_dir is not None else Path(DEFAULT_TINY_DIR)
    return fix(
        f"export a tiny-preset build and re-run the doctor on it (or run the svsr-export where PyTorch is installed and copy {folder} here)",
        f"pip install 'svsr[export]' && svsr-export --preset tiny --onnx-only --out {shlex.quote(str(folder))} && {doctor_command(folder)}",
    )


def reexport_fix(why: str, build: Path) -> str:
    """``why``, then the commands that export the tiny preset (with its checkpoint) into ``build`` again and re-run the doctor on it."""
    import shlex

    return fix(why, f"svsr-export --preset tiny --onnx-only --force --out {shlex.quote(str(build))} && {doctor_command(build)}")


def check_tiny_export(work_dir: str | Path, report: Report = silent) -> tuple[Check, Path | None]:
    """Export the tiny preset (random weights) into ``work_dir`` (reused when up to date): the export path works here.

    Without PyTorch a tiny build already in ``work_dir`` is used as it is (exported elsewhere).
    """
    import svsr

    work_dir = Path(work_dir)
    if not torch_available() or module_version("diffusers") is None:
        if (work_dir / "manifest.json").is_file():
            return Check("tiny preset export", OK, f"reused {work_dir} (PyTorch is not installed here, so it is not exported again)"), work_dir
        return Check(
            "tiny preset export", WARN, f"skipped: PyTorch/diffusers are not installed and {work_dir} holds no tiny-preset build",
            tiny_build_fix(work_dir),
        ), None  # fmt: skip
    start = time.perf_counter()
    try:
        svsr.export_model("preset:tiny", work_dir, engines=False)
    except Exception as exc:  # noqa: BLE001 - the check reports it
        return Check("tiny preset export", FAIL, f"failed: {sentence(exc)}", BUG_REPORT), None
    seconds = time.perf_counter() - start
    return Check("tiny preset export", OK, f"float32 graphs in {seconds:.1f} s ({work_dir})", figures={"seconds": round(seconds, 3)}), work_dir


def check_ort_clip(build: Path, frames: Sequence[np.ndarray], steps: int, noise: str) -> tuple[Check, list[np.ndarray] | None, dict[str, dict[str, np.ndarray]]]:
    """The clip through ONNX Runtime on the CPU: OK with seconds per frame-step.

    Returns the check, the output frames (None when it failed) and each graph's inputs of its first
    run (what the per-graph engine comparison feeds both runtimes).
    """
    import svsr

    h, w = frames[0].shape[:2]
    try:
        with svsr.Upscaler.open(build, backend="ort") as upscaler:
            with recording(upscaler, GraphInputRecorder) as recorder:
                start = time.perf_counter()
                out = upscaler.upscale(frames, steps, seed=0, noise=noise)
                seconds = time.perf_counter() - start
            label = upscaler.label
    except Exception as exc:  # noqa: BLE001
        return Check(ORT_CLIP, FAIL, f"{len(frames)} frames x {steps} steps failed: {sentence(exc)}", BUG_REPORT), None, {}
    per = per_frame_step(seconds, frames, steps)
    value = f"{len(frames)} frames x {steps} steps of {w}x{h} in {seconds:.2f} s: {per:.3f} s per frame-step ({label}, noise {noise})"
    figures = {"frames": len(frames), "steps": steps, "size": [w, h], "seconds": round(seconds, 4), "seconds_per_frame_step": round(per, 5), "noise": noise}
    return Check(ORT_CLIP, OK, value, figures=figures), out, recorder.inputs


def check_reference_parity(build: Path, frames: Sequence[np.ndarray], steps: int, ort_out: Sequence[np.ndarray]) -> Check:
    """ONNX Runtime against the PyTorch reference with the same ``--noise torch`` draws: max abs diff <= 1e-4."""
    import svsr

    weights = Path(build) / "checkpoint"
    if not weights.is_dir():
        return Check(PARITY, WARN, f"skipped: {build} has no checkpoint/ folder to run the reference from", reexport_fix("export the tiny preset again, with its checkpoint", build))
    try:
        start = time.perf_counter()
        with svsr.Upscaler.open(backend="reference", weights=weights) as reference:
            ref = reference.upscale(frames, steps, seed=0, noise="torch")
        seconds = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001
        return Check(PARITY, FAIL, f"the reference failed: {sentence(exc)}", BUG_REPORT)
    diff = max_abs_diff(ort_out, ref)
    figures = {"max_abs_diff": diff, "tolerance": PARITY_TOLERANCE, "reference_seconds": round(seconds, 3), "noise": "torch"}
    value = f"max abs diff {diff:.2e} (<= {PARITY_TOLERANCE:.0e}), same torch noise draws"
    if diff <= PARITY_TOLERANCE:
        return Check(PARITY, OK, value, figures=figures)
    return Check(PARITY, FAIL, value.replace("<=", "over"), reexport_fix("the exported graphs do not reproduce the reference; export them again, and if this stays a FAIL report it", build), figures)


def clip_checks(tmp: Path, options: ClipOptions, here: TensorRTHere) -> list[Check]:
    """The tiny preset's export, its clip through ONNX Runtime (and the reference), then through TensorRT where it can build."""
    from svsr.checks.tensorrt_clip import trt_pipeline_checks

    report = options.report
    checks: list[Check] = []
    if options.tiny_build is not None:
        build: Path | None = Path(options.tiny_build)
        checks.append(Check("tiny preset export", OK, f"reused {build}"))
    else:
        target = Path(options.work_dir) if options.work_dir is not None else tmp / "tiny"
        if torch_available() and not (target / "manifest.json").is_file():  # without PyTorch an existing build is reused, never exported
            report("svsr-doctor: exporting the tiny preset (random weights)")
        export, build = check_tiny_export(target, report)
        checks.append(export)
    if build is None:
        checks.append(Check(ORT_CLIP, WARN, "skipped: no tiny-preset build to run", tiny_build_fix(options.work_dir)))
        return checks
    frames = list(options.frames) if options.frames is not None else clip_frames()
    steps = options.steps
    has_torch = torch_available()
    noise = "torch" if has_torch else "philox"
    report(f"svsr-doctor: {len(frames)} frames x {steps} steps through ONNX Runtime")
    ort_check, ort_out, graph_inputs = check_ort_clip(build, frames, steps, noise)
    checks.append(ort_check)
    if ort_out is not None and options.parity:
        if has_torch:
            report("svsr-doctor: the same clip through the PyTorch reference")
            checks.append(check_reference_parity(build, frames, steps, ort_out))
        else:
            checks.append(Check(
                PARITY, WARN, "skipped: PyTorch is not installed, so the clip is compared with ONNX Runtime only",
                fix("to compare with the PyTorch reference too", "pip install 'svsr[export]'" + (f" && {doctor_command(options.work_dir)}" if options.work_dir else "")),
            ))  # fmt: skip
    reasons = here.why_not()
    if reasons:
        checks.append(Check(
            "TensorRT clip", WARN, f"skipped ({'; '.join(reasons)}): svsr-run uses ONNX Runtime on the CPU here",
            fix("after the fixes of the driver, TensorRT and GPU lines above, re-run", doctor_command(options.work_dir)),
        ))  # fmt: skip
        return checks
    if ort_out is None:
        checks.append(Check("TensorRT clip", WARN, "skipped: no ONNX Runtime result to compare with", bug_report("the ONNX Runtime clip above failed")))
        return checks
    trt = here.trt if here.trt is not None else here.found.module
    checks += trt_pipeline_checks(build, frames, steps, noise, ort_out, tmp, trt=trt, cuda=here.cuda, loaders=here.loaders, graph_inputs=graph_inputs, report=report)
    return checks
