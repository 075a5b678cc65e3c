"""Finding out what an input is: a video file or a folder of PNG/JPEG frames (torch-free).

:func:`probe` reads sizes, frame count, rate, time base, audio and orientation without decoding
more than one frame, so a bad input fails before any GPU work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from svsr.contract.errors import InputError
from svsr.contract.sizes import MIN_SIDE
from svsr.runtime.video.containers import (
    check_input_exists,
    corrupt_before_first,
    decode_frames,
    expected_frames,
    no_frames,
    open_container,
    video_stream,
)
from svsr.runtime.video.images import image_files, image_size
from svsr.runtime.video.orientation import frame_orientation, upright_size

__all__ = ["DEFAULT_FOLDER_FPS", "MIN_SIDE", "VideoInfo", "probe"]

DEFAULT_FOLDER_FPS = Fraction(24)
"""The rate of a frame folder when none is given, and of a video stream that states none."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found out about a video file or a folder of frames."""

    width: int
    """Frame width after applying the rotation metadata."""
    height: int
    """Frame height after applying the rotation metadata."""
    num_frames: int | None
    """Frame count from the container, else estimated from the duration; None if unknown."""
    fps: Fraction
    time_base: Fraction | None
    """Time base of the video stream; None for image folders."""
    has_audio: bool
    rotation: int
    """Counter-clockwise turn in degrees (0, 90, 180, 270) from the display matrix, as PyAV's
    ``VideoFrame.rotation``; FrameReader applies it (and any mirroring) so frames come out upright."""
    is_image_sequence: bool


def probe(path: str | os.PathLike[str], *, fps: Fraction | int | float | None = None) -> VideoInfo:
    """Describe a video file or a folder of PNG/JPEG frames; raise InputError if it cannot be read.

    ``fps`` sets the frame rate of an image folder (default 24); video files keep their own rate.
    """
    path = Path(path)
    check_input_exists(path)
    if path.is_dir():
        return _probe_folder(path, fps)
    return _probe_video(path)


def _check_min_side(path: Path, width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE:
        raise InputError(
            f"{path} has {width}x{height} frames but both sides must be at least {MIN_SIDE} px; "
            f"resize or pad the input to at least {MIN_SIDE}x{MIN_SIDE}."
        )


def _probe_folder(folder: Path, fps: Fraction | int | float | None) -> VideoInfo:
    files = image_files(folder)
    width, height = image_size(files[0])
    # Checking every header up front (about 0.1 ms a file) fails before any GPU work is spent.
    for path in files[1:]:
        size = image_size(path)
        if size != (width, height):
            raise InputError(
                f"{path} is {size[0]}x{size[1]} but the first frame {files[0].name} is {width}x{height}; "
                "all frames in a folder must have the same size."
            )
    _check_min_side(folder, width, height)
    rate = Fraction(fps).limit_denominator(1_000_000) if fps is not None else DEFAULT_FOLDER_FPS
    if rate <= 0:
        raise InputError(f"fps must be positive but got {fps}; pass a frame rate such as 24 or 30000/1001.")
    return VideoInfo(
        width=width,
        height=height,
        num_frames=len(files),
        fps=rate,
        time_base=None,
        has_audio=False,
        rotation=0,
        is_image_sequence=True,
    )


def _stream_fps(stream: av.video.stream.VideoStream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return DEFAULT_FOLDER_FPS


def _probe_video(path: Path) -> VideoInfo:
    with open_container(path) as container:
        stream = video_stream(container, path)
        fps = _stream_fps(stream)
        num_frames, _ = expected_frames(container, stream, fps)
        # Rotation lives in per-frame side data in PyAV 18, and decoding one frame also proves the
        # file is decodable before any GPU work is scheduled.
        try:
            first = next(decode_frames(container, stream), None)
        except av.FFmpegError as exc:
            raise corrupt_before_first(path, exc) from exc
        if first is None:
            raise no_frames(path)
        rotation, matrix = frame_orientation(first)
        width, height = upright_size(rotation, matrix, first.width, first.height)
        _check_min_side(path, width, height)
        return VideoInfo(
            width=width,
            height=height,
            num_frames=num_frames,
            fps=fps,
            time_base=Fraction(stream.time_base) if stream.time_base else None,
            has_audio=bool(container.streams.audio),
            rotation=rotation,
            is_image_sequence=False,
        )
