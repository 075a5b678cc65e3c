"""The one way video jobs run: per shot the same code in-process and on Ray workers (torch-free).

:func:`run_shot` turns one shot into its output segment, on either kind of pipeline:

- a :class:`~svsr.runtime.sampling.Sampler` streams the shot through the clip store, with
  checkpoints after every timestep (:class:`~svsr.runtime.jobs.job.ShotJob`);
- any other pipeline with ``upscale(frames, num_inference_steps, noise, progress, scheduler=, eta=, flow_scale=)``
  (the PyTorch reference) gets the shot as one clip in memory (:class:`WholeClipShot`); shots, work folder,
  restart and the finished segments of an interrupted run work as for a sampler, and the options it
  cannot honour are refused first (:meth:`VideoOptions.whole_clip_problem`).

:func:`run_video_jobs` runs every shot of planned inputs, in this process on one pipeline or on Ray
workers (``svsr.runtime.jobs.farm``, whose workers call :func:`run_shot`), and stitches each input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from svsr.contract.errors import InputError, SvsrError
from svsr.contract.graphs import DEFAULT_FLOW_SCALE
from svsr.contract.noise import NoiseSource
from svsr.contract.sizes import FLOW_SCALE_CHOICES, flow_scale_min_side, flow_scale_problem, padding_plan
from svsr.contract.tiles import AUTO
from svsr.contract.video_options import VideoOptions
from svsr.device.noise import make_noise
from svsr.runtime.jobs.job import (
    SEGMENT_OPTIONS,
    InputPlan,
    Interrupted,
    NoiseFactory,
    ShotJob,
    discard_if_nothing_done,
    finish_input,
    to_uint8,
)
from svsr.runtime.jobs.progress import StepProgress
from svsr.runtime.jobs.shots import Shot
from svsr.runtime.sampling import Sampler
from svsr.runtime.video import FrameReader, FrameWriter

Report = Callable[[str], None]


class WholeClipPipeline(Protocol):
    """A pipeline that upscales a whole clip in memory (the PyTorch reference)."""

    name: str

    def upscale(self, frames: Sequence[np.ndarray], num_inference_steps: int, noise: NoiseSource, progress: Any = False, *,
                scheduler: str = "ddpm", eta: float = 0.0, flow_scale: int = 4) -> list[np.ndarray]: ...  # fmt: skip


Pipeline = Sampler | WholeClipPipeline


def whole_clip_flow_scale(options: VideoOptions, height: int, width: int) -> int:
    """The flow scale a whole-clip pipeline (the reference) runs padded LR frames of ``height`` x ``width`` at.

    It has no memory plan, so ``auto`` is the original's 4 (which every frame size svsr takes fits);
    an explicit scale too large for the frames is the sentence the sampler's choice gives
    (``choose_tiles``), naming the scale that fits.
    """
    scale = options.flow_scale
    if scale == AUTO:
        return DEFAULT_FLOW_SCALE
    if flow_scale_problem(int(scale), height, width) is not None:
        spell = options.spell
        fits = max(s for s in FLOW_SCALE_CHOICES if min(height, width) >= flow_scale_min_side(s))
        raise InputError(f"{spell('flow_scale', scale)} needs frames of at least {flow_scale_min_side(int(scale))} px per side "
                         f"(RAFT sees them at x{scale}), but these are {width}x{height}; use {spell('flow_scale', fits)}.")  # fmt: skip
    return int(scale)


def noise_factory(options: VideoOptions) -> NoiseFactory:
    """Each shot starts from the same noise state: a fresh source by name, or the given one rewound."""
    noise, seed = options.noise, options.seed
    if isinstance(noise, str):
        return lambda: make_noise(noise, seed)
    start = noise.state()

    def rewound() -> NoiseSource:
        noise.restore(start)
        return noise

    return rewound


def backend_name(pipeline: Pipeline) -> str:
    """``ort``, ``trt`` (a sampler's backend) or the whole-clip pipeline's name (``reference``)."""
    return pipeline.backend.name if isinstance(pipeline, Sampler) else pipeline.name


class WholeClipShot:
    """One shot -> one output segment through a pipeline that holds the whole shot in memory."""

    def __init__(self, pipeline: WholeClipPipeline, plan: InputPlan, shot: Shot, make_noise: NoiseFactory, options: VideoOptions,
                 progress: Any = None) -> None:  # fmt: skip
        self.pipeline, self.plan, self.shot = pipeline, plan, shot
        self.make_noise, self.options, self.progress = make_noise, options, progress
        self.segment = plan.segment_path(shot)

    def run(self) -> Path:
        if self.segment.exists():
            return self.segment
        self.segment.parent.mkdir(parents=True, exist_ok=True)
        info = self.plan.info
        padded = padding_plan(info.height, info.width)
        flow_scale = whole_clip_flow_scale(self.options, padded.padded_height, padded.padded_width)  # refused before any frame is read
        with FrameReader(self.plan.input, start=self.shot.first, count=self.shot.num_frames, fps=self.options.fps) as reader:
            timed = list(reader.timed())
        if len(timed) != self.shot.num_frames:
            raise InputError(
                f"{self.plan.input} gave {len(timed)} frames for frames {self.shot.first}..{self.shot.last}, "
                f"{self.shot.num_frames} were counted before; it changed or decodes differently each time: rerun with {self.options.spell('restart', True)}."
            )
        o = self.options
        try:
            upscaled = self.pipeline.upscale([frame for frame, _ in timed], num_inference_steps=o.num_inference_steps, noise=self.make_noise(),
                                             progress=self.progress if self.progress is not None else False, scheduler=o.scheduler, eta=o.eta,
                                             flow_scale=flow_scale)  # fmt: skip
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted; {self.plan.work} keeps the finished shots: rerun the same command to resume.") from None
        with FrameWriter(self.segment, info.fps, codec=o.codec, crf=o.crf, time_base=info.time_base, **SEGMENT_OPTIONS) as writer:
            for frame, (_, at) in zip(upscaled, timed):
                writer.write(to_uint8(frame), at)
        return self.segment


def run_shot(
    pipeline: Pipeline,
    plan: InputPlan,
    shot: Shot,
    options: VideoOptions,
    *,
    build_dir: Path | None,
    report: Report = lambda _m: None,
    progress: Any = None,
) -> Path:
    """One shot of ``plan`` -> its output segment (kept from an earlier run when it exists)."""
    make = noise_factory(options)
    if isinstance(pipeline, Sampler):
        return ShotJob(pipeline, plan, shot, make, options, build_dir=build_dir, report=report, progress=progress).run()
    return WholeClipShot(pipeline, plan, shot, make, options, progress=progress).run()


def run_input(pipeline: Pipeline, plan: InputPlan, options: VideoOptions, *, build_dir: Path | None, report: Report = lambda _m: None,
              progress: Any = None) -> Path:  # fmt: skip
    """Every shot of one input in this process, then the stitch."""
    try:
        for shot in plan.shots:
            run_shot(pipeline, plan, shot, options, build_dir=build_dir, report=report, progress=progress)
        return finish_input(plan)
    except Interrupted:
        raise
    except SvsrError:
        discard_if_nothing_done(plan)
        raise


@dataclass
class InputOutcome:
    """What running one planned input gave: ``error`` is None when its output was written."""

    plan: InputPlan
    seconds: float = 0.0
    backend: str = ""
    error: SvsrError | None = None


@dataclass(frozen=True)
class OnRay:
    """Run the shots on Ray workers that each open ``build_dir`` (see ``svsr.runtime.jobs.farm``)."""

    build_dir: Path
    backend: Any  # a backend name or svsr.contract.backends options
    precision: Any
    settings: Any  # svsr.runtime.jobs.FarmSettings


def run_video_jobs(
    plans: Sequence[InputPlan],
    options: VideoOptions | Sequence[VideoOptions],
    *,
    pipeline: Pipeline | None = None,
    ray: OnRay | None = None,
    build_dir: Path | None = None,
    label: str = "",
    raise_errors: bool = False,
    progress: bool | Any = False,
    report: Report = lambda _m: None,
) -> list[InputOutcome]:
    """Every shot of ``plans`` (in this process on ``pipeline``, or on Ray workers), each input stitched.

    ``options``: one for all inputs or one per input (their work folders differ). A failed input is
    reported and the others go on, unless ``raise_errors``. ``progress``: True for a bar per input,
    or a bar (anything with ``update``) to advance.
    """
    per_input = [options] * len(plans) if isinstance(options, VideoOptions) else list(options)
    if (pipeline is None) == (ray is None):
        raise ValueError("run_video_jobs runs on a pipeline or on Ray, one of them")
    if ray is not None:
        return _on_ray(plans, per_input, ray, raise_errors, report)
    if not isinstance(pipeline, Sampler):
        problem = next((p for p in (o.whole_clip_problem() for o in per_input) if p), None)
        if problem:
            raise InputError(problem)
    outcomes = []
    for plan, input_options in zip(plans, per_input):
        outcome = InputOutcome(plan, backend=label)
        outcomes.append(outcome)
        start = time.perf_counter()
        bar, own_bar = _bar(progress, plan, input_options, label)
        try:
            # messages go above our own bar, never onto its line
            run_input(pipeline, plan, input_options, build_dir=build_dir, report=bar.wrap(report) if own_bar else report, progress=bar)
        except Interrupted:
            raise
        except SvsrError as exc:
            if raise_errors:
                raise
            outcome.error = exc
            report(f"svsr-run: {plan.input}: {exc}")
        finally:
            if own_bar:
                bar.close()
            outcome.seconds = time.perf_counter() - start
    return outcomes


def _bar(progress: bool | Any, plan: InputPlan, options: VideoOptions, label: str) -> tuple[Any, bool]:
    """The progress bar of one input, and whether this call made it (and must close it)."""
    if hasattr(progress, "update"):
        if hasattr(progress, "reset"):
            progress.reset(total=plan.num_frames * options.num_inference_steps)
        return progress, False
    if not progress:
        return None, False
    total = plan.num_frames * options.num_inference_steps
    return StepProgress(total, f"svsr-run [{label}] {plan.input.name}", frames_per_step=plan.num_frames), True


def _on_ray(plans: Sequence[InputPlan], options: Sequence[VideoOptions], ray: OnRay, raise_errors: bool, report: Report) -> list[InputOutcome]:
    from svsr.runtime.jobs.farm import run_shots_on_ray

    outcomes = {str(plan.input): InputOutcome(plan) for plan in plans}
    start = time.perf_counter()

    def shot_done(record: dict[str, Any]) -> None:
        outcome = outcomes[record["input"]]
        outcome.seconds += record["seconds"]
        outcome.backend = f"ray/{record['backend']}"
        report(f"svsr-run: {Path(record['input']).name} shot {record['shot'] + 1} done in {record['seconds']:.1f} s "
               f"on {record['backend']} (pid {record['pid']})")  # fmt: skip

    backend = run_shots_on_ray(list(zip(plans, options)), build_dir=ray.build_dir, backend=ray.backend, precision=ray.precision,
                               settings=ray.settings, report=report, on_shot=shot_done)  # fmt: skip
    for plan in plans:
        outcome = outcomes[str(plan.input)]
        outcome.backend = outcome.backend or f"ray/{backend}"
        outcome.seconds = outcome.seconds or time.perf_counter() - start
        try:
            finish_input(plan)
        except SvsrError as exc:
            if raise_errors:
                raise
            outcome.error = exc
    return list(outcomes.values())


__all__ = ["InputOutcome", "OnRay", "Pipeline", "WholeClipPipeline", "WholeClipShot", "backend_name", "noise_factory", "run_input",
           "run_shot", "run_video_jobs", "whole_clip_flow_scale"]
