"""Stitching: join the per-shot output segments of one input into its output without re-encoding.

The upscaler splits an input at scene cuts into shots and writes each shot's frames to an output
segment with ``FrameWriter(..., segment=True)``: a video-only file in the output's container and
codec whose frames carry their absolute input times, or a folder of PNG frames.
:func:`stitch_segments` joins them in order: video packets are remuxed (never decoded), the input's
audio is copied as :class:`~svsr.runtime.video.write.FrameWriter` copies it, and PNG files are
moved. Like FrameWriter it writes to a hidden temporary name that is renamed into place only when
everything succeeded. Where each remuxed packet lands on the output's time line is decided by
:mod:`svsr.runtime.video.joint`. Torch-free; only the other video modules are imported.
"""

from __future__ import annotations

import errno
import os
import shutil
import warnings
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from svsr.contract.codecs import CONTAINERS, TIMED_SUFFIXES
from svsr.contract.errors import InputError
from svsr.runtime.video.audio import (
    AudioCopier,
    add_audio,
    open_audio_source,
    start_with_audio,
    warn_audio_not_in_folder,
)
from svsr.runtime.video.containers import check_input_exists, ffmpeg_reason
from svsr.runtime.video.images import image_size, natural_sort_key
from svsr.runtime.video.joint import Joint, read_ahead, segment_label
from svsr.runtime.video.outputs import cannot_write, check_output, is_video_path, temp_name

__all__ = ["stitch_segments"]

_SEGMENT_HINT = "write every segment with FrameWriter(..., segment=True) and the same settings"
# Containers that store decode times (the others store presentation times only).
_DTS_SUFFIXES = (".mp4", ".mov")
# Packets read ahead to find decode times where none are stored; B-frame delays are far shorter.
_LOOKAHEAD = 32


def stitch_segments(
    segments: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    audio_from: str | os.PathLike[str] | None,
    fps: Fraction | int | float,
) -> Path:
    """Join output segments, in the order given, into ``output`` without re-encoding; return its path.

    A video ``output`` (.mp4 .mkv .mov .webm .avi) takes segments in the same container (suffix)
    and codec, all with the same frame size, pixel format and codec header (extradata), as
    ``FrameWriter(..., segment=True)`` writes them with one set of settings. The video packets of
    every segment are remuxed in order, their times kept: each segment's frames already carry
    their absolute times, which are only rescaled where the output's time base differs (a time
    that rounds onto the previous one moves one tick later, as in :meth:`FrameWriter.write`).
    Every segment must start on a keyframe (as each FrameWriter output does) and all its frames
    must come after the previous segment's last frame. Decode times stay the segments' own, except
    that a segment with B-frames, which starts decoding before its first frame is shown, gets its
    first decode times lifted to one tick after the previous segment's last (as FFmpeg's muxer
    bumps non-monotonic dts), so they keep increasing across the joint while every frame is still
    decoded no later than it is shown. Segments that break these rules, or are missing, corrupt
    or encoded differently, are refused with an :class:`~svsr.contract.errors.InputError`.

    The first audio stream of ``audio_from`` is copied whole, interleaved and shifted exactly as
    FrameWriter does (dropped with a warning if the container cannot hold it); ``fps`` is the
    input's frame rate, used for that interleaving and as the output stream's average rate, as
    FrameWriter's ``fps``.

    AVI stores no frame times, so AVI segments are plainly concatenated in order: each keeps its
    chunks' slots at the stream rate, starting right after the previous segment's last one.

    A PNG-folder ``output`` (any other path, or one ending in '/') takes folders of PNG frames as
    segments; their files are moved (renamed) in order into the output as ``frame_000000.png``,
    ``frame_000001.png``..., leaving the segment folders empty (files on another file system are
    copied instead). The audio is not copied there (a warning says so if ``audio_from`` has some).

    The output is written to a hidden temporary name beside it and renamed into place at the end; on
    any error nothing is left of it, moved PNG files go back to their segments, and an existing
    output file is kept.
    """
    paths = [Path(segment) for segment in segments]
    out = Path(output)
    is_video = is_video_path(os.fspath(output))
    rate = Fraction(fps).limit_denominator(1_000_000)
    if rate <= 0:
        raise InputError(f"fps must be positive but got {fps}; pass a frame rate such as 24 or 30000/1001.")
    if not paths:
        raise InputError(f"no segments were given to stitch into {out}; pass at least one segment.")
    audio = Path(audio_from) if audio_from is not None else None
    if audio is not None:
        check_input_exists(audio)
    for index, path in enumerate(paths):
        if not path.exists():
            raise InputError(
                f"segment {segment_label(index, paths)} does not exist; "
                f"write every segment before stitching them into {out}."
            )
        if path.resolve() == out.resolve():
            raise InputError(
                f"the output {out} is also segment {segment_label(index, paths)}; choose another output name."
            )
    check_output(out, is_video, audio)
    if is_video:
        try:
            _stitch_video(paths, out, audio, rate)
        except _AudioCopyFailed as failed:  # a damaged audio track must not cost the video
            warnings.warn(
                f"the audio of {audio} could not be copied ({failed}), so the output has no sound; "
                "re-export the input's audio to keep it.",
                stacklevel=2,
            )
            _stitch_video(paths, out, None, rate)
    else:
        _stitch_frames(paths, out, audio)
    return out


# --- video files -------------------------------------------------------------------------------


def _open_segment(paths: Sequence[Path], index: int, suffix: str) -> tuple[Any, Any]:
    path = paths[index]
    if path.is_dir() or path.suffix.lower() != suffix:
        kind = "a folder" if path.is_dir() else f"a {path.suffix or 'suffix-less'} file"
        raise InputError(
            f"segment {segment_label(index, paths)} is {kind} but the output is a {suffix} file; "
            "write every segment in the output's container."
        )
    try:
        container = av.open(str(path), "r")
    except av.FFmpegError as exc:
        raise InputError(
            f"segment {segment_label(index, paths)} cannot be read as a video ({ffmpeg_reason(exc)}); "
            "write it again."
        ) from exc
    if not container.streams.video:
        container.close()
        raise InputError(f"segment {segment_label(index, paths)} has no video stream; write it again.")
    return container, container.streams.video[0]


def _difference(first: Any, stream: Any) -> str | None:
    """How a segment's video stream differs from the first segment's in what the decoder is given."""
    a, b = first.codec_context, stream.codec_context
    if a.name != b.name:
        return f"{b.name} video where segment 1 has {a.name}"
    if (a.width, a.height) != (b.width, b.height):
        return f"{b.width}x{b.height} frames where segment 1 has {a.width}x{a.height}"
    if a.pix_fmt != b.pix_fmt and a.pix_fmt is not None and b.pix_fmt is not None:
        return f"{b.pix_fmt} pixels where segment 1 has {a.pix_fmt}"
    if bytes(a.extradata or b"") != bytes(b.extradata or b""):
        return "another codec header (extradata: other encoder settings) than segment 1"
    return None


def _open_output(
    tmp: Path, suffix: str, template: Any, fps: Fraction, audio: Any, output: Path, audio_from: Path | None
) -> tuple[Any, Any, AudioCopier | None]:
    """The output container with a video stream like ``template`` and the audio copy, header written.

    Returns three Nones when the muxer refused the copied audio (after a warning): open it again
    without audio then.
    """
    try:
        container = av.open(str(tmp), "w", format=CONTAINERS[suffix])
    except OSError as exc:
        if audio is not None:
            audio.container.close()
        raise cannot_write(output, exc) from exc
    copier: AudioCopier | None = None
    try:
        stream = container.add_stream_from_template(template)
        stream.codec_context.framerate = fps  # the stream's average rate, as FrameWriter sets it
        if template.codec_context.name == "hevc" and suffix in (".mp4", ".mov"):
            stream.codec_tag = "hvc1"  # as FrameWriter tags it: Apple players refuse the default hev1
        if audio is not None:
            copier = add_audio(container, audio, output, audio_from, stacklevel=4)
        if not start_with_audio(container, copier, output, audio, audio_from, stacklevel=4):
            return None, None, None
        return container, stream, copier
    except BaseException:
        if copier is not None:
            copier.close()
        elif audio is not None:
            audio.container.close()  # closing twice is harmless
        container.close()
        raise


class _AudioCopyFailed(Exception):
    """The input's audio packets could not be muxed: the stitch is redone without audio."""


def _copy_audio(copier: AudioCopier, until: Fraction | None) -> None:
    try:
        copier.copy_until(until)
    except av.FFmpegError as exc:
        raise _AudioCopyFailed(ffmpeg_reason(exc)) from exc


def _stitch_video(paths: Sequence[Path], output: Path, audio_from: Path | None, fps: Fraction) -> None:
    suffix = output.suffix.lower()
    tmp = temp_name(output)
    inputs: list[Any] = []  # segment containers open now
    container: Any = None
    copier: AudioCopier | None = None
    try:
        first_input, first = _open_segment(paths, 0, suffix)
        inputs.append(first_input)
        container, stream, copier = _open_output(
            tmp, suffix, first, fps, open_audio_source(audio_from), output, audio_from
        )
        if container is None:  # the container refused the audio codec when writing its header
            container, stream, copier = _open_output(tmp, suffix, first, fps, None, output, audio_from)
        timed, stored_dts = suffix in TIMED_SUFFIXES, suffix in _DTS_SUFFIXES
        joint = Joint(paths, Fraction(stream.time_base), timed, stored_dts, fps)
        for index in range(len(paths)):
            segment, source = first_input, first
            if index:
                segment, source = _open_segment(paths, index, suffix)
                inputs.append(segment)
                difference = _difference(first, source)
                if difference is not None:
                    raise InputError(f"segment {segment_label(index, paths)} has {difference}; {_SEGMENT_HINT}.")
            joint.begin(index)
            try:
                packets = (p for p in segment.demux(source) if p.size)  # size 0: end of stream
                for packet, later in read_ahead(packets, 0 if stored_dts else _LOOKAHEAD):
                    end = joint.place(packet, Fraction(source.time_base), later)
                    packet.stream = stream
                    container.mux(packet)
                    if copier is not None:
                        _copy_audio(copier, end)
            except av.FFmpegError as exc:
                raise InputError(
                    f"segment {segment_label(index, paths)} is corrupt or truncated ({ffmpeg_reason(exc)}); "
                    "write it again."
                ) from exc
            count = joint.end()
            if source.frames and count < source.frames:
                raise InputError(
                    f"segment {segment_label(index, paths)} ended after {count} of its {source.frames} frames, "
                    "so it is truncated; write it again."
                )
            if index:
                inputs.remove(segment)
                segment.close()
        if copier is not None:
            _copy_audio(copier, None)
            copier.close()
            copier = None
        container.close()
        container = None
        os.replace(tmp, output)
    except BaseException:
        if copier is not None:
            copier.close()
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - the output is being thrown away anyway
                pass
        tmp.unlink(missing_ok=True)
        raise
    finally:
        for segment in inputs:
            segment.close()


# --- PNG folders -------------------------------------------------------------------------------


def _png_files(paths: Sequence[Path], index: int) -> list[Path]:
    folder = paths[index]
    if not folder.is_dir():
        raise InputError(
            f"segment {segment_label(index, paths)} is a file but the output is a folder of PNG frames; "
            "write every segment as a frame folder."
        )
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() == ".png" and not p.name.startswith(".") and p.is_file()
    ]
    if not files:
        raise InputError(f"segment {segment_label(index, paths)} holds no PNG frames; write it again.")
    return sorted(files, key=lambda p: natural_sort_key(p.name))


def _stitch_frames(paths: Sequence[Path], output: Path, audio_from: Path | None) -> None:
    warn_audio_not_in_folder(audio_from, stacklevel=3)
    listed = [_png_files(paths, index) for index in range(len(paths))]
    size = image_size(listed[0][0])
    for index, files in enumerate(listed[1:], start=1):
        other = image_size(files[0])
        if other != size:
            raise InputError(
                f"segment {segment_label(index, paths)} has {other[0]}x{other[1]} frames where segment 1 has "
                f"{size[0]}x{size[1]}; every frame of one output must have the same size."
            )
    tmp = temp_name(output)
    try:
        os.mkdir(tmp)
    except OSError as exc:
        raise cannot_write(output, exc) from exc
    moved: list[tuple[Path, Path]] = []
    try:
        number = 0
        for files in listed:
            for path in files:
                target = tmp / f"frame_{number:06d}.png"
                try:
                    os.rename(path, target)
                    moved.append((path, target))
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    shutil.copy2(path, target)  # another file system: the segment keeps its file
                number += 1
        if output.is_dir():
            output.rmdir()  # checked empty up front; rename cannot replace a folder
        os.replace(tmp, output)
    except BaseException:
        for path, target in reversed(moved):
            try:
                os.rename(target, path)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        raise
