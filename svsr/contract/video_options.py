"""How a video is upscaled, declared once: :class:`VideoOptions` (torch-free, no PyAV).

The API takes it (``upscale_video(..., options=VideoOptions(crf=20))`` or keyword overrides), video
jobs and Ray workers receive it, and ``svsr-run`` is generated from it the way polygraphy builds its
argument groups: :meth:`VideoOptions.add_arguments` adds one option per field from the field's
metadata (flag, help, bounds, choices read from the codec and noise tables) and
:meth:`VideoOptions.from_args` builds the options back. Every rule lives in ``__post_init__``; a
broken one is one sentence that spells the option the way its user wrote it: ``codec='vp9'`` from
Python, ``--codec vp9`` from the command line.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from svsr.contract.codecs import CODECS, DEFAULT_CODEC, DEFAULT_CRF, codec_problem
from svsr.contract.errors import InputError
from svsr.contract.noise import DEFAULT_NOISE, NOISE_KINDS, NoiseSource
from svsr.contract.scheduler import DEFAULT_SCHEDULER, DEFAULT_STEPS, SCHEDULERS, scheduler_problem, steps_problem
from svsr.contract.sizes import FLOW_SCALE_CHOICES
from svsr.contract.tiles import AUTO, DEFAULT_OVERLAP, OFF, TileOption, overlap_problem, parse_tile

__all__ = ["DEFAULT_MIN_SHOT", "FLOW_MODES", "FrameRange", "MAX_STEPS", "MIN_HOST_MEMORY", "SEED_MAX", "Spell", "VideoOptions", "api_spelling",
           "default_steps", "parse_flow_scale", "parse_memory_size", "tile_text"]  # fmt: skip

Spell = Callable[[str, Any], str]
SEED_MAX = 2**64 - 1  # Philox keys are 64 bits; numpy and torch accept the same range
MAX_STEPS = 10_000  # before any scheduler is known; the scheduler's training timesteps bound it again
MIN_HOST_MEMORY = 2**20
MAX_FPS = 1000
MAX_SCENE_THRESHOLD = 255.0
FLOW_MODES = ("store", "recompute")
DEFAULT_SCENE_THRESHOLD = 27.0  # PySceneDetect's ContentDetector default
DEFAULT_MIN_SHOT = 15  # PySceneDetect's minimum scene length, in frames
MAX_MIN_SHOT = 100_000
# Arguments beside the video options that sentences may name, as the command line spells them.
OTHER_FLAGS = {"output": "-o", "model": "--model", "backend": "--backend", "weights": "--weights", "precision": "--precision",
               "ray": "--ray", "ray_workers": "--ray-workers"}  # fmt: skip
_MEMORY_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_flow_scale(value: object) -> int | str | None:
    """``auto`` or one of FLOW_SCALE_CHOICES from an int or its text; None when it is neither."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        value = int(text) if text.isdigit() else None
    if isinstance(value, bool) or not isinstance(value, int) or value not in FLOW_SCALE_CHOICES:
        return None
    return value


def default_steps(scheduler: str) -> int:
    """The step count a scheduler runs when none is given (``DEFAULT_STEPS`` of the contract's scheduler rules)."""
    return DEFAULT_STEPS[scheduler]


def tile_text(tile: TileOption) -> str:
    """A tile option as a user writes it: ``auto``, ``off`` or ``128x96`` (height x width)."""
    return tile if isinstance(tile, str) else f"{tile[0]}x{tile[1]}"


def api_spelling(name: str, value: Any) -> str:
    """An option as a Python caller writes it: ``codec='vp9'``."""
    return f"{name}={value!r}"


def parse_memory_size(text: str | int, option: str = "--host-memory") -> int:
    """``512M``, ``8G``, ``1.5G``, ``65536`` (bytes) -> bytes; InputError naming ``option`` otherwise."""
    raw = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (raw[:-1], raw[-1]) if raw and raw[-1] in _MEMORY_UNITS else (raw, "")
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not value > 0 or not math.isfinite(value):
        raise InputError(f"{option} {text!r} is not a memory size; write it like 512M, 8G or 1.5G.")
    return int(value * _MEMORY_UNITS[unit])


_RANGE_FORMS = "write it like 10:50, :50, 100: (frame indices, END excluded) or 10s:14s, 1.5s:3s (seconds)"


@dataclass(frozen=True)
class FrameRange:
    """A part of an input to upscale as its own clip: ``START:END`` in frame indices or in seconds (``10s:14s``).

    Like a Python slice, START is included and END is not; either may be omitted. Times select the
    frames whose presentation time falls in ``[start, end)``.
    """

    start: int | Fraction | None
    end: int | Fraction | None
    in_seconds: bool

    @classmethod
    def parse(cls, text: str) -> "FrameRange":
        """``"10:50"``, ``":50"``, ``"100:"``, ``"10s:14s"`` -> a range; ValueError saying why (a clause) otherwise."""
        parts = str(text).strip().split(":")
        if len(parts) != 2:
            raise ValueError(f"is not START:END; {_RANGE_FORMS}")
        ends = [_range_end(part.strip()) for part in parts]
        if ends[0] is None and ends[1] is None:
            raise ValueError(f"gives neither START nor END; {_RANGE_FORMS}")
        units = {unit for _, unit in filter(None, ends)}
        if len(units) > 1:
            raise ValueError("mixes a frame index with a time; give both ends as frame indices (10:50) or both in seconds (10s:14s)")
        start, end = (None if item is None else item[0] for item in ends)
        if start is not None and end is not None and not start < end:
            raise ValueError("ends where it starts, so it selects no frame; give an END after START" if start == end
                             else "ends before it starts; give START before END (END is excluded, as in a Python slice)")  # fmt: skip
        return cls(start, end, units == {"s"})

    @property
    def first_index(self) -> int:
        """The first frame index a reader may skip to (0 for a time range, whose frames are found by their times)."""
        return 0 if self.in_seconds or self.start is None else int(self.start)

    def selects(self, index: int, time: Fraction) -> bool:
        """Whether the frame ``index`` shown at ``time`` (seconds) lies in the range."""
        at = time if self.in_seconds else index
        return (self.start is None or at >= self.start) and not self.ends_before(index, time)

    def ends_before(self, index: int, time: Fraction) -> bool:
        """Whether the frame ``index`` at ``time`` and every later one lie past the range's end."""
        at = time if self.in_seconds else index
        return self.end is not None and at >= self.end


def _range_end(part: str) -> tuple[int | Fraction, str] | None:
    """One end of a frame range: None when omitted, (index, "") or (seconds, "s"); ValueError when neither."""
    if not part:
        return None
    if part.endswith("s"):
        try:
            seconds = Fraction(part[:-1].strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"has {part!r}, which is not a time in seconds; {_RANGE_FORMS}") from None
        if seconds < 0:
            raise ValueError("starts or ends before the input does; times count from its start and cannot be negative")
        return seconds, "s"
    try:
        index = int(part, 10)
    except ValueError:
        raise ValueError(f"has {part!r}, which is neither a frame index nor a time in seconds; {_RANGE_FORMS}") from None
    if index < 0:
        raise ValueError("starts or ends before the input does; frame indices count from 0 and cannot be negative")
    return index, ""


def _whole_number(text: str) -> int:
    try:
        return int(str(text).strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


_whole_number.__name__ = "whole number"  # argparse names the type in its own messages
_number.__name__ = "number"


@dataclass(frozen=True)
class Flag:
    """How one field appears on the command line (read by :meth:`VideoOptions.add_arguments`)."""

    flag: str
    help: str
    parse: Callable[[str], Any] | None = None  # syntax only; VideoOptions checks the value
    choices: tuple[str, ...] = ()  # shown in --help; checked by VideoOptions, so both doors say the same
    metavar: str | None = None
    switch: bool = False  # a flag without a value that sets the field to ``not default``


def _option(default: Any, flag: Flag) -> Any:
    return field(default=default, metadata={"cli": flag})


@dataclass(frozen=True)
class VideoOptions:
    """How one or many videos are upscaled: scheduler and steps, noise, tiles, encoding, memory, resume, shots.

    ``scheduler`` ``ddpm`` (the paper's), ``ddim`` or ``dpmpp-2m``; ``num_inference_steps`` None
    takes the scheduler's default count; ``eta`` is DDIM's (0: deterministic). ``tile`` ``"auto"``
    runs whole frames where the memory plan allows and the largest tile that fits elsewhere,
    ``"off"`` always runs whole frames (the paper's exact path), ``(height, width)`` or ``"HxW"`` (LR
    pixels) runs tiles of that size, blended over ``tile_overlap`` LR pixels.

    ``flow_scale`` 4 runs RAFT on the bicubic x4 frames as the paper does, 2 or 1 on smaller frames
    with the flow upsampled to 4x (RAFT's memory grows with the square of the area it sees), ``"auto"``
    keeps 4 where the memory plan allows.

    ``host_memory`` (bytes or ``"8G"``) bounds the RAM of the clip store (default: half of the
    available memory); beyond it the store uses files in ``work_dir`` (default: beside the output).
    ``restart`` discards the work of an interrupted run instead of resuming it. ``flows="recompute"``
    runs the flow graph per frame-step instead of storing flows. ``scene_split`` finds scene cuts
    (PySceneDetect's content detector at ``scene_threshold``) and upscales each shot as its own exact
    clip. ``fps``: frame rate of a folder of frames (default 24). ``frames="START:END"`` upscales only
    that part of each input (frame indices, END excluded, or seconds: ``"10s:14s"``) as its own clip,
    its frames keeping their times; its audio is not copied, so an input with sound needs ``no_audio``.
    """

    num_inference_steps: int | None = _option(None, Flag(
        "--steps", "denoising steps (default per scheduler: " + ", ".join(f"{name} {count}" for name, count in DEFAULT_STEPS.items())
        + "; at most the scheduler's training timesteps)", _whole_number, metavar="N"))  # fmt: skip
    scheduler: str = _option(DEFAULT_SCHEDULER, Flag(
        "--scheduler", "sampler: ddpm (default, the paper's), ddim, or dpmpp-2m (DPM-Solver++ 2M); fewer steps with ddim and dpmpp-2m",
        choices=SCHEDULERS))  # fmt: skip
    eta: float = _option(0.0, Flag("--eta", "DDIM's eta from 0 (default: deterministic) to 1 (as much fresh noise as DDPM)", _number, metavar="ETA"))
    seed: int = _option(0, Flag("--seed", "noise seed, 0 to 2**64-1 (default 0)", _whole_number, metavar="N"))
    noise: str | NoiseSource = _option(DEFAULT_NOISE, Flag(
        "--noise", "noise source (default philox: a pure function of seed, step and frame; torch reproduces the reference)",
        choices=NOISE_KINDS))  # fmt: skip
    codec: str = _option(DEFAULT_CODEC, Flag("--codec", f"video codec (default {DEFAULT_CODEC})", choices=tuple(CODECS)))
    crf: int = _option(DEFAULT_CRF, Flag(
        "--crf", "quality for " + ", ".join(f"{c.name} ({c.crf_range[0]}-{c.crf_range[1]})" for c in CODECS.values() if not c.lossless)
        + f"; lower is better (default {DEFAULT_CRF})", _whole_number, metavar="N"))  # fmt: skip
    host_memory: int | str | None = _option(None, Flag(
        "--host-memory", "RAM for the clip state, e.g. 512M or 8G (default: half of the available memory); "
        "beyond it the state goes to files in the work folder", metavar="SIZE"))  # fmt: skip
    work_dir: str | os.PathLike[str] | None = _option(None, Flag(
        "--work-dir", "folder for the clip state and checkpoints (default: beside the output, named after it)", Path, metavar="DIR"))  # fmt: skip
    restart: bool = _option(False, Flag("--restart", "discard the checkpoint of an interrupted run instead of resuming it", switch=True))
    tile: TileOption = _option(AUTO, Flag(
        "--tile", "tiles of the latent plane, in LR pixels: auto (default: the whole frame where memory allows, else the largest tile "
        "that fits), off (whole frames, exact), or HxW like 128x128 (sides multiples of 4, at least 32)", metavar="auto|off|HxW"))  # fmt: skip
    tile_overlap: int = _option(DEFAULT_OVERLAP, Flag(
        "--tile-overlap", f"LR pixels neighbouring tiles share and blend over (default {DEFAULT_OVERLAP}; less than half a tile)",
        _whole_number, metavar="N"))  # fmt: skip
    flow_scale: int | str = _option(AUTO, Flag(
        "--flow-scale", "scale RAFT sees the frames at: 4 (the original's bicubic x4), 2 or 1 (the flow upsampled to 4x; "
        "less memory, coarser flow), auto (default: 4 where its memory fits, else the largest that fits, said when it chooses less)",
        metavar="4|2|1|auto"))  # fmt: skip
    flows: Literal["store", "recompute"] = _option("store", Flag(
        "--flows", "store the optical flows (default) or recompute them each frame-step (less memory, more compute)",
        choices=FLOW_MODES))  # fmt: skip
    fps: Fraction | int | float | str | None = _option(None, Flag(
        "--fps", "frame rate of a folder of frames (default 24), e.g. 30 or 30000/1001", metavar="RATE"))  # fmt: skip
    scene_split: bool = _option(True, Flag("--no-scene-split", "treat each input as one shot (default: split at scene cuts)", switch=True))
    scene_threshold: float = _option(DEFAULT_SCENE_THRESHOLD, Flag(
        "--scene-threshold", "PySceneDetect content-detector threshold for scene cuts (default 27; lower finds more cuts)", _number, metavar="T"))  # fmt: skip
    min_shot: int = _option(DEFAULT_MIN_SHOT, Flag(
        "--min-shot", f"shortest shot in frames: a scene cut closer than this to the previous one is merged into it "
        f"(default {DEFAULT_MIN_SHOT}, PySceneDetect's minimum scene length)", _whole_number, metavar="N"))  # fmt: skip
    frames: str | None = _option(None, Flag(
        "--frames", "upscale only frames START:END (END excluded; e.g. 100:250, :50) or the frames shown in a time span (e.g. 10s:14s) "
        "as their own clip, to try settings before a long job; the input's audio is not copied (add --no-audio)", metavar="START:END"))  # fmt: skip
    no_audio: bool = _option(False, Flag("--no-audio", "write no sound (without it, an input's audio the output cannot hold is an error)",
                                         switch=True))  # fmt: skip

    def __post_init__(self) -> None:
        problem = self._normalise(api_spelling)
        if problem:
            raise InputError(problem)

    # -- the rules ------------------------------------------------------------------------------------
    def _normalise(self, spell: Spell) -> str | None:
        """Check every field (first broken rule's sentence, or None) and store normalised values."""
        object.__setattr__(self, "_spell", spell)  # later sentences (output, audio, resume) spell options as this caller does
        problem = self._sampling_problem(spell)
        if problem:
            return problem
        for name, low, high in (("num_inference_steps", 1, MAX_STEPS), ("seed", 0, SEED_MAX), ("min_shot", 1, MAX_MIN_SHOT)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                return f"{spell(name, value)} is not a whole number from {low} to {high}."
        if isinstance(self.noise, str):
            if self.noise not in NOISE_KINDS:
                return f"unknown noise source {spell('noise', self.noise)}; use one of {', '.join(NOISE_KINDS)}."
        elif not all(hasattr(self.noise, m) for m in ("initial_latent", "step_noise", "state", "restore")):
            return f"{spell('noise', self.noise)} is neither a noise source name ({', '.join(NOISE_KINDS)}) nor a NoiseSource."
        problem = codec_problem(self.codec, self.crf, spell=spell)
        if problem:
            return problem
        if self.host_memory is not None:
            size = self.host_memory if isinstance(self.host_memory, int) and not isinstance(self.host_memory, bool) else None
            if size is None:
                try:
                    size = parse_memory_size(self.host_memory)
                except InputError:
                    return f"{spell('host_memory', self.host_memory)} is not a memory size; write it like 512M, 8G or 1.5G."
            if size < MIN_HOST_MEMORY:
                return f"{spell('host_memory', self.host_memory)} is below 1M; give the clip state at least 1M of RAM (e.g. 512M)."
            object.__setattr__(self, "host_memory", size)
        if self.work_dir is not None:
            object.__setattr__(self, "work_dir", Path(self.work_dir))
        for switch in ("restart", "scene_split", "no_audio"):
            if not isinstance(getattr(self, switch), bool):
                return f"{spell(switch, getattr(self, switch))} must be True or False."
        if self.flows not in FLOW_MODES:
            return f"{spell('flows', self.flows)} is not one of {' or '.join(FLOW_MODES)}."
        if self.fps is not None:
            try:
                rate = Fraction(str(self.fps).strip() if isinstance(self.fps, str) else self.fps).limit_denominator(1_000_000)
            except (ValueError, ZeroDivisionError, TypeError):
                return f"{spell('fps', self.fps)} is not a frame rate; write it like 24, 29.97 or 30000/1001."
            if not 0 < rate <= MAX_FPS:
                return f"{spell('fps', self.fps)} is not a frame rate above 0 and at most {MAX_FPS}."
            object.__setattr__(self, "fps", rate)
        if self.frames is not None:
            if not isinstance(self.frames, str):
                return f"{spell('frames', self.frames)} is not a frame range; write it as a string like '10:50' or '10s:14s'."
            try:
                FrameRange.parse(self.frames)
            except ValueError as why:
                return f"{spell('frames', self.frames)} {why}."
        threshold = self.scene_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
                or not 0 < threshold <= MAX_SCENE_THRESHOLD:  # fmt: skip
            return f"{spell('scene_threshold', threshold)} is not a number above 0 and at most {MAX_SCENE_THRESHOLD:g}."
        object.__setattr__(self, "scene_threshold", float(threshold))
        return None

    def _sampling_problem(self, spell: Spell) -> str | None:
        """Scheduler, eta, steps (None: the scheduler's default), tile and overlap: the first broken rule's sentence, or None."""
        problem = scheduler_problem(self.scheduler, self.eta, spell=spell)  # also eta with a scheduler that adds no noise
        if problem:
            return problem
        object.__setattr__(self, "eta", float(self.eta))
        # remembered so that with_overrides(scheduler=...) gives the new scheduler's default count
        object.__setattr__(self, "_steps_given", self.num_inference_steps is not None)
        if self.num_inference_steps is None:
            object.__setattr__(self, "num_inference_steps", default_steps(self.scheduler))
        try:
            tile = parse_tile(self.tile, spell=spell)
        except InputError as refused:
            return str(refused)
        object.__setattr__(self, "tile", tile)
        problem = overlap_problem(tile, self.tile_overlap, spell=spell)
        if problem:
            return problem
        scale = parse_flow_scale(self.flow_scale)
        if scale is None:
            return f"{spell('flow_scale', self.flow_scale)} is not a flow scale; use 4 (the original), 2, 1 or auto."
        object.__setattr__(self, "flow_scale", scale)
        return None

    def scheduler_problem(self, config: Mapping[str, Any], where: str, spell: Spell | None = None) -> str | None:
        """Why the step count does not fit the scheduler ``config`` of the build or checkpoint ``where``, or None."""
        return steps_problem(config, self.num_inference_steps, where, spell=spell or self.spell, scheduler=self.scheduler)

    def whole_clip_problem(self, spell: Spell | None = None) -> str | None:
        """What a pipeline holding each shot in memory (the PyTorch reference) cannot honour, or None."""
        spell = spell or self.spell
        if self.host_memory is not None:
            return (f"the reference backend holds each shot in memory, so {spell('host_memory', self.host_memory)} cannot bound it; "
                    "drop it or use the ort or trt backend.")  # fmt: skip
        if self.flows != "store":
            return f"the reference backend computes its flows once per shot, so {spell('flows', self.flows)} cannot apply; drop it or use the ort or trt backend."
        if isinstance(self.tile, tuple):
            return (f"the reference backend runs whole frames, so {spell('tile', tile_text(self.tile))} cannot apply; "
                    "drop it or use the ort or trt backend.")  # fmt: skip
        return None

    @property
    def tile_size(self) -> tuple[int, int] | None:
        """The tile (height, width) asked for, or None for ``auto`` and ``off``."""
        return self.tile if isinstance(self.tile, tuple) else None

    @property
    def frame_range(self) -> FrameRange | None:
        """The part of each input to upscale (``frames``), or None for the whole input."""
        return None if self.frames is None else FrameRange.parse(self.frames)

    @property
    def store_flows(self) -> bool:
        return self.flows == "store"

    def spell(self, name: str, value: Any) -> str:
        """An option (a field, or ``output``, ``model``, ...) as the user who made these options writes it."""
        return getattr(self, "_spell", api_spelling)(name, value)

    def with_overrides(self, **overrides: Any) -> "VideoOptions":
        """A copy with some fields changed (checked again, spelled as these options are); an unknown name is one sentence."""
        if not overrides:
            return self
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        if not getattr(self, "_steps_given", True):
            values["num_inference_steps"] = None  # still the scheduler's default, for the scheduler the overrides may change
        return VideoOptions.spelled(getattr(self, "_spell", api_spelling), **{**values, **overrides})

    # -- the command line -----------------------------------------------------------------------------
    @staticmethod
    def cli_spelling(name: str, value: Any) -> str:
        """An option as a command-line user writes it: ``--codec vp9`` (switches without their value)."""
        flag = _FLAGS.get(name)
        if flag is None:
            return f"{OTHER_FLAGS[name]} {value}" if name in OTHER_FLAGS else api_spelling(name, value)
        return flag.flag if flag.switch else f"{flag.flag} {value}"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
        """One command-line option per field, in an argument group (polygraphy's ``add_parser_args``)."""
        group = parser.add_argument_group("video options")
        for item in fields(cls):
            flag: Flag = item.metadata["cli"]
            if flag.switch:
                group.add_argument(flag.flag, dest=item.name, action="store_false" if item.default else "store_true", help=flag.help)
                continue
            metavar = flag.metavar or ("{" + ",".join(flag.choices) + "}" if flag.choices else None)
            group.add_argument(flag.flag, dest=item.name, default=item.default, type=flag.parse, metavar=metavar, help=flag.help)
        return group

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "VideoOptions":
        """The options the parsed arguments give; a broken rule is one sentence spelled as on the command line."""
        return cls.spelled(cls.cli_spelling, **{item.name: getattr(args, item.name) for item in fields(cls)})

    @classmethod
    def spelled(cls, spell: Spell, **values: Any) -> "VideoOptions":
        """Options from ``values`` (defaults for the rest) whose broken rule is spelled by ``spell``."""
        unknown = sorted(set(values) - set(_FLAGS))
        if unknown:
            raise InputError(f"unknown video option {unknown[0]!r}; use one of {', '.join(_FLAGS)}.")
        options = object.__new__(cls)  # checked below with the caller's spelling instead of __post_init__'s
        for item in fields(cls):
            object.__setattr__(options, item.name, values.get(item.name, item.default))
        problem = options._normalise(spell)
        if problem:
            raise InputError(problem)
        return options


_FLAGS: dict[str, Flag] = {item.name: item.metadata["cli"] for item in fields(VideoOptions)}
