"""Stitching: join the per-shot output segments of one input into its output without re-encoding.

The upscaler splits an input at scene cuts into shots and writes each shot's frames to an output
segment with ``FrameWriter(..., segment=True)``: a video-only file in the output's container and
codec whose frames carry their absolute input times, or a folder of PNG frames.
:func:`stitch_segments` joins them in order: video packets are remuxed (never decoded), the input's
audio is copied as :class:`~svsr.runtime.video.write.FrameWriter` copies it, and PNG files are
moved. Like FrameWriter it writes to a hidden temporary name that is renamed into place only when
everything succeeded. Torch-free; only the other video modules are imported.
"""

from __future__ import annotations

import errno
import os
import shutil
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, NoReturn

import av

from svsr.contract.errors import InputError
from svsr.runtime.video.probe import _check_exists, _ffmpeg_reason, _image_size, natural_sort_key
from svsr.runtime.video.write import (
    _CONTAINER_FORMAT,
    _TIMED_SUFFIXES,
    _add_audio,
    _AudioCopier,
    _check_output,
    _is_video_path,
    _open_audio_source,
    _start_with_audio,
    _temp_name,
    _warn_audio_not_in_folder,
)

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
    is_video = _is_video_path(os.fspath(output))
    rate = Fraction(fps).limit_denominator(1_000_000)
    if rate <= 0:
        raise InputError(f"fps must be positive but got {fps}; pass a frame rate such as 24 or 30000/1001.")
    if not paths:
        raise InputError(f"no segments were given to stitch into {out}; pass at least one segment.")
    audio = Path(audio_from) if audio_from is not None else None
    if audio is not None:
        _check_exists(audio)
    for index, path in enumerate(paths):
        if not path.exists():
            raise InputError(
                f"segment {_label(index, paths)} does not exist; "
                f"write every segment before stitching them into {out}."
            )
        if path.resolve() == out.resolve():
            raise InputError(
                f"the output {out} is also segment {_label(index, paths)}; choose another output name."
            )
    _check_output(out, is_video, audio)
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


def _label(index: int, paths: Sequence[Path]) -> str:
    return f"{index + 1} of {len(paths)} ({paths[index]})"


# --- video files -------------------------------------------------------------------------------


def _open_segment(paths: Sequence[Path], index: int, suffix: str) -> tuple[Any, Any]:
    path = paths[index]
    if path.is_dir() or path.suffix.lower() != suffix:
        kind = "a folder" if path.is_dir() else f"a {path.suffix or 'suffix-less'} file"
        raise InputError(
            f"segment {_label(index, paths)} is {kind} but the output is a {suffix} file; "
            "write every segment in the output's container."
        )
    try:
        container = av.open(str(path), "r")
    except av.FFmpegError as exc:
        raise InputError(
            f"segment {_label(index, paths)} cannot be read as a video ({_ffmpeg_reason(exc)}); "
            "write it again."
        ) from exc
    if not container.streams.video:
        container.close()
        raise InputError(f"segment {_label(index, paths)} has no video stream; write it again.")
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


class _Joint:
    """Places the video packets of consecutive segments on the output's time line.

    Timed containers keep every packet's own presentation time (rescaled to the output tick). Decode
    times are the segment's own where the container stores them (MP4, MOV); Matroska and WebM store
    none, so there each packet gets the latest decode time that still lets every later packet be
    decoded no later than it is shown (found from the next packets). At a joint, a segment with
    B-frames starts decoding before its first frame is shown, possibly before the previous
    segment's last decode time, so its first decode times are lifted to one tick after the
    previous one (as FFmpeg's muxer bumps non-monotonic dts). AVI packets are given consecutive
    slots (see :func:`stitch_segments`).
    """

    def __init__(
        self, paths: Sequence[Path], tick: Fraction, timed: bool, stored_dts: bool, fps: Fraction
    ) -> None:
        self._paths = paths
        self._tick = tick
        self._timed = timed
        self._stored_dts = stored_dts
        self._step = 1 / fps
        self._index = -1
        self._count = 0  # packets of the current segment
        self._last_dts: int | None = None  # output ticks
        self._max_pts: int | None = None  # output ticks, over all packets so far
        self._max_time: Fraction | None = None  # the latest frame time so far, seconds
        self._before: Fraction | None = None  # the latest frame time of the previous segments
        self._slot_shift = 0  # AVI: added to the current segment's slots
        self._next_slot = 0  # AVI: the first free slot

    def begin(self, index: int) -> None:
        self._index = index
        self._count = 0
        self._before = self._max_time

    def end(self) -> int:
        """The number of packets the current segment had."""
        if self._count == 0:
            self._refuse("has no video frames; write it again")
        return self._count

    def _refuse(self, what: str) -> NoReturn:
        raise InputError(f"segment {_label(self._index, self._paths)} {what}.")

    def place(self, packet: av.Packet, time_base: Fraction, later: Iterable[av.Packet]) -> Fraction:
        """Set the packet's output times; return the time until which audio goes before it.

        ``later`` are the next packets of the same segment, in decode order (a few, or none).
        """
        first = self._count == 0
        self._count += 1
        if first and not packet.is_keyframe:
            self._refuse(
                "does not start with a keyframe, so it cannot be joined without re-encoding; "
                "write each segment with a FrameWriter of its own"
            )
        if not self._timed:
            return self._place_slot(packet, first)
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None:
            self._refuse(f"has a frame without a timestamp (packet {self._count}); write it again")
        time = stamp * time_base
        if self._before is not None and time <= self._before:
            self._refuse(
                f"has a frame at {float(time):.6g} s, not after the previous segment's last frame at "
                f"{float(self._before):.6g} s; give the segments in order, each written with its "
                "frames' absolute times"
            )
        pts = round(time / self._tick)
        if self._max_pts is not None and self._max_time is not None and time > self._max_time:
            # a later frame rescaled onto an earlier tick: one tick later, as FrameWriter does
            pts = max(pts, self._max_pts + 1)
        if self._stored_dts and packet.dts is not None:
            dts = round(packet.dts * time_base / self._tick)
        else:
            dts = pts  # the latest that leaves one tick for each later packet shown before it
            for k, after in enumerate(later, start=1):
                stamp = after.pts if after.pts is not None else after.dts
                if stamp is not None:
                    dts = min(dts, round(stamp * time_base / self._tick) - k)
        if self._last_dts is not None:
            dts = max(dts, self._last_dts + 1)
        if dts > pts:
            self._refuse(
                f"cannot be joined as it is: its frame at {float(time):.6g} s would be decoded after it "
                f"is shown, as the output's time base {self._tick} leaves too little room for its "
                "B-frame delay; write the segments as .mp4 files with a finer time_base"
            )
        self._set_duration(packet, time_base)
        packet.time_base = self._tick
        packet.pts, packet.dts = pts, dts
        self._last_dts = dts
        if self._max_time is None or time > self._max_time:
            self._max_time, self._max_pts = time, pts
        return time + self._step

    def _set_duration(self, packet: av.Packet, time_base: Fraction) -> None:
        # MP4 keeps the last frame's duration from its packet, and an edit list (written when the
        # audio starts before the video, as AAC does) drops a frame of duration 0: give it 1 / fps.
        duration = round(packet.duration * time_base / self._tick) if packet.duration else 0
        packet.duration = duration if duration > 0 else max(1, round(self._step / self._tick))

    def _place_slot(self, packet: av.Packet, first: bool) -> Fraction:
        dts = packet.dts if packet.dts is not None else packet.pts
        if dts is None:
            dts = self._next_slot - self._slot_shift  # no slot stored: the next one
        if first:
            self._slot_shift = self._next_slot - dts
        slot = max(dts + self._slot_shift, self._next_slot)
        pts = packet.pts + self._slot_shift if packet.pts is not None else None
        packet.duration = 1
        packet.time_base = self._tick
        packet.dts = slot
        packet.pts = max(pts, slot) if pts is not None else slot
        self._next_slot = slot + 1
        return (slot + 1) * self._tick


def _read_ahead(packets: Iterator[av.Packet], count: int) -> Iterator[tuple[av.Packet, deque[av.Packet]]]:
    """Each packet with the (up to) ``count`` packets that follow it."""
    ahead: deque[av.Packet] = deque()
    for packet in packets:
        ahead.append(packet)
        if len(ahead) > count:
            yield ahead.popleft(), ahead
    while ahead:
        yield ahead.popleft(), ahead


def _open_output(
    tmp: Path, suffix: str, template: Any, fps: Fraction, audio: Any, output: Path, audio_from: Path | None
) -> tuple[Any, Any, _AudioCopier | None]:
    """The output container with a video stream like ``template`` and the audio copy, header written.

    Returns three Nones when the muxer refused the copied audio (after a warning): open it again
    without audio then.
    """
    try:
        container = av.open(str(tmp), "w", format=_CONTAINER_FORMAT[suffix])
    except OSError as exc:
        if audio is not None:
            audio.container.close()
        raise InputError(
            f"cannot write to {output.resolve().parent} ({exc.strerror or exc}); "
            "choose an output path in a writable folder."
        ) from exc
    copier: _AudioCopier | None = None
    try:
        stream = container.add_stream_from_template(template)
        stream.codec_context.framerate = fps  # the stream's average rate, as FrameWriter sets it
        if template.codec_context.name == "hevc" and suffix in (".mp4", ".mov"):
            stream.codec_tag = "hvc1"  # as FrameWriter tags it: Apple players refuse the default hev1
        if audio is not None:
            copier = _add_audio(container, audio, output, audio_from, stacklevel=4)
        if not _start_with_audio(container, copier, output, audio, audio_from, stacklevel=4):
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


def _copy_audio(copier: _AudioCopier, until: Fraction | None) -> None:
    try:
        copier.copy_until(until)
    except av.FFmpegError as exc:
        raise _AudioCopyFailed(_ffmpeg_reason(exc)) from exc


def _stitch_video(paths: Sequence[Path], output: Path, audio_from: Path | None, fps: Fraction) -> None:
    suffix = output.suffix.lower()
    tmp = _temp_name(output)
    inputs: list[Any] = []  # segment containers open now
    container: Any = None
    copier: _AudioCopier | None = None
    try:
        first_input, first = _open_segment(paths, 0, suffix)
        inputs.append(first_input)
        container, stream, copier = _open_output(
            tmp, suffix, first, fps, _open_audio_source(audio_from), output, audio_from
        )
        if container is None:  # the container refused the audio codec when writing its header
            container, stream, copier = _open_output(tmp, suffix, first, fps, None, output, audio_from)
        timed, stored_dts = suffix in _TIMED_SUFFIXES, suffix in _DTS_SUFFIXES
        joint = _Joint(paths, Fraction(stream.time_base), timed, stored_dts, fps)
        for index in range(len(paths)):
            segment, source = first_input, first
            if index:
                segment, source = _open_segment(paths, index, suffix)
                inputs.append(segment)
                difference = _difference(first, source)
                if difference is not None:
                    raise InputError(f"segment {_label(index, paths)} has {difference}; {_SEGMENT_HINT}.")
            joint.begin(index)
            try:
                packets = (p for p in segment.demux(source) if p.size)  # size 0: end of stream
                for packet, later in _read_ahead(packets, 0 if stored_dts else _LOOKAHEAD):
                    end = joint.place(packet, Fraction(source.time_base), later)
                    packet.stream = stream
                    container.mux(packet)
                    if copier is not None:
                        _copy_audio(copier, end)
            except av.FFmpegError as exc:
                raise InputError(
                    f"segment {_label(index, paths)} is corrupt or truncated ({_ffmpeg_reason(exc)}); "
                    "write it again."
                ) from exc
            count = joint.end()
            if source.frames and count < source.frames:
                raise InputError(
                    f"segment {_label(index, paths)} ended after {count} of its {source.frames} frames, "
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
            f"segment {_label(index, paths)} is a file but the output is a folder of PNG frames; "
            "write every segment as a frame folder."
        )
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() == ".png" and not p.name.startswith(".") and p.is_file()
    ]
    if not files:
        raise InputError(f"segment {_label(index, paths)} holds no PNG frames; write it again.")
    return sorted(files, key=lambda p: natural_sort_key(p.name))


def _stitch_frames(paths: Sequence[Path], output: Path, audio_from: Path | None) -> None:
    _warn_audio_not_in_folder(audio_from, stacklevel=3)
    listed = [_png_files(paths, index) for index in range(len(paths))]
    size = _image_size(listed[0][0])
    for index, files in enumerate(listed[1:], start=1):
        other = _image_size(files[0])
        if other != size:
            raise InputError(
                f"segment {_label(index, paths)} has {other[0]}x{other[1]} frames where segment 1 has "
                f"{size[0]}x{size[1]}; every frame of one output must have the same size."
            )
    tmp = _temp_name(output)
    try:
        os.mkdir(tmp)
    except OSError as exc:
        raise InputError(
            f"cannot write to {output.resolve().parent} ({exc.strerror or exc}); "
            "choose an output path in a writable folder."
        ) from exc
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
