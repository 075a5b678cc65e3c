"""Writing frames: FrameWriter encodes a video file (copying the input's audio) or a PNG folder.

Frames are HxWx3 ``uint8`` RGB numpy arrays. Output goes to a hidden temporary name next to the
target and is renamed into place only when everything succeeded. Frames are written at a constant
rate, or at the presentation times passed with them (variable frame rate; see
:meth:`FrameWriter.write`). ``segment=True`` writes one shot of a longer output, to be joined later
without re-encoding by :func:`svsr.runtime.video.stitch.stitch_segments`. Codecs and containers come
from the one codec table (:mod:`svsr.contract.codecs`); output checks and names from
:mod:`svsr.runtime.video.outputs`, the audio copy from :mod:`svsr.runtime.video.audio`.
"""

from __future__ import annotations

import os
import shutil
import warnings
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
from PIL import Image

from svsr.contract.codecs import CODECS, CONTAINERS, DEFAULT_CODEC, DEFAULT_CRF, TIMED_SUFFIXES, check_codec
from svsr.contract.errors import InputError
from svsr.runtime.video.audio import (
    AudioCopier,
    add_audio,
    open_audio_source,
    start_with_audio,
    warn_audio_not_in_folder,
)
from svsr.runtime.video.containers import check_input_exists
from svsr.runtime.video.outputs import cannot_write, check_output, is_video_path, temp_name

__all__ = ["FrameWriter"]

# Time base for timed output when the caller gives none: the MPEG 90 kHz clock, a whole number of
# ticks per frame at 24, 25, 30, 50, 60 and 30000/1001 fps.
_DEFAULT_TIMED_TIME_BASE = Fraction(1, 90000)


def _timed_time_base(suffix: str, requested: Fraction | None) -> Fraction:
    """The time base the muxer of ``suffix`` will keep for a video stream asked to use ``requested``.

    Matroska and WebM store milliseconds whatever is asked. MP4 and MOV keep the denominator,
    doubled until it is at least 10000 (FFmpeg's movenc ``timescale``). Encoding in this time base
    means the muxer never rescales, so the rounding rule of :meth:`FrameWriter.write` holds exactly.
    """
    if suffix in (".mkv", ".webm"):
        return Fraction(1, 1000)
    den = (requested if requested is not None else _DEFAULT_TIMED_TIME_BASE).denominator
    while den < 10000:
        den *= 2
    return Fraction(1, den)


class FrameWriter:
    """Write HxWx3 uint8 RGB frames to a video file or to a folder of PNG frames.

    A path with a video suffix (.mp4 .mkv .mov .webm .avi) is encoded with ``codec`` (``h264``,
    ``h265``, ``ffv1`` lossless, or ``vp9`` for .webm); any other path, or one ending in '/', becomes
    a folder of ``frame_000000.png`` files. The whole first audio stream of ``audio_from`` is copied
    without re-encoding (dropped with a warning if the container cannot hold it). Output goes to a
    hidden temporary name and is renamed into place only when the ``with`` block exits cleanly; on
    an exception the temporary output is deleted.

    Frames are written at the constant rate ``fps`` (frame ``i`` at ``i / fps``; ``time_base``, if
    given, is the stream's time base), unless they come with presentation times: see :meth:`write`.

    ``segment=True`` writes one shot of a longer output, to be joined with the others by
    :func:`svsr.runtime.video.stitch.stitch_segments` without re-encoding. A segment holds no audio
    (``audio_from`` must be None; the stitch copies it) and is encoded as any output, B-frames
    included: every encoder here starts a stream on a keyframe that nothing before it refers to
    (an IDR frame; a VP9 or FFV1 keyframe), which is all a joint needs. Pass each frame's absolute
    time (its time in the whole input) and the same ``codec``, ``crf`` and ``time_base`` for every
    segment of one output. AVI and PNG segments hold no times: they are joined in order, and the
    drift warning of :meth:`close` measures from the segment's first time.
    """

    def __init__(
        self,
        output_path: str | os.PathLike[str],
        fps: Fraction | int | float,
        *,
        codec: str = DEFAULT_CODEC,
        crf: int = DEFAULT_CRF,
        audio_from: str | os.PathLike[str] | None = None,
        time_base: Fraction | None = None,
        segment: bool = False,
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
        self.segment = segment
        if segment and audio_from is not None:
            raise ValueError(
                "a segment holds no audio (stitch_segments copies it from the input); pass audio_from=None"
            )
        self.audio_from = Path(audio_from) if audio_from is not None else None
        suffix = self.path.suffix.lower()
        self.is_video = is_video_path(raw)
        self.frames_written = 0
        self.timed: bool | None = None
        """Whether frames carry their own times; fixed by the first :meth:`write`."""
        self._tick: Fraction | None = None  # output stream time base of timed video output
        self._last_pts: int | None = None  # in ticks
        self._last_time: Fraction | None = None
        self._max_drift = Fraction(0)  # untimed containers: worst |time - i / fps| seen
        self._first_time: Fraction | None = None  # untimed containers: where frame 0 is meant to be
        self._tmp: Path | None = None
        self._size: tuple[int, int] | None = None
        self._container: Any = None
        self._stream: Any = None
        self._audio: AudioCopier | None = None
        self._closed = False
        if self.audio_from is not None:
            check_input_exists(self.audio_from)
        check_output(self.path, self.is_video, self.audio_from)
        if self.is_video:
            check_codec(codec, crf, suffix)

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

    def write(self, frame: np.ndarray, time: Fraction | int | float | None = None) -> None:
        """Append one HxWx3 uint8 RGB frame; every frame must have the size of the first.

        ``time`` is the frame's presentation time in seconds, measured like
        :meth:`FrameReader.timed <svsr.runtime.video.read.FrameReader.timed>` measures it (from the
        start of the input's video stream, the same origin the audio copy uses), so passing the
        reader's times through gives output frame times equal to the input's and keeps copied audio
        in sync. Whether frames are timed is fixed by the first call: without a time there, every
        frame goes at ``i / fps`` exactly as before, and a later time is refused (ValueError). With a
        time there, a later frame without one goes at the previous time plus ``1 / fps``.

        In timed .mp4/.mov/.mkv/.webm output, a frame's pts is ``round(time / tick)``, so its stored
        time is within half a tick of ``time``; ``tick`` is the output stream's time base (the given
        ``time_base``, by default 1/90000, with its denominator doubled up to at least 10000 for
        MP4/MOV; always 1/1000 for Matroska/WebM, which store milliseconds). Pts must increase, so
        a pts that would repeat or go back (two frames within one tick, or times out of order) is
        moved to one tick after the previous one. The ``tick`` in use is :attr:`output_time_base`.

        AVI and PNG folders hold no per-frame times, so there timed frames still go at ``i / fps``
        and :meth:`close` warns if that puts any frame more than half a frame away from its time.
        A ``segment=True`` output of that kind will follow other segments in the joined output, so
        there frame ``i`` is compared with the segment's first time plus ``i / fps`` instead.
        """
        if self._closed:
            raise ValueError("FrameWriter is closed")
        if time is not None:
            time = Fraction(time)
            if self.timed is False:
                raise ValueError(
                    f"frame {self.frames_written} has a time but the first frame had none; "
                    "pass a time with every frame or with none"
                )
        elif self.timed:
            time = (self._last_time if self._last_time is not None else Fraction(0)) + 1 / self.fps
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
            self.timed = time is not None
            self._start(width, height)
        elif (width, height) != self._size:
            raise InputError(
                f"frame {self.frames_written} is {width}x{height} but the first frame was "
                f"{self._size[0]}x{self._size[1]}; every frame of one output must have the same size."
            )
        if self.is_video:
            self._write_video(frame, time)
        else:
            self._write_png(frame)
        if time is not None:
            self._last_time = time
            if self._tick is None:  # a constant-rate output: note how far this frame is off
                if self._first_time is None:
                    self._first_time = time if self.segment else Fraction(0)
                slot = self._first_time + self.frames_written / self.fps
                self._max_drift = max(self._max_drift, abs(time - slot))
        self.frames_written += 1

    @property
    def output_time_base(self) -> Fraction | None:
        """The video stream's time base once the first frame is written (None for PNG folders)."""
        if self._stream is None:
            return None
        return Fraction(self._stream.time_base)

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
        self._warn_if_times_are_lost()

    def _warn_if_times_are_lost(self) -> None:
        if self._max_drift * 2 * self.fps <= 1:
            return
        holder = "AVI files hold" if self.is_video else "a PNG folder holds"
        warnings.warn(
            f"{holder} no per-frame times, so the {self.frames_written} frames of {self.path} are at a "
            f"constant {float(self.fps):.6g} fps, up to {float(self._max_drift):.3f} s away from their "
            "times (and from the audio); write an .mp4, .mkv, .mov or .webm file to keep the times.",
            stacklevel=3,
        )

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

    def _start(self, width: int, height: int) -> None:
        if self.is_video:
            if CODECS[self.codec].pixel_format == "yuv420p" and (width % 2 or height % 2):
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
        self._tmp = temp_name(self.path)
        try:
            if self.is_video:
                self._open_video(width, height)
            else:
                warn_audio_not_in_folder(self.audio_from, stacklevel=4)
                os.mkdir(self._tmp)
        except OSError as exc:
            self.abort()
            raise cannot_write(self.path, exc) from exc
        except BaseException:
            self.abort()
            raise

    def _open_video(self, width: int, height: int) -> None:
        audio = open_audio_source(self.audio_from)
        self._container, self._stream, self._audio = self._open_output(width, height, audio)
        if self._container is None:  # the container refused the audio codec when writing its header
            self._container, self._stream, self._audio = self._open_output(width, height, None)

    def _open_output(self, width: int, height: int, audio: Any) -> tuple[Any, Any, AudioCopier | None]:
        entry = CODECS[self.codec]
        pix_fmt = entry.pixel_format
        suffix = self.path.suffix.lower()
        container = av.open(str(self._tmp), "w", format=CONTAINERS[suffix])
        copier: AudioCopier | None = None
        try:
            options: dict[str, str] = {}
            if self.codec in ("h264", "h265"):
                options["crf"] = str(self.crf)
            if self.codec == "h265":
                options["x265-params"] = "log-level=error"  # x265 prints its banner straight to stderr
            if self.codec == "vp9":
                options.update({"crf": str(self.crf), "b": "0", "row-mt": "1"})
            stream = container.add_stream(entry.encoder, rate=self.fps, options=options)
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
            if self.timed and suffix in TIMED_SUFFIXES:
                # Encoder and stream share the time base the muxer keeps, so pts are never rescaled.
                tick = _timed_time_base(suffix, self.time_base)
                stream.codec_context.time_base = tick
                stream.time_base = tick
            elif self.timed and suffix == ".avi":
                # AVI counts frames at its stream rate; a finer time base would add an empty chunk
                # per tick. Times cannot be kept there, so frames go at 1 / fps (see write()).
                stream.time_base = 1 / self.fps
            elif self.time_base is not None:
                stream.time_base = Fraction(self.time_base)
            if audio is not None:
                copier = add_audio(container, audio, self.path, self.audio_from, stacklevel=5)
            if not start_with_audio(container, copier, self.path, audio, self.audio_from, stacklevel=5):
                return None, None, None
            if self.timed and suffix in TIMED_SUFFIXES:
                self._tick = Fraction(stream.time_base)  # what the muxer settled on in its header
            return container, stream, copier
        except BaseException:
            if copier is not None:
                copier.close()
            container.close()
            raise

    def _write_video(self, frame: np.ndarray, time: Fraction | None) -> None:
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if self._stream.pix_fmt == "yuv420p":
            video_frame = video_frame.reformat(
                format="yuv420p", dst_colorspace=1, dst_color_range=1, dst_color_trc=1, dst_color_primaries=1
            )
        if self._tick is not None and time is not None:
            pts = round(time / self._tick)
            if self._last_pts is not None and pts <= self._last_pts:
                pts = self._last_pts + 1  # pts must increase: one tick after the previous frame
            self._last_pts = pts
            video_frame.pts = pts
            video_frame.time_base = self._tick
            end = time + 1 / self.fps
        else:
            video_frame.pts = self.frames_written
            video_frame.time_base = 1 / self.fps
            end = (self.frames_written + 1) / self.fps
        self._container.mux(self._stream.encode(video_frame))
        if self._audio is not None:
            self._audio.copy_until(end)

    def _write_png(self, frame: np.ndarray) -> None:
        # zlib level 3 is about 3x faster than Pillow's default 6 for a few percent larger files.
        Image.fromarray(frame, "RGB").save(
            self._tmp / f"frame_{self.frames_written:06d}.png", compress_level=3
        )

