"""The tiny preset through TensorRT: engines built in the doctor's own folder, compared with ONNX
Runtime per graph (svsr/checks/per_graph.py), then the whole clip eagerly (within the precision's
tolerance of ONNX Runtime) and with CUDA graphs (bit-equal to eager, every frame-step program
captured: a capture that failed and fell back to eager is a FAIL, not a comparison of eager with eager).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from svsr.checks.check import BUG_REPORT, FAIL, OK, WARN, Check, Report, bug_report, fix, sentence, silent
from svsr.checks.per_graph import GraphRunners, check_engines_per_graph
from svsr.checks.pipeline import max_abs_diff, per_frame_step
from svsr.checks.recorders import LaunchRecorder, recording

TOLERANCE = {"fp32": 2 / 255, "fp16": 8 / 255, "bf16": 8 / 255}  # TensorRT vs ONNX Runtime (float32), max abs


def check_typed_graphs(build: Path, frames: Sequence[np.ndarray], precision: str = "fp16") -> Check:
    """fp16 typed graphs (ModelOpt AutoCast, calibrated on the clip) beside the float32 ones, for fp16 engines."""
    import svsr
    from svsr.contract.errors import MissingDependencyError

    name = f"{precision} graphs"
    start = time.perf_counter()
    try:
        svsr.export_model("preset:tiny", build, precision=precision, engines=False, calibration_frames=list(frames), calibration_steps=2)
    except MissingDependencyError as exc:
        return Check(name, WARN, f"skipped: {exc}", fix("for fp16/bf16 graphs and engines", "pip install 'svsr[export,precision]'"))
    except Exception as exc:  # noqa: BLE001
        return Check(name, FAIL, f"AutoCast failed: {sentence(exc)}", BUG_REPORT)
    seconds = time.perf_counter() - start
    return Check(name, OK, f"typed graphs in {seconds:.1f} s", figures={"seconds": round(seconds, 3)})


def check_engine_build(build: Path, manifest: Mapping[str, Any], precision: str, profile: Any, *, trt: Any = None, cuda: Any = None,
                       loaders: Any = None, lean: bool = False) -> tuple[Check, dict[str, Any]]:  # fmt: skip
    """Build (fresh) ``precision`` engines for ``profile`` in ``build``: OK with the build time. Returns the manifest with them."""
    from svsr.api import build_engines

    name = f"TensorRT {precision} engines"
    start = time.perf_counter()
    try:
        updated = build_engines(build, precision, profile, trt=trt, cuda=cuda, loaders=loaders, lean=lean, force=True)
    except Exception as exc:  # noqa: BLE001
        return Check(name, FAIL, f"build failed: {sentence(exc)}", BUG_REPORT), dict(manifest)
    seconds = time.perf_counter() - start
    built = {k: r for k, r in updated["engines"].items() if k.endswith(f".{precision}")}
    size = sum(r.get("size_bytes", 0) for r in built.values())
    figures = {"build_seconds": round(seconds, 3), "plan_bytes": size, "profile": profile.to_json()}
    return Check(name, OK, f"{len(built)} plans ({size / 1e6:.1f} MB) built in {seconds:.1f} s for {profile.describe()}", figures=figures), updated


@dataclass
class TrtRun:
    """What runs of the clip on one TensorRT backend gave: outputs per run, seconds of the last, programs launched and captured."""

    outputs: list[list[np.ndarray]]
    seconds: float
    launched: list[str]  # frame-step program keys the sampler launched
    captured: int = 0  # programs the backend holds as CUDA graphs
    failed: tuple[str, ...] = ()  # program keys whose capture failed (they ran eagerly)
    reasons: dict[str, str] = field(default_factory=dict)  # why, per failed key


def _field(report: Any, name: str) -> Any:
    return report[name] if isinstance(report, Mapping) else getattr(report, name)


def trt_run(build: Path, precision: str, frames: Sequence[np.ndarray], steps: int, noise: str, *, cuda_graphs: bool, runs: int,
            trt: Any, cuda: Any, lean: bool | None) -> TrtRun:  # fmt: skip
    """``runs`` runs of the clip on one TensorRT backend (through svsr.api), with the backend's capture report."""
    from svsr.api import open_tensorrt

    run = TrtRun([], 0.0, [])
    with open_tensorrt(build, precision, cuda_graphs=cuda_graphs, trt=trt, cuda=cuda, lean=lean) as upscaler:
        with recording(upscaler, LaunchRecorder) as launches:
            for _ in range(runs):
                start = time.perf_counter()
                run.outputs.append(upscaler.upscale(frames, steps, seed=0, noise=noise))
                run.seconds = time.perf_counter() - start
            run.launched = list(launches.keys)
            if cuda_graphs:
                report = launches.inner.capture_report()
                run.captured, run.failed = int(_field(report, "captured")), tuple(_field(report, "failed"))
                run.reasons = {str(k): str(v) for k, v in dict(report.get("reasons") or {}).items()} if isinstance(report, Mapping) else {}
    return run


def capture_check(name: str, eager: Sequence[np.ndarray], run: TrtRun, eager_per: float, frames: Sequence[np.ndarray], steps: int) -> Check:
    """CUDA graphs against eager: every program the clip launched captured, and the replays bit-equal to eager."""
    worst = max(max_abs_diff(out, eager) for out in run.outputs)
    equal = all(len(out) == len(eager) and all(np.array_equal(a, b) for a, b in zip(out, eager)) for out in run.outputs)
    per = per_frame_step(run.seconds, frames, steps)
    needed = len(run.launched)
    figures = {
        "bit_equal": equal, "max_abs_diff": worst, "seconds_per_frame_step": round(per, 6), "eager_seconds_per_frame_step": round(eager_per, 6),
        "programs": run.launched, "captured": run.captured, "capture_failed": list(run.failed), "capture_errors": run.reasons,
    }  # fmt: skip
    if run.failed:
        return Check(
            name, FAIL, f"{len(run.failed)} of {needed} frame-step programs could not be captured as CUDA graphs ({', '.join(run.failed)}) "
            "and ran eagerly, so their replay was never compared",
            bug_report(f"a CUDA-graph capture failure ({'; '.join(f'{k} {v}' for k, v in run.reasons.items()) or 'see the warning above'})"), figures,
        )  # fmt: skip
    if needed == 0 or run.captured != needed:
        return Check(
            name, FAIL, f"{run.captured} CUDA graphs captured for the {needed} frame-step programs the clip launches ({', '.join(run.launched) or 'none'})",
            bug_report("the TensorRT backend did not capture every frame-step program"), figures,
        )  # fmt: skip
    if not equal:
        return Check(name, FAIL, f"differ from eager by up to {worst:.2e}", bug_report("a CUDA-graph replay bug"), figures)
    return Check(name, OK, f"bit-equal ({needed} programs captured and replayed); {per * 1e3:.2f} ms per frame-step (eager {eager_per * 1e3:.2f})", figures=figures)


def check_trt_clip(
    build: Path, precision: str, frames: Sequence[np.ndarray], steps: int, noise: str, reference: Sequence[np.ndarray],
    *, trt: Any = None, cuda: Any = None, lean: bool | None = None,
) -> list[Check]:  # fmt: skip
    """The clip through TensorRT eagerly (vs ONNX Runtime, within TOLERANCE) and with CUDA graphs (captured, bit-equal to eager)."""
    tol = TOLERANCE[precision]
    eager_name, graphs_name = f"TensorRT {precision} eager vs ONNX Runtime", f"TensorRT {precision} CUDA graphs vs eager"
    try:
        # twice: the first run makes the execution contexts, the second is the steady eager speed
        eager_run = trt_run(build, precision, frames, steps, noise, cuda_graphs=False, runs=2, trt=trt, cuda=cuda, lean=lean)
    except Exception as exc:  # noqa: BLE001
        fail = Check(eager_name, FAIL, f"the clip failed: {sentence(exc)}", BUG_REPORT)
        return [fail, Check(graphs_name, WARN, "skipped: the eager run failed", bug_report("the eager run above failed"))]
    eager = eager_run.outputs[-1]
    diff = max_abs_diff(eager, reference)
    per = per_frame_step(eager_run.seconds, frames, steps)
    figures = {"max_abs_diff": diff, "tolerance": tol, "seconds_per_frame_step": round(per, 6)}
    value = f"max abs diff {diff:.2e} (<= {tol * 255:.0f}/255); {per * 1e3:.2f} ms per frame-step"
    checks = [
        Check(eager_name, OK, value, figures=figures)
        if diff <= tol
        else Check(eager_name, FAIL, value.replace("<=", "over"), bug_report(f"the {precision} engines drift from the float32 graphs"), figures)
    ]
    try:
        graphs_run = trt_run(build, precision, frames, steps, noise, cuda_graphs=True, runs=2, trt=trt, cuda=cuda, lean=lean)
    except Exception as exc:  # noqa: BLE001
        checks.append(Check(graphs_name, FAIL, f"the clip with CUDA graphs failed: {sentence(exc)}", BUG_REPORT))
        return checks
    checks.append(capture_check(graphs_name, eager, graphs_run, per, frames, steps))
    return checks


def trt_pipeline_checks(
    build: Path, frames: Sequence[np.ndarray], steps: int, noise: str, reference: Sequence[np.ndarray], work: Path,
    *, trt: Any = None, cuda: Any = None, loaders: Any = None, precisions: Sequence[str] = ("fp32", "fp16"),
    graph_inputs: Mapping[str, Mapping[str, np.ndarray]] | None = None, runners: GraphRunners = GraphRunners(), report: Report = silent,
) -> list[Check]:  # fmt: skip
    """Engines built in ``work`` (a copy of ``build``) for the clip's size, compared per graph, then the clip through them.

    ``graph_inputs``: each graph's inputs recorded in the ONNX Runtime clip (None: no per-graph comparison).
    ``trt``/``cuda``/``loaders``/``runners``: what builds and runs the engines (tests: doubles).
    """
    from svsr.contract.manifest import load_manifest
    from svsr.contract.precision import Precision
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
        typed = Precision.parse(precision).typed()  # warp and blend never get typed versions
        if typed and not all(precision in (manifest["graphs"][g].get("typed") or {}) for g in typed):
            report(f"svsr-doctor: {precision} graphs (ModelOpt AutoCast)")
            typed = check_typed_graphs(trt_dir, frames, precision)
            if typed.status != OK:
                checks.append(typed)
                continue
            manifest = load_manifest(trt_dir)
        report(f"svsr-doctor: building TensorRT {precision} engines")
        built, manifest = check_engine_build(trt_dir, manifest, precision, profile, trt=trt, cuda=cuda, loaders=loaders)
        checks.append(built)
        if built.status != OK:
            continue
        if graph_inputs is not None:
            report(f"svsr-doctor: each TensorRT {precision} engine against ONNX Runtime (polygraphy)")
            checks.append(check_engines_per_graph(trt_dir, manifest, precision, graph_inputs, runners))
        report(f"svsr-doctor: the clip through TensorRT {precision}")
        checks += check_trt_clip(trt_dir, precision, frames, steps, noise, reference, trt=trt, cuda=cuda)
    return checks
