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
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, Sequence

import numpy as np

from svsr.contract.backends import BACKEND_NAMES, ORT, TRT, Auto, BackendLike, Reference, backend_options
from svsr.contract.codecs import CODECS
from svsr.contract.errors import InputError, MissingDependencyError, SvsrError
from svsr.contract.noise import DEFAULT_NOISE, NoiseSource
from svsr.contract.precision import Precision, PrecisionLike
from svsr.contract.tiles import AUTO, DEFAULT_OVERLAP, OFF, TileOption, parse_tile
from svsr.contract.video_options import Spell, VideoOptions, api_spelling, parse_memory_size
from svsr.device.noise import make_noise

Report = Callable[[str], None]
BACKENDS = BACKEND_NAMES
__all__ = [
    "ORT", "TRT", "Auto", "EnginesNotBuiltError", "InputResult", "Pipeline", "Reference", "Upscaler", "VideoOptions",
    "check_steps", "check_video_options", "encoder_problem", "engine_profile", "engine_tile", "export_model", "parse_memory_size", "probe_input",
    "resolve_output", "upscale_videos", "video_options",
]  # fmt: skip
PRESET_PREFIX = "preset:"
PRESET_NAMES = ("tiny", "demo", "full")
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
    weights = "the trained demo weights" if preset == "demo" else f"random weights, seed {seed}"
    report(f"svsr-export: writing the {preset!r} preset ({weights}) to {folder}")
    return write_preset(preset, folder, seed=seed)


def engine_profile(resolution: str | None = None, min_size: str | None = None, opt_size: str | None = None,
                   max_size: str | None = None, batch: str | int | None = None) -> Any:
    """The TensorRT optimisation profile these sizes describe (default: 32x32 .. 320x180 .. 640x360)."""
    from svsr.contract.profiles import Profile

    ranged = any(v is not None for v in (min_size, opt_size, max_size))
    if resolution is None and not ranged:
        return Profile.from_args(batch=batch, **DEFAULT_PROFILE)
    return Profile.from_args(resolution=resolution, min=min_size, opt=opt_size, max=max_size, batch=batch)


def engine_tile(tile: TileOption | None, spell: Spell = api_spelling) -> tuple[int, int] | None:
    """The tile (height, width) in LR pixels that ``export_model(tile=...)`` builds the tiled graphs' engines at.

    The same sizes as ``svsr-run --tile`` (sides multiples of 4, at least 32); a bad one is the tile
    contract's sentence, spelled by ``spell`` (the CLI: ``--tile 8x8``). None or ``"off"``: no tile
    (engines over frame sizes).
    """
    if tile is None:
        return None
    parsed = parse_tile(tile, spell=spell)
    if parsed == OFF:
        return None
    if isinstance(parsed, str):  # auto names no shape, and an engine is built at one
        raise InputError(f"{spell('tile', tile)} names no tile shape for engines; give HxW in LR pixels such as 128x128, "
                         "or leave it out for engines over frame sizes.")  # fmt: skip
    return parsed


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
    tile: TileOption | None = None,
    report: Report = _silent,
) -> dict[str, Any]:
    """Preset -> load -> float32 ONNX graphs -> typed fp16/bf16 graphs -> TensorRT lint -> engines.

    ``weights_or_preset``: a checkpoint folder (diffusers layout), a Hugging Face id, or
    ``preset:tiny`` / ``preset:full`` (random weights from ``seed``) or ``preset:demo`` (the small trained
    model shipped in the package), written to ``out_dir/checkpoint``.
    ``calibration_steps``: steps of the reference run that calibrates fp16/bf16 graphs (default 6).
    ``engines``: True builds TensorRT engines for ``profile`` (see :func:`engine_profile`) and raises
    :class:`EnginesNotBuiltError` (graphs kept) where TensorRT or a GPU is missing; ``"auto"`` builds
    them only where possible; False writes graphs and manifest only. ``lean``: build the engines as
    version-compatible plans without the lean runtime inside (``svsr-export --lean``); a host with only
    TensorRT's lean runtime of the same version runs them. ``tile``: ``(height, width)`` or ``"HxW"`` in
    LR pixels: the engines of the tiled graphs (denoise, guide_decode, decode) are built static at
    that tile (``svsr-export --tile``; their records keep it, and ``--tile auto`` runs in tiles of it),
    the others over ``profile``'s frame sizes. Returns the loaded manifest.
    """
    tile = engine_tile(tile)  # a bad tile is refused before any export work
    if tile is not None and engines is False:
        raise InputError(f"tile={tile!r} is the shape of TensorRT engines, and engines=False builds none; drop one of them.")
    if engines is not False and profile is None:
        profile = engine_profile()
    if tile is not None:
        profile = profile.with_tile(tile)  # a tile larger than every frame of the profile: refused before any export work
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
        from svsr.export.trt_lint import check_model, format_findings

        errors = 0
        for name, entry in manifest["graphs"].items():
            checker, findings = check_model(out / entry["file"], trt_version=trt_version)
            errors += sum(f.severity == "error" for f in findings)
            report(f"{name} ({checker}): {format_findings(findings)}")
        if errors:
            raise EnginesNotBuiltError(f"{errors} node(s) would not parse in TensorRT {trt_version}; see the report above.")
    if engines is not False:
        _build_engines(out, manifest, precision, profile, engines == "auto", force, report, lean=lean, tile=tile)
    return load_manifest(out)


def _build_engines(out: Path, manifest: dict[str, Any], precision: Precision, profile: Any, optional: bool, force: bool, report: Report,
                   lean: bool = False, tile: tuple[int, int] | None = None) -> None:
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
    manifest["engines"] = build_engines(out, manifest, precision, profile, report, force=force, lean=lean, tile=tile)
    write_manifest(out, manifest)


# -- upscaling ----------------------------------------------------------------------------------
class Pipeline(Protocol):
    """What an :class:`Upscaler` runs: a streaming Sampler (ort, trt) or the PyTorch reference."""

    def upscale(self, frames: Sequence[np.ndarray], num_inference_steps: int, noise: NoiseSource, progress: Any = False, *,
                scheduler: str = "ddpm", eta: float = 0.0, flow_scale: int = 4) -> list[np.ndarray]:  # fmt: skip
        """HxWx3 uint8 frames of one clip -> 4Hx4Wx3 float32 frames in [0, 1] (a Sampler also takes ``tile``, ``tile_overlap``)."""
        ...

    def close(self) -> None:
        """Release sessions, buffers and device memory."""
        ...


def _noise_source(noise: str | NoiseSource, seed: int) -> NoiseSource:
    return make_noise(noise, seed) if isinstance(noise, str) else noise


def video_options(options: VideoOptions | None = None, **overrides: Any) -> VideoOptions:
    """``options`` (default :class:`VideoOptions`) with keyword ``overrides``, every rule checked."""
    return (options or VideoOptions()).with_overrides(**overrides)


class ReferencePipeline:
    """The PyTorch reference behind the same ``upscale`` call as a Sampler (a whole clip in memory)."""

    name = "reference"

    def __init__(self, weights: str | os.PathLike[str]) -> None:
        require_export_extra("--backend reference")
        quiet_libraries()
        from svsr.reference import StableVSRReference

        self._reference = StableVSRReference.from_pretrained(weights)
        self.scheduler_config = dict(self._reference.components.scheduler.config)
        self.device = str(next(self._reference.components.unet.parameters()).device)  # where its weights live: cpu

    def upscale(self, frames: Sequence[np.ndarray], num_inference_steps: int, noise: NoiseSource, progress: Any = False, *,
                scheduler: str = "ddpm", eta: float = 0.0, flow_scale: int = 4) -> list[np.ndarray]:  # fmt: skip
        return self._reference.upscale(frames, num_inference_steps=num_inference_steps, noise=noise, progress=progress, scheduler=scheduler, eta=eta,
                                       flow_scale=flow_scale)  # fmt: skip

    def close(self) -> None:
        pass


class Upscaler:
    """StableVSR on one backend: ``ort`` (ONNX Runtime), ``trt`` (TensorRT engines) or ``reference`` (PyTorch).

    Open with :meth:`open`; use as a context manager (or call :meth:`close`) so GPU memory is given
    back when you are done.
    """

    def __init__(self, pipeline: Pipeline, *, backend: str, device: str, scheduler_config: dict[str, Any], build_dir: Path | None,
                 where: str) -> None:  # fmt: skip
        self.pipeline = pipeline  # the Sampler (or the reference) doing the work; benchmarks time its backend
        self.backend = backend  # ort, trt or reference
        self.device = device  # where it runs: cpu, cuda:0
        self.scheduler_config = scheduler_config  # of the build's manifest, or of the reference's checkpoint
        self.build_dir = build_dir
        self.where = where  # the build folder or checkpoint, as sentences name it
        self._closed = False

    @classmethod
    def open(
        cls,
        build_dir: str | os.PathLike[str] | None = None,
        backend: BackendLike = "auto",
        *,
        precision: PrecisionLike = "auto",
        weights: str | os.PathLike[str] | None = None,
        threads: int = 0,
    ) -> "Upscaler":
        """An upscaler over ``build_dir`` (made by :func:`export_model`), or over ``weights`` for the reference.

        ``backend``: a name (``auto``, ``ort``, ``trt``, ``reference``) or options: ``svsr.ORT(threads=2)``,
        ``svsr.TRT(cuda_graphs=True)``, ``svsr.Reference(weights=DIR)``. auto takes TensorRT where every
        graph has an engine built for this GPU and TensorRT version, else ONNX Runtime. ``precision``
        auto: TensorRT takes the fastest engine built per graph, ONNX Runtime the float32 graphs.
        ``threads``: ONNX Runtime's intra-op threads for a backend given by name (0 = its default).
        """
        chosen = backend_options(backend, threads=threads, weights=weights)
        if isinstance(chosen, Reference):
            checkpoint = chosen.weights if chosen.weights is not None else weights
            if checkpoint is None:
                raise InputError("--backend reference needs --weights CHECKPOINT_DIR; add it.")
            reference = ReferencePipeline(checkpoint)
            return cls(reference, backend="reference", device=reference.device, scheduler_config=reference.scheduler_config, build_dir=None,
                       where=os.fspath(checkpoint))  # fmt: skip
        if build_dir is None:
            raise InputError("svsr-run needs --model BUILD_DIR (made by svsr-export), or --backend reference --weights DIR.")
        from svsr.runtime.sampling import open_sampler

        sampler = open_sampler(build_dir, backend=chosen, precision=Precision.parse(precision))
        return cls(sampler, backend=sampler.backend.name, device=sampler.backend.device, scheduler_config=dict(sampler.manifest["scheduler"]["config"]),
                   build_dir=Path(build_dir), where=os.fspath(build_dir))  # fmt: skip

    @property
    def label(self) -> str:
        """The backend and where it runs, for progress output: ``ort-cpu``, ``trt-cuda:0``, ``reference``."""
        return self.backend if self.backend == "reference" else f"{self.backend}-{self.device}"

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("this Upscaler is closed; open a new one with Upscaler.open(...).")

    def upscale(
        self,
        frames: Sequence[np.ndarray],
        num_inference_steps: int | None = None,
        seed: int = 0,
        noise: str | NoiseSource = DEFAULT_NOISE,
        progress: bool | Any = False,
        *,
        scheduler: str = "ddpm",
        eta: float = 0.0,
        tile: TileOption = AUTO,
        tile_overlap: int = DEFAULT_OVERLAP,
        flow_scale: int | str = AUTO,
        tcm: bool = True,
        report: Report = _silent,
    ) -> list[np.ndarray]:
        """HxWx3 uint8 RGB frames (one clip) -> 4Hx4Wx3 float32 frames in [0, 1].

        ``noise``: ``philox`` (default: counter-based, a pure function of seed, step and frame; see
        docs/noise.md), ``numpy``, ``torch`` (reproduces the reference's seeded draws), or any
        :class:`svsr.contract.noise.NoiseSource`. ``scheduler`` (``ddpm``, ``ddim``, ``dpmpp-2m``),
        ``num_inference_steps`` (None: the scheduler's default), ``eta``, ``tile``, ``tile_overlap``
        and ``flow_scale`` (4, 2, 1 or ``"auto"``) as in :class:`VideoOptions`; ``report`` hears the
        choices of ``auto`` (the tile, and a flow scale below 4). ``tcm=False`` is an ablation, not
        StableVSR: every frame without the temporal conditioning (benchmarks/quality.py measures what
        the TCM adds); the reference backend has no such switch.
        """
        self._check_open()
        options = VideoOptions(num_inference_steps=num_inference_steps, seed=seed, noise=noise, scheduler=scheduler, eta=eta, tile=tile,
                               tile_overlap=tile_overlap, flow_scale=flow_scale)  # fmt: skip
        self.check(options)
        from svsr.contract.frames import validate_clip

        plan = validate_clip(frames)
        keywords: dict[str, Any] = {"scheduler": options.scheduler, "eta": options.eta}
        if self.backend != "reference":
            from svsr.contract.scheduler import needs_history
            from svsr.runtime.jobs import choose_tiles

            choice = choose_tiles(self.pipeline, options.tile, options.tile_overlap, plan.padded_height, plan.padded_width, spell=options.spell,
                                  history=needs_history(options.scheduler), flow_scale=options.flow_scale)  # fmt: skip
            if options.tile != "off":
                report(choice.sentence)
            if choice.flow_sentence:
                report(choice.flow_sentence)
            keywords.update(tile=choice.tile, tile_overlap=options.tile_overlap, tcm=tcm, flow_scale=choice.flow_scale)
        elif not tcm:
            raise InputError("tcm=False is an ablation of the exported graphs; use the ort or trt backend for it.")
        else:
            from svsr.runtime.jobs import whole_clip_flow_scale

            keywords.update(flow_scale=whole_clip_flow_scale(options, plan.padded_height, plan.padded_width))
        return self.pipeline.upscale(frames, num_inference_steps=options.num_inference_steps, noise=_noise_source(noise, seed),
                                     progress=progress, **keywords)  # fmt: skip

    def check(self, options: VideoOptions, spell: Spell | None = None) -> None:
        """Refuse, in one sentence, what ``options`` ask that this upscaler cannot do (before any work)."""
        spell = spell or options.spell
        problem = options.scheduler_problem(self.scheduler_config, self.where, spell)
        if problem is None and self.backend == "reference":
            problem = options.whole_clip_problem(spell)
        if problem:
            raise InputError(problem)

    def upscale_video(
        self,
        input: str | os.PathLike[str],
        output: str | os.PathLike[str] | None = None,
        options: VideoOptions | None = None,
        *,
        progress: bool | Any = False,
        report: Report = _silent,
        **overrides: Any,
    ) -> Path:
        """Upscale a video file or a folder of frames; returns the output path (:meth:`upscale_videos` with one input).

        ``options``: a :class:`VideoOptions` (scheduler, steps, eta, seed, noise, tile, tile_overlap, flow_scale, codec,
        crf, host_memory, work_dir, restart, flows, fps, scene_split, scene_threshold, min_shot, frames,
        no_audio); keyword ``overrides`` change its fields,
        e.g. ``upscale_video("in.mp4", num_inference_steps=4, codec="ffv1")``. Default output
        ``INPUT_x4.EXT``; same frame times, audio copied; the output appears under its name only when
        every frame was written. An interrupted run resumes from its last completed timestep when
        called again with the same options; ``restart=True`` discards that work instead. Each shot
        between scene cuts is its own exact clip; the shots' segments are stitched without re-encoding.
        ``frames="START:END"`` (frame indices, END excluded, or seconds: ``"10s:14s"``) upscales only
        that part, as its own clip at its frames' original times (default output ``INPUT_x4_framesSTART-END.EXT``).
        """
        results = self.upscale_videos([input], output=output, options=options, skip_existing=False, raise_errors=True, progress=progress,
                                      report=report, **overrides)  # fmt: skip
        return Path(results[0].output)

    def upscale_videos(
        self,
        inputs: Sequence[str | os.PathLike[str]],
        out_dir: str | os.PathLike[str] | None = None,
        *,
        output: str | os.PathLike[str] | None = None,
        options: VideoOptions | None = None,
        skip_existing: bool = True,
        raise_errors: bool = False,
        progress: bool | Any = False,
        report: Report = _silent,
        **overrides: Any,
    ) -> list["InputResult"]:
        """Many videos / frame folders on this upscaler, in this process (see :func:`upscale_videos`)."""
        self._check_open()
        chosen = video_options(options, **overrides)
        self.check(chosen)
        results, planned = _plan_inputs(inputs, out_dir, output, chosen, skip_existing, raise_errors, report)
        if planned:
            _run_here(self, planned, raise_errors, progress, report)
        return results

    def close(self) -> None:
        """Release the backend's sessions, buffers and device memory; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.pipeline.close()

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
    merged_cuts: list[int] = field(default_factory=list)  # scene cuts the minimum shot length merged away
    note: str = ""  # what the run decided that the user should hear (merged cuts, with the option that changes it)

    @property
    def seconds_per_frame(self) -> float | None:
        return self.seconds / self.frames if self.frames and self.status == "done" else None


def upscale_videos(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    output: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | None = None,
    backend: BackendLike = "auto",
    precision: PrecisionLike = "auto",
    weights: str | os.PathLike[str] | None = None,
    ray: str | None = None,
    ray_workers: int | None = None,
    options: VideoOptions | None = None,
    skip_existing: bool = True,
    raise_errors: bool = False,
    progress: bool = False,
    report: Report = _silent,
    **overrides: Any,
) -> list[InputResult]:
    """Upscale many videos / frame folders: one output per input in ``out_dir`` (``NAME_x4.EXT``).

    ``options`` (a :class:`VideoOptions`) and keyword ``overrides`` of its fields say how, as for
    :meth:`Upscaler.upscale_video`. Finished outputs are skipped (``skip_existing``), unfinished ones
    resume. Without ``ray`` the shots run in this process; with ``ray`` (``local``, ``auto`` or a Ray
    address) the shots of all inputs are spread over Ray workers (one per GPU for TensorRT, CPU workers
    for ONNX Runtime) running the same shot code, and each input is stitched when its shots are done.
    A failed input is reported and the others go on (``raise_errors`` raises instead). Returns one
    :class:`InputResult` per input, in order.
    """
    chosen = video_options(options, **overrides)
    check_video_options(chosen, model=model, backend=backend, weights=weights, spell=chosen.spell)
    if ray is not None and backend_options(backend).name == "reference":
        raise InputError(f"{chosen.spell('ray', ray)} runs the exported graphs; use {chosen.spell('backend', 'ort')} or trt (or auto) with it.")
    if ray is not None and model is None:
        raise InputError(f"{chosen.spell('ray', ray)} needs {chosen.spell('model', 'BUILD_DIR')} (a build folder made by svsr-export).")
    results, planned = _plan_inputs(inputs, out_dir, output, chosen, skip_existing, raise_errors, report)
    if not planned:
        return results
    if ray is None:
        try:
            upscaler = Upscaler.open(model, backend=backend, precision=precision, weights=weights)
        except BaseException:  # refused at the door (a bad --model): the planned inputs leave no work folder behind
            _discard(planned)
            raise
        with upscaler:
            _run_here(upscaler, planned, raise_errors, progress, report)
        return results
    from svsr.runtime.jobs import FarmSettings, OnRay, run_video_jobs

    on_ray = OnRay(Path(model), backend, Precision.parse(precision), FarmSettings(address=ray, workers=ray_workers))
    outcomes = run_video_jobs([plan for _, plan, _ in planned], [o for _, _, o in planned], ray=on_ray, raise_errors=raise_errors,
                              report=report)  # fmt: skip
    _record([result for result, _, _ in planned], outcomes)
    return results


def check_video_options(options: VideoOptions, *, model: str | os.PathLike[str] | None = None, backend: BackendLike = "auto",
                        weights: str | os.PathLike[str] | None = None, spell: Spell | None = None) -> None:  # fmt: skip
    """What ``options`` ask that the build (or the reference's checkpoint) cannot do, refused before any work.

    The step count against the scheduler (of ``model``'s manifest, or of ``weights`` for the
    reference), what the reference cannot honour, and whether this machine can encode the codec.
    ``spell`` writes an option as the caller's user wrote it (default: as ``options`` were made; the CLI: ``--steps 1001``).
    """
    spell = spell or options.spell
    chosen = backend_options(backend, weights=weights)
    problem = None
    if isinstance(chosen, Reference):
        checkpoint = chosen.weights if chosen.weights is not None else weights
        config = Path(checkpoint or "") / "scheduler" / "scheduler_config.json"
        if checkpoint and config.is_file():
            problem = options.scheduler_problem(json.loads(config.read_text()), os.fspath(checkpoint), spell)
        problem = problem or options.whole_clip_problem(spell)
    elif model is not None and (Path(model) / "manifest.json").is_file():
        from svsr.contract.manifest import load_manifest

        problem = options.scheduler_problem(load_manifest(model)["scheduler"]["config"], os.fspath(model), spell)
    problem = problem or encoder_problem(options.codec, spell)
    if problem:
        raise InputError(problem)


def check_steps(num_inference_steps: int, model: str | os.PathLike[str], spell: Spell = api_spelling) -> None:
    """The step count against the scheduler of the build ``model`` (when it has a manifest), before any work."""
    check_video_options(VideoOptions(num_inference_steps=num_inference_steps), model=model, spell=spell)


def encoder_problem(codec: str, spell: Spell = api_spelling) -> str | None:
    """Why this machine's PyAV cannot encode ``codec`` (a name of the codec table), or None."""
    from svsr.runtime.video import encoder_available

    if encoder_available(codec):
        return None
    usable = [name for name in CODECS if encoder_available(name)]
    return f"{spell('codec', codec)} needs the {CODECS[codec].encoder} encoder, which this PyAV build lacks; use one of {', '.join(usable)}."


def probe_input(path: str | os.PathLike[str], fps: Fraction | int | float | None = None) -> Any:
    """Frame size, rate and count of a video file or frame folder; bad input is one sentence (no model needed)."""
    from svsr.runtime.video import probe

    return probe(Path(path), fps=fps)


def resolve_output(input_path: str | os.PathLike[str], output: str | os.PathLike[str] | None, options: VideoOptions | None = None, *,
                   many: bool = False) -> Path:  # fmt: skip
    """The output path of ``input_path`` by the output rule; refuses to overwrite the input.

    A video gives a video (``clip_x4.mp4``; ``-o``'s suffix picks the container, which must hold the
    codec), an image a PNG image (``img_x4.png``), a frame folder a frame folder (``frames_x4``, or a
    video where ``output`` names one); ``output`` ending in ``/``, an existing folder, or ``many``
    (one of several inputs) puts ``<name>_x4.<ext>`` inside that folder.
    """
    from svsr.runtime.jobs import resolve_output as resolve

    return resolve(Path(input_path), output, options, many=many)


def _plan_inputs(inputs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str] | None, output: str | os.PathLike[str] | None,
                 options: VideoOptions, skip_existing: bool, raise_errors: bool, report: Report) -> tuple[list[InputResult], list[tuple]]:  # fmt: skip
    """One result per input, and (result, plan, options) for each that has work to do."""
    from svsr.runtime.jobs import merged_sentence, plan_input

    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("no input was given; name video files, frame folders or globs.")
    many = out_dir is not None
    folder = out_dir if many else output
    if folder is not None and Path(folder).exists() and not Path(folder).is_dir() and many:
        raise InputError(f"{options.spell('output', os.fspath(folder))} is a file, but several inputs need an output folder; give a folder.")
    results: list[InputResult] = []
    planned: list[tuple[InputResult, Any, VideoOptions]] = []
    for path in paths:
        result = InputResult(str(path), None, "failed")
        results.append(result)
        try:
            target = resolve_output(path, folder, options, many=many)
            if folder is not None and (many or os.fspath(folder).endswith(("/", os.sep))):
                Path(folder).mkdir(parents=True, exist_ok=True)  # -o DIR/ (or the folder of many inputs) is created; other missing folders are refused
            result.output = str(target)
            if skip_existing and target.exists():
                result.status, result.message = "skipped", "output exists"
                report(f"svsr-run: {target} exists, skipped (delete it to upscale {path.name} again)")
                continue
            # several inputs share work_dir as the parent of one work folder each
            work = options.work_dir
            input_options = options if work is None or len(paths) == 1 else options.with_overrides(work_dir=Path(work) / f"{target.name}.svsr-work")
            plan = plan_input(path, target, input_options, report)
            result.frames, result.fps = plan.num_frames, str(plan.info.fps)
            result.shots = [shot.as_range() for shot in plan.shots]
            result.merged_cuts = list(plan.merged_cuts)
            result.note = merged_sentence(plan.merged_cuts, input_options) if plan.merged_cuts else ""
            planned.append((result, plan, input_options))
        except SvsrError as exc:
            if raise_errors:
                raise
            result.message = str(exc)
            report(f"svsr-run: {path}: {exc}")
    return results, planned


def _discard(planned: list[tuple]) -> None:
    from svsr.runtime.jobs import discard_if_nothing_done

    for _, plan, _ in planned:
        discard_if_nothing_done(plan)


def _run_here(upscaler: Upscaler, planned: list[tuple], raise_errors: bool, progress: bool | Any, report: Report) -> None:
    from svsr.runtime.jobs import run_video_jobs

    try:
        upscaler.check(planned[0][2])
    except SvsrError:
        _discard(planned)
        raise
    outcomes = run_video_jobs([plan for _, plan, _ in planned], [o for _, _, o in planned], pipeline=upscaler.pipeline,
                              build_dir=upscaler.build_dir, label=upscaler.label, raise_errors=raise_errors, progress=progress,
                              report=report)  # fmt: skip
    _record([result for result, _, _ in planned], outcomes)


def _record(results: list[InputResult], outcomes: Sequence[Any]) -> None:
    for result, outcome in zip(results, outcomes):
        result.seconds, result.backend = outcome.seconds, outcome.backend
        if outcome.error is None:
            result.status = "done"
        else:
            result.message = str(outcome.error)


# -- for svsr-doctor and svsr-bench
# What the two tools need beyond the API above, so that they import nothing under svsr.runtime,
# svsr.engines, svsr.export or svsr.reference themselves.
def tensorrt_build_problem(trt: Any) -> str | None:
    """Why this TensorRT module cannot build svsr's engines (too old, or a runtime-only package), or None when it can."""
    from svsr.engines.builder import check_tensorrt_version

    try:
        check_tensorrt_version(trt)
    except MissingDependencyError as exc:
        return str(exc)
    return None


def build_engines(build_dir: str | os.PathLike[str], precision: PrecisionLike, profile: Any, *, trt: Any = None, cuda: Any = None,
                  loaders: Any = None, lean: bool = False, force: bool = True, tile: TileOption | None = None,
                  report: Report = _silent) -> dict[str, Any]:  # fmt: skip
    """Build ``precision`` engines for ``profile`` from a build folder's graphs (no PyTorch needed); returns the updated manifest.

    ``trt``/``cuda``/``loaders``: the TensorRT module, CUDA API and polygraphy's TensorRT loaders to
    build with (default: imported here; tests pass recording doubles). ``tile``: as for :func:`export_model`.
    """
    from svsr.contract.manifest import load_manifest, write_manifest
    from svsr.engines.builder import build_engines as build

    tile = engine_tile(tile)
    build_dir = Path(build_dir)
    manifest = load_manifest(build_dir)
    manifest["engines"] = build(build_dir, manifest, Precision.parse(precision), profile, report, force=force, lean=lean, trt=trt, cuda=cuda,
                                loaders=loaders, tile=tile)  # fmt: skip
    write_manifest(build_dir, manifest)
    return manifest


def open_tensorrt(build_dir: str | os.PathLike[str], precision: PrecisionLike = "auto", *, cuda_graphs: bool = True, trt: Any = None,
                  cuda: Any = None, lean: bool | None = None) -> "Upscaler":
    """An Upscaler on the build folder's TensorRT engines, with the TensorRT module and CUDA API given (tests: recording doubles).

    ``upscaler.pipeline.backend`` is the TensorRT backend (its ``capture_report()`` says which
    frame-step programs were captured as CUDA graphs).
    """
    if trt is None and cuda is None and lean is None:
        return Upscaler.open(build_dir, backend=TRT(cuda_graphs=cuda_graphs), precision=precision)
    from svsr.contract.manifest import load_manifest
    from svsr.runtime.sampling import Sampler, open_trt_backend

    build_dir = Path(build_dir)
    manifest = load_manifest(build_dir)
    backend = open_trt_backend(build_dir, manifest, precision, trt=trt, cuda=cuda, cuda_graphs=cuda_graphs, lean=lean)
    return Upscaler(Sampler(backend, manifest), backend=backend.name, device=backend.device, scheduler_config=dict(manifest["scheduler"]["config"]),
                    build_dir=build_dir, where=os.fspath(build_dir))  # fmt: skip


def store_checksum_time() -> tuple[float, int]:
    """Seconds this process's clip stores spent on CRC-32s of their files so far, and how many (svsr-bench's checksum row)."""
    from svsr.runtime.sampling import checksum_time

    return checksum_time()


def video_encoders() -> dict[str, bool]:
    """Each codec of svsr's codec table, and whether this machine's FFmpeg (inside PyAV) can encode it."""
    from svsr.contract.codecs import CODECS
    from svsr.runtime.video import encoder_available

    return {codec: encoder_available(codec) for codec in CODECS}


@dataclass
class ReferenceGraphs:
    """The eager PyTorch reference's computation of each exported graph on fixed inputs, as calls (svsr-bench's baseline)."""

    calls: dict[str, Callable[[], Any]]  # one per graph of svsr/contract/graphs.py that runs at this size
    synchronize: Callable[[], None]
    upscale: Callable[[Sequence[np.ndarray], int], list[np.ndarray]]  # the exact pipeline (float32, CPU)
    peak_device_bytes: Callable[[], int | None]


def reference_graphs(weights: str | os.PathLike[str], height: int, width: int, steps: int, *, device: str = "cpu", half: bool = False) -> ReferenceGraphs:
    """The reference on ``weights`` moved to ``device`` (fp16 with ``half``), its graphs fed LR ``height`` x ``width`` sample inputs."""
    require_export_extra("the PyTorch reference")
    quiet_libraries()
    import torch
    import torch.nn.functional as F

    from svsr.contract.graphs import FLOW_GRAPH_NAMES, GRAPH_NAMES, NORM_STATS_STRIDE, sample_graph_inputs
    from svsr.contract.sizes import flow_scale_problem, padding_plan
    from svsr.reference import StableVSRReference
    from svsr.reference.flow import scaled_flow
    from svsr.reference.warp import warp

    ref = StableVSRReference.from_pretrained(weights)
    c = ref.components
    dtype = torch.float16 if half else torch.float32
    for module in (c.unet, c.controlnet, c.vae, c.flow_model):
        module.to(device=device, dtype=dtype)
    c.prompt_embeds = c.prompt_embeds.to(device=device, dtype=dtype)
    plan = padding_plan(height, width)
    h, w = plan.padded_height, plan.padded_width
    stats = ref.norm_stats_sizes()
    feeds = {n: {k: torch.from_numpy(v).to(device=device, dtype=dtype) for k, v in sample_graph_inputs(n, h, w, stats=stats).items()}
             for n in GRAPH_NAMES}  # fmt: skip
    c.scheduler.set_timesteps(steps)
    t = c.scheduler.timesteps[0]

    def pooled(x: Any, graph: str) -> Any:  # the statistics graphs' view of the frame (svsr.export.wrappers.subsample)
        k = NORM_STATS_STRIDE[graph]
        return x[:, :, ::k, ::k]

    def flow_call(scale: int) -> Callable[[], Any]:
        f = feeds[FLOW_GRAPH_NAMES[scale]]
        return lambda: scaled_flow(c.flow_model, f["frame"], f["previous"], c.num_flow_updates, scale)

    # The eager reference has plain GroupNorms (its own statistics: what shared_norm 0 computes), so
    # denoise and the decodes ignore norm_stats; a statistics graph costs its network on the pooled
    # frame, which is what the eager rows time for denoise_stats and decode_stats.
    computations = {
        **{FLOW_GRAPH_NAMES[scale]: flow_call(scale) for scale in FLOW_GRAPH_NAMES},
        "denoise": lambda f=feeds["denoise"]: ref.ddpm_step(ref.predict(f["z"], f["lr"], t, f["guidance"]), t, f["z"], f["noise"]),
        "denoise_stats": lambda f=feeds["denoise_stats"]: ref.predict(pooled(f["z"], "denoise_stats"), pooled(f["lr"], "denoise_stats"), t,
                                                                      pooled(f["guidance"], "denoise_stats")),
        "guide_decode": lambda f=feeds["guide_decode"]: ref.decode_latent(f["x0"]),
        "decode_stats": lambda f=feeds["decode_stats"]: ref.decode_latent(pooled(f["latent"], "decode_stats")),
        "warp": lambda f=feeds["warp"]: warp(f["image"], f["flow"]),
        "decode": lambda f=feeds["decode"]: ref.decode_output(f["z"]),
        "blend": lambda f=feeds["blend"]: f["acc"] + f["tile"] * f["weight"],
    }
    if set(computations) != set(GRAPH_NAMES):
        raise RuntimeError(f"reference_graphs covers {sorted(computations)} but the graphs are {list(GRAPH_NAMES)}")
    # a flow scale whose RAFT input would be too small for these frames has no call (svsr-bench leaves it out too)
    too_small = {graph for scale, graph in FLOW_GRAPH_NAMES.items() if flow_scale_problem(scale, h, w)}
    computations = {name: call for name, call in computations.items() if name not in too_small}

    def without_grad(compute: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            with torch.no_grad():
                return compute()

        return call

    def nothing() -> None:
        pass

    return ReferenceGraphs(
        calls={name: without_grad(compute) for name, compute in computations.items()},
        synchronize=torch.cuda.synchronize if device == "cuda" else nothing,
        upscale=lambda frames, num_steps: ref.upscale(frames, num_inference_steps=num_steps, seed=0, progress=False),
        peak_device_bytes=(lambda: int(torch.cuda.max_memory_allocated())) if device == "cuda" else (lambda: None),
    )


# -- svsr-eval ----------------------------------------------------------------------------------
def evaluate(output: str | os.PathLike[str], reference: str | os.PathLike[str], *, input: str | os.PathLike[str] | None = None,
             model: str | os.PathLike[str] | None = None, json_path: str | os.PathLike[str] | None = None,
             plot: str | os.PathLike[str] | None = None, perceptual: bool = True, crop_border: int = 0,
             fps: Fraction | int | float | None = None, flow: Any = None, report: Report = _silent) -> Any:  # fmt: skip
    """Measure ``output`` against ``reference`` (videos or frame folders): what ``svsr-eval`` runs.

    Per frame and mean: PSNR/SSIM on RGB and luma Y, LPIPS/DISTS where their backbone weights are
    cached (else a note), tOF and warping error through ``model``'s flow graph, and with ``input``
    (the LR clip) a bicubic baseline. Writes ``json_path`` and the ``plot`` PNG when given, only
    after every frame was measured. Returns a :class:`svsr.quality.QualityReport`.
    """
    from svsr.quality import check_plotting, measure, plot_report

    for name, path in (("json_path", json_path), ("plot", plot)):
        if path is not None and Path(path).is_dir():
            raise InputError(f"{name} {path} is a folder; give a file name like quality.{'json' if name == 'json_path' else 'png'}.")
    if plot is not None:
        check_plotting()
    result = measure(output, reference, input=input, model=model, perceptual=perceptual, crop_border=crop_border, fps=fps, flow=flow)
    if json_path is not None:
        report(f"svsr-eval: wrote {result.write_json(json_path)}")
    if plot is not None:
        report(f"svsr-eval: wrote {plot_report(result, plot)}")
    return result


# -- make demo ----------------------------------------------------------------------------------
def write_comparison_video(input: str | os.PathLike[str], upscaled: str | os.PathLike[str], output: str | os.PathLike[str],
                           labels: Sequence[str] = ("bicubic", "svsr")) -> Path:  # fmt: skip
    """Write ``output`` (a video, or a PNG folder): the bicubic upscale of ``input`` | ``upscaled``, labelled.

    What ``make demo`` shows a newcomer (build/demo/compare.mp4). ``upscaled`` is ``input`` upscaled by
    svsr: the two must have the same frame count; the bicubic half takes the upscaled frames' size.
    """
    from svsr.runtime.video import write_comparison

    for name, path in (("input", input), ("upscaled", upscaled)):
        if not Path(path).exists():
            raise InputError(f"{name} {path} does not exist; give the video (or frame folder) that was upscaled and its output.")
    return write_comparison(input, upscaled, output, labels)
