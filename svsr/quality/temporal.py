"""Temporal metrics through the build folder's own ``flow`` graph (ONNX Runtime, no torch).

The flow graph takes two LR frames in [-1, 1] and returns, at 4x their size, the flow that maps the
pixels of ``frame`` onto ``previous`` (x then y, in pixels). Output and reference frames are at the
4x size, so :class:`GraphFlow` first shrinks them to LR size with Pillow's bicubic filter (the x4
bicubic degradation the LR inputs are made with) and pads them as the sampler does; the flow then
comes back at the frames' own size. Frames whose sides are not multiples of 4, or under 128 px, have
no LR size the graph accepts.

- tOF of frame t (t >= 1): mean over pixels and both components of |F(out_t, out_t-1) - F(ref_t, ref_t-1)|,
  in output pixels (TecoGAN's tOF, with the model's RAFT in place of Farneback); 0 when the motion matches.
- warping error of frame t (t >= 1): mean squared difference, RGB in [0, 1], between out_t and out_t-1
  warped onto frame t by the reference's flow F(ref_t, ref_t-1) (bilinear, pixel centres at integer
  coordinates), over the pixels whose source lies inside the frame (Lai et al., without occlusion masks).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from svsr.contract.errors import InputError
from svsr.contract.manifest import load_manifest
from svsr.contract.sizes import SCALE, padding_plan
from svsr.runtime.sampling import OrtBackend, to_model_input

__all__ = ["FlowEstimator", "GraphFlow", "TEMPORAL_CONVENTION", "flow_difference", "resize_bicubic", "warp", "warping_error"]

TEMPORAL_CONVENTION = (
    "tOF: mean |flow(out_t -> out_t-1) - flow(ref_t -> ref_t-1)| in output pixels; warping error: MSE (RGB in [0, 1]) of out_t "
    "against out_t-1 warped by the reference's flow; flows from the build's flow graph on the frames shrunk 4x (Pillow bicubic)"
)

FlowEstimator = Callable[[Sequence[tuple[np.ndarray, np.ndarray]]], list[np.ndarray]]
"""(frame, previous) uint8 HxWx3 pairs -> one (2, H, W) float32 flow per pair, mapping frame onto previous."""


def resize_bicubic(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 HxWx3 -> ``height`` x ``width`` x 3 with Pillow's bicubic filter (antialiased when shrinking)."""
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BICUBIC))


class GraphFlow:
    """A :data:`FlowEstimator` running ``build_dir``'s float32 ``flow`` graph on the CPU."""

    def __init__(self, build_dir: str | os.PathLike[str], threads: int = 0) -> None:
        self.build_dir = Path(build_dir)
        self._backend = OrtBackend(self.build_dir, load_manifest(self.build_dir), device="cpu", graphs=("flow",), threads=threads)

    def __call__(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        height, width = pairs[0][0].shape[:2]
        if height % SCALE or width % SCALE:
            raise InputError(f"frames of {width}x{height} px have no LR size: the flow graph needs sides that are multiples of {SCALE}.")
        lr_height, lr_width = height // SCALE, width // SCALE
        plan = padding_plan(lr_height, lr_width)

        def lr_batch(index: int) -> np.ndarray:
            return np.concatenate([to_model_input(resize_bicubic(pair[index], lr_width, lr_height), plan) for pair in pairs])

        frames, previous = lr_batch(0), lr_batch(1)
        inputs = {"frame": self._backend.allocate("frame", frames.shape), "previous": self._backend.allocate("previous", frames.shape)}
        flow = self._backend.allocate("flow", (len(pairs), 2, SCALE * plan.padded_height, SCALE * plan.padded_width))
        self._backend.upload(inputs["frame"], frames)
        self._backend.upload(inputs["previous"], previous)
        self._backend.run("flow", inputs, {"flow": flow})
        return list(self._backend.download(flow)[:, :, :height, :width].copy())

    def close(self) -> None:
        self._backend.close()


def flow_difference(output_flow: np.ndarray, reference_flow: np.ndarray) -> float:
    """tOF of one frame: the mean absolute difference of two (2, H, W) flows, in pixels."""
    return float(np.mean(np.abs(output_flow.astype(np.float64) - reference_flow.astype(np.float64))))


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample HxWxC ``image`` at (x + flow_x, y + flow_y), bilinearly; also the mask of in-frame samples."""
    height, width = image.shape[:2]
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = grid_x + flow[0], grid_y + flow[1]
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    x, y = np.clip(x, 0, width - 1), np.clip(y, 0, height - 1)
    x0, y0 = np.minimum(np.floor(x).astype(int), width - 2), np.minimum(np.floor(y).astype(int), height - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    pixels = image.astype(np.float64)
    top = pixels[y0, x0] * (1 - fx) + pixels[y0, x0 + 1] * fx
    bottom = pixels[y0 + 1, x0] * (1 - fx) + pixels[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy, inside


def warping_error(output: np.ndarray, previous_output: np.ndarray, reference_flow: np.ndarray) -> float:
    """Mean squared error (RGB in [0, 1]) of ``output`` against ``previous_output`` warped by the reference's flow."""
    warped, inside = warp(previous_output, reference_flow)
    if not inside.any():
        return float("nan")
    diff = (output.astype(np.float64) - warped) / 255.0
    return float(np.mean(diff[inside] ** 2))
