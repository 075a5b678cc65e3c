"""Jobs: a video in, an upscaled video out; shots at scene cuts, resume, and the Ray farm.

Jobs receive :class:`svsr.contract.video_options.VideoOptions`; :func:`run_video_jobs` runs them in
this process or on Ray workers with the same per-shot code (:func:`run_shot`).
"""

from svsr.runtime.jobs.farm import FarmSettings, run_shots_on_ray
from svsr.runtime.jobs.job import (
    CRASH_ONCE_VARIABLE,
    CRASH_VARIABLE,
    InputPlan,
    Interrupted,
    ShotJob,
    discard_if_nothing_done,
    finish_input,
    merged_sentence,
    plan_input,
    resolve_output,
    to_uint8,
)
from svsr.runtime.jobs.progress import StepProgress
from svsr.runtime.jobs.resume import CHECKPOINT_NAME
from svsr.runtime.jobs.runner import (
    InputOutcome,
    OnRay,
    Pipeline,
    WholeClipPipeline,
    WholeClipShot,
    backend_name,
    noise_factory,
    run_input,
    run_shot,
    run_video_jobs,
    whole_clip_flow_scale,
)
from svsr.runtime.jobs.shots import DEFAULT_THRESHOLD, CutDetector, Shot, shots_from_cuts
from svsr.runtime.jobs.tiling import TileChoice, choose_tiles

__all__ = [
    "CHECKPOINT_NAME",
    "CRASH_ONCE_VARIABLE",
    "CRASH_VARIABLE",
    "DEFAULT_THRESHOLD",
    "CutDetector",
    "FarmSettings",
    "InputOutcome",
    "InputPlan",
    "Interrupted",
    "OnRay",
    "Pipeline",
    "Shot",
    "ShotJob",
    "StepProgress",
    "TileChoice",
    "WholeClipPipeline",
    "WholeClipShot",
    "backend_name",
    "choose_tiles",
    "discard_if_nothing_done",
    "finish_input",
    "merged_sentence",
    "noise_factory",
    "plan_input",
    "resolve_output",
    "run_input",
    "run_shot",
    "run_shots_on_ray",
    "run_video_jobs",
    "shots_from_cuts",
    "to_uint8",
    "whole_clip_flow_scale",
]
