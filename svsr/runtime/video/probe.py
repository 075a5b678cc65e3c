"""Finding out what an input is: a video file or a folder of PNG/JPEG frames (torch-free).

:func:`probe` reads sizes, frame count, rate, time base, audio and orientation without decoding
more than one frame, so a bad input fails before any GPU work. The helpers it needs are shared with
the reader (:mod:`svsr.runtime.video.read`) and the writer (:mod:`svsr.runtime.video.write`):
suffixes, orientation (display matrix, EXIF), folder listing, container opening, the stream origin
that frame times are measured from, and the error sentences. This module imports neither of them.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from svsr.contract.errors import InputError
from svsr.contract.frames import IMAGE_SUFFIXES
from svsr.contract.sizes import MIN_SIDE

__all__ = [
    "DEFAULT_FOLDER_FPS",
    "IMAGE_SUFFIXES",
    "MIN_SIDE",
    "VIDEO_SUFFIXES",
    "VideoInfo",
    "natural_sort_key",
    "output_path_for",
    "probe",
    "rotate_upright",
]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi")
DEFAULT_FOLDER_FPS = Fraction(24)

_ACCEPTS = "give an mp4/mkv/mov/webm file or a folder of PNG/JPEG frames"
_DISPLAYMATRIX = "DISPLAYMATRIX"


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


def natural_sort_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders embedded numbers by value, so ``frame2`` sorts before ``frame10``."""
    parts = re.split(r"(\d+)", name)
    # re.split alternates text and digit runs, so positions always compare str with str, int with int.
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts))


def output_path_for(input_path: str | os.PathLike[str]) -> Path:
    """Default output name next to the input.

    ``clip.mp4`` -> ``clip_x4.mp4``, folder ``frames/`` -> ``frames_x4`` (a PNG folder).
    """
    path = Path(input_path)
    if path.is_dir() or path.suffix.lower() not in VIDEO_SUFFIXES:
        return path.with_name(f"{path.name}_x4")
    return path.with_name(f"{path.stem}_x4{path.suffix}")


def rotate_upright(
    frame: np.ndarray, rotation: int = 0, display_matrix: Sequence[int] | None = None
) -> np.ndarray:
    """Turn a decoded HxWxC frame upright.

    ``rotation`` is counter-clockwise degrees as in PyAV's ``VideoFrame.rotation``.
    ``display_matrix`` (FFmpeg's 9 int32 display matrix) takes precedence when given, because only
    it tells mirrored files apart; it is interpreted exactly like the ``ffmpeg`` CLI's autorotate.
    """
    if display_matrix is None:
        k = round(rotation / 90) % 4
        out = np.rot90(frame, k) if k else frame
        return np.ascontiguousarray(out)
    m = [int(v) for v in display_matrix]
    sx, sy = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if sx == 0 or sy == 0:
        return frame
    # FFmpeg's get_rotation(): theta = -av_display_rotation_get(matrix), normalised to [0, 360).
    theta = round(math.degrees(math.atan2(m[1] / sy, m[0] / sx)))
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        # transpose=cclock_flip is a plain transpose; transpose=clock is a clockwise turn.
        out = frame.swapaxes(0, 1) if m[3] > 0 else np.rot90(frame, -1)
    elif abs(theta - 180) < 1:
        out = frame
        if m[0] < 0:
            out = out[:, ::-1]
        if m[4] < 0:
            out = out[::-1]
    elif abs(theta - 270) < 1:
        # transpose=clock_flip is the anti-transpose; transpose=cclock a counter-clockwise turn.
        out = np.rot90(frame, 2).swapaxes(0, 1) if m[3] < 0 else np.rot90(frame, 1)
    elif abs(theta) < 1 and m[4] < 0:
        out = frame[::-1]
    else:
        out = frame  # angles that are not right-angle turns are left as decoded
    return np.ascontiguousarray(out)


def _frame_orientation(frame: av.VideoFrame) -> tuple[int, list[int] | None]:
    """Counter-clockwise rotation and raw display matrix of a decoded frame, if it has one."""
    side = frame.side_data.get(_DISPLAYMATRIX)
    matrix = None
    if side is not None:
        raw = bytes(side)
        if len(raw) >= 36:
            matrix = np.frombuffer(raw[:36], dtype="<i4").tolist()
    return int(frame.rotation) % 360, matrix


def _upright_size(rotation: int, matrix: list[int] | None, width: int, height: int) -> tuple[int, int]:
    """Width and height after orientation (a right-angle turn or a transpose swaps them)."""
    probe_shape = rotate_upright(np.empty((height, width, 0), np.uint8), rotation, matrix).shape
    return probe_shape[1], probe_shape[0]


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path, or {_ACCEPTS}.")


def _image_files(folder: Path) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise InputError(f"{folder} cannot be listed ({exc.strerror}); check its permissions.") from exc
    files = [
        p
        for p in entries
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    ]
    if not files:
        raise InputError(
            f"{folder} contains no PNG/JPEG frames; "
            "put frames named like frame_0001.png in it or give a video file."
        )
    return sorted(files, key=lambda p: natural_sort_key(p.name))


_EXIF_ORIENTATION = 0x0112
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _exif_orientation(image: Image.Image) -> int:
    """EXIF orientation tag (1 = upright) read from the header only.

    A damaged EXIF block, or an orientation that is not one of the eight defined values, counts as
    upright: the orientation is a hint, and the pixels themselves may still be fine.
    """
    try:
        if image.format == "PNG":
            # Pillow's PNG getexif() decodes the whole image; the eXIf chunk before IDAT is already parsed.
            raw = image.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = image.getexif()
        value = exif.get(_EXIF_ORIENTATION, 1)
    except _IMAGE_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    if _exif_orientation(image) in (5, 6, 7, 8):  # these include a quarter turn
        return height, width
    return width, height


# What Pillow raises for damaged files: the exceptions its own fuzz tests accept (OSError, which
# includes UnidentifiedImageError and "image file is truncated", SyntaxError from chunk checks,
# ValueError, EOFError, NotImplementedError, OverflowError, DecompressionBombError for absurd sizes),
# plus struct.error and IndexError from short header fields.
_IMAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    NotImplementedError,
    OverflowError,
    IndexError,
    struct.error,
    Image.DecompressionBombError,
)


def _unreadable_image(path: Path, exc: BaseException | None = None) -> InputError:
    if isinstance(exc, Image.DecompressionBombError):
        return InputError(
            f"{path} claims an image size far beyond any video frame (Pillow refuses it as a possible "
            "decompression bomb), so it is damaged; re-export it or remove it from the folder."
        )
    return InputError(f"{path} is not a readable PNG/JPEG image; re-export it or remove it from the folder.")


@contextlib.contextmanager
def _quiet_pillow() -> Iterator[None]:
    """Silence Pillow's own warnings while a frame is opened and read.

    A damaged frame makes Pillow warn (about EXIF tags pointing past the end of the file, or a
    claimed size past its decompression-bomb warning limit) before the frame is refused or its
    orientation ignored; the user gets svsr's one sentence, not Pillow's warnings. (The warning
    filters are process-wide, so a warning another thread issues from Pillow meanwhile is lost too.)
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"PIL\.")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with _quiet_pillow(), Image.open(path) as image:
            return _oriented_size(image)
    except _IMAGE_ERRORS as exc:
        raise _unreadable_image(path, exc) from exc


def _check_min_side(path: Path, width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE:
        raise InputError(
            f"{path} has {width}x{height} frames but both sides must be at least {MIN_SIDE} px; "
            f"resize or pad the input to at least {MIN_SIDE}x{MIN_SIDE}."
        )


def _probe_folder(folder: Path, fps: Fraction | int | float | None) -> VideoInfo:
    files = _image_files(folder)
    width, height = _image_size(files[0])
    # Checking every header up front (about 0.1 ms a file) fails before any GPU work is spent.
    for path in files[1:]:
        size = _image_size(path)
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


def _open_container(path: Path) -> av.container.InputContainer:
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes); re-export or re-download it.")
    try:
        # A damaged header can hold metadata that is not UTF-8: replace those bytes instead of raising.
        container = av.open(str(path), "r", metadata_errors="replace")
    except av.FFmpegError as exc:
        raise InputError(
            f"{path} is not a video file PyAV can decode (it may be corrupt or truncated); {_ACCEPTS}."
        ) from exc
    # FFmpeg's "tty" demuxer renders any text file as video, which is never what the user meant.
    if container.format.name in ("tty", "ansi"):
        container.close()
        raise InputError(f"{path} is not a video file PyAV can decode; {_ACCEPTS}.")
    return container


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise InputError(
            f"{path} has no video stream (it contains {', '.join(kinds)}); give a file that contains video."
        )
    return container.streams.video[0]


def _video_origin(stream: av.video.stream.VideoStream) -> int:
    """Where time 0 is, in the video stream's time base: the stream's start time.

    FFmpeg sets a stream's start time to its earliest presentation timestamp, so the first frame is
    at time 0 in practice; a container that reports none gives 0 (timestamps are used as stored).
    FrameReader's frame times and FrameWriter's audio copy both measure from this same point, which
    is what keeps copied audio aligned with rewritten video.
    """
    return int(stream.start_time) if stream.start_time is not None else 0


def _stream_fps(stream: av.video.stream.VideoStream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return DEFAULT_FOLDER_FPS


def _expected_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, fps: Fraction
) -> tuple[int | None, bool]:
    """Frame count and whether it is exact (from the container) rather than estimated from a duration."""
    if stream.frames:
        return int(stream.frames), True
    if stream.duration and stream.time_base:
        return round(stream.duration * stream.time_base * fps), False
    if container.duration:
        return round(Fraction(container.duration, av.time_base) * fps), False
    return None, False


def _decode_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    on_packet: Callable[[av.Packet], None] | None = None,
) -> Iterator[av.VideoFrame]:
    """Decode a stream; on a corrupt packet, first drain the frames the decoder still holds, then raise.

    Draining matters for codecs with reordering (h264 B-frames): without it the good frames just
    before the damage are lost. It only works with slice threading, so streams keep PyAV's default
    thread type instead of frame threading ("AUTO"). ``on_packet`` sees each packet before it is decoded.
    """
    try:
        for packet in container.demux(stream):
            if on_packet is not None:
                on_packet(packet)
            yield from stream.decode(packet)
        return
    except av.FFmpegError as exc:
        error = exc
    try:
        yield from stream.decode(None)
    except av.FFmpegError:
        pass
    raise error


def _ffmpeg_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _corrupt_before_first(path: Path, exc: BaseException) -> InputError:
    return InputError(
        f"{path} is corrupt or truncated: decoding failed before the first frame ({_ffmpeg_reason(exc)}); "
        "re-export or re-download it."
    )


def _no_frames(path: Path) -> InputError:
    return InputError(f"{path} has a video stream but no decodable frames; re-export the video.")


def _probe_video(path: Path) -> VideoInfo:
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        fps = _stream_fps(stream)
        num_frames, _ = _expected_frames(container, stream, fps)
        # Rotation lives in per-frame side data in PyAV 18, and decoding one frame also proves the
        # file is decodable before any GPU work is scheduled.
        try:
            first = next(_decode_frames(container, stream), None)
        except av.FFmpegError as exc:
            raise _corrupt_before_first(path, exc) from exc
        if first is None:
            raise _no_frames(path)
        rotation, matrix = _frame_orientation(first)
        width, height = _upright_size(rotation, matrix, first.width, first.height)
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


def probe(path: str | os.PathLike[str], *, fps: Fraction | int | float | None = None) -> VideoInfo:
    """Describe a video file or a folder of PNG/JPEG frames; raise InputError if it cannot be read.

    ``fps`` sets the frame rate of an image folder (default 24); video files keep their own rate.
    """
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        return _probe_folder(path, fps)
    return _probe_video(path)
