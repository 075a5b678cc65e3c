"""Side-by-side comparison videos: the bicubic upscale of the input next to a super-resolved output.

``make demo`` writes one (build/demo/compare.mp4) so a newcomer sees what svsr adds over plain
interpolation. Each half is labelled in a caption bar above it. Bicubic here is Pillow's (antialiased,
clamped to 8 bits), the picture a video player shows when it scales the input up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from svsr.contract.errors import InputError
from svsr.runtime.video.read import FrameReader
from svsr.runtime.video.write import FrameWriter

__all__ = ["CAPTION_HEIGHT", "bicubic_upscale", "side_by_side", "write_comparison"]

CAPTION_HEIGHT = 16  # even, so the stacked frame keeps the even sizes 4:2:0 video needs
_GAP = 4  # a dark gutter between the halves (even for the same reason)


def bicubic_upscale(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """An HxWx3 uint8 frame resized to height x width with Pillow's bicubic filter."""
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BICUBIC))


def _caption(text: str, width: int) -> np.ndarray:
    bar = Image.new("RGB", (width, CAPTION_HEIGHT), (0, 0, 0))
    draw = ImageDraw.Draw(bar)
    font = ImageFont.load_default()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(((width - (right - left)) // 2 - left, (CAPTION_HEIGHT - (bottom - top)) // 2 - top), text, fill=(255, 255, 255), font=font)
    return np.asarray(bar)


def side_by_side(left: np.ndarray, right: np.ndarray, labels: Sequence[str] = ("bicubic", "svsr")) -> np.ndarray:
    """One frame: ``left`` | ``right`` (same size, HxWx3 uint8), each under its caption."""
    if left.shape != right.shape or left.ndim != 3 or left.shape[2] != 3:
        raise InputError(
            f"frames to compare must be HxWx3 of one size, got {left.shape} and {right.shape}; pass the input's upscale and its output."
        )
    width = left.shape[1]
    halves = [np.concatenate([_caption(label, width), frame]) for label, frame in zip(labels, (left, right))]
    gutter = np.zeros((halves[0].shape[0], _GAP, 3), np.uint8)
    return np.concatenate([halves[0], gutter, halves[1]], axis=1)


def comparison_frames(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray],
                      labels: Sequence[str] = ("bicubic", "svsr")) -> Iterator[np.ndarray]:
    """Side-by-side frames of each input's bicubic upscale (to its output's size) and that output."""
    sentinel = object()
    input_iter, output_iter = iter(inputs), iter(outputs)
    while True:
        lr, sr = next(input_iter, sentinel), next(output_iter, sentinel)
        if lr is sentinel and sr is sentinel:
            return
        if lr is sentinel or sr is sentinel:
            raise InputError("the input and the upscaled video have different frame counts; compare an output with its own input.")
        yield side_by_side(bicubic_upscale(lr, sr.shape[0], sr.shape[1]), sr, labels)


def write_comparison(input_path: str | os.PathLike[str], upscaled_path: str | os.PathLike[str],
                     output_path: str | os.PathLike[str], labels: Sequence[str] = ("bicubic", "svsr")) -> Path:
    """Write ``output_path`` (a video, or a PNG folder): bicubic of ``input_path`` | ``upscaled_path``, at the output's rate."""
    with FrameReader(input_path) as lr_reader, FrameReader(upscaled_path) as sr_reader:
        with FrameWriter(output_path, sr_reader.info.fps) as writer:
            for frame in comparison_frames(lr_reader, sr_reader, labels):
                writer.write(frame)
    return Path(output_path)
