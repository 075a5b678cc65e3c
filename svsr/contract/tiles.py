"""Tiles in the latent plane: where they sit and how their outputs are blended (numpy, torch-free).

StableVSR's latent has the LR frame's size, so a tile of ``H x W`` LR pixels is an ``H x W`` latent
tile and a ``4H x 4W`` pixel tile after a decode. Per frame-step the tiled graphs (svsr/contract/
graphs.py ``TILED_GRAPHS``) run once per tile and every tile's output is added into the whole frame
with a weight; the weights of all tiles sum to one at every position (MultiDiffusion), so a value
that every tile agrees on comes out unchanged. Rules:

- Tiles of one layout all have one shape (one engine shape, one CUDA graph per slot set); the last
  tile of a row or column is shifted back inside the frame, never padded beyond it.
- A tile side at least the frame's side gives one tile on that axis; a layout of one tile is the
  untiled path (the runtime then runs the graphs on the whole frame, bit for bit).
- Each tile's window rises smoothly (raised cosine) across ``overlap`` pixels on the sides it shares
  with a neighbour and is flat on the frame's border; the windows are then normalised by their sum.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np

from svsr.contract.sizes import PAD_MULTIPLE, SCALE

MIN_TILE = 32  # LR pixels per side: the UNet's down/up-sampling and the VAE attention want some context
TILE_MULTIPLE = PAD_MULTIPLE
DEFAULT_OVERLAP = 16  # LR pixels shared by neighbouring tiles
AUTO, OFF = "auto", "off"

TileOption = Union[str, tuple[int, int]]  # "auto", "off" or (height, width) in LR pixels
Spell = Callable[[str, object], str]


def _default_spell(name: str, value: object) -> str:
    return f"{name}={value!r}"


@dataclass(frozen=True)
class Tile:
    """One tile, in LR (= latent) pixels of the padded frame."""

    top: int
    left: int
    height: int
    width: int

    def scaled(self, scale: int) -> "Tile":
        return Tile(self.top * scale, self.left * scale, self.height * scale, self.width * scale)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of the tiles along one axis of ``length``: stride ``tile - overlap``, the last shifted inside."""
    if tile >= length:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    return sorted({min(i * stride, length - tile) for i in range(count)})


def _window_1d(start: int, size: int, length: int, ramp: int) -> np.ndarray:
    """Raised-cosine ramps of ``ramp`` samples on the sides that are not the frame's border; > 0 everywhere."""
    w = np.ones(size, np.float64)
    if ramp <= 0:
        return w
    rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(min(ramp, size)) + 0.5) / ramp)
    if start > 0:
        w[: rise.size] *= rise
    if start + size < length:
        w[size - rise.size :] *= rise[::-1]
    return w


@dataclass(frozen=True)
class TileLayout:
    """The tiles of one padded LR frame size, and their blend weights."""

    frame_height: int
    frame_width: int
    tile_height: int
    tile_width: int
    overlap: int
    tiles: tuple[Tile, ...]

    @property
    def single(self) -> bool:
        """One tile covering the frame: the untiled path."""
        return len(self.tiles) == 1

    @property
    def tile_shape(self) -> tuple[int, int]:
        return self.tile_height, self.tile_width

    def describe(self) -> str:
        if self.single:
            return f"untiled ({self.frame_height}x{self.frame_width})"
        rows = len({t.top for t in self.tiles})
        return f"{len(self.tiles)} tiles of {self.tile_height}x{self.tile_width} ({rows} rows), overlap {self.overlap}"

    def weights(self, scale: int = 1) -> tuple[np.ndarray, ...]:
        """Per tile, its (1, 1, th*scale, tw*scale) float32 blend weight; over the frame they sum to one.

        ``scale`` 1 for latents, :data:`SCALE` for decoded pixels (the windows are evaluated at that
        resolution, the overlap scaled with them).
        """
        height, width, ramp = self.frame_height * scale, self.frame_width * scale, self.overlap * scale
        raw = []
        total = np.zeros((height, width), np.float64)
        for tile in self.tiles:
            t = tile.scaled(scale)
            w = np.outer(_window_1d(t.top, t.height, height, ramp), _window_1d(t.left, t.width, width, ramp))
            total[t.top : t.top + t.height, t.left : t.left + t.width] += w
            raw.append((t, w))
        return tuple(
            (w / total[t.top : t.top + t.height, t.left : t.left + t.width]).astype(np.float32)[None, None] for t, w in raw
        )

    def pixel_tiles(self) -> tuple[Tile, ...]:
        """The tiles at the decoded (4x) resolution."""
        return tuple(t.scaled(SCALE) for t in self.tiles)


def plan_tiles(frame_height: int, frame_width: int, tile: tuple[int, int] | None, overlap: int = DEFAULT_OVERLAP) -> TileLayout:
    """The layout of ``tile`` (height, width) tiles over a padded LR frame; None = one tile (untiled)."""
    if tile is None:
        return TileLayout(frame_height, frame_width, frame_height, frame_width, 0, (Tile(0, 0, frame_height, frame_width),))
    th, tw = min(tile[0], frame_height), min(tile[1], frame_width)
    rows, cols = tile_starts(frame_height, th, overlap), tile_starts(frame_width, tw, overlap)
    tiles = tuple(Tile(top, left, th, tw) for top in rows for left in cols)
    return TileLayout(frame_height, frame_width, th, tw, overlap if len(tiles) > 1 else 0, tiles)


_SIZE = re.compile(r"^\s*(\d+)\s*(?:[xX*]\s*(\d+))?\s*$")


def parse_tile(value: object, *, spell: Spell = _default_spell, name: str = "tile") -> TileOption:
    """``auto``, ``off``, ``HxW`` / ``N`` (LR pixels) or a (height, width) pair -> a checked tile option."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in (AUTO, OFF):
            return text
        match = _SIZE.match(text)
        if not match:
            raise_input(f"{spell(name, value)} is not a tile size; write auto, off, or HxW in LR pixels such as 128x128.")
        size = (int(match.group(1)), int(match.group(2) or match.group(1)))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        size = (int(value[0]), int(value[1]))
    elif isinstance(value, int) and not isinstance(value, bool):
        size = (value, value)
    else:
        raise_input(f"{spell(name, value)} is not a tile size; give 'auto', 'off', or (height, width) in LR pixels.")
    for side in size:
        if side < MIN_TILE:
            raise_input(f"{spell(name, value)} is below the smallest tile of {MIN_TILE}x{MIN_TILE} LR pixels; use {MIN_TILE} or more per side.")
        if side % TILE_MULTIPLE:
            up = -(-side // TILE_MULTIPLE) * TILE_MULTIPLE
            raise_input(f"{spell(name, value)} has a side that is not a multiple of {TILE_MULTIPLE}; use {up} instead of {side}.")
    return size


def overlap_problem(tile: TileOption, overlap: object, *, spell: Spell = _default_spell, tile_name: str = "tile", name: str = "tile_overlap") -> str | None:
    """Why ``overlap`` does not suit ``tile`` (at least 0, below half the smaller side), or None."""
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0:
        return f"{spell(name, overlap)} is not a whole number of LR pixels >= 0; use e.g. {DEFAULT_OVERLAP}."
    if isinstance(tile, tuple):
        half = min(tile) // 2
        if overlap >= half:
            return (
                f"{spell(name, overlap)} is half a tile or more for {spell(tile_name, f'{tile[0]}x{tile[1]}')}; "
                f"use less than {half} (the default is {DEFAULT_OVERLAP})."
            )
    return None


def raise_input(message: str) -> None:
    from svsr.contract.errors import InputError

    raise InputError(message)
