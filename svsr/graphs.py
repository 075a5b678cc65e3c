"""The four exported graphs and their tensors: the contract between export, engines and runtime.

Symbolic dims: ``batch`` (independent clips), ``height``/``width`` (LR size after padding to a
multiple of 4), ``height4``/``width4`` (4x). Everything here is plain data (torch-free).
"""

from __future__ import annotations

from dataclasses import dataclass

NUM_STEP_COEFFS = 6
# Order of the per-step scheduler coefficients fed to `denoise` (see svsr/scheduler_math.py):
STEP_COEFF_NAMES = ("x0_from_sample", "x0_from_output", "prev_from_x0", "prev_from_sample", "noise_std", "x0_clip")


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
        ),
        outputs=(_t("z_prev", "batch", 4, "height", "width"), _t("x0", "batch", 4, "height", "width")),
        summary="TCM (residuals scaled by tcm_scale; 0 = no TCM) + UNet + the DDPM step",
    ),
    "guide": GraphSpec(
        "guide",
        inputs=(_t("x0", "batch", 4, "height", "width"), _t("flow", "batch", 2, "height4", "width4")),
        outputs=(_t("guidance", "batch", 3, "height4", "width4"),),
        summary="VAE decode of x0 / scaling_factor (not clamped), then the warp with the original's quirk",
    ),
    "decode": GraphSpec(
        "decode",
        inputs=(_t("z", "batch", 4, "height", "width"),),
        outputs=(_t("rgb", "batch", 3, "height4", "width4"),),
        summary="final VAE decode, clamp(x / 2 + 0.5, 0, 1)",
    ),
}

GRAPH_NAMES = tuple(GRAPHS)


def concrete_shape(spec: TensorSpec, batch: int, height: int, width: int) -> tuple[int, ...]:
    """Resolve a tensor's symbolic dims for one LR size (already padded to a multiple of 4)."""
    dims = {"batch": batch, "height": height, "width": width, "height4": 4 * height, "width4": 4 * width}
    return tuple(dims[d] if isinstance(d, str) else d for d in spec.shape)
