"""TensorRT optimisation profiles from target LR sizes (plain Python, no TensorRT needed).

A profile says, for every graph input with symbolic dims (svsr/contract/graphs.py), which min/opt/max shape
the engine accepts. It is decided by LR frame sizes and a batch range:

* ``--resolution 320x180``: one static size (min = opt = max), the fastest engines;
* ``--min 256x144 --opt 320x180 --max 640x360``: a range of sizes;
* ``--batch 1`` or ``--batch 1:2:4``: the batch range (independent clips; the sampler uses 1);
* ``--tile 128x128`` (optional): the graphs that run per tile (``TILED_GRAPHS``: denoise,
  guide_decode, decode) are built static at that tile shape, the fastest TensorRT case, and the
  ``blend`` graph for that tile's latent and 4x pixel shapes; the graphs that see whole frames (flow
  graphs, warp, the statistics graphs) keep the frame sizes above. Such engines run frames of any
  size in the range whose sides are at least the tile's (svsr.contract.engine_records.engine_tile_problem
  says which runs cannot use them).

Sizes are written ``WxH`` (width first, like video tools) and stored as (height, width); a tile is
written ``HxW`` (height first, as ``svsr-run --tile`` takes it). Every LR side is padded up to a
multiple of 4 first, exactly as the runtime pads frames (svsr/contract/sizes.py), so a profile built
for 318x178 covers the 320x180 tensors that such frames become.

RAFT's smaller flow scales need larger frames (svsr.contract.sizes.flow_scale_min_side: 64 px per
side for ``flow_x2``, 128 for ``flow_x1``). A profile whose smallest frame is below that raises the
minimum of that graph's engine to it (frames smaller than that never run at that flow scale: the
runtime refuses them with ``flow_scale_problem``); a profile whose largest frame is below it builds no
engine of that graph at all (:meth:`Profile.skip_reason` says why), since no frame it covers can use one.
An engine record's ``profile`` is always the build's profile and its ``shapes`` what the engine accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from svsr.contract.errors import InputError
from svsr.contract.graphs import FLOW_GRAPH_NAMES, GRAPHS, STATS_DIMS, TILED_GRAPHS, concrete_shape
from svsr.contract.sizes import MIN_SIDE, PAD_MULTIPLE, SCALE, flow_scale_min_side
from svsr.contract.tiles import MIN_TILE, OFF, TILE_MULTIPLE, parse_tile

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


def format_tile(tile: Size) -> str:
    """(height, width) -> ``"HxW"`` (as ``--tile`` takes it: height first)."""
    return f"{tile[0]}x{tile[1]}"


def parse_export_tile(value: object, option: str = "--tile") -> Size | None:
    """``svsr-export --tile HxW`` (LR pixels, or a (height, width) pair) -> (height, width); ``off``/None -> None.

    The tile rules are the runtime's (svsr.contract.tiles.parse_tile): sides multiples of 4, at least 32.
    """
    if value is None:
        return None
    tile = parse_tile(value, spell=lambda _name, v: f"{option} {v}")
    if tile == OFF:
        return None
    if not isinstance(tile, tuple):
        raise InputError(
            f"{option} {value} is not a tile size for engines; give HxW in LR pixels such as 128x128 (one static engine shape), "
            f"or leave {option} out for engines over frame sizes."
        )
    return tile


# the graph an engine builds RAFT's flow at a smaller scale in, and that scale (flow_x2: 2, flow_x1: 1)
_FLOW_SCALE_OF = {graph: scale for scale, graph in FLOW_GRAPH_NAMES.items()}


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
    """One optimisation profile: LR sizes (padded, (h, w)) and batch sizes, each as min/opt/max, and an
    optional static tile (h, w) for the graphs that run per tile (module docstring)."""

    min: Size
    opt: Size
    max: Size
    batch: tuple[int, int, int] = (1, 1, 1)
    tile: Size | None = None

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
        if self.tile is not None:
            t = self.tile
            if len(t) != 2 or any(int(s) != s or s < MIN_TILE or s % TILE_MULTIPLE for s in t):
                raise InputError(f"the profile's tile {t} is invalid; tile sides must be multiples of {TILE_MULTIPLE} and at least {MIN_TILE}.")
            if t[0] > self.max[0] or t[1] > self.max[1]:
                # a tile beyond the largest frame is never run: every frame would be one (smaller) tile
                raise InputError(
                    f"--tile {format_tile(t)} is larger than the profile's largest frame {format_size(self.max)} (WxH), so no frame "
                    "would run tiles of it; give a smaller --tile or a larger --max (or --resolution)."
                )

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def static(cls, height: int, width: int, batch: int = 1, tile: Size | None = None) -> "Profile":
        size = (pad_side(height), pad_side(width))
        return cls(size, size, size, (batch, batch, batch), tile)

    def with_tile(self, tile: Size | None) -> "Profile":
        """The same frame sizes and batches with another tile (None: engines over frame sizes only)."""
        return Profile(self.min, self.opt, self.max, self.batch, None if tile is None else (int(tile[0]), int(tile[1])))

    @classmethod
    def from_args(
        cls,
        resolution: str | None = None,
        min: str | None = None,  # noqa: A002 - mirrors the CLI option
        opt: str | None = None,
        max: str | None = None,  # noqa: A002
        batch: str | int | None = None,
        tile: object = None,
    ) -> "Profile":
        """The profile the CLI options describe: ``--resolution`` alone, or ``--min``/``--max`` (``--opt`` optional),
        and ``--tile HxW`` (optional; module docstring)."""
        batch_range = parse_batch(batch) if batch is not None else (1, 1, 1)
        static_tile = parse_export_tile(tile)
        ranged = [o for o in (min, opt, max) if o is not None]
        if resolution is not None and ranged:
            raise InputError("give either --resolution WxH (static engines) or --min/--opt/--max ranges, not both.")
        if resolution is not None:
            size = parse_size(resolution, "--resolution")
            return cls(size, size, size, batch_range, static_tile)
        if min is None or max is None:
            raise InputError(
                "engines need a target size: give --resolution WxH (static, fastest) or both --min WxH and --max WxH "
                "(and optionally --opt WxH) of the low-resolution frames."
            )
        lo, hi = parse_size(min, "--min"), parse_size(max, "--max")
        mid = parse_size(opt, "--opt") if opt is not None else hi
        return cls(lo, mid, hi, batch_range, static_tile)

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
        tile = f", tiles {format_tile(self.tile)} (static)" if self.tile is not None else ""
        return sizes + batch + tile

    def skip_reason(self, graph: str) -> str | None:
        """Why this profile builds no engine of ``graph`` (a smaller flow scale that no frame of it can use), or None."""
        scale = _FLOW_SCALE_OF.get(graph)
        need = flow_scale_min_side(scale) if scale is not None else MIN_SIDE
        if self.max[0] >= need and self.max[1] >= need:
            return None
        return (
            f"RAFT at --flow-scale {scale} needs frames of at least {need} px per side and the profile's largest frame is "
            f"{format_size(self.max)}, so no frame it covers runs at that flow scale"
        )

    def frame_sizes(self, graph: str) -> tuple[Size, Size, Size]:
        """(min, opt, max) LR size of the frames ``graph``'s engine accepts: the profile's, with the smallest raised
        to what RAFT needs at the graph's flow scale (module docstring)."""
        reason = self.skip_reason(graph)
        if reason is not None:
            raise InputError(f"no {graph} engine is built for {self.describe()}: {reason}.")
        scale = _FLOW_SCALE_OF.get(graph)
        need = flow_scale_min_side(scale) if scale is not None else MIN_SIDE
        lo = (max(self.min[0], need), max(self.min[1], need))
        mid = (max(self.opt[0], lo[0]), max(self.opt[1], lo[1]))
        return lo, mid, self.max

    def input_shapes(self, graph: str, stats: Mapping[str, int] | None = None) -> dict[str, tuple[Shape, Shape, Shape]]:
        """(min, opt, max) shape of every input of ``graph`` that has symbolic dims, in graph order.

        Inputs with only fixed dims (tcm_scale, timestep, step_coeffs, shared_norm) are left out: their
        shape is already in the ONNX graph and TensorRT needs no profile entry for them. ``stats``: the
        checkpoint's statistics lengths (``svsr.contract.manifest.stats_sizes``), needed by the graphs
        with a ``norm_stats`` tensor (ValueError without them: a profile of a wrong length builds an
        engine no run can feed).
        """
        specs = [spec for spec in GRAPHS[graph].inputs if any(isinstance(d, str) for d in spec.shape)]
        missing = sorted({d for spec in specs for d in spec.shape if d in STATS_DIMS} - set(stats or {}))
        if missing:
            raise ValueError(f"the {graph} graph's profile needs the statistics length(s) {missing} (manifest.stats_sizes)")
        if graph == "blend":
            # blend serves 4-channel latent tiles (LR size) and 3-channel pixel tiles (4x): one profile spans both
            lo, mid, hi = (self.tile,) * 3 if self.tile is not None else (self.min, self.opt, self.max)
            return {
                spec.name: (
                    concrete_shape(spec, self.batch[0], *lo, channels=3),
                    concrete_shape(spec, self.batch[1], *mid, channels=4),
                    concrete_shape(spec, self.batch[2], SCALE * hi[0], SCALE * hi[1], channels=4),
                )
                for spec in specs
            }
        if self.tile is not None and graph in TILED_GRAPHS:
            lo = mid = hi = self.tile  # static at the tile: the fastest engines, one shape for every frame size
        else:
            lo, mid, hi = self.frame_sizes(graph)
        return {
            spec.name: (
                concrete_shape(spec, self.batch[0], *lo, stats=stats),
                concrete_shape(spec, self.batch[1], *mid, stats=stats),
                concrete_shape(spec, self.batch[2], *hi, stats=stats),
            )
            for spec in specs
        }

    def cli_args(self) -> list[str]:
        """The svsr-export options that reproduce this profile."""
        if self.min == self.opt == self.max:
            args = ["--resolution", format_size(self.min)]
        else:
            args = ["--min", format_size(self.min), "--opt", format_size(self.opt), "--max", format_size(self.max)]
        if self.batch != (1, 1, 1):
            b = self.batch
            args += ["--batch", str(b[0]) if b[0] == b[2] else f"{b[0]}:{b[1]}:{b[2]}"]
        if self.tile is not None:
            args += ["--tile", format_tile(self.tile)]
        return args

    # -- manifest form --------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Canonical JSON form (part of the engine cache key and of the build record); ``tile`` only when set,
        so a profile without one keeps the cache key it always had."""
        data: dict[str, Any] = {
            "lr_min": list(self.min),
            "lr_opt": list(self.opt),
            "lr_max": list(self.max),
            "batch": list(self.batch),
        }
        if self.tile is not None:
            data["tile"] = list(self.tile)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Profile":
        tile = data.get("tile")
        return cls(
            tuple(data["lr_min"]),  # type: ignore[arg-type]
            tuple(data["lr_opt"]),  # type: ignore[arg-type]
            tuple(data["lr_max"]),  # type: ignore[arg-type]
            tuple(data.get("batch", (1, 1, 1))),  # type: ignore[arg-type]
            None if tile is None else tuple(tile),  # type: ignore[arg-type]
        )

    def shapes_json(self, graph: str, stats: Mapping[str, int] | None = None) -> dict[str, dict[str, list[int]]]:
        """``{input: {"min": [...], "opt": [...], "max": [...]}}`` for the build record (``stats``: as :meth:`input_shapes`)."""
        return {name: {"min": list(a), "opt": list(b), "max": list(c)} for name, (a, b, c) in self.input_shapes(graph, stats).items()}
