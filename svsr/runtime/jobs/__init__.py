"""Jobs: a video in, an upscaled video out; shots at scene cuts, resume, and the Ray farm."""

from svsr.runtime.jobs.farm import FarmSettings, run_shots_on_ray
from svsr.runtime.jobs.job import (
    CRASH_ONCE_VARIABLE,
    CRASH_VARIABLE,
    InputPlan,
    Interrupted,
    JobOptions,
    ShotJob,
    discard_if_nothing_done,
    finish_input,
    plan_input,
    resolve_output,
    run_input,
    to_uint8,
    upscale_whole_clip,
)
from svsr.runtime.jobs.resume import CHECKPOINT_NAME
from svsr.runtime.jobs.shots import DEFAULT_THRESHOLD, CutDetector, Shot, shots_from_cuts

__all__ = [
    "CHECKPOINT_NAME",
    "CRASH_ONCE_VARIABLE",
    "CRASH_VARIABLE",
    "DEFAULT_THRESHOLD",
    "CutDetector",
    "FarmSettings",
    "InputPlan",
    "Interrupted",
    "JobOptions",
    "Shot",
    "ShotJob",
    "discard_if_nothing_done",
    "finish_input",
    "plan_input",
    "resolve_output",
    "run_input",
    "run_shots_on_ray",
    "shots_from_cuts",
    "to_uint8",
    "upscale_whole_clip",
]
