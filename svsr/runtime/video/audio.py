"""Copying an input's audio into an output without re-encoding, interleaved with the video.

Used by FrameWriter (:mod:`svsr.runtime.video.write`) and :func:`svsr.runtime.video.stitch.stitch_segments`
alike, so a stitched output gets its sound exactly as a directly written one does: shifted by the
input's video origin, dropped with a warning where the output container cannot hold it.
"""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from svsr.runtime.video.containers import open_container, video_origin

__all__ = ["AudioCopier", "add_audio", "audio_problem", "open_audio_source", "start_with_audio", "warn_audio_not_in_folder"]


class AudioCopier:
    """Remux the packets of one audio stream into the output, interleaved with the video."""

    def __init__(self, source: Any, target: Any, output: Any) -> None:
        self._source = source
        self._target = target
        self._output = output
        video = source.container.streams.video
        # Output times are measured from where the source video starts (FrameReader's frame times
        # and a constant-rate output's frame 0 alike), so shift the audio by that same origin.
        self._shift = 0
        origin = video_origin(video[0]) if video else 0
        if origin:
            self._shift = round(origin * video[0].time_base / source.time_base)
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


def open_audio_source(audio_from: Path | None) -> av.audio.stream.AudioStream | None:
    """The first audio stream of ``audio_from`` in a container opened for it, or None if it has none."""
    if audio_from is None or audio_from.is_dir():
        return None
    info_container = open_container(audio_from)
    if not info_container.streams.audio:
        info_container.close()
        return None
    audio = info_container.streams.audio[0]
    if audio.codec_context is None:  # a damaged sample description: nothing to copy it as
        info_container.close()
        warnings.warn(f"the audio of {audio_from} is damaged (no codec), so the output has no sound.", stacklevel=3)
        return None
    return audio


def audio_problem(audio_from: Path, output: Path, output_is_video: bool) -> str | None:
    """Why ``output`` would lose the audio of ``audio_from`` (no sound kept), or None when it keeps it or there is none.

    Asked before any work: the output's muxer is tried on the audio stream in memory, as the writer
    will try it on the file (``avformat_query_codec`` through PyAV's ``add_stream_from_template``, then
    the header, where some muxers refuse what the query let through).
    """
    import io

    from svsr.contract.codecs import CONTAINERS

    if audio_from.is_dir():
        return None
    with open_container(audio_from) as source:
        if not source.streams.audio:
            return None
        audio = source.streams.audio[0]
        codec = getattr(audio.codec_context, "name", None) if audio.codec_context is not None else None
        if codec is None:
            return f"the audio of {audio_from} is damaged (no codec), so the output would have no sound"
        if not output_is_video:
            return f"{output} holds no sound, so the {codec} audio of {audio_from} would be lost"
        muxer = CONTAINERS.get(output.suffix.lower())
        try:
            with av.open(io.BytesIO(), "w", format=muxer) as target:
                target.add_stream_from_template(audio)
                # some muxers accept the stream and refuse it only at the header (.mov with opus or flac)
                target.start_encoding()
        except (ValueError, av.FFmpegError):
            return f"{output.suffix} files cannot hold the {codec} audio of {audio_from}"
    return None


def _drop_audio_message(path: Path, audio: Any, audio_from: Path | None) -> str:
    return (
        f"{path.suffix} files cannot hold the {getattr(audio.codec_context, 'name', None) or 'unknown'} audio of {audio_from}, "
        "so the output has no sound; use an .mkv output to keep it."
    )


def add_audio(container: Any, audio: Any, path: Path, audio_from: Path | None, stacklevel: int) -> AudioCopier | None:
    """Add a copy of ``audio`` to an output not yet started; warn and return None if it cannot hold it.

    ``stacklevel`` is the warning's, counted from the caller of this function.
    """
    try:
        out_audio = container.add_stream_from_template(audio)
    except ValueError:  # PyAV checks avformat_query_codec here
        warnings.warn(_drop_audio_message(path, audio, audio_from), stacklevel=stacklevel + 1)
        audio.container.close()
        return None
    return AudioCopier(audio, out_audio, container)


def start_with_audio(
    container: Any,
    copier: AudioCopier | None,
    path: Path,
    audio: Any,
    audio_from: Path | None,
    stacklevel: int,
) -> bool:
    """Write the output's header; False (after a warning) if the muxer refused the copied audio.

    On False the copier and the container are closed: open the output again without audio.
    """
    try:
        container.start_encoding()
    except av.FFmpegError:
        if copier is None:
            raise
        warnings.warn(_drop_audio_message(path, audio, audio_from), stacklevel=stacklevel + 1)
        copier.close()
        container.close()
        return False
    return True


def warn_audio_not_in_folder(audio_from: Path | None, stacklevel: int) -> None:
    """Warn when an output folder of PNG frames drops the audio ``audio_from`` has."""
    audio = open_audio_source(audio_from)
    if audio is not None:
        audio.container.close()
        warnings.warn(
            f"a PNG folder cannot hold the audio of {audio_from}, so it is not copied; "
            "write a video file such as .mkv to keep it.",
            stacklevel=stacklevel + 1,
        )
