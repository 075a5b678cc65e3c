"""TensorRT optimisation profiles from target LR sizes (plain Python, no TensorRT needed).

A profile says, for every graph input with symbolic dims (svsr/contract/graphs.py), which min/opt/max shape
the engine accepts. It is decided by LR frame sizes and a batch range:

* ``--resolution 320x180``: one static size (min = opt = max), the fastest engines;
* ``--min 256x144 --opt 320x180 --max 640x360``: a range of sizes;
* ``--batch 1`` or ``--batch 1:2:4``: the batch range (independent clips; the sampler uses 1).

Sizes are written ``WxH`` (width first, like video tools) and stored as (height, width). Every LR
side is padded up to a multiple of 4 first, exactly as the runtime pads frames (svsr/contract/sizes.py), so
a profile built for 318x178 covers the 320x180 tensors that such frames become.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from svsr.contract.errors import InputError
from svsr.contract.graphs import GRAPHS, concrete_shape
from svsr.contract.sizes import MIN_SIDE, PAD_MULTIPLE, SCALE

Shape = tuple[int, ...]
Size = tuple[int, int]  # (height, width), padded to a multiple of 4

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def pad_side(n: int) -> int:
    """A side rounded up to the padding multiple (what the runtime feeds the graphs)."""
    return -(-n // PAD_MULTIPLE) * PAD_MULTIPLE


def parse_size(text: str, option: str = "--resolution") -> Size:
    """``"WxH"`` -> padded (height, width); InputError naming ``option`` when malformed or too small."""
    match = _SIZE.match(str(text))
    if not match:
        raise InputError(f"{option} {text!r} is not a size; write it as WIDTHxHEIGHT of the low-resolution frames, e.g. 320x180.")
    width, height = int(match.group(1)), int(match.group(2))
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InputError(f"{option} {text} is too small: StableVSR needs at least {MIN_SIDE} px on each side of the low-resolution frames.")
    return pad_side(height), pad_side(width)


def format_size(size: Size) -> str:
    """(height, width) -> ``"WxH"``."""
    return f"{size[1]}x{size[0]}"


def parse_batch(text: str | int) -> tuple[int, int, int]:
    """``"2"`` -> (2, 2, 2); ``"1:2:4"`` -> (1, 2, 4) (min:opt:max)."""
    parts = str(text).split(":")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not (1 <= values[0] <= values[1] <= values[2]):
        raise InputError(f"--batch {text!r} is not a batch range; write N or MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, e.g. 1:2:4.")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class Profile:
    """One optimisation profile: LR sizes (padded, (h, w)) and batch sizes, each as min/opt/max."""

    min: Size
    opt: Size
    max: Size
    batch: tuple[int, int, int] = (1, 1, 1)

    def __post_init__(self) -> None:
        for name, size in (("min", self.min), ("opt", self.opt), ("max", self.max)):
            if len(size) != 2 or any(int(s) != s or s < MIN_SIDE or s % PAD_MULTIPLE for s in size):
                raise InputError(
                    f"profile size {name}={size} is invalid; sides must be multiples of {PAD_MULTIPLE} and at least {MIN_SIDE}."
                )
        for axis, label in ((0, "height"), (1, "width")):
            if not self.min[axis] <= self.opt[axis] <= self.max[axis]:
                raise InputError(
                    f"the profile's {label}s are not ordered (min {self.min[axis]}, opt {self.opt[axis]}, max {self.max[axis]}); "
                    "give --min <= --opt <= --max on each side."
                )
        b = self.batch
        if len(b) != 3 or not (1 <= b[0] <= b[1] <= b[2]):
            raise InputError(f"the profile's batch range {b} is invalid; use 1 <= min <= opt <= max.")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def static(cls, height: int, width: int, batch: int = 1) -> "Profile":
        size = (pad_side(height), pad_side(width))
        return cls(size, size, size, (batch, batch, batch))

    @classmethod
    def from_args(
        cls,
        resolution: str | None = None,
        min: str | None = None,  # noqa: A002 - mirrors the CLI option
        opt: str | None = None,
        max: str | None = None,  # noqa: A002
        batch: str | int | None = None,
    ) -> "Profile":
        """The profile the CLI options describe: ``--resolution`` alone, or ``--min``/``--max`` (``--opt`` optional)."""
        batch_range = parse_batch(batch) if batch is not None else (1, 1, 1)
        ranged = [o for o in (min, opt, max) if o is not None]
        if resolution is not None and ranged:
            raise InputError("give either --resolution WxH (static engines) or --min/--opt/--max ranges, not both.")
        if resolution is not None:
            size = parse_size(resolution, "--resolution")
            return cls(size, size, size, batch_range)
        if min is None or max is None:
            raise InputError(
                "engines need a target size: give --resolution WxH (static, fastest) or both --min WxH and --max WxH "
                "(and optionally --opt WxH) of the low-resolution frames."
            )
        lo, hi = parse_size(min, "--min"), parse_size(max, "--max")
        mid = parse_size(opt, "--opt") if opt is not None else hi
        return cls(lo, mid, hi, batch_range)

    # -- queries --------------------------------------------------------------------------------
    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max and self.batch[0] == self.batch[2]

    def covers(self, batch: int, height: int, width: int) -> bool:
        """Whether padded LR size ``height`` x ``width`` at ``batch`` lies inside the profile."""
        return (
            self.batch[0] <= batch <= self.batch[2]
            and self.min[0] <= height <= self.max[0]
            and self.min[1] <= width <= self.max[1]
        )

    def describe(self) -> str:
        """Human-readable range, e.g. ``320x180 (static)`` or ``256x144..640x360``."""
        if self.min == self.max:
            sizes = f"{format_size(self.min)} (static)"
        else:
            sizes = f"{format_size(self.min)}..{format_size(self.max)} (opt {format_size(self.opt)})"
        batch = f", batch {self.batch[0]}" if self.batch[0] == self.batch[2] else f", batch {self.batch[0]}..{self.batch[2]}"
        return sizes + batch

    def input_shapes(self, graph: str) -> dict[str, tuple[Shape, Shape, Shape]]:
        """(min, opt, max) shape of every input of ``graph`` that has symbolic dims, in graph order.

        Inputs with only fixed dims (tcm_scale, timestep, step_coeffs) are left out: their shape is
        already in the ONNX graph and TensorRT needs no profile entry for them.
        """
        out: dict[str, tuple[Shape, Shape, Shape]] = {}
        for spec in GRAPHS[graph].inputs:
            if not any(isinstance(d, str) for d in spec.shape):
                continue
            if graph == "blend":
                # blend serves 4-channel latent tiles (LR size) and 3-channel pixel tiles (4x): one profile spans both
                out[spec.name] = (
                    concrete_shape(spec, self.batch[0], *self.min, channels=3),
                    concrete_shape(spec, self.batch[1], *self.opt, channels=4),
                    concrete_shape(spec, self.batch[2], SCALE * self.max[0], SCALE * self.max[1], channels=4),
                )
                continue
            out[spec.name] = (
                concrete_shape(spec, self.batch[0], *self.min),
                concrete_shape(spec, self.batch[1], *self.opt),
                concrete_shape(spec, self.batch[2], *self.max),
            )
        return out

    def cli_args(self) -> list[str]:
        """The svsr-export options that reproduce this profile."""
        if self.min == self.opt == self.max:
            args = ["--resolution", format_size(self.min)]
        else:
            args = ["--min", format_size(self.min), "--opt", format_size(self.opt), "--max", format_size(self.max)]
        if self.batch != (1, 1, 1):
            b = self.batch
            args += ["--batch", str(b[0]) if b[0] == b[2] else f"{b[0]}:{b[1]}:{b[2]}"]
        return args

    # -- manifest form --------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Canonical JSON form (part of the engine cache key and of the build record)."""
        return {
            "lr_min": list(self.min),
            "lr_opt": list(self.opt),
            "lr_max": list(self.max),
            "batch": list(self.batch),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Profile":
        return cls(
            tuple(data["lr_min"]),  # type: ignore[arg-type]
            tuple(data["lr_opt"]),  # type: ignore[arg-type]
            tuple(data["lr_max"]),  # type: ignore[arg-type]
            tuple(data.get("batch", (1, 1, 1))),  # type: ignore[arg-type]
        )

    def shapes_json(self, graph: str) -> dict[str, dict[str, list[int]]]:
        """``{input: {"min": [...], "opt": [...], "max": [...]}}`` for the build record."""
        return {name: {"min": list(a), "opt": list(b), "max": list(c)} for name, (a, b, c) in self.input_shapes(graph).items()}
