"""Memory of one frame size, decided before anything is allocated: TensorRT device plans, an ONNX Runtime CPU plan, ``--tile auto``.

Two plans of the same parts. **Exact** (:func:`plan_memory`, what the TensorRT backend checks
before allocating): the slot buffers exactly as ``Sampler.slots`` asks for them (run against a
shape-recording stand-in, so the plan cannot drift from the schedule), each rounded up to the
allocation granularity; one TensorRT scratch area shared by every execution context, sized by the
contexts' own answer for the shapes in use; engine weights not loaded yet; a reserve (a base for
the CUDA context's odds and ends, plus every execution context and CUDA graph the schedule makes,
counted by running the sampler on a tiny clip against the same stand-in; their cost estimated,
``CONTEXT_ESTIMATE`` / ``GRAPH_ESTIMATE``, until the backend has measured it with cudaMemGetInfo).

**Estimated** (:func:`estimate_plan`, :func:`choose_tile`; pure arithmetic, no engine, no GPU: what
``--tile auto`` decides with and what the C++ host mirrors). Device memory of a frame of P = h x w LR
pixels cut in tiles of T = th x tw (untiled: T = P) is

* whole-frame buffers, linear in P (:func:`planned_buffers`): per slot set z, lr, noise, z_out,
  previous LR, flow and guidance (4x); x0 double-buffered; the decoded guidance image (4x); the
  zero guidance and x0 history; the final decode's inputs and RGB (two each);
* per-tile buffers at T, shared by every tile (denoise inputs and outputs, the guide and final
  decode's input and 4x output, the blend's accumulator, result and weight, latent and 4x) plus every
  tile's own blend weights (latent and 4x, about 17 x P x the overlap factor, device-only: each is
  copied into the shared weight tile before its blends, so the blend contexts do not grow with the
  tile count);
* activations (one shared scratch on TensorRT): max over the graphs the run uses of the graph's
  activation at its own shape: denoise, guide_decode, decode at T; the flow graph of the run's flow
  scale and warp at P (the whole frame); tiled, the statistics graphs ``denoise_stats`` and
  ``decode_stats`` at P subsampled by the manifest's ``norm_stats.<graph>.stride`` (2: the UNet + TCM
  and the VAE decoder at P/4 pixels); blend none;
* the GroupNorm statistics buffers (a few thousand floats) and the ``shared_norm`` scalar;
* engine weights (the manifest's float32 graph sizes, halved for fp16/bf16 engines) of the graphs the
  run uses (the statistics graphs only when tiled: backends open them on demand) and the reserve.

The flow scale (``--flow-scale 4|2|1``, :func:`choose_flow_scale` for ``auto``) changes only the flow
graph's activation: RAFT sees (scale/4)^2 of the x4 frame's pixels, and its correlation volume the
square of that, so at a frame size where RAFT's whole-frame correlation alone outgrows the memory
(tiles do not cut it), a smaller scale is what fits.

The activation model (:func:`activation_bytes`), its assumptions stated:

1. Linear part: ``LIVE_ELEMENTS[graph]`` elements per LR pixel at the graph's precision. VAE decodes:
   4 live tensors of its widest stage (4x resolution, 128 channels: 16 x 128 per LR pixel); denoise:
   the x4 UNet at latent resolution (256 channels) with its skip connections and the TCM's residuals,
   about 4096; flow: RAFT's encoders on the 4x frames and its 1/8-scale features, about 1024; warp:
   its sampling grid (2 x 16, float32); blend: nothing beyond its buffers. Checked against ONNX
   Runtime's peaks of the ``full`` preset (4.9 GiB at LR 96x128, 14.3 GiB at 160x224).
2. Quadratic part, from the manifest's FLOPs fit (``flops.quadratic`` x P^2 FLOPs): an attention
   over every position costs 4 x width FLOPs per score (QK^T and scores x V), a correlation volume
   2 x width; so score elements = quadratic / (``FLOPS_PER_SCORE`` x width) x P^2, the width from the
   manifest's ``flops.attention_width`` where the export records it, else ``ATTENTION_WIDTH``: the
   VAE decoder's one head of 512 channels, the UNet's 1/8-scale self-attention heads of 128, RAFT's
   256-channel features. Scores are held twice (QK^T and its softmax), in the graph's precision;
   RAFT's correlation pyramid (x 4/3) always in float32.
3. Fused attention holds no scores: TensorRT fuses heads up to ``FUSED_WIDTH_MAX`` channels (the
   UNet's), not the VAE's head of 512; ONNX Runtime's CPU provider fuses none of these graphs.
4. ONNX Runtime keeps one arena per session at its own peak (all sessions' peaks add up unless the
   arena is off, when only the largest counts), plus every session's float32 weights.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from svsr.contract.errors import InputError
from svsr.contract.graphs import (
    DEFAULT_FLOW_SCALE,
    FLOW_GRAPH_NAMES,
    GRAPH_NAMES,
    GRAPHS,
    NORM_STATS_STRIDE,
    NUM_STEP_COEFFS,
    STATS_GRAPHS,
    TILED_GRAPHS,
    concrete_shape,
    flow_graph,
)
from svsr.contract.precision import Precision, PrecisionLike
from svsr.contract.sizes import FLOW_SCALE_CHOICES, flow_scale_problem
from svsr.contract.tiles import AUTO, DEFAULT_OVERLAP, MIN_TILE, TILE_MULTIPLE, TileLayout, plan_tiles
from svsr.runtime.sampling.backend import Backend
from svsr.runtime.sampling.frame_step import graphs_used, norm_stats_sizes

ALIGNMENT = 512  # cudaMalloc hands out at least 256-byte aligned blocks; plan with a little slack
BASE_RESERVE = 128 * 1024**2  # CUDA context odds and ends (streams, events, TensorRT's small allocations), fragmentation
CONTEXT_ESTIMATE = 16 * 1024**2  # device memory of one TensorRT execution context (user-managed scratch), before measuring
GRAPH_ESTIMATE = 8 * 1024**2  # device memory of one instantiated CUDA graph of a frame-step, before measuring
ESTIMATED_CONTEXTS, ESTIMATED_PROGRAMS = 24, 4  # what the estimate reserves when no sampler run counted them
BLEND_CONTEXT_ESTIMATE = 1 * 1024**2  # a blend engine's context (no scratch), one per blend binding
BLEND_CONTEXTS = 3  # z_out and x0 (latent), and one 4x binding for the guidance image and the final RGB, whatever the tile count
GIB = 1024**3
MIB = 1024**2

LATENT_TENSORS = ("z", "noise", "x0_history", "z_prev", "x0")
LIVE_ELEMENTS = {"flow": 1024, "denoise": 4096, "guide_decode": 8192, "decode": 8192, "warp": 32, "blend": 0}
FLOPS_PER_SCORE = {"flow": 2, "denoise": 4, "guide_decode": 4, "decode": 4, "warp": 0, "blend": 0}
ATTENTION_WIDTH = {"flow": 256, "denoise": 128, "guide_decode": 512, "decode": 512}
SCORE_COPIES = 2
CORRELATION_PYRAMID = 4 / 3
FUSED_WIDTH_MAX = 256
BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
FLOW_SCALE_OF = {graph: scale for scale, graph in FLOW_GRAPH_NAMES.items()}
STATS_NETWORK = {"denoise_stats": "denoise", "decode_stats": "decode"}  # the network a statistics graph runs, pooled


class DeviceMemoryError(InputError):
    """A frame size does not fit in the GPU's free memory (or the stated budget)."""


@dataclass(frozen=True)
class BufferSpec:
    label: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize  # plain ints: the estimate sums thousands of these


def aligned(nbytes: int, alignment: int = ALIGNMENT) -> int:
    return -(-int(nbytes) // alignment) * alignment


def _tiled(tiles: TileLayout | None) -> bool:
    return tiles is not None and not tiles.single


# -- exact: the sampler against a shape recorder ------------------------------------------------------
class _ShapeRecorder(Backend):
    """Stands in for a backend while the sampler runs: records buffers, bindings and programs; computes nothing."""

    name = "shape-recorder"

    def __init__(self) -> None:
        self.buffers: list[BufferSpec] = []
        self.bindings: set[tuple[Any, ...]] = set()
        self.programs: set[str] = set()

    def allocate(self, label: str, shape: Sequence[int], dtype: str = "float32", host_io: bool = True) -> BufferSpec:
        spec = BufferSpec(label, tuple(int(s) for s in shape), dtype)
        self.buffers.append(spec)
        return spec

    def upload(self, buffer: BufferSpec, array: np.ndarray) -> None:
        pass

    def download(self, buffer: BufferSpec) -> np.ndarray:
        return np.zeros(buffer.shape, buffer.dtype)

    def run(self, graph: str, inputs: Mapping[str, BufferSpec], outputs: Mapping[str, BufferSpec]) -> None:
        self.bindings.add((graph, tuple(sorted((n, b.label) for n, b in {**inputs, **outputs}.items()))))

    def copy_region(self, source: BufferSpec, target: BufferSpec, source_origin: Any, target_origin: Any, size: Any) -> None:
        pass

    def zero(self, buffer: BufferSpec) -> None:
        pass

    def launch(self, key: str, enqueue: Callable[[], None]) -> None:
        self.programs.add(key)
        enqueue()


def slot_buffers(manifest: Mapping[str, Any], height: int, width: int, tiles: TileLayout | None = None) -> list[BufferSpec]:
    """Every buffer ``Sampler.slots`` allocates for padded LR frames of ``height`` x ``width`` (and ``tiles``)."""
    from svsr.runtime.sampling.sampler import Sampler

    recorder = _ShapeRecorder()
    sampler = Sampler(recorder, manifest)  # type: ignore[arg-type]
    sampler.slots(height, width) if tiles is None else sampler.slots(height, width, tiles)  # type: ignore[call-arg]
    return recorder.buffers


_BINDINGS: dict[tuple[int, int] | None, tuple[int, int]] = {}


def _count_bindings(manifest: Mapping[str, Any], side: tuple[int, int], tile: tuple[int, int] | None) -> tuple[int, int]:
    from svsr.contract.noise import NumpyNoise
    from svsr.runtime.sampling.sampler import Sampler

    recorder = _ShapeRecorder()
    frames = [np.zeros((*side, 3), np.uint8)] * 3
    options = {} if tile is None else {"tile": tile, "tile_overlap": 8}
    with tempfile.TemporaryDirectory(prefix="svsr-plan-") as folder:
        Sampler(recorder, manifest).upscale(frames, num_inference_steps=2, noise=NumpyNoise(0), host_memory=1 << 30, work_dir=folder, **options)  # type: ignore[arg-type]
    return len(recorder.bindings), len(recorder.programs)


def binding_counts(manifest: Mapping[str, Any], tiles: TileLayout | None = None) -> tuple[int, int]:
    """(distinct graph bindings, distinct frame-step programs) the sampler uses for one frame size.

    Found by upscaling a 3-frame, 2-step clip on the shape recorder (every binding and program
    appears from the third frame on; more frames or steps reuse them). Tiled, the clip is run with
    2 and 4 tiles of the smallest size: every tile passes through the same tile buffers and its
    blends read one shared weight tile per scale (frame_step.py), so both give the same counts,
    whatever ``tiles``' count; were a schedule to bind per-tile buffers, the difference is extended
    linearly to ``tiles``' count, so the plan still counts what runs. The counts depend on the
    schedule only, so they are computed once per process.
    """
    from svsr.contract.sizes import MIN_SIDE

    if not _tiled(tiles):
        if None not in _BINDINGS:
            _BINDINGS[None] = _count_bindings(manifest, (MIN_SIDE, MIN_SIDE), None)
        return _BINDINGS[None]
    assert tiles is not None
    for count, side in ((2, (MIN_TILE, 2 * MIN_TILE - 8)), (4, (2 * MIN_TILE - 8, 2 * MIN_TILE - 8))):
        if (count, 0) not in _BINDINGS:
            _BINDINGS[(count, 0)] = _count_bindings(manifest, side, (MIN_TILE, MIN_TILE))
    (c2, p2), (c4, p4) = _BINDINGS[(2, 0)], _BINDINGS[(4, 0)]
    n = len(tiles.tiles)
    return c2 + (c4 - c2) * (n - 2) // 2, p2 + (p4 - p2) * (n - 2) // 2


@dataclass(frozen=True)
class MemoryPlan:
    height: int  # padded LR size
    width: int
    slot_bytes: int  # all slot buffers (whole frame and tiles), aligned
    scratch_bytes: int  # one TensorRT scratch area shared by every context (ONNX Runtime: its arenas)
    engine_bytes: int  # engine weights still to be loaded (0 when already on the device)
    base_reserve_bytes: int
    contexts: int
    per_context_bytes: int
    programs: int  # CUDA graphs (0 without CUDA graphs)
    per_program_bytes: int
    measured_contexts: bool = False  # per-context bytes measured on this device (else the estimate)
    measured_programs: bool = False
    tile: tuple[int, int] | None = None  # None: untiled
    tiles: int = 1
    device: str = "GPU"  # what the memory is: "GPU" or "host" (ONNX Runtime on a CPU)

    @property
    def reserve_bytes(self) -> int:
        return self.base_reserve_bytes + self.contexts * self.per_context_bytes + self.programs * self.per_program_bytes

    @property
    def total_bytes(self) -> int:
        return self.slot_bytes + self.scratch_bytes + self.engine_bytes + self.reserve_bytes

    def describe(self) -> str:
        scratch = "TensorRT scratch" if self.device == "GPU" else "ONNX Runtime arenas"
        parts = [f"{'slot' if self.device == 'GPU' else 'frame'} buffers {self.slot_bytes / GIB:.2f} GiB", f"{scratch} {self.scratch_bytes / GIB:.2f} GiB"]
        if self.engine_bytes:
            parts.append(f"{'engines' if self.device == 'GPU' else 'weights'} {self.engine_bytes / GIB:.2f} GiB")
        if self.contexts or self.programs:
            how = lambda measured: "measured" if measured else "estimated"  # noqa: E731
            reserve = (
                f"reserve {self.reserve_bytes / GIB:.2f} GiB for {self.contexts} execution contexts "
                f"of {self.per_context_bytes / MIB:.0f} MiB ({how(self.measured_contexts)})"
            )
            if self.programs:
                reserve += f", {self.programs} CUDA graphs of {self.per_program_bytes / MIB:.0f} MiB ({how(self.measured_programs)})"
            parts.append(reserve + f" and {self.base_reserve_bytes / MIB:.0f} MiB more")
        elif self.base_reserve_bytes:
            parts.append(f"reserve {self.base_reserve_bytes / GIB:.2f} GiB")
        return f"{self.total_bytes / GIB:.2f} GiB ({' + '.join(parts)})"

    def what(self) -> str:
        """``"frames of 1920x1080 (padded LR size), untiled"`` or ``..., in 136 tiles of 128x128``."""
        layout = "untiled" if self.tile is None else f"in {self.tiles} tiles of {self.tile[0]}x{self.tile[1]}"
        return f"frames of {self.width}x{self.height} (padded LR size), {layout}"


def plan_memory(
    manifest: Mapping[str, Any],
    height: int,
    width: int,
    scratch_bytes: int,
    engine_bytes: int = 0,
    *,
    tiles: TileLayout | None = None,
    per_context_bytes: int | None = None,
    per_program_bytes: int | None = None,
    cuda_graphs: bool = True,
    base_reserve_bytes: int = BASE_RESERVE,
) -> MemoryPlan:
    """Device bytes for padded LR frames of ``height`` x ``width`` (in ``tiles``), whatever the number of frames.

    ``per_context_bytes`` / ``per_program_bytes``: measured costs of one execution context / one
    instantiated CUDA graph (None: the estimates ``CONTEXT_ESTIMATE`` / ``GRAPH_ESTIMATE``).
    """
    if height < 1 or width < 1:
        raise InputError(f"a frame size needs positive sides, not {width}x{height}.")
    contexts, programs = binding_counts(manifest, tiles)
    return MemoryPlan(
        height=height,
        width=width,
        slot_bytes=sum(aligned(b.nbytes) for b in slot_buffers(manifest, height, width, tiles)),
        scratch_bytes=int(scratch_bytes),
        engine_bytes=int(engine_bytes),
        base_reserve_bytes=int(base_reserve_bytes),
        contexts=contexts,
        per_context_bytes=int(CONTEXT_ESTIMATE if per_context_bytes is None else per_context_bytes),
        programs=programs if cuda_graphs else 0,
        per_program_bytes=int(GRAPH_ESTIMATE if per_program_bytes is None else per_program_bytes),
        measured_contexts=per_context_bytes is not None,
        measured_programs=per_program_bytes is not None,
        tile=tiles.tile_shape if _tiled(tiles) else None,  # type: ignore[union-attr]
        tiles=len(tiles.tiles) if tiles is not None else 1,
    )


def check_fits(plan: MemoryPlan, available_bytes: int, advice: str | None = None) -> None:
    """Raise DeviceMemoryError (one sentence: the size, the need, the free memory, the fix) when ``plan`` does not fit."""
    if plan.total_bytes <= available_bytes:
        return
    fix = advice or "free GPU memory (other processes), or use smaller frames or fp16 engines"
    raise DeviceMemoryError(
        f"frames of {plan.width}x{plan.height} (padded LR size) need {plan.describe()} of {plan.device} memory "
        f"but only {available_bytes / GIB:.2f} GiB is free; {fix}."
    )


# -- estimated: pure arithmetic from the manifest ------------------------------------------------------
def engine_input_shapes(manifest: Mapping[str, Any], height: int, width: int, tiles: TileLayout | None = None) -> dict[str, dict[str, tuple[int, ...]]]:
    """Each graph's input shapes as the schedule runs it: tiled graphs at the tile; the flow graphs, warp and the
    statistics graphs (which pool inside) at the frame; blend at a 4x tile."""
    channels = int(manifest.get("latent_channels", 4))
    stats = norm_stats_sizes(manifest)
    tile = tiles.tile_shape if _tiled(tiles) else (height, width)  # type: ignore[union-attr]
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for graph in GRAPH_NAMES:
        h, w = tile if graph in TILED_GRAPHS or graph == "blend" else (height, width)
        if graph == "blend":  # the largest blend: a decoded tile (3 channels at 4x)
            h, w = 4 * h, 4 * w
        shapes[graph] = {}
        for spec in GRAPHS[graph].inputs:
            shape = concrete_shape(spec, 1, h, w, channels=3, stats=stats)
            if spec.name in LATENT_TENSORS:
                shape = (shape[0], channels, *shape[2:])
            shapes[graph][spec.name] = shape
    return shapes


def stats_stride(manifest: Mapping[str, Any], graph: str) -> int:
    """Every how many rows and columns statistics graph ``graph`` samples the whole frame (the manifest's ``norm_stats.<graph>.stride``, else the contract's)."""
    return int((manifest.get("norm_stats") or {}).get(graph, {}).get("stride", NORM_STATS_STRIDE[graph]))


def _score_elements_per_p2(manifest: Mapping[str, Any], graph: str) -> float:
    per_score = FLOPS_PER_SCORE.get(graph, 0)
    flops = manifest["graphs"].get(graph, {}).get("flops", {})
    if not per_score or not flops.get("quadratic"):
        return 0.0
    width = flops.get("attention_width") or ATTENTION_WIDTH[graph]
    return float(flops["quadratic"]) / (per_score * width)


def activation_bytes(
    manifest: Mapping[str, Any], graph: str, height: int, width: int, precision: str = "fp32", *, fused: bool = True, flow_scale: int = 4
) -> int:
    """Activation memory of one call of ``graph`` on an LR frame or tile of ``height`` x ``width`` (the module docstring's model).

    ``fused``: TensorRT (attention up to FUSED_WIDTH_MAX channels holds no scores); False: ONNX Runtime on a CPU.
    ``flow_scale``: RAFT on the bicubic x4 frames (4, the original) or x2 / x1 ones (its pixels, and
    the correlation's positions, shrink by (scale/4)^2); the graphs ``flow_x2`` / ``flow_x1`` are
    that at their own scale (all three from the x4 graph's FLOPs fit: the same RAFT). A statistics
    graph is its network (UNet + TCM, VAE decoder) on the frame subsampled by its manifest stride, plus
    the subsampled copies of its inputs.
    """
    if graph in STATS_NETWORK:
        stride = stats_stride(manifest, graph)
        network = activation_bytes(manifest, STATS_NETWORK[graph], -(-height // stride), -(-width // stride), precision, fused=fused)
        sampled_inputs = (4 + 3 + 3 * 16 if graph == "denoise_stats" else 4) * height * width // stride**2 * BYTES[precision]
        return network + sampled_inputs
    if graph in FLOW_SCALE_OF:
        graph, flow_scale = "flow", FLOW_SCALE_OF[graph] if graph != "flow" else flow_scale
    p = height * width * ((flow_scale / 4) ** 2 if graph == "flow" else 1)
    item = BYTES[precision]
    linear = LIVE_ELEMENTS.get(graph, 0) * p * (4 if graph == "warp" else item)
    scores = _score_elements_per_p2(manifest, graph) * float(p) ** 2
    if graph == "flow":
        quadratic = scores * CORRELATION_PYRAMID * 4
    elif fused and (manifest["graphs"][graph]["flops"].get("attention_width") or ATTENTION_WIDTH.get(graph, 0)) <= FUSED_WIDTH_MAX:
        quadratic = 0.0
    else:
        quadratic = scores * SCORE_COPIES * item
    return int(linear + quadratic)


def planned_buffers(manifest: Mapping[str, Any], height: int, width: int, tiles: TileLayout | None = None, history: bool = False) -> list[BufferSpec]:
    """The buffers of the runtime design (module docstring): whole-frame ones, and per-tile ones when ``tiles`` cuts the frame."""
    c = int(manifest.get("latent_channels", 4))

    def b(label: str, channels: int, h: int, w: int, scale: int = 1) -> BufferSpec:
        return BufferSpec(label, (1, channels, scale * h, scale * w), "float32")

    out: list[BufferSpec] = []
    for i in (0, 1):
        out += [b(f"z{i}", c, height, width), b(f"lr{i}", 3, height, width), b(f"lr_previous{i}", 3, height, width)]
        out += [b(f"flow{i}", 2, height, width, 4), b(f"noise{i}", c, height, width), b(f"z_out{i}", c, height, width)]
        out += [b(f"guidance{i}", 3, height, width, 4), b(f"x0_{i}", c, height, width), b(f"decode_z{i}", c, height, width), b(f"rgb{i}", 3, height, width, 4)]
        if history:
            out.append(b(f"x0_history{i}", c, height, width))
    out += [b("image", 3, height, width, 4), b("zero_guidance", 3, height, width, 4), b("zero_latent", c, height, width)]
    out += [BufferSpec(n, (1,), "float32") for n in ("tcm_off", "tcm_on", "timestep", "shared_norm")]
    stats = norm_stats_sizes(manifest)
    out += [BufferSpec(f"{name.split('_')[0]}_norm", (1, stats.get(name, 1)), "float32") for name in STATS_GRAPHS]
    out.append(BufferSpec("step_coeffs", (NUM_STEP_COEFFS,), "float32"))
    if _tiled(tiles):
        assert tiles is not None
        th, tw = tiles.tile_shape
        for name in ("z", "noise", "x0_history", "z_out", "x0", "x0_in", "decode_z", "acc", "sum"):
            out.append(b(f"tile_{name}", c, th, tw))
        out.append(b("tile_lr", 3, th, tw))
        for name in ("guidance", "image", "rgb", "acc4", "sum4"):
            out.append(b(f"tile_{name}", 3, th, tw, 4))
        out += [b("tile_weight", 1, th, tw), b("tile_weight4", 1, th, tw, 4)]  # what every blend reads
        for k in range(len(tiles.tiles)):
            out += [b(f"weight{k}", 1, th, tw), b(f"weight4_{k}", 1, th, tw, 4)]
    return out


def engine_weight_bytes(manifest: Mapping[str, Any], precision: Precision, graphs: Sequence[str] = GRAPH_NAMES) -> int:
    """Weights of one engine per graph of ``graphs``: the float32 graph's size, halved for fp16/bf16 engines."""
    total = 0
    for graph in graphs:
        # a partial manifest (an estimate's) without the graph: the network it runs (RAFT, UNet + TCM, VAE decoder) has that size
        entry = manifest["graphs"].get(graph) or manifest["graphs"].get(STATS_NETWORK.get(graph, "flow" if graph in FLOW_SCALE_OF else graph), {})
        size = int(entry.get("size_bytes", 0))
        total += size * BYTES[precision.of(graph)] // 4
    return total


def estimate_plan(
    manifest: Mapping[str, Any],
    height: int,
    width: int,
    tile: tuple[int, int] | None = None,
    *,
    precision: PrecisionLike = "fp16",
    backend: str = "trt",
    overlap: int = DEFAULT_OVERLAP,
    history: bool = False,
    engines_loaded: bool | Sequence[str] = False,
    cuda_graphs: bool = True,
    shared_arena: bool = False,
    flow_scale: int = DEFAULT_FLOW_SCALE,
) -> MemoryPlan:
    """The estimated plan (module docstring) for padded LR frames of ``height`` x ``width`` in ``tile`` tiles (None: untiled).

    ``backend`` "trt": device memory, one shared scratch; "ort": host memory of ONNX Runtime on a
    CPU (float32 graphs, one arena per session at its peak unless ``shared_arena``, the weights).
    Only the graphs the run uses count (``frame_step.graphs_used``: the flow graph of ``flow_scale``,
    the statistics graphs when tiled). ``engines_loaded``: True (every engine the run uses is on the
    device already), False (none is), or the graphs whose engines are (the others' weights count).
    """
    layout = plan_tiles(height, width, tile, overlap)
    tiled = not layout.single
    used = graphs_used(tiled, flow_scale)
    prec = Precision("fp32") if backend == "ort" else Precision.parse(precision)
    shapes = {g: (layout.tile_shape if tiled and g in TILED_GRAPHS else (height, width)) for g in used if g != "blend"}
    peaks = [activation_bytes(manifest, g, h, w, prec.of(g), fused=backend == "trt") for g, (h, w) in shapes.items()]
    slot = sum(aligned(s.nbytes) for s in planned_buffers(manifest, height, width, layout if tiled else None, history))
    if backend == "ort":
        arenas = max(peaks) if shared_arena else sum(peaks)
        return MemoryPlan(height, width, slot, arenas, engine_weight_bytes(manifest, prec, used), 0, 0, 0, 0, 0,
                          tile=layout.tile_shape if tiled else None, tiles=len(layout.tiles), device="host")  # fmt: skip
    blends = BLEND_CONTEXTS if tiled else 0
    loaded = used if engines_loaded is True else () if engines_loaded is False else tuple(engines_loaded)
    return MemoryPlan(
        height, width, slot, aligned(max(peaks), 256), engine_weight_bytes(manifest, prec, [g for g in used if g not in loaded]),
        BASE_RESERVE + blends * BLEND_CONTEXT_ESTIMATE, ESTIMATED_CONTEXTS, CONTEXT_ESTIMATE, ESTIMATED_PROGRAMS if cuda_graphs else 0, GRAPH_ESTIMATE,
        tile=layout.tile_shape if tiled else None, tiles=len(layout.tiles),
    )  # fmt: skip


@dataclass(frozen=True)
class TileChoice:
    """What ``--tile auto`` (and ``--flow-scale auto``) chose: ``tile`` None (untiled) or (height, width) in LR pixels,
    the plan, and a line to print; ``flow_scale`` the scale the plan is for and ``flow_reason``, where
    :func:`choose_flow_scale` took a scale below 4, why (None otherwise).

    Unpacks as ``(tile, reason)``.
    """

    tile: tuple[int, int] | None
    plan: MemoryPlan
    reason: str
    flow_scale: int = DEFAULT_FLOW_SCALE
    flow_reason: str | None = None

    def __iter__(self) -> Any:
        return iter((self.tile, self.reason))


def available_for(backend: Any) -> tuple[str, int, dict[str, Any]]:
    """("trt" or "ort", the bytes ``--tile auto`` may plan with, estimate options) for a backend object.

    TensorRT: the free device memory plus what the backend already holds (the engines it has loaded;
    the statistics and other flow graphs' engines load on demand, so their weights still count);
    ONNX Runtime on a CPU: half the memory available now (the clip store's default budget).
    """
    if getattr(backend, "name", "") == "trt":
        free, _total = backend.cuda.mem_get_info()
        precision = getattr(backend, "precision", None) or "fp16"
        loaded = getattr(backend, "loaded_graphs", True)
        return "trt", free + backend.held_device_bytes(), {"engines_loaded": loaded, "precision": precision, "cuda_graphs": backend.cuda_graphs}
    from svsr.runtime.sampling.clip_store import default_host_memory

    # the ONNX Runtime backend's sessions share one arena (ort_backend.low_memory_options): the largest peak, not the sum
    return "ort", default_host_memory(), {"shared_arena": True}


def _tile_option(tile: tuple[int, int] | None, flow_scale: int = DEFAULT_FLOW_SCALE) -> str:
    """``--tile off`` / ``--tile 128x128``, with ``--flow-scale N`` where the scale is not 4."""
    text = "--tile off" if tile is None else f"--tile {tile[0]}x{tile[1]}"
    return text if flow_scale == DEFAULT_FLOW_SCALE else f"{text} --flow-scale {flow_scale}"


def _where(backend: str) -> str:
    return "GPU memory free" if backend == "trt" else "memory budget"


def _resolve_backend(backend: Any, available_bytes: int | None, precision: PrecisionLike, options: dict[str, Any]) -> tuple[str, int, PrecisionLike, dict[str, Any]]:
    """A backend object's kind, available bytes, precision and estimate options (:func:`available_for`); a name passes through."""
    if not isinstance(backend, str):
        backend, found, asked = available_for(backend)
        available_bytes = found if available_bytes is None else available_bytes
        precision = asked.pop("precision", precision)
        options = {**asked, **options}
    if available_bytes is None:
        raise ValueError("the memory plan needs available_bytes with a backend named by a string")
    return backend, available_bytes, precision, options


def flow_scales_for(height: int, width: int) -> list[int]:
    """The flow scales RAFT accepts for padded LR frames of ``height`` x ``width``, largest first (4 always)."""
    return [s for s in FLOW_SCALE_CHOICES if flow_scale_problem(s, height, width) is None]


def choose_tile(
    manifest: Mapping[str, Any],
    height: int,
    width: int,
    available_bytes: int | None = None,
    *,
    backend: Any = "trt",
    precision: PrecisionLike = "fp16",
    overlap: int = DEFAULT_OVERLAP,
    plan: Callable[[tuple[int, int] | None], MemoryPlan] | None = None,
    _suggest: bool = True,
    **options: Any,
) -> TileChoice:
    """``--tile auto``: untiled where the whole frame fits ``available_bytes``, else the largest tile that fits.

    ``available_bytes``: the free device memory (TensorRT) or the stated budget (ONNX Runtime on a
    CPU). Tiles are square (clipped to the frame), multiples of 4, at least MIN_TILE, tried from the
    frame's longer side down. ``plan``: tile -> MemoryPlan (default :func:`estimate_plan` with
    ``options``, ``flow_scale`` among them: 4 unless given). DeviceMemoryError (one sentence; its
    ``plan`` attribute: the smallest tile's plan) when not even the smallest tile fits; where a smaller
    flow scale with some tile would fit, the sentence names those ``--tile`` and ``--flow-scale``.
    ``backend`` may be a backend object (then ``available_bytes`` None asks it: :func:`available_for`).
    """
    backend, available_bytes, precision, options = _resolve_backend(backend, available_bytes, precision, options)
    where = _where(backend)
    scale = int(options.get("flow_scale", DEFAULT_FLOW_SCALE))
    custom = plan is not None
    plan = plan or (lambda t: estimate_plan(manifest, height, width, t, precision=precision, backend=backend, overlap=overlap, **options))
    whole = plan(None)
    if whole.total_bytes <= available_bytes:
        return TileChoice(None, whole, f"untiled {width}x{height}: needs {whole.total_bytes / GIB:.1f} GiB of {available_bytes / GIB:.1f} GiB {where}",
                          scale)  # fmt: skip
    largest = -(-max(height, width) // TILE_MULTIPLE) * TILE_MULTIPLE
    seen: set[tuple[int, int]] = set()
    smallest = None
    for side in range(largest, MIN_TILE - 1, -TILE_MULTIPLE):
        tile = (min(side, height), min(side, width))
        if tile in seen or tile == (height, width) or 2 * overlap >= min(tile):
            continue
        seen.add(tile)
        smallest = candidate = plan(tile)
        if candidate.total_bytes <= available_bytes:
            reason = (
                f"tiles of {tile[0]}x{tile[1]} ({candidate.tiles} tiles, overlap {overlap}): {candidate.total_bytes / GIB:.1f} GiB "
                f"of {available_bytes / GIB:.1f} GiB {where}; untiled {width}x{height} would need {whole.total_bytes / GIB:.1f} GiB"
            )
            return TileChoice(tile, candidate, reason, scale)
    need = smallest or whole
    flow = activation_bytes(manifest, flow_graph(scale), height, width, fused=backend == "trt")
    fix = "use smaller frames, fp16 engines or a machine with more memory"
    smaller = None
    if _suggest and not custom:  # a smaller flow scale: RAFT's whole-frame correlation shrinks with the square of the area it sees
        for s in (s for s in flow_scales_for(height, width) if s < scale):
            try:
                smaller = choose_tile(manifest, height, width, available_bytes, backend=backend, precision=precision, overlap=overlap,
                                      _suggest=False, **{**options, "flow_scale": s})  # fmt: skip
                break
            except DeviceMemoryError:
                continue
    if smaller is not None:
        fix = (f"RAFT on the whole x{scale} frame alone takes {flow / GIB:.2f} GiB of it and tiles do not cut it, so use "
               f"{_tile_option(smaller.tile, smaller.flow_scale)} ({smaller.plan.total_bytes / GIB:.2f} GiB)")  # fmt: skip
    elif flow >= need.scratch_bytes // 2:  # the whole-frame flow, which tiles do not cut, is what does not fit
        fix = f"RAFT's correlation on the whole x{scale} frame alone takes {flow / GIB:.2f} GiB of it and tiles do not cut it, so use smaller frames or a machine with more memory"
    error = DeviceMemoryError(
        f"frames of {width}x{height} (padded LR size) need {need.total_bytes / GIB:.2f} GiB even in the smallest tiles "
        f"({_tile_option(need.tile, scale)}) but only {available_bytes / GIB:.2f} GiB of {where.replace(' free', '')} is "
        f"{'free' if backend == 'trt' else 'allowed'}; {fix}."
    )
    error.plan = need  # type: ignore[attr-defined]
    raise error


def choose_flow_scale(
    manifest: Mapping[str, Any],
    height: int,
    width: int,
    available_bytes: int | None = None,
    *,
    tile: tuple[int, int] | None | str = AUTO,
    backend: Any = "trt",
    precision: PrecisionLike = "fp16",
    overlap: int = DEFAULT_OVERLAP,
    **options: Any,
) -> TileChoice:
    """``--flow-scale auto``: 4 (RAFT on the x4 frames, the paper's) where the plan fits, else the largest scale that fits.

    ``tile`` ``"auto"``: the tile is chosen too, by :func:`choose_tile` at each scale from 4 down, so a
    smaller flow scale is taken only where no tile fits at the larger one (the flow, which tiles do
    not cut, is then what does not fit); None (untiled) or (height, width): that tile's plan at each
    scale. Scales the frame is too small for (``sizes.flow_scale_problem``) are not tried. The
    choice's ``flow_reason`` says why a scale below 4 was taken. DeviceMemoryError (one sentence,
    naming what fits where something does) when nothing fits at any scale.
    """
    backend, available_bytes, precision, options = _resolve_backend(backend, available_bytes, precision, options)
    options.pop("flow_scale", None)
    where = _where(backend)
    first: tuple[int, MemoryPlan] | None = None  # the largest scale's plan that did not fit
    last_error: DeviceMemoryError | None = None
    for scale in flow_scales_for(height, width):
        if tile == AUTO:
            try:
                choice = choose_tile(manifest, height, width, available_bytes, backend=backend, precision=precision, overlap=overlap,
                                     flow_scale=scale, _suggest=False, **options)  # fmt: skip
            except DeviceMemoryError as refused:
                first, last_error = first or (scale, refused.plan), refused  # type: ignore[attr-defined]
                continue
        else:
            fixed = None if tile is None else (int(tile[0]), int(tile[1]))  # type: ignore[index]
            planned = estimate_plan(manifest, height, width, fixed, precision=precision, backend=backend, overlap=overlap, flow_scale=scale, **options)
            if planned.total_bytes > available_bytes:
                first = first or (scale, planned)
                continue
            what = f"untiled {width}x{height}" if planned.tile is None else f"tiles of {planned.tile[0]}x{planned.tile[1]} ({planned.tiles} tiles)"
            choice = TileChoice(planned.tile, planned, f"{what}: {planned.total_bytes / GIB:.1f} GiB of {available_bytes / GIB:.1f} GiB {where}", scale)
        reason = None
        if first is not None:
            big_scale, big = first
            flow = activation_bytes(manifest, flow_graph(big_scale), height, width, fused=backend == "trt")
            how = "even in the smallest tiles" if tile == AUTO else ("untiled" if big.tile is None else f"in tiles of {big.tile[0]}x{big.tile[1]}")
            reason = (f"at flow scale {big_scale} the frame needs {big.total_bytes / GIB:.1f} GiB {how} of {available_bytes / GIB:.1f} GiB "
                      f"{where}, RAFT on the whole x{big_scale} frame alone {flow / GIB:.1f} GiB (tiles do not cut it)")  # fmt: skip
        return TileChoice(choice.tile, choice.plan, choice.reason, scale, reason)
    if last_error is not None:  # tile auto: the smallest scale's refusal names the smallest tile and scale tried
        raise last_error
    assert first is not None
    smallest_scale = flow_scales_for(height, width)[-1]
    need = estimate_plan(manifest, height, width, None if tile is None else tile, precision=precision, backend=backend, overlap=overlap,  # type: ignore[arg-type]
                         flow_scale=smallest_scale, **options)  # fmt: skip
    how = "untiled" if need.tile is None else f"in tiles of {need.tile[0]}x{need.tile[1]}"
    try:
        fits = choose_flow_scale(manifest, height, width, available_bytes, tile=AUTO, backend=backend, precision=precision, overlap=overlap, **options)
        fix = f"{_tile_option(fits.tile, fits.flow_scale)} fits ({fits.plan.total_bytes / GIB:.2f} GiB)"
    except DeviceMemoryError:
        fix = "no tile fits this frame size here; use smaller frames or a machine with more memory"
    raise DeviceMemoryError(
        f"frames of {width}x{height} (padded LR size) {how} need {need.total_bytes / GIB:.2f} GiB even at --flow-scale {smallest_scale} "
        f"but only {available_bytes / GIB:.2f} GiB of {where.replace(' free', '')} is {'free' if backend == 'trt' else 'allowed'}; {fix}."
    )


def tile_advice(manifest: Mapping[str, Any], height: int, width: int, available_bytes: int, **options: Any) -> str:
    """The fix to name when a chosen tile (or untiled) does not fit: the ``--tile`` (and ``--flow-scale``) that would, or that none does."""
    scale = int(options.get("flow_scale", DEFAULT_FLOW_SCALE))
    try:
        choice = choose_tile(manifest, height, width, available_bytes, **options)
    except DeviceMemoryError:
        try:
            choice = choose_flow_scale(manifest, height, width, available_bytes, **options)
        except DeviceMemoryError:
            return "no tile fits this frame size here; use smaller frames or a machine with more memory"
    option = _tile_option(choice.tile) if choice.flow_scale == scale else f"{_tile_option(choice.tile)} --flow-scale {choice.flow_scale}"
    return f"{option} fits ({choice.plan.total_bytes / GIB:.2f} GiB)"
