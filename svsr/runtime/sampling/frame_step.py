"""Device slots and the graph launches of one frame-step and of one final decode, whole-frame or per tile (torch-free).

Everything here is a fixed sequence of launches on fixed buffers, so a backend can capture each
program once (``Backend.launch``) and replay it for every frame, step and clip of that size.

Untiled (one tile covers the frame), frame-step on slot set ``i`` (``p = 1 - i``: the previous frame's set)::

    guide_decode(x0[p], zero stats, shared_norm 0) -> image; warp(image, flow[i]) -> guidance[i]   (TCM: not the sweep's first frame)
    denoise(z[i], lr[i], guidance[i] | zeros, tcm, t, coeffs, noise[i], history[i] | zeros, zero stats, shared_norm 0) -> z_out[i], x0[i]

Untiled, every GroupNorm uses its own statistics (``shared_norm`` 0; the ``norm_stats`` buffers hold
zeros and nothing writes them), so no statistics graph runs and the path is the one before tiles
shared statistics, bit for bit up to the graphs' own arithmetic.

Tiled: the same graphs, the tiled ones (svsr/contract/graphs.py ``TILED_GRAPHS``) once per tile on one
set of tile buffers, and before them the statistics graphs (``STATS_GRAPHS``) once on the whole frame::

    decode_stats(x0[p]) -> decode_norm; per tile guide_decode(tile of x0[p], decode_norm, shared_norm 1)  (TCM)
    warp(image, flow[i]) -> guidance[i]                                                                 (TCM)
    denoise_stats(z[i], lr[i], guidance[i] | zeroed guidance[i], tcm, t) -> denoise_norm
    per tile denoise(tiles of z[i], lr[i], guidance[i], ..., denoise_norm, shared_norm 1)

so every tile's GroupNorms normalise with the whole frame's statistics (measured by the statistics
graphs on every ``norm_stats.<graph>.stride``-th row and column of the frame) instead of the
tile's own, which is what made tiles differ from whole frames. A sweep's first frame has no guidance:
its ``guidance[i]`` is zeroed in place before ``denoise_stats`` reads it (no whole-frame zero buffer).
The tiled final decode is ``decode_stats(z) -> decode_norm`` then the tiles with shared_norm 1.
``shared_norm`` is one scalar buffer per slot layout: 0 untiled, 1 tiled.

A tile's input is cut out of the whole-frame buffer (``copy_region``); its output is
added into a zeroed whole-frame buffer with its weight (``blend``: acc + tile * weight, the weights of
all tiles summing to one), by the round trip whole -> acc, blend(acc, tile, weight) -> out, out -> whole.
The warp always sees the whole frame (flows carry texture across tile borders).

Every tiled blend reads ONE weight tile buffer per scale (latent, 4x): the tile's own weight (uploaded
once, device-only) is copied into it just before its blends. TensorRT binds an execution context to
fixed buffers, so a blend that read each tile's weight directly would make contexts in proportion to
the tile count (about 700 at 1080p in tiles of 128); this way the blends make three contexts
(z_out and x0 at the latent scale, one at 4x for the guidance image and the final RGB), whatever the
tile count. A weight copy is one whole-plane device copy, a small fraction of the blend's own traffic.
The statistics graphs add a fixed number of contexts too (decode_stats: x0 of either set and either
final decode input; denoise_stats: one per slot set and TCM use), whatever the tile count.

The flow graph is the one of the run's flow scale (``flow``, ``flow_x2`` or ``flow_x1``:
``DeviceSlots.flow_graph``); all three read and write the same buffers.

``x0`` is double-buffered per slot set: frame k writes x0[k % 2] while x0[(k - 1) % 2], which frame k's
guide reads, stays intact, so the sampler can download it as the frame's history (DPM-Solver++ 2M)
while the next frame computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from svsr.contract.errors import ManifestError
from svsr.contract.graphs import DEFAULT_FLOW_SCALE, GRAPHS, STATS_DIMS, STATS_GRAPHS, concrete_shape, flow_graph
from svsr.contract.sizes import SCALE
from svsr.contract.tiles import Tile, TileLayout
from svsr.runtime.sampling.backend import Backend, Buffer

LATENT_TENSORS = ("z", "noise", "z_prev", "x0", "x0_history")  # graph tensors with the VAE's latent channels


def latent_channels(manifest: Mapping[str, Any]) -> int:
    """The VAE's latent channels: the manifest's ``latent_channels``, else the denoise graph's ``z`` input as exported."""
    if "latent_channels" in manifest:
        return int(manifest["latent_channels"])
    z = next((t for t in manifest["graphs"]["denoise"]["inputs"] if t["name"] == "z"), None)
    if z is None or len(z["shape"]) != 4 or not isinstance(z["shape"][1], int):
        raise ManifestError("the manifest names no latent channel count; re-run svsr-export --force.")
    return int(z["shape"][1])


def norm_stats_sizes(manifest: Mapping[str, Any]) -> dict[str, int]:
    """The GroupNorm statistics lengths of a build (``concrete_shape(stats=...)``): the manifest's ``norm_stats.<graph>.size``.

    A manifest without the block (a partial one an estimate is made from) gives {} (lengths of 1).
    """
    block = manifest.get("norm_stats") or {}
    return {name: int(block[name]["size"]) for name in STATS_DIMS if name in block}


def graphs_used(tiled: bool, flow_scale: int = DEFAULT_FLOW_SCALE) -> tuple[str, ...]:
    """The graphs the launches of one frame size run: the flow graph of ``flow_scale`` and the sampling graphs;
    tiled, the blend and the statistics graphs too (a backend opens only these: svsr/runtime/sampling/backend.py)."""
    core = (flow_graph(flow_scale), "denoise", "guide_decode", "warp", "decode")
    return core + ("blend", *STATS_GRAPHS) if tiled else core


def tensor_shape(manifest: Mapping[str, Any], graph: str, tensor: str, height: int, width: int) -> tuple[int, ...]:
    """The shape of ``graph``'s ``tensor`` for padded LR frames (or tiles) of ``height`` x ``width`` (batch 1; latents from the manifest)."""
    spec = next(t for t in GRAPHS[graph].inputs + GRAPHS[graph].outputs if t.name == tensor)
    shape = concrete_shape(spec, 1, height, width, stats=norm_stats_sizes(manifest))
    return (shape[0], latent_channels(manifest), *shape[2:]) if tensor in LATENT_TENSORS else shape


@dataclass(eq=False)
class SlotSet:
    """Whole-frame buffers one frame-step reads and writes; two sets alternate (double buffering)."""

    index: int
    z: Buffer
    lr: Buffer
    lr_previous: Buffer  # the previous frame's LR, when flows are computed per frame-step
    flow: Buffer
    noise: Buffer
    history: Buffer  # the frame's x0 of the previous step (multistep schedulers), uploaded per frame
    guidance: Buffer
    z_out: Buffer
    x0: Buffer  # written by this set's frame-step, read by the next frame's guide, downloaded as history


@dataclass(eq=False)
class TileBuffers:
    """One set of tile-shaped buffers every tile passes through, and each tile's blend weights (uploaded once).

    Blends read only ``weight`` / ``pixel_weight`` (one context per blended buffer); each tile's own
    weights, device-only, are copied there before its blends (see the module docstring).
    """

    layout: TileLayout
    z: Buffer
    lr: Buffer
    noise: Buffer
    history: Buffer
    guidance: Buffer
    zero_guidance: Buffer  # a sweep's first frame has no guidance (and no TCM)
    zero_history: Buffer  # schedulers without history
    z_out: Buffer
    x0_out: Buffer
    latent_in: Buffer  # one tile of a whole latent: guide_decode's x0, decode's z
    pixels: Buffer  # guide_decode's image, decode's rgb: one tile at 4x
    latent_acc: Buffer  # blend round trip, latent tiles
    latent_sum: Buffer
    pixel_acc: Buffer  # blend round trip, 4x tiles
    pixel_sum: Buffer
    weight: Buffer  # what every latent blend reads (1, 1, th, tw); also stages the per-tile weights' uploads
    pixel_weight: Buffer  # what every 4x blend reads (1, 1, 4th, 4tw)
    weights: tuple[Buffer, ...]  # per tile (1, 1, th, tw), device-only
    pixel_weights: tuple[Buffer, ...]  # per tile (1, 1, 4th, 4tw), device-only


@dataclass(eq=False)
class DeviceSlots:
    """Every device buffer the sampler uses for one padded LR size (and tile layout): constant in the number of frames."""

    height: int
    width: int
    sets: tuple[SlotSet, SlotSet]
    image: Buffer  # the decoded guidance before its warp, whole frame
    zero_guidance: Buffer | None  # untiled only (tiles have their own)
    zero_history: Buffer | None
    tcm_off: Buffer
    tcm_on: Buffer
    timestep: Buffer
    coeffs: Buffer
    decode_z: tuple[Buffer, Buffer]
    rgb: tuple[Buffer, Buffer]
    shared_norm: Buffer  # (1,): 0 untiled (every GroupNorm its own statistics), 1 tiled (the whole frame's)
    denoise_norm: Buffer  # (1, S): untiled zeros nothing writes; tiled, denoise_stats' output for the denoise tiles
    decode_norm: Buffer  # (1, S): untiled zeros; tiled, decode_stats' output for the guide_decode or decode tiles
    tiles: TileBuffers | None = None  # None: whole frames (the untiled path)
    flow_graph: str = "flow"  # the flow graph of the run's flow scale (same bindings for every scale)

    @property
    def layout_key(self) -> str:
        """Part of every program key: programs of another tile layout bind other regions."""
        if self.tiles is None:
            return ""
        t = self.tiles.layout
        return f"-tiles{t.frame_height}x{t.frame_width}/{t.tile_height}x{t.tile_width}o{t.overlap}"


def frame_step_key(slot_set: int, uses_tcm: bool, flow_per_step: bool, history: bool = False, layout_key: str = "",
                   flow: str = "flow") -> str:  # fmt: skip
    """The frame-step program a backend may capture once and replay: one per slot set, TCM use, history use and tile layout;
    with flows computed per frame-step, per flow graph ``flow`` too (``-flow``, ``-flow_x2``, ``-flow_x1``)."""
    flow = f"-{flow}" if flow_per_step and uses_tcm else ""
    return f"step{slot_set}-{'tcm' if uses_tcm else 'first'}{flow}{'-hist' if history else ''}{layout_key}"


def decode_key(position_parity: int, layout_key: str) -> str:
    """The tiled final decode of one frame (rgb buffer ``position_parity``)."""
    return f"decode{position_parity}{layout_key}"


def allocate_slots(backend: Backend, manifest: Mapping[str, Any], height: int, width: int, layout: TileLayout | None,
                   flow_scale: int = DEFAULT_FLOW_SCALE) -> DeviceSlots:  # fmt: skip
    """Allocate every buffer for padded LR frames of ``height`` x ``width``; ``layout`` None (or one tile): whole frames.

    ``flow_scale``: which flow graph the flows run (the buffers are the same for every scale).
    """
    b = backend
    tiled = layout is not None and not layout.single

    def alloc(label: str, graph: str, tensor: str, host_io: bool = True, size: tuple[int, int] = (height, width)) -> Buffer:
        spec = next(t for t in GRAPHS[graph].inputs + GRAPHS[graph].outputs if t.name == tensor)
        shape = tensor_shape(manifest, graph, tensor, *size)
        # device-only buffers tell the backend so (no pinned staging for what never crosses to the host)
        return b.allocate(label, shape, spec.dtype) if host_io else b.allocate(label, shape, spec.dtype, host_io=False)

    def slot_set(i: int) -> SlotSet:
        return SlotSet(
            i,
            z=alloc(f"z{i}", "denoise", "z"),
            lr=alloc(f"lr{i}", "denoise", "lr"),
            lr_previous=alloc(f"lr_previous{i}", "flow", "previous"),
            flow=alloc(f"flow{i}", "flow", "flow"),
            noise=alloc(f"noise{i}", "denoise", "noise"),
            history=alloc(f"history{i}", "denoise", "x0_history"),
            guidance=alloc(f"guidance{i}", "denoise", "guidance", host_io=False),
            z_out=alloc(f"z_out{i}", "denoise", "z_prev"),
            x0=alloc(f"x0_{i}", "denoise", "x0"),  # host_io: downloaded as the frame's history
        )

    slots = DeviceSlots(
        height,
        width,
        sets=(slot_set(0), slot_set(1)),
        image=alloc("image", "guide_decode", "image", host_io=False),
        zero_guidance=None if tiled else alloc("zero_guidance", "denoise", "guidance", host_io=False),
        zero_history=None if tiled else alloc("zero_history", "denoise", "x0_history", host_io=False),
        tcm_off=alloc("tcm_off", "denoise", "tcm_scale"),
        tcm_on=alloc("tcm_on", "denoise", "tcm_scale"),
        timestep=alloc("timestep", "denoise", "timestep"),
        coeffs=alloc("step_coeffs", "denoise", "step_coeffs"),
        decode_z=(alloc("decode_z0", "decode", "z"), alloc("decode_z1", "decode", "z")),
        rgb=(alloc("rgb0", "decode", "rgb"), alloc("rgb1", "decode", "rgb")),
        shared_norm=alloc("shared_norm", "denoise", "shared_norm"),
        denoise_norm=alloc("denoise_norm", "denoise", "norm_stats", host_io=False),
        decode_norm=alloc("decode_norm", "decode", "norm_stats", host_io=False),
        flow_graph=flow_graph(flow_scale),
    )
    b.upload(slots.tcm_on, np.ones(1, np.float32))  # allocations are zero-filled: tcm_off and the zero buffers stay 0
    if tiled:  # the tiles' GroupNorms take the whole frame's statistics; untiled, shared_norm and the statistics stay 0
        b.upload(slots.shared_norm, np.ones(1, np.float32))
        assert layout is not None
        slots.tiles = _allocate_tiles(b, manifest, layout, alloc)
    return slots


def _allocate_tiles(b: Backend, manifest: Mapping[str, Any], layout: TileLayout, alloc: Any) -> TileBuffers:
    size = layout.tile_shape
    channels = latent_channels(manifest)
    th, tw = size

    def blend_buffer(label: str, tensor: str, rows: int, cols: int, chans: int, host_io: bool = False) -> Buffer:
        spec = next(t for t in GRAPHS["blend"].inputs + GRAPHS["blend"].outputs if t.name == tensor)
        return b.allocate(label, concrete_shape(spec, 1, rows, cols, chans), spec.dtype, host_io=host_io)

    def weights(label: str, arrays: tuple[np.ndarray, ...], staging: Buffer, scale: int) -> tuple[Buffer, ...]:
        """Per-tile weights, device-only (no pinned staging each): uploaded through ``staging``, the blends' weight buffer."""
        buffers = tuple(blend_buffer(f"{label}{i}", "weight", scale * th, scale * tw, 1) for i in range(len(arrays)))
        for buffer, array in zip(buffers, arrays):
            b.upload(staging, array)
            _load_weight(b, staging, buffer, size, scale)
        return buffers

    weight = blend_buffer("tile_blend_weight", "weight", th, tw, 1, host_io=True)
    pixel_weight = blend_buffer("tile_blend_pixel_weight", "weight", SCALE * th, SCALE * tw, 1, host_io=True)
    return TileBuffers(
        layout,
        z=alloc("tile_z", "denoise", "z", host_io=False, size=size),
        lr=alloc("tile_lr", "denoise", "lr", host_io=False, size=size),
        noise=alloc("tile_noise", "denoise", "noise", host_io=False, size=size),
        history=alloc("tile_history", "denoise", "x0_history", host_io=False, size=size),
        guidance=alloc("tile_guidance", "denoise", "guidance", host_io=False, size=size),
        zero_guidance=alloc("tile_zero_guidance", "denoise", "guidance", host_io=False, size=size),
        zero_history=alloc("tile_zero_history", "denoise", "x0_history", host_io=False, size=size),
        z_out=alloc("tile_z_out", "denoise", "z_prev", host_io=False, size=size),
        x0_out=alloc("tile_x0", "denoise", "x0", host_io=False, size=size),
        latent_in=alloc("tile_latent_in", "guide_decode", "x0", host_io=False, size=size),
        pixels=alloc("tile_pixels", "guide_decode", "image", host_io=False, size=size),
        latent_acc=blend_buffer("tile_latent_acc", "acc", th, tw, channels),
        latent_sum=blend_buffer("tile_latent_sum", "out", th, tw, channels),
        pixel_acc=blend_buffer("tile_pixel_acc", "acc", SCALE * th, SCALE * tw, 3),
        pixel_sum=blend_buffer("tile_pixel_sum", "out", SCALE * th, SCALE * tw, 3),
        weight=weight,
        pixel_weight=pixel_weight,
        weights=weights("tile_weight", layout.weights(1), weight, 1),
        pixel_weights=weights("tile_pixel_weight", layout.weights(SCALE), pixel_weight, SCALE),
    )


# -- the programs --------------------------------------------------------------------------------------
def enqueue_frame_step(b: Backend, slots: DeviceSlots, s: SlotSet, uses_tcm: bool, flow_per_step: bool, history: bool) -> None:
    """The graph launches of one frame-step on slot set ``s``, on fixed buffers: no host work, so it can be captured."""
    previous = slots.sets[1 - s.index]
    if uses_tcm and flow_per_step:
        b.run(slots.flow_graph, {"frame": s.lr, "previous": s.lr_previous}, {"flow": s.flow})
    vae_norm = {"norm_stats": slots.decode_norm, "shared_norm": slots.shared_norm}
    if slots.tiles is None:
        if uses_tcm:
            b.run("guide_decode", {"x0": previous.x0, **vae_norm}, {"image": slots.image})
            b.run("warp", {"image": slots.image, "flow": s.flow}, {"guidance": s.guidance})
        assert slots.zero_guidance is not None and slots.zero_history is not None
        _denoise(b, slots, s.z, s.lr, s.guidance if uses_tcm else slots.zero_guidance, uses_tcm, s.noise,
                 s.history if history else slots.zero_history, s.z_out, s.x0)  # fmt: skip
        return
    t = slots.tiles
    if uses_tcm:
        b.run("decode_stats", {"latent": previous.x0}, {"norm_stats": slots.decode_norm})  # the whole previous x0's statistics
        b.zero(slots.image)
        for i, tile in enumerate(t.layout.tiles):
            _cut(b, previous.x0, t.latent_in, tile)
            b.run("guide_decode", {"x0": t.latent_in, **vae_norm}, {"image": t.pixels})
            _load_weight(b, t.pixel_weights[i], t.pixel_weight, t.layout.tile_shape, SCALE)
            _blend_into(b, slots.image, t.pixels, t.pixel_acc, t.pixel_sum, t.pixel_weight, tile.scaled(SCALE))
        b.run("warp", {"image": slots.image, "flow": s.flow}, {"guidance": s.guidance})
    else:  # a sweep's first frame: the statistics see zero guidance, as its tiles do (this set's guidance is free now)
        b.zero(s.guidance)
    stats_inputs = {"z": s.z, "lr": s.lr, "guidance": s.guidance, "tcm_scale": slots.tcm_on if uses_tcm else slots.tcm_off, "timestep": slots.timestep}
    b.run("denoise_stats", stats_inputs, {"norm_stats": slots.denoise_norm})
    b.zero(s.z_out)
    b.zero(s.x0)
    for i, tile in enumerate(t.layout.tiles):
        for whole, part in ((s.z, t.z), (s.lr, t.lr), (s.noise, t.noise)):
            _cut(b, whole, part, tile)
        if history:
            _cut(b, s.history, t.history, tile)
        if uses_tcm:
            _cut(b, s.guidance, t.guidance, tile.scaled(SCALE))
        _denoise(b, slots, t.z, t.lr, t.guidance if uses_tcm else t.zero_guidance, uses_tcm, t.noise,
                 t.history if history else t.zero_history, t.z_out, t.x0_out)  # fmt: skip
        _load_weight(b, t.weights[i], t.weight, t.layout.tile_shape, 1)
        _blend_into(b, s.z_out, t.z_out, t.latent_acc, t.latent_sum, t.weight, tile)
        _blend_into(b, s.x0, t.x0_out, t.latent_acc, t.latent_sum, t.weight, tile)


def enqueue_decode(b: Backend, slots: DeviceSlots, parity: int) -> None:
    """The final decode of the latent in ``decode_z[parity]`` into ``rgb[parity]``, whole or per tile."""
    z, rgb = slots.decode_z[parity], slots.rgb[parity]
    vae_norm = {"norm_stats": slots.decode_norm, "shared_norm": slots.shared_norm}
    if slots.tiles is None:
        b.run("decode", {"z": z, **vae_norm}, {"rgb": rgb})
        return
    t = slots.tiles
    b.run("decode_stats", {"latent": z}, {"norm_stats": slots.decode_norm})
    b.zero(rgb)
    for i, tile in enumerate(t.layout.tiles):
        _cut(b, z, t.latent_in, tile)
        b.run("decode", {"z": t.latent_in, **vae_norm}, {"rgb": t.pixels})
        _load_weight(b, t.pixel_weights[i], t.pixel_weight, t.layout.tile_shape, SCALE)
        _blend_into(b, rgb, t.pixels, t.pixel_acc, t.pixel_sum, t.pixel_weight, tile.scaled(SCALE))


def _denoise(b: Backend, slots: DeviceSlots, z: Buffer, lr: Buffer, guidance: Buffer, uses_tcm: bool, noise: Buffer,
             history: Buffer, z_out: Buffer, x0: Buffer) -> None:  # fmt: skip
    inputs = {
        "z": z,
        "lr": lr,
        "guidance": guidance,
        "tcm_scale": slots.tcm_on if uses_tcm else slots.tcm_off,
        "timestep": slots.timestep,
        "step_coeffs": slots.coeffs,
        "noise": noise,
        "x0_history": history,
        "norm_stats": slots.denoise_norm,
        "shared_norm": slots.shared_norm,
    }
    b.run("denoise", inputs, {"z_prev": z_out, "x0": x0})


def _cut(b: Backend, whole: Buffer, part: Buffer, region: Tile) -> None:
    """``part`` = the ``region`` window of ``whole``."""
    b.copy_region(whole, part, (region.top, region.left), (0, 0), (region.height, region.width))


def _load_weight(b: Backend, source: Buffer, target: Buffer, tile_shape: tuple[int, int], scale: int) -> None:
    """``target`` = ``source``: two weight tiles of ``tile_shape`` x ``scale`` (one whole-plane device copy)."""
    b.copy_region(source, target, (0, 0), (0, 0), (scale * tile_shape[0], scale * tile_shape[1]))


def _blend_into(b: Backend, whole: Buffer, tile: Buffer, acc: Buffer, total: Buffer, weight: Buffer, region: Tile) -> None:
    """``whole[region] += tile * weight``, by the blend graph (a buffer cannot be its own input and output)."""
    b.copy_region(whole, acc, (region.top, region.left), (0, 0), (region.height, region.width))
    b.run("blend", {"acc": acc, "tile": tile, "weight": weight}, {"out": total})
    b.copy_region(total, whole, (0, 0), (region.top, region.left), (region.height, region.width))
