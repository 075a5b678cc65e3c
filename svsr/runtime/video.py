"""Video and image-sequence input/output for the torch-free runtime.

Frames are HxWx3 ``uint8`` RGB numpy arrays. Videos go through PyAV, PNG/JPEG folders through
Pillow. Reading decodes ahead in a background thread; writing always goes to a hidden temporary
name next to the output and is renamed into place only when everything succeeded.
"""

from __future__ import annotations

import math
import os
import queue
import re
import secrets
import shutil
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from svsr.errors import InputError
from svsr.sizes import MIN_SIDE

__all__ = [
    "DEFAULT_FOLDER_FPS",
    "IMAGE_SUFFIXES",
    "MIN_SIDE",
    "VIDEO_SUFFIXES",
    "FrameReader",
    "FrameWriter",
    "VideoInfo",
    "natural_sort_key",
    "output_path_for",
    "probe",
    "rotate_upright",
]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_FOLDER_FPS = Fraction(24)

_ACCEPTS = "give an mp4/mkv/mov/webm file or a folder of PNG/JPEG frames"
_CONTAINER_FORMAT = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm", ".avi": "avi"}
# codec name -> (encoder, pixel format, containers that can hold it)
_CODECS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "h264": ("libx264", "yuv420p", (".mp4", ".mkv", ".mov", ".avi")),
    "h265": ("libx265", "yuv420p", (".mp4", ".mkv", ".mov")),
    "ffv1": ("ffv1", "bgr0", (".mkv", ".avi")),
    "vp9": ("libvpx-vp9", "yuv420p", (".webm", ".mkv", ".mp4")),
}
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


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    array = frame.to_ndarray(format="rgb24")
    rotation, matrix = _frame_orientation(frame)
    if matrix is None and rotation == 0:
        return array
    return rotate_upright(array, rotation, matrix)


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
    """EXIF orientation tag (1 = upright) read from the header only."""
    if image.format == "PNG":
        # Pillow's PNG getexif() decodes the whole image; the eXIf chunk before IDAT is already parsed.
        raw = image.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        exif.load(raw)
        return int(exif.get(_EXIF_ORIENTATION, 1))
    return int(image.getexif().get(_EXIF_ORIENTATION, 1))


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    if _exif_orientation(image) in (5, 6, 7, 8):  # these include a quarter turn
        return height, width
    return width, height


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return _oriented_size(image)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(
            f"{path} is not a readable PNG/JPEG image; re-export it or remove it from the folder."
        ) from exc


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
        container = av.open(str(path), "r")
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
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> Iterator[av.VideoFrame]:
    """Decode a stream; on a corrupt packet, first drain the frames the decoder still holds, then raise.

    Draining matters for codecs with reordering (h264 B-frames): without it the good frames just
    before the damage are lost. It only works with slice threading, so streams keep PyAV's default
    thread type instead of frame threading ("AUTO").
    """
    try:
        for packet in container.demux(stream):
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


class _Warning:
    """A warning from the decode thread, re-issued in the consumer's thread after the right frame."""

    def __init__(self, message: str) -> None:
        self.message = message


_END = object()


class _Decoder:
    """The background half of FrameReader.

    It deliberately holds no reference to the FrameReader, so an abandoned reader can be garbage
    collected and its ``__del__`` can stop this thread.
    """

    def __init__(self, path: Path, info: VideoInfo, start: int, count: int | None, queue_size: int) -> None:
        self.path = path
        self.info = info
        self.start = start
        self.count = count
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            source = self._folder_frames() if self.info.is_image_sequence else self._video_frames()
            for item in source:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the consumer
            self._put(exc)

    def _put(self, item: Any) -> bool:
        # A timeout loop instead of a blocking put, so close() can stop a producer facing a full queue.
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _folder_frames(self) -> Iterator[np.ndarray | _Warning]:
        files = _image_files(self.path)
        end = None if self.count is None else self.start + self.count
        expected = (self.info.width, self.info.height)
        for path in files[self.start : end]:
            if self.stop.is_set():
                return
            try:
                with Image.open(path) as image:
                    method = _EXIF_TRANSPOSE.get(_exif_orientation(image))
                    image.load()
                    array = _pil_to_rgb(image.transpose(method) if method is not None else image)
            except (UnidentifiedImageError, OSError) as exc:
                raise InputError(
                    f"{path} is not a readable PNG/JPEG image; re-export it or remove it from the folder."
                ) from exc
            if (array.shape[1], array.shape[0]) != expected:
                raise InputError(
                    f"{path} is {array.shape[1]}x{array.shape[0]} but the first frame is "
                    f"{expected[0]}x{expected[1]}; all frames in a folder must have the same size."
                )
            yield array

    def _video_frames(self) -> Iterator[np.ndarray | _Warning]:
        if self.count == 0:
            return
        with _open_container(self.path) as container:
            stream = _video_stream(container, self.path)
            expected, exact = _expected_frames(container, stream, self.info.fps)
            decoded = 0
            yielded = 0
            try:
                for frame in _decode_frames(container, stream):
                    if self.stop.is_set():
                        return
                    decoded += 1
                    if decoded <= self.start:
                        continue  # skipped frames are not converted to RGB: that is most of the cost
                    yield _to_rgb(frame)
                    yielded += 1
                    if self.count is not None and yielded >= self.count:
                        return
            except av.FFmpegError as exc:
                if decoded == 0:
                    raise _corrupt_before_first(self.path, exc) from exc
                yield _Warning(
                    f"{self.path} is corrupt after frame {decoded}: read {decoded} frames and stopped there "
                    f"({_ffmpeg_reason(exc)}); re-export the video to process the rest."
                )
                return
            if decoded == 0:
                raise _no_frames(self.path)
            # A cut-off file usually ends quietly instead of raising: compare with the container's count.
            if expected is not None and (decoded < expected if exact else decoded + 1 < expected):
                yield _Warning(
                    f"{self.path} ended early: read {decoded} of {'' if exact else 'about '}{expected} "
                    "frames, "
                    "so it is probably truncated; re-export or re-download it to process the rest."
                )


class FrameReader:
    """Iterate the frames of a video or an image folder as HxWx3 uint8 RGB arrays.

    Decoding runs ahead in a background thread into a bounded queue, so the consumer rarely waits
    on I/O; errors in that thread are re-raised in the consumer. ``start`` skips frames and
    ``count`` limits how many are yielded, so a long video can be processed in chunks. Use it as a
    context manager (or call ``close()``) when not iterating to the end.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        start: int = 0,
        count: int | None = None,
        queue_size: int = 8,
        fps: Fraction | int | float | None = None,
    ) -> None:
        if start < 0 or (count is not None and count < 0):
            raise ValueError(f"start and count must be >= 0, got start={start} count={count}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.path = Path(path)
        self.info: VideoInfo = probe(self.path, fps=fps)
        self.start = start
        self.count = count
        self._decoder = _Decoder(self.path, self.info, start, count, queue_size)
        self._thread: threading.Thread | None = None
        self._finished = False

    @property
    def num_frames(self) -> int | None:
        """How many frames this reader is expected to yield (an estimate for some videos)."""
        total = self.info.num_frames
        if total is None:
            return self.count
        remaining = max(0, total - self.start)
        return remaining if self.count is None else min(self.count, remaining)

    def __enter__(self) -> FrameReader:
        self._ensure_started()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        decoder = getattr(self, "_decoder", None)
        if decoder is not None:
            decoder.stop.set()

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        if self._finished:
            raise StopIteration
        self._ensure_started()
        while True:
            item = self._decoder.queue.get()
            if isinstance(item, np.ndarray):
                return item
            if isinstance(item, _Warning):
                warnings.warn(item.message, stacklevel=2)
                continue
            self._finished = True
            self._join()
            if isinstance(item, BaseException):
                raise item
            raise StopIteration

    def read(self, n: int) -> list[np.ndarray]:
        """The next ``n`` frames (fewer at the end of the input, an empty list after it)."""
        frames: list[np.ndarray] = []
        while len(frames) < n:
            frame = next(self, None)
            if frame is None:
                break
            frames.append(frame)
        return frames

    def close(self) -> None:
        """Stop the decode thread and release the file; safe to call more than once."""
        self._finished = True
        self._decoder.stop.set()
        self._join()
        while not self._decoder.queue.empty():  # drop decoded frames so their memory goes now
            self._decoder.queue.get_nowait()

    def _ensure_started(self) -> None:
        if self._thread is None and not self._finished:
            self._thread = threading.Thread(
                target=self._decoder.run, name=f"FrameReader({self.path.name})", daemon=True
            )
            self._thread.start()

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: keep the top 8 bits instead of letting convert("RGB") clip to white.
        grey = (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


class FrameWriter:
    """Write HxWx3 uint8 RGB frames to a video file or to a folder of PNG frames.

    A path with a video suffix (.mp4 .mkv .mov .webm .avi) is encoded with ``codec`` (``h264``,
    ``h265``, ``ffv1`` lossless, or ``vp9`` for .webm); any other path, or one ending in '/', becomes
    a folder of ``frame_000000.png`` files. The whole first audio stream of ``audio_from`` is copied
    without re-encoding (dropped with a warning if the container cannot hold it). Output goes to a
    hidden temporary name and is renamed into place only when the ``with`` block exits cleanly; on
    an exception the temporary output is deleted.
    """

    def __init__(
        self,
        output_path: str | os.PathLike[str],
        fps: Fraction | int | float,
        *,
        codec: str = "h264",
        crf: int = 18,
        audio_from: str | os.PathLike[str] | None = None,
        time_base: Fraction | None = None,
    ) -> None:
        raw = os.fspath(output_path)
        self.path = Path(raw)
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        if self.fps <= 0:
            raise InputError(
                f"fps must be positive but got {fps}; pass a frame rate such as 24 or 30000/1001."
            )
        self.codec = codec
        self.crf = crf
        self.time_base = time_base
        self.audio_from = Path(audio_from) if audio_from is not None else None
        suffix = self.path.suffix.lower()
        self.is_video = suffix in VIDEO_SUFFIXES and not raw.endswith(("/", os.sep))
        self.frames_written = 0
        self._tmp: Path | None = None
        self._size: tuple[int, int] | None = None
        self._container: Any = None
        self._stream: Any = None
        self._audio: _AudioCopier | None = None
        self._closed = False
        if self.audio_from is not None:
            _check_exists(self.audio_from)
        self._check_paths()
        if self.is_video:
            self._check_codec(suffix)

    def _check_paths(self) -> None:
        if self.audio_from is not None and self.path.resolve() == self.audio_from.resolve():
            raise InputError(
                f"the output {self.path} is the input file itself; choose another output name such as "
                f"{output_path_for(self.audio_from)}."
            )
        parent = self.path.resolve().parent
        if not parent.is_dir():
            raise InputError(
                f"the output folder {parent} does not exist or is not a folder; create it first."
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise InputError(
                f"the output folder {parent} is not writable; choose an output path in a writable folder."
            )
        if self.is_video and self.path.is_dir():
            raise InputError(f"{self.path} is an existing folder; choose a file name for the output video.")
        if not self.is_video:
            if self.path.exists() and not self.path.is_dir():
                raise InputError(
                    f"{self.path} is an existing file but a frame folder was requested; "
                    "choose a folder name or a video suffix such as .mp4."
                )
            if self.path.is_dir() and any(self.path.iterdir()):
                raise InputError(
                    f"the output folder {self.path} is not empty; remove it or choose another output path."
                )

    def _check_codec(self, suffix: str) -> None:
        if self.codec not in _CODECS:
            raise InputError(f"unknown codec {self.codec!r}; use one of {', '.join(_CODECS)}.")
        allowed = _CODECS[self.codec][2]
        if suffix not in allowed:
            hint = (
                "use codec='vp9' or an .mp4/.mkv output"
                if suffix == ".webm"
                else f"use a {'/'.join(allowed)} output"
            )
            if self.codec == "ffv1":
                hint = "use an .mkv or .avi output, or write a PNG folder"
            raise InputError(f"a {suffix} file cannot hold {self.codec} video; {hint}.")

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame; every frame must have the size of the first."""
        if self._closed:
            raise ValueError("FrameWriter is closed")
        if (
            not isinstance(frame, np.ndarray)
            or frame.dtype != np.uint8
            or frame.ndim != 3
            or frame.shape[2] != 3
        ):
            desc = (
                f"{frame.dtype} array of shape {frame.shape}"
                if isinstance(frame, np.ndarray)
                else type(frame).__name__
            )
            raise ValueError(f"frames must be HxWx3 uint8 RGB arrays, got a {desc}")
        height, width = frame.shape[:2]
        if self._size is None:
            self._start(width, height)
        elif (width, height) != self._size:
            raise InputError(
                f"frame {self.frames_written} is {width}x{height} but the first frame was "
                f"{self._size[0]}x{self._size[1]}; every frame of one output must have the same size."
            )
        if self.is_video:
            self._write_video(frame)
        else:
            self._write_png(frame)
        self.frames_written += 1

    def close(self) -> None:
        """Finish the output and move it to its final name."""
        if self._closed:
            return
        if self.frames_written == 0:
            self.abort()
            raise InputError(f"no frames were written to {self.path}; pass at least one frame to write().")
        try:
            if self.is_video:
                self._container.mux(self._stream.encode(None))
                if self._audio is not None:
                    self._audio.copy_until(None)
                    self._audio.close()
                    self._audio = None
                self._container.close()
                self._container = None
                os.replace(self._tmp, self.path)
            else:
                if self.path.is_dir():
                    self.path.rmdir()  # checked empty up front; rename cannot replace a folder
                os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Discard the temporary output; nothing is left on disk."""
        self._closed = True
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the output is being thrown away anyway
                pass
            self._container = None
        if self._tmp is not None:
            if self._tmp.is_dir():
                shutil.rmtree(self._tmp, ignore_errors=True)
            else:
                self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def _temp_name(self) -> Path:
        return self.path.parent / f".{self.path.name}.partial-{secrets.token_hex(4)}"

    def _start(self, width: int, height: int) -> None:
        if self.is_video:
            encoder, pix_fmt, _ = _CODECS[self.codec]
            if pix_fmt == "yuv420p" and (width % 2 or height % 2):
                raise InputError(
                    f"{width}x{height} frames have an odd side, which {self.codec} (yuv420) cannot encode; "
                    "use codec='ffv1' with an .mkv output or write a PNG folder."
                )
            if self.codec == "h265" and min(width, height) < 64:
                # libx265 4.2 in the PyAV 18.1 wheels corrupts the heap (the process aborts) on some
                # frames smaller than its 64 px coding tree unit, e.g. 48x40 or 40x40.
                raise InputError(
                    f"{width}x{height} frames are too small for h265, "
                    "which needs both sides to be at least 64 px; "
                    "use codec='h264' or codec='ffv1' for frames this small."
                )
        self._size = (width, height)
        self._tmp = self._temp_name()
        try:
            if self.is_video:
                self._open_video(width, height)
            else:
                self._warn_if_audio_is_lost()
                os.mkdir(self._tmp)
        except OSError as exc:
            self.abort()
            # Root passes the os.access check up front, so a read-only mount is only found here.
            raise InputError(
                f"cannot write to {self.path.resolve().parent} ({exc.strerror or exc}); "
                "choose an output path in a writable folder."
            ) from exc
        except BaseException:
            self.abort()
            raise

    def _warn_if_audio_is_lost(self) -> None:
        audio = self._audio_source()
        if audio is not None:
            audio.container.close()
            warnings.warn(
                f"a PNG folder cannot hold the audio of {self.audio_from}, so it is not copied; "
                "write a video file such as .mkv to keep it.",
                stacklevel=5,
            )

    def _open_video(self, width: int, height: int) -> None:
        audio = self._audio_source()
        self._container, self._stream, self._audio = self._open_output(width, height, audio)
        if self._container is None:  # the container refused the audio codec when writing its header
            self._container, self._stream, self._audio = self._open_output(width, height, None)

    def _audio_source(self) -> av.audio.stream.AudioStream | None:
        if self.audio_from is None or self.audio_from.is_dir():
            return None
        info_container = _open_container(self.audio_from)
        if not info_container.streams.audio:
            info_container.close()
            return None
        return info_container.streams.audio[0]

    def _drop_audio_message(self, audio: Any) -> str:
        return (
            f"{self.path.suffix} files cannot hold the {audio.codec_context.name} audio of "
            f"{self.audio_from}, "
            "so the output has no sound; use an .mkv output to keep it."
        )

    def _open_output(self, width: int, height: int, audio: Any) -> tuple[Any, Any, _AudioCopier | None]:
        encoder, pix_fmt, _ = _CODECS[self.codec]
        suffix = self.path.suffix.lower()
        container = av.open(str(self._tmp), "w", format=_CONTAINER_FORMAT[suffix])
        copier: _AudioCopier | None = None
        try:
            options: dict[str, str] = {}
            if self.codec in ("h264", "h265"):
                options["crf"] = str(self.crf)
            if self.codec == "h265":
                options["x265-params"] = "log-level=error"  # x265 prints its banner straight to stderr
            if self.codec == "vp9":
                options.update({"crf": str(self.crf), "b": "0", "row-mt": "1"})
            stream = container.add_stream(encoder, rate=self.fps, options=options)
            stream.width = width
            stream.height = height
            stream.pix_fmt = pix_fmt
            if pix_fmt == "yuv420p":
                # Tag BT.709 limited range so players need not guess; _write_video converts the same way.
                stream.codec_context.colorspace = 1
                stream.codec_context.color_primaries = 1
                stream.codec_context.color_trc = 1
                stream.codec_context.color_range = 1
            if self.codec == "h265" and suffix in (".mp4", ".mov"):
                stream.codec_tag = "hvc1"  # Apple players refuse the default hev1 tag
            if self.time_base is not None:
                stream.time_base = Fraction(self.time_base)
            if audio is not None:
                try:
                    out_audio = container.add_stream_from_template(audio)
                except ValueError:  # PyAV checks avformat_query_codec here
                    warnings.warn(self._drop_audio_message(audio), stacklevel=5)
                    audio.container.close()
                    audio = None
                else:
                    copier = _AudioCopier(audio, out_audio, container)
            try:
                container.start_encoding()
            except av.FFmpegError:
                if copier is None:
                    raise
                warnings.warn(self._drop_audio_message(audio), stacklevel=5)
                copier.close()
                container.close()
                return None, None, None
            return container, stream, copier
        except BaseException:
            if copier is not None:
                copier.close()
            container.close()
            raise

    def _write_video(self, frame: np.ndarray) -> None:
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if self._stream.pix_fmt == "yuv420p":
            video_frame = video_frame.reformat(
                format="yuv420p", dst_colorspace=1, dst_color_range=1, dst_color_trc=1, dst_color_primaries=1
            )
        video_frame.pts = self.frames_written
        video_frame.time_base = 1 / self.fps
        self._container.mux(self._stream.encode(video_frame))
        if self._audio is not None:
            self._audio.copy_until((self.frames_written + 1) / self.fps)

    def _write_png(self, frame: np.ndarray) -> None:
        # zlib level 3 is about 3x faster than Pillow's default 6 for a few percent larger files.
        Image.fromarray(frame, "RGB").save(
            self._tmp / f"frame_{self.frames_written:06d}.png", compress_level=3
        )


class _AudioCopier:
    """Remux the packets of one audio stream into the output, interleaved with the video."""

    def __init__(self, source: Any, target: Any, output: Any) -> None:
        self._source = source
        self._target = target
        self._output = output
        video = source.container.streams.video
        # The output video starts at 0, so shift the audio by where the source video started.
        self._shift = 0
        if video and video[0].start_time:
            self._shift = round(video[0].start_time * video[0].time_base / source.time_base)
        self._packets = source.container.demux(source)
        self._pending: Any = None

    def copy_until(self, seconds: Fraction | None) -> None:
        """Mux source audio packets that start before ``seconds`` (all remaining ones for None)."""
        while True:
            packet = self._pending if self._pending is not None else next(self._packets, None)
            self._pending = None
            if packet is None:
                return
            if packet.dts is None and packet.pts is None:
                continue  # demuxer flush packet
            pts = packet.pts if packet.pts is not None else packet.dts
            if seconds is not None and (pts - self._shift) * self._source.time_base >= seconds:
                self._pending = packet
                return
            if self._shift:
                packet.pts = None if packet.pts is None else packet.pts - self._shift
                packet.dts = None if packet.dts is None else packet.dts - self._shift
            packet.stream = self._target
            self._output.mux(packet)

    def close(self) -> None:
        self._source.container.close()
