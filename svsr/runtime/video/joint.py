"""Placing the video packets of consecutive shot segments on one output time line (for the stitch).

:func:`svsr.runtime.video.stitch.stitch_segments` remuxes segments without decoding them; this
module decides each packet's output presentation and decode times and refuses a segment that
cannot be joined as it is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import NoReturn

import av

from svsr.contract.errors import InputError

__all__ = ["Joint", "read_ahead", "segment_label"]


def segment_label(index: int, paths: Sequence[Path]) -> str:
    """How sentences name segment ``index``: its number, the count and its path."""
    return f"{index + 1} of {len(paths)} ({paths[index]})"


class Joint:
    """Places the video packets of consecutive segments on the output's time line.

    Timed containers keep every packet's own presentation time (rescaled to the output tick). Decode
    times are the segment's own where the container stores them (MP4, MOV); Matroska and WebM store
    none, so there each packet gets the latest decode time that still lets every later packet be
    decoded no later than it is shown (found from the next packets). At a joint, a segment with
    B-frames starts decoding before its first frame is shown, possibly before the previous
    segment's last decode time, so its first decode times are lifted to one tick after the
    previous one (as FFmpeg's muxer bumps non-monotonic dts). AVI packets are given consecutive
    slots (see :func:`svsr.runtime.video.stitch.stitch_segments`).
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
        raise InputError(f"segment {segment_label(self._index, self._paths)} {what}.")

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


def read_ahead(packets: Iterator[av.Packet], count: int) -> Iterator[tuple[av.Packet, deque[av.Packet]]]:
    """Each packet with the (up to) ``count`` packets that follow it."""
    ahead: deque[av.Packet] = deque()
    for packet in packets:
        ahead.append(packet)
        if len(ahead) > count:
            yield ahead.popleft(), ahead
    while ahead:
        yield ahead.popleft(), ahead
