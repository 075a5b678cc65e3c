"""Which tiles and flow scale a frame size runs with: ``--tile auto|off|HxW`` and ``--flow-scale auto|4|2|1`` resolved
for one padded LR frame size (torch-free).

``off`` runs whole frames (the paper's exact path). ``HxW`` runs tiles of that size, or whole frames
where one tile covers the frame (a tile layout of one tile is the untiled path, bit for bit).
``auto`` asks the memory plan (``choose_tile`` of the sampling room) for the whole frame where it
fits and the largest tile that fits elsewhere: in the free GPU memory with TensorRT, and with
ONNX Runtime in the RAM available now less what the clip store takes (default: its budget, half
of that RAM).

The flow scale (RAFT on the bicubic x4 frames, as the paper, or on x2 / x1 frames with the flow
upsampled to 4x) is resolved with the tile: ``auto`` keeps 4 where the memory plan fits at 4 (with
tiles where the tile is ``auto`` too) and takes the largest smaller scale that fits otherwise
(``choose_flow_scale`` of the sampling room), and says why; a scale the frame is too small for
(RAFT needs 128 px per side of what it sees) is one sentence. An interrupted run resumes with the
tile and flow scale its checkpoint recorded (``recorded_tile``, ``recorded_flow_scale``), so a resumed
``auto`` run stays bit-identical even where free memory changed.

TensorRT engines built static at one tile (``svsr-export --tile HxW``) run that tile shape only: ``auto``
takes it, and a tile (or whole frames) of another shape is one sentence naming the build's tile
(``engine_records.engine_tile_problem``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from svsr.contract.engine_records import engine_tile, engine_tile_problem
from svsr.contract.errors import InputError
from svsr.contract.graphs import DEFAULT_FLOW_SCALE
from svsr.contract.sizes import FLOW_SCALE_CHOICES, flow_scale_min_side, flow_scale_problem
from svsr.contract.tiles import AUTO, OFF, TileLayout, TileOption, overlap_problem, parse_tile, plan_tiles
from svsr.contract.video_options import Spell, api_spelling, parse_flow_scale, tile_text
from svsr.runtime import sampling

__all__ = ["FLOW_SCALE_OPTION", "TileChoice", "choose_tiles", "recorded_flow_scale", "recorded_tile"]

# the checkpoint option (svsr/runtime/jobs/resume.py options) that records the flow scale a run chose
FLOW_SCALE_OPTION = "flow_scale"


@dataclass(frozen=True)
class TileChoice:
    """The tile size a frame size runs with (None: whole frames), its layout, and the line that says why;
    the flow scale it runs with, and the line to say about it (None where there is nothing to say: scale 4,
    the paper's, not asked for)."""

    tile: tuple[int, int] | None
    layout: TileLayout
    sentence: str
    flow_scale: int = DEFAULT_FLOW_SCALE
    flow_sentence: str | None = None

    @property
    def tiled(self) -> bool:
        return not self.layout.single

    @property
    def text(self) -> str:
        """As the checkpoint records it and a user writes it: ``off`` or ``HxW``."""
        return OFF if not self.tiled else tile_text(self.layout.tile_shape)

    @property
    def slot_tiles(self) -> TileLayout | None:
        """What :meth:`Sampler.slots` takes: the layout when tiled, None for whole frames."""
        return self.layout if self.tiled else None


def recorded_tile(options: dict[str, Any]) -> TileOption | None:
    """The tile an interrupted run's checkpoint options recorded (``off`` or a size), or None when it has none."""
    value = options.get("tile")
    if not isinstance(value, str):
        return None
    try:
        return parse_tile(value)
    except InputError:
        return None


def recorded_flow_scale(options: dict[str, Any]) -> int | None:
    """The flow scale an interrupted run's checkpoint options recorded (``options[FLOW_SCALE_OPTION]``: 4, 2 or 1), or None."""
    value = parse_flow_scale(options.get(FLOW_SCALE_OPTION))
    return value if isinstance(value, int) else None


def choose_tiles(sampler: Any, tile: TileOption, overlap: int, height: int, width: int, *, spell: Spell = api_spelling,
                 store_bytes: int | None = None, history: bool = False, recorded: TileOption | None = None,
                 flow_scale: int | str = DEFAULT_FLOW_SCALE, recorded_flow: int | None = None) -> TileChoice:  # fmt: skip
    """The tiles and flow scale for padded LR frames of ``height`` x ``width`` on ``sampler``.

    ``recorded`` / ``recorded_flow``: the tile and flow scale of an interrupted run (its checkpoint),
    which ``auto`` keeps. ``flow_scale``: 4, 2, 1 or ``"auto"`` (4 where the memory plan fits, else
    the largest that fits; decided together with an ``auto`` tile, 4 first). ``store_bytes``: the RAM
    the clip store takes (None: its default budget), which ONNX Runtime's plan leaves aside;
    ``history``: the scheduler keeps a per-frame history (its buffers count in the plan). A scale the
    frames are too small for, a bad tile or a plan that fits nowhere: InputError in one sentence.
    """
    scale = parse_flow_scale(flow_scale)
    if scale is None:  # VideoOptions checked it already; a raw caller gets the same sentence
        raise InputError(f"{spell('flow_scale', flow_scale)} is not a flow scale; use 4 (the original), 2, 1 or auto.")
    built = _engine_tile(sampler)
    if built is not None:  # TensorRT engines built static at one tile (svsr-export --tile): that tile or nothing
        asked = recorded if tile == AUTO and recorded is not None else tile
        problem = engine_tile_problem(sampler.manifest, sampler.backend.precision, asked, height, width, spell=spell)
        if problem:
            raise InputError(problem)
        if tile == AUTO and recorded is None:
            tile, recorded = built, None
            built_why: str | None = f"the tile the TensorRT engines were built for ({spell('tile', AUTO)})"
        else:
            built_why = None
    else:
        built_why = None
    if scale == AUTO and recorded_flow is not None:
        flow_why: str | None = "as the interrupted run chose"
        scale = recorded_flow
    else:
        flow_why = None if scale == AUTO else f"as asked ({spell('flow_scale', scale)})"
    if scale != AUTO:
        problem = _flow_problem(int(scale), height, width, spell)
        if problem:
            raise InputError(problem)
        choice = _tiles(sampler, tile, overlap, height, width, spell, store_bytes, history, recorded, int(scale), built_why)
        said = None if scale == DEFAULT_FLOW_SCALE else f"flow scale: {scale} ({flow_why})"
        return TileChoice(choice.tile, choice.layout, choice.sentence, int(scale), said)
    return _auto_flow(sampler, tile, overlap, height, width, spell, store_bytes, history, recorded, built_why)


def _tiles(sampler: Any, tile: TileOption, overlap: int, height: int, width: int, spell: Spell, store_bytes: int | None, history: bool,
           recorded: TileOption | None, flow_scale: int, why: str | None = None) -> TileChoice:  # fmt: skip
    """The tiles at a known flow scale (``why``: what a given tile is, where not the user's)."""
    size = f"{width}x{height}"
    if tile == OFF:
        return _whole(height, width, f"tiles: off ({spell('tile', OFF)}): whole {size} frames")
    if isinstance(tile, tuple):
        return _sized(tile, overlap, height, width, spell, why or f"as asked ({spell('tile', tile_text(tile))})")
    if tile != AUTO:  # VideoOptions parsed it already; a caller passing a raw value gets the same sentence
        return _tiles(sampler, parse_tile(tile, spell=spell), overlap, height, width, spell, store_bytes, history, recorded, flow_scale)
    if recorded is not None:
        if recorded == OFF:
            return _whole(height, width, f"tiles: off (whole {size} frames, as the interrupted run chose)")
        return _sized(recorded, overlap, height, width, spell, "as the interrupted run chose")  # type: ignore[arg-type]
    choose: Callable[..., Any] | None = getattr(sampling, "choose_tile", None)
    if choose is None:  # a runtime without a tile memory plan: whole frames, as before tiles existed
        return _whole(height, width, f"tiles: off (the whole {width}x{height} frame runs untiled; this runtime has no memory plan for tiles)")
    available, keywords = _plan_inputs(sampler, store_bytes, history)
    choice = choose(sampler.manifest, height, width, available, overlap=overlap, flow_scale=flow_scale, **keywords)
    return _auto_tile(choice.tile, choice.reason, overlap, height, width, spell)


def _auto_flow(sampler: Any, tile: TileOption, overlap: int, height: int, width: int, spell: Spell, store_bytes: int | None, history: bool,
               recorded: TileOption | None, why: str | None = None) -> TileChoice:  # fmt: skip
    """``--flow-scale auto``: the memory plan's scale (with its tile where the tile is ``auto`` and not recorded)."""
    choose: Callable[..., Any] | None = getattr(sampling, "choose_flow_scale", None)
    if choose is None:  # a runtime without a memory plan: the paper's scale
        return choose_tiles(sampler, tile, overlap, height, width, spell=spell, store_bytes=store_bytes, history=history, recorded=recorded)
    available, keywords = _plan_inputs(sampler, store_bytes, history)
    if tile == AUTO and recorded is None:  # both chosen together, flow scale 4 first
        choice = choose(sampler.manifest, height, width, available, tile=AUTO, overlap=overlap, **keywords)
        tiles = _auto_tile(choice.tile, choice.reason, overlap, height, width, spell)
    else:  # the tile is given (or recorded): the scale for it
        tiles = _tiles(sampler, tile, overlap, height, width, spell, store_bytes, history, recorded, DEFAULT_FLOW_SCALE, why)
        choice = choose(sampler.manifest, height, width, available, tile=tiles.tile, overlap=overlap, **keywords)
    scale = int(choice.flow_scale)
    said = None
    if scale != DEFAULT_FLOW_SCALE:
        said = f"flow scale: {scale} ({spell('flow_scale', AUTO)}: {choice.flow_reason or 'the largest that fits'})"
    return TileChoice(tiles.tile, tiles.layout, tiles.sentence, scale, said)


def _auto_tile(chosen: tuple[int, int] | None, reason: str, overlap: int, height: int, width: int, spell: Spell) -> TileChoice:
    """The memory plan's tile (None: whole frames) as a choice; an overlap its tile cannot hold is one sentence."""
    size = f"{width}x{height}"
    if chosen is None:
        return _whole(height, width, f"tiles: off ({reason})")
    chosen = (int(chosen[0]), int(chosen[1]))
    problem = overlap_problem(chosen, overlap, spell=spell)
    if problem:  # the plan's tile is small for the overlap asked for
        raise InputError(f"{spell('tile', AUTO)} chose {tile_text(chosen)} tiles for {size} frames, and {problem}")
    layout = plan_tiles(height, width, chosen, overlap)
    return TileChoice(None if layout.single else chosen, layout, f"tiles: {reason}")


def _engine_tile(sampler: Any) -> tuple[int, int] | None:
    """The tile a TensorRT backend's engines were built static at (``svsr-export --tile``), or None (other backends too)."""
    backend = sampler.backend
    if getattr(backend, "name", "") != "trt" or not (sampler.manifest.get("engines") or {}):
        return None
    return engine_tile(sampler.manifest, backend.precision)


def _flow_problem(scale: int, height: int, width: int, spell: Spell) -> str | None:
    """``sizes.flow_scale_problem``, spelled as the caller writes the option."""
    if flow_scale_problem(scale, height, width) is None:
        return None
    fits = max(s for s in FLOW_SCALE_CHOICES if min(height, width) >= flow_scale_min_side(s))
    return (f"{spell('flow_scale', scale)} needs frames of at least {flow_scale_min_side(scale)} px per side (RAFT sees them at x{scale}), "
            f"but these are {width}x{height}; use {spell('flow_scale', fits)}.")  # fmt: skip


def _plan_inputs(sampler: Any, store_bytes: int | None, history: bool) -> tuple[int, dict[str, Any]]:
    """The bytes the memory plan may fill and its keyword options for ``sampler``'s backend."""
    backend = sampler.backend
    on_gpu = backend.name == "trt"
    # TensorRT's engines are loaded already (those of the statistics and other flow graphs load on demand: their weights
    # still count); ONNX Runtime's sessions share one arena (ort_backend.low_memory_options), so it holds the largest peak
    keywords: dict[str, Any] = {"backend": "trt" if on_gpu else "ort", "precision": getattr(backend, "precision", "fp16") if on_gpu else "fp32",
                                "history": history}  # fmt: skip
    keywords.update({"engines_loaded": getattr(backend, "loaded_graphs", True)} if on_gpu else {"shared_arena": True})
    return _available_bytes(backend, store_bytes), keywords


def _available_bytes(backend: Any, store_bytes: int | None) -> int:
    """What the plan may fill: free GPU memory plus what the backend holds (TensorRT), or RAM less the clip store's budget."""
    if backend.name == "trt":
        free, _total = backend.cuda.mem_get_info()
        return int(free) + int(backend.held_device_bytes())
    available = _ram_available()
    store = sampling.default_host_memory() if store_bytes is None else store_bytes
    return max(available - store, 0)


def _ram_available() -> int:
    """MemAvailable (what can be allocated without swapping), else the free pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _whole(height: int, width: int, sentence: str) -> TileChoice:
    return TileChoice(None, plan_tiles(height, width, None), sentence)


def _sized(tile: tuple[int, int], overlap: int, height: int, width: int, spell: Spell, why: str) -> TileChoice:
    layout = plan_tiles(height, width, tile, overlap)
    if layout.single:
        return TileChoice(None, layout, f"tiles: off (a {tile_text(tile)} tile covers the whole {width}x{height} frame; {why})")
    return TileChoice(tile, layout, f"tiles: {layout.describe()} per {width}x{height} frame ({why})")
