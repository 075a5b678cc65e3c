"""The Python API that svsr-export, svsr-run, svsr-bench and benchmarks/ map onto.

    import svsr
    manifest = svsr.export_model("preset:tiny", "build/", precision="fp32", engines=False)
    with svsr.Upscaler.open("build/", backend="ort") as upscaler:
        frames_out = upscaler.upscale(frames, num_inference_steps=50, seed=0)
        upscaler.upscale_video("in.mp4", "out.mp4")

Like polygraphy, the command-line tools only turn arguments into these calls. torch is imported only
by what needs it (export, the reference backend, the torch noise source).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from svsr.contract.errors import InputError, MissingDependencyError, SvsrError
from svsr.contract.noise import DEFAULT_NOISE, NoiseSource
from svsr.device.noise import make_noise
from svsr.contract.precision import Precision, PrecisionLike

Report = Callable[[str], None]
BackendName = Literal["auto", "ort", "trt", "reference"]
BACKENDS = ("auto", "ort", "trt", "reference")
PRESET_PREFIX = "preset:"
PRESET_NAMES = ("tiny", "full")
# LR sizes an engine serves when no resolution or range is given
DEFAULT_PROFILE = {"min": "32x32", "opt": "320x180", "max": "640x360"}


class EnginesNotBuiltError(SvsrError):
    """The graphs and manifest were written but TensorRT engines could not be built here."""

    exit_code = 1


def _silent(_message: str) -> None:
    pass


def quiet_libraries() -> None:
    """Silence diffusers/transformers chatter that is noise to a user of svsr."""
    warnings.filterwarnings("ignore", message=".*low cpu memory usage.*")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()
    except ImportError:
        pass


def require_export_extra(feature: str) -> None:
    """MissingDependencyError naming the extra when PyTorch or diffusers are missing."""
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        raise MissingDependencyError(f"{feature} needs PyTorch and diffusers; install them with pip install 'svsr[export]'.") from None


def preset_name(source: str | os.PathLike[str]) -> str | None:
    """``preset:tiny`` -> ``tiny``; a bare preset name counts too unless a folder of that name exists."""
    text = os.fspath(source)
    if text.startswith(PRESET_PREFIX):
        name = text[len(PRESET_PREFIX):]
        if name not in PRESET_NAMES:
            raise InputError(f"unknown preset {name!r}; use one of {', '.join(PRESET_NAMES)}.")
        return name
    if text in PRESET_NAMES and not Path(text).exists():
        return text
    return None


def ensure_preset(preset: str, seed: int, folder: Path, report: Report = _silent) -> Path:
    """Write the preset checkpoint once; reuse it while its preset and seed are unchanged."""
    from svsr.reference.presets import write_preset

    marker = folder / "svsr_preset.json"
    if marker.exists():
        try:
            info = json.loads(marker.read_text())
            if info.get("preset") == preset and info.get("seed") == seed:
                return folder
        except json.JSONDecodeError:
            pass
    report(f"svsr-export: writing the {preset!r} preset (random weights, seed {seed}) to {folder}")
    return write_preset(preset, folder, seed=seed)


def engine_profile(resolution: str | None = None, min_size: str | None = None, opt_size: str | None = None,
                   max_size: str | None = None, batch: str | int | None = None) -> Any:
    """The TensorRT optimisation profile these sizes describe (default: 32x32 .. 320x180 .. 640x360)."""
    from svsr.contract.profiles import Profile

    ranged = any(v is not None for v in (min_size, opt_size, max_size))
    if resolution is None and not ranged:
        return Profile.from_args(batch=batch, **DEFAULT_PROFILE)
    return Profile.from_args(resolution=resolution, min=min_size, opt=opt_size, max=max_size, batch=batch)


def _prepare_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the build.")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise InputError(f"cannot write to {out}; choose a writable --out folder.")


def export_model(
    weights_or_preset: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    precision: PrecisionLike = "fp32",
    engines: bool | Literal["auto"] = "auto",
    profile: Any = None,
    seed: int = 0,
    prompt: str = "",
    opset: int = 17,
    calibration_frames: str | os.PathLike[str] | Sequence[np.ndarray] | None = None,
    calibration_steps: int | None = None,
    check_trt: bool = False,
    trt_version: str = "11",
    force: bool = False,
    lean: bool = False,
    report: Report = _silent,
) -> dict[str, Any]:
    """Preset -> load -> float32 ONNX graphs -> typed fp16/bf16 graphs -> TensorRT lint -> engines.

    ``weights_or_preset``: a checkpoint folder (diffusers layout), a Hugging Face id, or
    ``preset:tiny`` / ``preset:full`` (random weights from ``seed``, written to ``out_dir/checkpoint``).
    ``calibration_steps``: steps of the reference run that calibrates fp16/bf16 graphs (default 6).
    ``engines``: True builds TensorRT engines for ``profile`` (see :func:`engine_profile`) and raises
    :class:`EnginesNotBuiltError` (graphs kept) where TensorRT or a GPU is missing; ``"auto"`` builds
    them only where possible; False writes graphs and manifest only. ``lean``: build the engines as
    version-compatible plans without the lean runtime inside (``svsr-export --lean``); a host with only
    TensorRT's lean runtime of the same version runs them. Returns the loaded manifest.
    """
    require_export_extra("svsr-export")
    quiet_libraries()
    from svsr.contract.manifest import load_manifest
    from svsr.export.exporter import clean_partials, export_all
    from svsr.reference.checkpoint import load_components

    out = Path(out_dir)
    _prepare_out_dir(out)
    clean_partials(out)
    precision = Precision.parse(precision)
    if precision.is_auto:
        raise InputError("svsr-export makes graphs of a fixed precision; give fp32, fp16 or bf16.")
    if engines is not False and profile is None:
        profile = engine_profile()
    preset = preset_name(weights_or_preset)
    weights: str | Path = os.fspath(weights_or_preset)
    if preset is not None:
        weights = ensure_preset(preset, seed, out / "checkpoint", report)
    report(f"svsr-export: loading {weights}")
    components = load_components(weights, prompt=prompt)
    report(f"svsr-export: exporting float32 ONNX graphs to {out} (opset {opset})")
    manifest = export_all(components, out, opset=opset, force=force, preset=preset, report=report)
    if not precision.is_fp32:
        try:
            from svsr.engines.precision import make_typed_graphs
        except ImportError:
            raise MissingDependencyError("--precision fp16/bf16 needs ModelOpt; install it with pip install 'svsr[precision]'.") from None
        where = calibration_frames if isinstance(calibration_frames, (str, os.PathLike)) else "the sample clip"
        report(f"svsr-export: typed graphs ({precision.describe()}), calibrated on {where}")
        from svsr.engines.calibration import CalibrationSettings

        settings = CalibrationSettings() if calibration_steps is None else CalibrationSettings(num_inference_steps=calibration_steps)
        manifest = make_typed_graphs(out, components, precision, calibration_frames=calibration_frames, report=report, force=force, settings=settings)
    if check_trt:
        from svsr.export.trt_lint import format_findings, lint_model

        errors = 0
        for name, entry in manifest["graphs"].items():
            findings = lint_model(out / entry["file"], trt_version=trt_version)
            errors += sum(f.severity == "error" for f in findings)
            report(f"{name}: {format_findings(findings)}")
        if errors:
            raise EnginesNotBuiltError(f"{errors} node(s) would not parse in TensorRT {trt_version}; see the report above.")
    if engines is not False:
        _build_engines(out, manifest, precision, profile, engines == "auto", force, report, lean=lean)
    return load_manifest(out)


def _build_engines(out: Path, manifest: dict[str, Any], precision: Precision, profile: Any, optional: bool, force: bool, report: Report,
                   lean: bool = False) -> None:
    from svsr.contract.manifest import write_manifest
    from svsr.engines.builder import build_engines, tensorrt_build_available

    available, reason = tensorrt_build_available()
    if not available:
        if optional:
            report(f"svsr-export: no TensorRT engines ({reason.rstrip('.')})")
            return
        raise EnginesNotBuiltError(
            f"TensorRT engines were not built ({reason.rstrip('.')}); the ONNX graphs and manifest in {out} are ready "
            "(pass --onnx-only when you only want those)."
        )
    report(f"svsr-export: building TensorRT {'lean-runtime (version-compatible) ' if lean else ''}engines for LR {profile.describe()}")
    manifest["engines"] = build_engines(out, manifest, precision, profile, report, force=force, lean=lean)
    write_manifest(out, manifest)


# -- upscaling ----------------------------------------------------------------------------------
def _noise_per_shot(noise: str | NoiseSource, seed: int) -> Callable[[], NoiseSource]:
    """Each shot starts from the same noise state: a fresh source by name, or the given one rewound."""
    if isinstance(noise, str):
        return lambda: make_noise(noise, seed)
    start = noise.state()

    def rewound() -> NoiseSource:
        noise.restore(start)
        return noise

    return rewound


def _noise_source(noise: str | NoiseSource, seed: int) -> NoiseSource:
    return make_noise(noise, seed) if isinstance(noise, str) else noise


def _job_options(num_inference_steps: int, codec: str, crf: int, host_memory: int | str | None, work_dir: str | os.PathLike[str] | None,
                 restart: bool, flows: str, fps: Fraction | int | float | None, scene_split: bool, scene_threshold: float) -> Any:
    """The video job's options from the API's arguments, checked (shared by upscale_video and upscale_videos)."""
    from svsr.runtime.sampling import parse_memory_size
    from svsr.runtime.jobs import JobOptions

    if num_inference_steps < 1:
        raise InputError(f"--steps is {num_inference_steps}; use at least 1.")
    if flows not in ("store", "recompute"):
        raise InputError(f"--flows {flows!r} is not store or recompute.")
    return JobOptions(
        num_inference_steps=num_inference_steps, codec=codec, crf=crf,
        host_memory=parse_memory_size(host_memory) if isinstance(host_memory, str) else host_memory,
        work_dir=Path(work_dir) if work_dir is not None else None, restart=restart, store_flows=flows == "store",
        fps=Fraction(fps).limit_denominator(1_000_000) if fps is not None else None,
        scene_split=scene_split, scene_threshold=scene_threshold,
    )  # fmt: skip


class _ReferencePipeline:
    """The PyTorch reference behind the same ``upscale`` call as a Sampler."""

    name = "reference"

    def __init__(self, weights: str | os.PathLike[str]) -> None:
        require_export_extra("--backend reference")
        quiet_libraries()
        from svsr.reference import StableVSRReference

        self._reference = StableVSRReference.from_pretrained(weights)

    def upscale(self, frames: Sequence[np.ndarray], num_inference_steps: int, noise: NoiseSource, progress: Any = False) -> list[np.ndarray]:
        return self._reference.upscale(frames, num_inference_steps=num_inference_steps, noise=noise, progress=progress)

    def close(self) -> None:
        pass


class Upscaler:
    """StableVSR on one backend: ``ort`` (ONNX Runtime), ``trt`` (TensorRT engines) or ``reference`` (PyTorch).

    Open with :meth:`open`; use as a context manager (or call :meth:`close`) so GPU memory is given
    back when you are done.
    """

    def __init__(self, pipeline: Any, label: str, build_dir: Path | None) -> None:
        self.pipeline = pipeline  # the Sampler (or the reference) doing the work; benchmarks time its backend
        self.label = label
        self.build_dir = build_dir
        self._closed = False

    @classmethod
    def open(
        cls,
        build_dir: str | os.PathLike[str] | None = None,
        backend: BackendName = "auto",
        *,
        precision: PrecisionLike = "auto",
        weights: str | os.PathLike[str] | None = None,
        threads: int = 0,
    ) -> "Upscaler":
        """An upscaler over ``build_dir`` (made by :func:`export_model`), or over ``weights`` for ``reference``.

        ``backend`` auto takes TensorRT where every graph has an engine built for this GPU and
        TensorRT version, else ONNX Runtime. ``precision`` auto: TensorRT takes the fastest engine
        built per graph, ONNX Runtime the float32 graphs. ``threads``: ONNX Runtime's intra-op
        threads (0 = its default).
        """
        if backend not in BACKENDS:
            raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
        if backend == "reference":
            if weights is None:
                raise InputError("--backend reference needs --weights CHECKPOINT_DIR; add it.")
            return cls(_ReferencePipeline(weights), "reference", None)
        if build_dir is None:
            raise InputError("svsr-run needs --model BUILD_DIR (made by svsr-export), or --backend reference --weights DIR.")
        from svsr.runtime.sampling import open_sampler

        sampler, label = open_sampler(build_dir, backend=backend, precision=Precision.parse(precision), threads=threads)
        return cls(sampler, label, Path(build_dir))

    @property
    def backend(self) -> str:
        """``ort``, ``trt`` or ``reference``."""
        return self.label.split("-")[0]

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("this Upscaler is closed; open a new one with Upscaler.open(...).")

    def upscale(
        self,
        frames: Sequence[np.ndarray],
        num_inference_steps: int = 50,
        seed: int = 0,
        noise: str | NoiseSource = DEFAULT_NOISE,
        progress: bool | Any = False,
    ) -> list[np.ndarray]:
        """HxWx3 uint8 RGB frames (one clip) -> 4Hx4Wx3 float32 frames in [0, 1].

        ``noise``: ``philox`` (default: counter-based, a pure function of seed, step and frame; see
        docs/noise.md), ``numpy``, ``torch`` (reproduces the reference's seeded draws), or any
        :class:`svsr.contract.noise.NoiseSource`.
        """
        self._check_open()
        return self.pipeline.upscale(frames, num_inference_steps=num_inference_steps, noise=_noise_source(noise, seed), progress=progress)

    def upscale_video(
        self,
        input: str | os.PathLike[str],
        output: str | os.PathLike[str] | None = None,
        *,
        num_inference_steps: int = 50,
        seed: int = 0,
        noise: str | NoiseSource = DEFAULT_NOISE,
        codec: str = "h264",
        crf: int = 18,
        host_memory: int | str | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        restart: bool = False,
        flows: Literal["store", "recompute"] = "store",
        fps: Fraction | int | float | None = None,
        scene_split: bool = True,
        scene_threshold: float = 27.0,
        progress: bool | Any = False,
        report: Report = _silent,
    ) -> Path:
        """Upscale a video file or a folder of frames as one exact clip; returns the output path.

        Default output ``INPUT_x4.EXT``; same frame times, audio copied; the output appears under its
        name only when every frame was written. ``host_memory`` (bytes or ``"8G"``) bounds the RAM of
        the clip store (default half of the available memory); beyond it the store uses files in
        ``work_dir`` (default: beside the output). An interrupted run resumes from its last completed
        timestep when called again with the same arguments; ``restart`` discards that work instead.
        ``flows="recompute"`` runs the flow graph per frame-step instead of storing flows.
        ``scene_split`` (default on) finds scene cuts (PySceneDetect's content detector, ``scene_threshold``)
        and upscales each shot as its own exact clip; the shots' segments are stitched without re-encoding.
        """
        self._check_open()
        from svsr.runtime.jobs import plan_input, resolve_output, run_input, upscale_whole_clip
        from svsr.runtime.video import probe

        options = _job_options(num_inference_steps, codec, crf, host_memory, work_dir, restart, flows, fps, scene_split, scene_threshold)
        input_path = Path(input)
        info = probe(input_path, fps=options.fps)
        output_path = resolve_output(input_path, output)
        own_bar = not hasattr(progress, "update")
        bar = progress
        if own_bar:
            from tqdm.auto import tqdm

            total = (info.num_frames or 0) * num_inference_steps or None
            bar = tqdm(total=total, desc=f"svsr-run [{self.label}]", unit="frame-step", disable=not progress, dynamic_ncols=True)
        try:
            if self.backend == "reference":  # the reference holds a whole clip in memory by design
                return upscale_whole_clip(
                    input_path, output_path,
                    lambda frames: self.pipeline.upscale(frames, num_inference_steps=num_inference_steps, noise=_noise_source(noise, seed),
                                                         progress=bar),
                    codec=codec, crf=crf, fps=options.fps,
                )  # fmt: skip
            plan = plan_input(input_path, output_path, options, report)
            if bar is not None and hasattr(bar, "reset"):
                bar.reset(total=plan.num_frames * num_inference_steps)
            return run_input(self.pipeline, plan, _noise_per_shot(noise, seed), options, build_dir=self.build_dir,
                             label=self.label, report=report, progress=bar)
        finally:
            if own_bar:
                bar.close()

    def close(self) -> None:
        """Release the backend's sessions, buffers and device memory; idempotent."""
        if self._closed:
            return
        self._closed = True
        closer = getattr(self.pipeline, "close", None)
        if closer is not None:
            closer()

    def __enter__(self) -> "Upscaler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- many inputs --------------------------------------------------------------------------------
@dataclass
class InputResult:
    """What happened to one input of :func:`upscale_videos` (one row of the summary and the report)."""

    input: str
    output: str | None
    status: str  # done | skipped | failed
    frames: int | None = None
    fps: str | None = None
    shots: list[list[int]] = field(default_factory=list)
    seconds: float = 0.0
    backend: str = ""
    message: str = ""

    @property
    def seconds_per_frame(self) -> float | None:
        return self.seconds / self.frames if self.frames and self.status == "done" else None


def upscale_videos(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    output: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | None = None,
    backend: BackendName = "auto",
    precision: PrecisionLike = "auto",
    weights: str | os.PathLike[str] | None = None,
    ray: str | None = None,
    ray_workers: int | None = None,
    num_inference_steps: int = 50,
    seed: int = 0,
    noise: str = DEFAULT_NOISE,
    codec: str = "h264",
    crf: int = 18,
    host_memory: int | str | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    restart: bool = False,
    flows: Literal["store", "recompute"] = "store",
    fps: Fraction | int | float | None = None,
    scene_split: bool = True,
    scene_threshold: float = 27.0,
    skip_existing: bool = True,
    raise_errors: bool = False,
    progress: bool = False,
    report: Report = _silent,
) -> list[InputResult]:
    """Upscale many videos / frame folders: one output per input in ``out_dir`` (``NAME_x4.EXT``).

    Finished outputs are skipped (``skip_existing``), unfinished ones resume. Without ``ray`` the
    shots run in this process; with ``ray`` (``local``, ``auto`` or a Ray address) the shots of all
    inputs are spread over Ray workers (one per GPU for TensorRT, CPU workers for ONNX Runtime), and
    each input is stitched when its shots are done. A failed input is reported and the others go on
    (``raise_errors`` raises instead). Returns one :class:`InputResult` per input, in order.
    """
    from dataclasses import replace

    from svsr.runtime.jobs import finish_input, plan_input, resolve_output
    from svsr.runtime.video import output_path_for

    base = _job_options(num_inference_steps, codec, crf, host_memory, None, restart, flows, fps, scene_split, scene_threshold)
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("no input was given; name video files, frame folders or globs.")
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    results: list[InputResult] = []
    planned: list[tuple[InputResult, Any, Any]] = []
    for path in paths:
        target = Path(out_dir) / output_path_for(path).name if out_dir is not None else (Path(output) if output is not None else None)
        result = InputResult(str(path), None, "failed", backend=backend)
        results.append(result)
        try:
            target = resolve_output(path, target)
            result.output = str(target)
            if skip_existing and target.exists():
                result.status, result.message = "skipped", "output exists"
                report(f"svsr-run: {target} exists, skipped (delete it to upscale {path.name} again)")
                continue
            # several inputs share --work-dir as the parent of one work folder each
            options = replace(base, work_dir=(Path(work_dir) / f"{target.name}.svsr-work" if len(paths) > 1 else Path(work_dir)) if work_dir else None)
            if backend == "reference":
                planned.append((result, None, options))
                continue
            plan = plan_input(path, target, options, report)
            result.frames, result.fps = plan.num_frames, str(plan.info.fps)
            result.shots = [shot.as_range() for shot in plan.shots]
            planned.append((result, plan, options))
        except SvsrError as exc:
            if raise_errors:
                raise
            result.message = str(exc)
            report(f"svsr-run: {path}: {exc}")
    if not planned:
        return results
    if ray is None:
        _run_in_process(planned, model, backend, precision, weights, num_inference_steps, seed, noise, codec, crf, base.fps,
                        raise_errors, progress, report)  # fmt: skip
        return results
    from svsr.runtime.jobs import FarmSettings, run_shots_on_ray

    if backend == "reference":
        raise InputError("--ray runs the exported graphs; use --backend auto, ort or trt with it.")
    if model is None:
        raise InputError("svsr-run needs --model BUILD_DIR (made by svsr-export) for --ray.")
    start = time.perf_counter()
    plans = [plan for _, plan, _ in planned]
    seconds: dict[str, float] = {}

    def shot_done(record: dict[str, Any]) -> None:
        seconds[record["input"]] = seconds.get(record["input"], 0.0) + record["seconds"]
        report(f"svsr-run: {Path(record['input']).name} shot {record['shot'] + 1} done in {record['seconds']:.1f} s on {record['backend']} (pid {record['pid']})")

    run_shots_on_ray(plans, build_dir=Path(model), backend=backend, precision=Precision.parse(precision), noise_kind=noise, seed=seed,
                     options=planned[0][2], settings=FarmSettings(address=ray, workers=ray_workers), report=report, on_shot=shot_done)  # fmt: skip
    for result, plan, _ in planned:
        try:
            finish_input(plan)
            result.status, result.backend = "done", f"ray/{backend}"
            result.seconds = seconds.get(str(plan.input), time.perf_counter() - start)
        except SvsrError as exc:
            if raise_errors:
                raise
            result.message = str(exc)
    return results


def _run_in_process(planned, model, backend, precision, weights, steps, seed, noise, codec, crf, fps, raise_errors, progress, report) -> None:
    from svsr.runtime.jobs import Interrupted, run_input, upscale_whole_clip

    with Upscaler.open(model, backend=backend, precision=precision, weights=weights) as upscaler:
        for result, plan, options in planned:
            start = time.perf_counter()
            bar = None
            try:
                if plan is None:  # the reference: a whole clip in memory
                    upscale_whole_clip(
                        Path(result.input), Path(result.output),
                        lambda frames: upscaler.pipeline.upscale(frames, num_inference_steps=steps, noise=make_noise(noise, seed), progress=progress),
                        codec=codec, crf=crf, fps=fps,
                    )  # fmt: skip
                else:
                    if progress:
                        from tqdm.auto import tqdm

                        bar = tqdm(total=plan.num_frames * steps, desc=f"svsr-run [{upscaler.label}] {plan.input.name}", unit="frame-step",
                                   dynamic_ncols=True)  # fmt: skip
                    run_input(upscaler.pipeline, plan, _noise_per_shot(noise, seed), options, build_dir=upscaler.build_dir,
                              label=upscaler.label, report=report, progress=bar)  # fmt: skip
                result.status, result.backend = "done", upscaler.label
            except Interrupted:
                raise
            except SvsrError as exc:
                if raise_errors:
                    raise
                result.message = str(exc)
                report(f"svsr-run: {result.input}: {exc}")
            finally:
                if bar is not None:
                    bar.close()
                result.seconds = time.perf_counter() - start
