"""Checking and padding a clip of input frames (torch-free, shared by the reference and the runtime)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from svsr.contract.errors import InputError
from svsr.contract.sizes import PaddingPlan, padding_plan

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Frame-image suffixes svsr reads (lower case): frame folders to upscale and calibration frames.

PNG and JPEG only: frame folders are written as PNG, Pillow reads both (8/16-bit PNG, EXIF
orientation) fully, and every error sentence about a frame folder names PNG/JPEG. BMP and WebP would
decode too but are refused so those sentences stay true; TIFF is refused because Pillow turns a
float TIFF into RGB by clipping (a 0..1 image comes out black) and reads only a multi-page TIFF's
first page.
"""

def validate_clip(frames: Sequence[np.ndarray]) -> PaddingPlan:
    """Check a clip of HxWx3 uint8 RGB frames of one size; return how it is padded."""
    if frames is None or len(frames) < 1:
        raise InputError("the clip has no frames; give at least one HxWx3 uint8 frame.")
    first = frames[0]
    for index, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray):
            raise InputError(f"frame {index} is a {type(frame).__name__}, not a numpy array; pass HxWx3 uint8 arrays.")
        if frame.dtype != np.uint8:
            raise InputError(f"frame {index} has dtype {frame.dtype}; convert frames to uint8 (0..255) first.")
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"frame {index} has shape {frame.shape}; frames must be HxWx3 RGB (drop alpha, expand grey).")
        if frame.shape != first.shape:
            raise InputError(
                f"frame {index} is {frame.shape[1]}x{frame.shape[0]} but frame 0 is {first.shape[1]}x{first.shape[0]}; "
                "all frames of a clip must have one size."
            )
    return padding_plan(first.shape[0], first.shape[1])


def pad_frame(frame: np.ndarray, plan: PaddingPlan) -> np.ndarray:
    """Edge-replicate a HxWx3 frame on the bottom and right up to the plan's padded size."""
    return np.pad(frame, ((0, plan.pad_bottom), (0, plan.pad_right), (0, 0)), mode="edge")
