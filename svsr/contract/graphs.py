"""The ten exported graphs and their tensors: the contract between export, engines and runtime.

Symbolic dims: ``batch`` (independent clips), ``height``/``width`` (LR size after padding to a
multiple of 4, or a latent tile's size), ``height4``/``width4`` (4x), ``channels`` (the blend graph
serves latents and pixels alike), ``denoise_stats``/``decode_stats`` (the length of a network's
GroupNorm statistics vector: fixed per checkpoint, written as an integer in the manifest's tensor
shapes). Everything here is plain data (torch-free).

Schema 2 (this layout) split the old ``guide`` graph into ``guide_decode`` (tileable) and ``warp``
(always the whole frame: flows carry texture across tile borders), added ``blend`` (one tile's
weighted contribution, MultiDiffusion) and gave ``denoise`` the frame's previous x0 and two more
step coefficients, so one graph serves the DDPM, DDIM and DPM-Solver++ 2M schedules.

Schema 3 (this layout) added, for tiles and frame sizes people have:

- ``flow_x2`` and ``flow_x1``: RAFT on x2 / x1 frames instead of the bicubic x4 ones, the flow
  upsampled (bilinear) and scaled to the 4x grid (``--flow-scale``; RAFT's memory grows with the
  square of the frame area it sees).
- Shared GroupNorm statistics across tiles. Every GroupNorm of the TCM + UNet and of the VAE decoder
  normalises with ``mean = own + shared_norm * (given - own)`` (the same for the variance), where
  ``own`` is the statistic of what the graph sees and ``given`` comes in ``norm_stats``. Untiled,
  ``shared_norm`` is 0 and the graph is exactly its own GroupNorm. Tiled, ``norm_stats`` comes from
  ``denoise_stats`` / ``decode_stats``: the same networks run once per frame-step on the whole frame
  subsampled by the manifest's ``norm_stats.<graph>.stride`` (every 2nd row and column), which records
  every GroupNorm's per-group mean and variance in call order. Subsampling, not average pooling: a
  pooled frame loses the variance of noise and fine texture that the GroupNorms measure (measured in
  PyTorch on the demo preset, 96x96 LR crops, 64x64 tiles, PSNR of the tiled part vs untiled: VAE
  decode, bikes, tile-own statistics 34-36 dB, pooled x4 32-34, pooled x2 39-45, subsampled x2
  42-43, the whole frame's exact statistics 45; TCM + UNet, bikes: own 36, pooled x2 38-39,
  subsampled x2 41-44, exact 61-63). Each tile's own statistics, not the blend or the attention, were
  what made tiles differ (shared/docs/field-notes.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_STEP_COEFFS = 8
# Order of the per-step scheduler coefficients fed to `denoise` (formulas in svsr/contract/scheduler.py):
#   x0     = clamp(c[0] * z + c[1] * model_output, -c[5], c[5])
#   z_prev = c[2] * x0 + c[3] * z + c[4] * noise + c[6] * model_output + c[7] * x0_history
STEP_COEFF_NAMES = (
    "x0_from_sample",
    "x0_from_output",
    "prev_from_x0",
    "prev_from_sample",
    "noise_std",
    "x0_clip",
    "prev_from_output",
    "prev_from_history",
)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    summary: str

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)


def _t(name: str, *shape: int | str, dtype: str = "float32") -> TensorSpec:
    return TensorSpec(name, dtype, tuple(shape))


# RAFT's input scale of each flow graph (LR pixels x scale); 4 is the original's bicubic x4
FLOW_SCALES = (4, 2, 1)
DEFAULT_FLOW_SCALE = 4
FLOW_GRAPH_NAMES = {4: "flow", 2: "flow_x2", 1: "flow_x1"}
# every how many rows and columns each stats graph samples the whole frame before it records (manifest:
# norm_stats.<graph>.stride): x[:, :, ::stride, ::stride], which keeps the pixels' own spread
NORM_STATS_STRIDE = {"denoise_stats": 2, "decode_stats": 2}


def flow_graph(scale: int) -> str:
    """The name of the flow graph that runs RAFT at ``scale`` (4, 2 or 1)."""
    return FLOW_GRAPH_NAMES[scale]


def _flow_spec(scale: int) -> "GraphSpec":
    how = "bicubic x4 of both LR frames" if scale == 4 else ("bicubic x2 of both LR frames" if scale == 2 else "both LR frames as they are (edge-padded to a multiple of 8)")
    tail = "" if scale == 4 else f", the flow upsampled bilinearly to 4x and multiplied by {4 // scale}"
    return GraphSpec(
        FLOW_GRAPH_NAMES[scale],
        inputs=(_t("frame", "batch", 3, "height", "width"), _t("previous", "batch", 3, "height", "width")),
        outputs=(_t("flow", "batch", 2, "height4", "width4"),),
        summary=f"{how}, RAFT(frame, previous), last refinement{tail}: maps pixels of frame onto previous",
    )


# what the TCM + UNet see of one frame (or tile): denoise's first inputs, and all of denoise_stats
_NETWORK_INPUTS = (
    _t("z", "batch", 4, "height", "width"),
    _t("lr", "batch", 3, "height", "width"),
    _t("guidance", "batch", 3, "height4", "width4"),
    _t("tcm_scale", 1),
    _t("timestep", 1),
)

GRAPHS: dict[str, GraphSpec] = {
    "flow": _flow_spec(4),
    "flow_x2": _flow_spec(2),
    "flow_x1": _flow_spec(1),
    "denoise": GraphSpec(
        "denoise",
        inputs=(
            *_NETWORK_INPUTS,
            _t("step_coeffs", NUM_STEP_COEFFS),
            _t("noise", "batch", 4, "height", "width"),
            _t("x0_history", "batch", 4, "height", "width"),
            _t("norm_stats", "batch", "denoise_stats"),
            _t("shared_norm", 1),
        ),
        outputs=(_t("z_prev", "batch", 4, "height", "width"), _t("x0", "batch", 4, "height", "width")),
        summary="TCM (residuals scaled by tcm_scale; 0 = no TCM) + UNet + one scheduler step (generalized coefficients); "
        "GroupNorms mix in norm_stats by shared_norm (0 = their own statistics)",
    ),
    "denoise_stats": GraphSpec(
        "denoise_stats",
        inputs=_NETWORK_INPUTS,
        outputs=(_t("norm_stats", "batch", "denoise_stats"),),
        summary="TCM + UNet on every 2nd row and column of the whole frame: every GroupNorm's per-group mean and variance, in call order",
    ),
    "guide_decode": GraphSpec(
        "guide_decode",
        inputs=(
            _t("x0", "batch", 4, "height", "width"),
            _t("norm_stats", "batch", "decode_stats"),
            _t("shared_norm", 1),
        ),
        outputs=(_t("image", "batch", 3, "height4", "width4"),),
        summary="VAE decode of x0 / scaling_factor, not clamped (the guidance before its warp; runs per tile)",
    ),
    "decode_stats": GraphSpec(
        "decode_stats",
        inputs=(_t("latent", "batch", 4, "height", "width"),),
        outputs=(_t("norm_stats", "batch", "decode_stats"),),
        summary="VAE decoder on every 2nd row and column of latent / scaling_factor: every GroupNorm's per-group mean and variance, in call order",
    ),
    "warp": GraphSpec(
        "warp",
        inputs=(_t("image", "batch", 3, "height4", "width4"), _t("flow", "batch", 2, "height4", "width4")),
        outputs=(_t("guidance", "batch", 3, "height4", "width4"),),
        summary="the warp with the original's quirk (align_corners mismatch), on the whole frame",
    ),
    "decode": GraphSpec(
        "decode",
        inputs=(
            _t("z", "batch", 4, "height", "width"),
            _t("norm_stats", "batch", "decode_stats"),
            _t("shared_norm", 1),
        ),
        outputs=(_t("rgb", "batch", 3, "height4", "width4"),),
        summary="final VAE decode, clamp(x / 2 + 0.5, 0, 1)",
    ),
    "blend": GraphSpec(
        "blend",
        inputs=(
            _t("acc", "batch", "channels", "height", "width"),
            _t("tile", "batch", "channels", "height", "width"),
            _t("weight", 1, 1, "height", "width"),
        ),
        outputs=(_t("out", "batch", "channels", "height", "width"),),
        summary="acc + tile * weight: one tile's share of a whole-frame buffer (weights of all tiles sum to one)",
    ),
}

# graphs whose tensors are not written in one precision: they always run in float32
FLOAT32_ONLY_GRAPHS = ("warp", "blend")
# graphs that run per latent tile when a frame is tiled (the rest see the whole frame)
TILED_GRAPHS = ("denoise", "guide_decode", "decode")
# graphs that run only when a frame is tiled: the whole frame's GroupNorm statistics for the tiled ones
STATS_GRAPHS = ("denoise_stats", "decode_stats")
# the symbolic dims a manifest writes as integers (the statistics vector's length of this checkpoint)
STATS_DIMS = ("denoise_stats", "decode_stats")

GRAPH_NAMES = tuple(GRAPHS)


def concrete_shape(spec: TensorSpec, batch: int, height: int, width: int, channels: int = 4,
                   stats: "dict[str, int] | None" = None) -> tuple[int, ...]:  # fmt: skip
    """Resolve a tensor's symbolic dims for one LR size (already padded to a multiple of 4) or tile.

    ``stats`` gives the statistics lengths (``denoise_stats``, ``decode_stats``) of a checkpoint (the
    manifest's ``norm_stats.<graph>.size``); without it they resolve to 1 (tests of shapes that do not
    carry statistics).
    """
    dims = {"batch": batch, "height": height, "width": width, "height4": 4 * height, "width4": 4 * width, "channels": channels}
    dims.update({name: (stats or {}).get(name, 1) for name in STATS_DIMS})
    return tuple(dims[d] if isinstance(d, str) else d for d in spec.shape)


# representative per-step scheduler coefficients (a mid-schedule v-prediction step) for sample inputs
SAMPLE_STEP_COEFFS = (0.73, -0.68, 0.52, 0.47, 0.11, 3.0e38, 0.05, -0.04)


def sample_graph_inputs(name: str, height: int, width: int, batch: int = 1, seed: int = 0,
                        stats: "dict[str, int] | None" = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Deterministic, plausible float32 inputs of graph ``name`` (tracing, parity checks, benchmarks).

    LR frames uniform in [-1, 1], flows ~ 3 px, latents and noise standard normal, the TCM on, a
    mid-schedule timestep and step coefficients.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in GRAPHS[name].inputs:
        shape = concrete_shape(spec, batch, height, width, stats=stats)
        if spec.name == "tcm_scale":
            value = np.ones(shape, np.float32)
        elif spec.name == "timestep":
            value = np.full(shape, 501.0, np.float32)
        elif spec.name == "step_coeffs":
            value = np.array(SAMPLE_STEP_COEFFS, np.float32)
        elif spec.name in ("frame", "previous", "lr"):
            value = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
        elif spec.name == "shared_norm":
            value = np.zeros(shape, np.float32)
        elif spec.name == "norm_stats":  # (mean, variance) pairs: variances must stay positive
            value = np.abs(rng.standard_normal(shape)).astype(np.float32) + 0.5
        elif spec.name == "weight":
            value = rng.uniform(0.0, 1.0, shape).astype(np.float32)
        elif spec.name == "image":
            value = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
        elif spec.name == "flow":
            value = (rng.standard_normal(shape) * 3.0).astype(np.float32)
        else:
            value = rng.standard_normal(shape).astype(np.float32)
        feeds[spec.name] = value
    return feeds
