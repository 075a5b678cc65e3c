"""Which tiles a frame size runs with: ``--tile auto|off|HxW`` resolved for one padded LR frame size (torch-free).

``off`` runs whole frames (the paper's exact path). ``HxW`` runs tiles of that size, or whole frames
where one tile covers the frame (a tile layout of one tile is the untiled path, bit for bit).
``auto`` asks the memory plan (``choose_tile`` of the sampling room) for the whole frame where it
fits and the largest tile that fits elsewhere: in the free GPU memory with TensorRT, and with
ONNX Runtime in the RAM available now less what the clip store takes (default: its budget, half
of that RAM). An interrupted run resumes with the choice its checkpoint recorded, so a resumed ``auto``
run stays bit-identical even where free memory changed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from svsr.contract.errors import InputError
from svsr.contract.tiles import AUTO, OFF, TileLayout, TileOption, overlap_problem, parse_tile, plan_tiles
from svsr.contract.video_options import Spell, api_spelling, tile_text
from svsr.runtime import sampling

__all__ = ["TileChoice", "choose_tiles", "recorded_tile"]


@dataclass(frozen=True)
class TileChoice:
    """The tile size a frame size runs with (None: whole frames), its layout, and the line that says why."""

    tile: tuple[int, int] | None
    layout: TileLayout
    sentence: str

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


def choose_tiles(sampler: Any, tile: TileOption, overlap: int, height: int, width: int, *, spell: Spell = api_spelling,
                 store_bytes: int | None = None, history: bool = False, recorded: TileOption | None = None) -> TileChoice:  # fmt: skip
    """The tiles for padded LR frames of ``height`` x ``width`` on ``sampler``.

    ``recorded``: the choice of an interrupted run (its checkpoint), which ``auto`` keeps.
    ``store_bytes``: the RAM the clip store takes (None: its default budget), which ONNX Runtime's
    plan leaves aside; ``history``: the scheduler keeps a per-frame history (its buffers count in the plan).
    """
    size = f"{width}x{height}"
    if tile == OFF:
        return _whole(height, width, f"tiles: off ({spell('tile', OFF)}): whole {size} frames")
    if isinstance(tile, tuple):
        return _sized(tile, overlap, height, width, spell, f"as asked ({spell('tile', tile_text(tile))})")
    if tile != AUTO:  # VideoOptions parsed it already; a caller passing a raw value gets the same sentence
        return choose_tiles(sampler, parse_tile(tile, spell=spell), overlap, height, width, spell=spell, store_bytes=store_bytes, history=history)
    if recorded is not None:
        if recorded == OFF:
            return _whole(height, width, f"tiles: off (whole {size} frames, as the interrupted run chose)")
        return _sized(recorded, overlap, height, width, spell, "as the interrupted run chose")
    chosen, reason = _auto(sampler, height, width, overlap, store_bytes, history)
    if chosen is None:
        return _whole(height, width, f"tiles: off ({reason})")
    problem = overlap_problem(chosen, overlap, spell=spell)
    if problem:  # the plan's tile is small for the overlap asked for
        raise InputError(f"{spell('tile', AUTO)} chose {tile_text(chosen)} tiles for {size} frames, and {problem}")
    layout = plan_tiles(height, width, chosen, overlap)
    return TileChoice(None if layout.single else chosen, layout, f"tiles: {reason}")


def _auto(sampler: Any, height: int, width: int, overlap: int, store_bytes: int | None, history: bool) -> tuple[tuple[int, int] | None, str]:
    """The memory plan's choice (None: whole frames) and its reason; DeviceMemoryError (one sentence) when nothing fits."""
    choose: Callable[..., Any] | None = getattr(sampling, "choose_tile", None)
    if choose is None:  # a runtime without a tile memory plan: whole frames, as before tiles existed
        return None, f"the whole {width}x{height} frame runs untiled; this runtime has no memory plan for tiles"
    backend = sampler.backend
    on_gpu = backend.name == "trt"
    # TensorRT's engines are loaded already: the free memory excludes them, so the plan must not count them again;
    # ONNX Runtime's sessions share one arena (ort_backend.low_memory_options), so it holds the largest peak, not the sum
    choice = choose(sampler.manifest, height, width, _available_bytes(backend, store_bytes), backend="trt" if on_gpu else "ort",
                    precision=getattr(backend, "precision", "fp16") if on_gpu else "fp32", overlap=overlap, history=history,
                    **({"engines_loaded": True} if on_gpu else {"shared_arena": True}))  # fmt: skip
    return (None if choice.tile is None else (int(choice.tile[0]), int(choice.tile[1]))), choice.reason


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
