"""Opening video files with FFmpeg (PyAV): the container, its video stream, decoding, error sentences.

Shared by the probe, the reader, the audio copy and the stitch, so every one of them opens inputs,
picks the stream, measures time from the same origin and words FFmpeg's failures the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av

from svsr.contract.errors import InputError

__all__ = [
    "ACCEPTS",
    "check_input_exists",
    "corrupt_before_first",
    "decode_frames",
    "expected_frames",
    "ffmpeg_reason",
    "no_frames",
    "open_container",
    "video_origin",
    "video_stream",
]

ACCEPTS = "give an mp4/mkv/mov/webm file or a folder of PNG/JPEG frames"
"""The end of every sentence refusing an input: what svsr takes instead."""


def check_input_exists(path: Path) -> None:
    """Refuse an input (video file or frame folder) that is not there."""
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path, or {ACCEPTS}.")


def open_container(path: Path) -> av.container.InputContainer:
    """Open a video file for reading, or refuse it in one sentence (empty, not a video, a text file)."""
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes); re-export or re-download it.")
    try:
        # A damaged header can hold metadata that is not UTF-8: replace those bytes instead of raising.
        container = av.open(str(path), "r", metadata_errors="replace")
    except av.FFmpegError as exc:
        raise InputError(
            f"{path} is not a video file PyAV can decode (it may be corrupt or truncated); {ACCEPTS}."
        ) from exc
    # FFmpeg's "tty" demuxer renders any text file as video, which is never what the user meant.
    if container.format.name in ("tty", "ansi"):
        container.close()
        raise InputError(f"{path} is not a video file PyAV can decode; {ACCEPTS}.")
    return container


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first video stream of ``container``; refuse a file without one, naming what it holds."""
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise InputError(
            f"{path} has no video stream (it contains {', '.join(kinds)}); give a file that contains video."
        )
    return container.streams.video[0]


def video_origin(stream: av.video.stream.VideoStream) -> int:
    """Where time 0 is, in the video stream's time base: the stream's start time.

    FFmpeg sets a stream's start time to its earliest presentation timestamp, so the first frame is
    at time 0 in practice; a container that reports none gives 0 (timestamps are used as stored).
    FrameReader's frame times and FrameWriter's audio copy both measure from this same point, which
    is what keeps copied audio aligned with rewritten video.
    """
    return int(stream.start_time) if stream.start_time is not None else 0


def expected_frames(
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


def decode_frames(
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


def ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's own words for a failure (its strerror), for the parenthesis of a sentence."""
    return getattr(exc, "strerror", None) or str(exc)


def corrupt_before_first(path: Path, exc: BaseException) -> InputError:
    """The error for a video whose decoding fails before its first frame."""
    return InputError(
        f"{path} is corrupt or truncated: decoding failed before the first frame ({ffmpeg_reason(exc)}); "
        "re-export or re-download it."
    )


def no_frames(path: Path) -> InputError:
    """The error for a video stream that decodes to nothing."""
    return InputError(f"{path} has a video stream but no decodable frames; re-export the video.")
