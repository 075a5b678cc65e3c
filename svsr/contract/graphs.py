"""The six exported graphs and their tensors: the contract between export, engines and runtime.

Symbolic dims: ``batch`` (independent clips), ``height``/``width`` (LR size after padding to a
multiple of 4, or a latent tile's size), ``height4``/``width4`` (4x), ``channels`` (the blend graph
serves latents and pixels alike). Everything here is plain data (torch-free).

Schema 2 (this layout) split the old ``guide`` graph into ``guide_decode`` (tileable) and ``warp``
(always the whole frame: flows carry texture across tile borders), added ``blend`` (one tile's
weighted contribution, MultiDiffusion) and gave ``denoise`` the frame's previous x0 and two more
step coefficients, so one graph serves the DDPM, DDIM and DPM-Solver++ 2M schedules.
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


GRAPHS: dict[str, GraphSpec] = {
    "flow": GraphSpec(
        "flow",
        inputs=(_t("frame", "batch", 3, "height", "width"), _t("previous", "batch", 3, "height", "width")),
        outputs=(_t("flow", "batch", 2, "height4", "width4"),),
        summary="bicubic x4 of both LR frames, RAFT(frame, previous), last refinement: maps pixels of frame onto previous",
    ),
    "denoise": GraphSpec(
        "denoise",
        inputs=(
            _t("z", "batch", 4, "height", "width"),
            _t("lr", "batch", 3, "height", "width"),
            _t("guidance", "batch", 3, "height4", "width4"),
            _t("tcm_scale", 1),
            _t("timestep", 1),
            _t("step_coeffs", NUM_STEP_COEFFS),
            _t("noise", "batch", 4, "height", "width"),
            _t("x0_history", "batch", 4, "height", "width"),
        ),
        outputs=(_t("z_prev", "batch", 4, "height", "width"), _t("x0", "batch", 4, "height", "width")),
        summary="TCM (residuals scaled by tcm_scale; 0 = no TCM) + UNet + one scheduler step (generalized coefficients)",
    ),
    "guide_decode": GraphSpec(
        "guide_decode",
        inputs=(_t("x0", "batch", 4, "height", "width"),),
        outputs=(_t("image", "batch", 3, "height4", "width4"),),
        summary="VAE decode of x0 / scaling_factor, not clamped (the guidance before its warp; runs per tile)",
    ),
    "warp": GraphSpec(
        "warp",
        inputs=(_t("image", "batch", 3, "height4", "width4"), _t("flow", "batch", 2, "height4", "width4")),
        outputs=(_t("guidance", "batch", 3, "height4", "width4"),),
        summary="the warp with the original's quirk (align_corners mismatch), on the whole frame",
    ),
    "decode": GraphSpec(
        "decode",
        inputs=(_t("z", "batch", 4, "height", "width"),),
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

GRAPH_NAMES = tuple(GRAPHS)


def concrete_shape(spec: TensorSpec, batch: int, height: int, width: int, channels: int = 4) -> tuple[int, ...]:
    """Resolve a tensor's symbolic dims for one LR size (already padded to a multiple of 4) or tile."""
    dims = {"batch": batch, "height": height, "width": width, "height4": 4 * height, "width4": 4 * width, "channels": channels}
    return tuple(dims[d] if isinstance(d, str) else d for d in spec.shape)


# representative per-step scheduler coefficients (a mid-schedule v-prediction step) for sample inputs
SAMPLE_STEP_COEFFS = (0.73, -0.68, 0.52, 0.47, 0.11, 3.0e38, 0.05, -0.04)


def sample_graph_inputs(name: str, height: int, width: int, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic, plausible float32 inputs of graph ``name`` (tracing, parity checks, benchmarks).

    LR frames uniform in [-1, 1], flows ~ 3 px, latents and noise standard normal, the TCM on, a
    mid-schedule timestep and step coefficients.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in GRAPHS[name].inputs:
        shape = concrete_shape(spec, batch, height, width)
        if spec.name == "tcm_scale":
            value = np.ones(shape, np.float32)
        elif spec.name == "timestep":
            value = np.full(shape, 501.0, np.float32)
        elif spec.name == "step_coeffs":
            value = np.array(SAMPLE_STEP_COEFFS, np.float32)
        elif spec.name in ("frame", "previous", "lr"):
            value = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
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
