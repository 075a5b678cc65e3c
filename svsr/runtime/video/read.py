"""Reading frames: FrameReader decodes a video or a PNG/JPEG folder ahead in a background thread.

Frames are HxWx3 ``uint8`` RGB numpy arrays, turned upright; videos go through PyAV, folders through
Pillow. Each frame also carries its presentation time (see :meth:`FrameReader.timed`), so
variable-frame-rate inputs keep their timing. What the input is comes from
:mod:`svsr.runtime.video.probe`; containers, frame folders and orientation from their own modules.
"""

from __future__ import annotations

import heapq
import os
import queue
import threading
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

from svsr.contract.errors import InputError
from svsr.runtime.video.containers import (
    corrupt_before_first,
    decode_frames,
    expected_frames,
    ffmpeg_reason,
    no_frames,
    open_container,
    video_origin,
    video_stream,
)
from svsr.runtime.video.images import image_files, read_image
from svsr.runtime.video.orientation import frame_orientation, rotate_upright
from svsr.runtime.video.probe import VideoInfo, probe

__all__ = ["FrameReader"]


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    array = frame.to_ndarray(format="rgb24")
    rotation, matrix = frame_orientation(frame)
    if matrix is None and rotation == 0:
        return array
    return rotate_upright(array, rotation, matrix)


class _FrameClock:
    """Presentation times of a video stream's decoded frames, in seconds from the stream's origin.

    A frame's timestamp is chosen like FFmpeg's ``best_effort_timestamp``: its pts, unless the pts
    have been going backwards more often than the dts, then its dts. AVI (``from_packets``) stores
    no presentation times at all, only each chunk's slot at the stream rate as its dts, and its
    decoders report B-frames with the dts of a later packet; there the n-th decoded frame gets the
    n-th smallest packet dts, which is right for reordered frames and for dropped-frame (empty)
    chunks alike. A frame with no timestamp (rare) gets the previous frame's time plus ``1 / fps``
    (0 if it is the first).
    """

    def __init__(
        self, origin: int, time_base: Fraction | None, fps: Fraction, *, from_packets: bool = False
    ) -> None:
        self._origin = origin
        self._time_base = time_base
        self._step = 1 / fps
        self._from_packets = from_packets
        self._packet_dts: list[int] = []  # a heap, for from_packets
        self._last_pts: int | None = None
        self._last_dts: int | None = None
        self._faulty_pts = 0
        self._faulty_dts = 0
        self._previous: Fraction | None = None

    def saw_packet(self, packet: av.Packet) -> None:
        if self._from_packets and packet.size and packet.dts is not None:
            heapq.heappush(self._packet_dts, int(packet.dts))

    def _best_effort(self, pts: int | None, dts: int | None) -> int | None:
        # A port of FFmpeg's guess_correct_pts() (libavcodec/decode.c).
        if dts is not None:
            self._faulty_dts += self._last_dts is not None and dts <= self._last_dts
            self._last_dts = dts
        elif pts is not None:
            self._last_dts = pts
        if pts is not None:
            self._faulty_pts += self._last_pts is not None and pts <= self._last_pts
            self._last_pts = pts
        elif dts is not None:
            self._last_pts = dts
        if pts is not None and (self._faulty_pts <= self._faulty_dts or dts is None):
            return pts
        return dts

    def time_of(self, frame: av.VideoFrame) -> Fraction:
        if self._from_packets:
            stamp = heapq.heappop(self._packet_dts) if self._packet_dts else None
        else:
            stamp = self._best_effort(frame.pts, frame.dts)
        if stamp is None or self._time_base is None:
            time = Fraction(0) if self._previous is None else self._previous + self._step
        else:
            time = (stamp - self._origin) * self._time_base
        self._previous = time
        return time


class _Warning:
    """A warning from the decode thread, re-issued in the consumer's thread after the right frame."""

    def __init__(self, message: str) -> None:
        self.message = message


_END = object()
_TimedFrame = tuple[np.ndarray, Fraction]


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

    def _folder_frames(self) -> Iterator[_TimedFrame | _Warning]:
        files = image_files(self.path)
        end = None if self.count is None else self.start + self.count
        expected = (self.info.width, self.info.height)
        for index, path in enumerate(files[self.start : end], start=self.start):
            if self.stop.is_set():
                return
            array = read_image(path)
            if (array.shape[1], array.shape[0]) != expected:
                raise InputError(
                    f"{path} is {array.shape[1]}x{array.shape[0]} but the first frame is "
                    f"{expected[0]}x{expected[1]}; all frames in a folder must have the same size."
                )
            yield array, index / self.info.fps

    def _video_frames(self) -> Iterator[_TimedFrame | _Warning]:
        if self.count == 0:
            return
        with open_container(self.path) as container:
            stream = video_stream(container, self.path)
            expected, exact = expected_frames(container, stream, self.info.fps)
            time_base = Fraction(stream.time_base) if stream.time_base else None
            clock = _FrameClock(
                video_origin(stream), time_base, self.info.fps, from_packets=container.format.name == "avi"
            )
            expected_size = (self.info.width, self.info.height)
            decoded = 0
            yielded = 0
            try:
                for frame in decode_frames(container, stream, clock.saw_packet):
                    if self.stop.is_set():
                        return
                    decoded += 1
                    time = clock.time_of(frame)  # every frame, so the pts/dts choice sees them all
                    if decoded <= self.start:
                        continue  # skipped frames are not converted to RGB: that is most of the cost
                    array = _to_rgb(frame)
                    if (array.shape[1], array.shape[0]) != expected_size:
                        # A new sequence header (spliced or damaged streams) or a changed display
                        # matrix; every later stage needs one size for the whole video.
                        raise InputError(
                            f"{self.path} changes frame size at frame {decoded} (from {expected_size[0]}x"
                            f"{expected_size[1]} to {array.shape[1]}x{array.shape[0]}); svsr needs one size for "
                            "a whole video, so re-encode it at one size."
                        )
                    yield array, time
                    yielded += 1
                    if self.count is not None and yielded >= self.count:
                        return
            except av.FFmpegError as exc:
                if decoded == 0:
                    raise corrupt_before_first(self.path, exc) from exc
                yield _Warning(
                    f"{self.path} is corrupt after frame {decoded}: read {decoded} frame{'' if decoded == 1 else 's'} "
                    f"and stopped there ({ffmpeg_reason(exc)}); re-export the video to process the rest."
                )
                return
            if decoded == 0:
                raise no_frames(self.path)
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

    Iterating gives frames only; :meth:`timed` and :meth:`read_timed` give ``(frame, time)`` pairs
    from the same queue, so the two styles can be mixed. Times are described in :meth:`timed`.
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
        item = self._next_timed()
        if item is None:
            raise StopIteration
        return item[0]

    def timed(self) -> Iterator[tuple[np.ndarray, Fraction]]:
        """Iterate ``(frame, time)`` pairs: each frame with its presentation time in seconds.

        ``time`` is an exact Fraction measured from the start of the video stream (FFmpeg's
        ``start_time`` of the stream, its earliest presentation timestamp), so the first frame is
        normally at 0 and a chunk read with ``start`` keeps the times of the whole video, not of the
        chunk. It is the frame's pts times the stream's time base, or its dts where the pts are
        unusable, as FFmpeg's ``best_effort_timestamp`` chooses. AVI has no presentation times: the
        n-th frame there gets the n-th smallest packet dts (its chunk's slot at the stream rate).
        A frame without any timestamp (rare) gets the previous frame's time plus ``1 / info.fps``
        (0 if it is the first). Times normally increase; a damaged file may repeat one, which
        FrameWriter absorbs (see ``FrameWriter.write``).

        A frame folder has no timestamps: frame ``i`` (counted from the folder's first frame) is at
        ``i / fps``, with ``fps`` the reader's argument or 24 (``DEFAULT_FOLDER_FPS``).
        """
        while True:
            item = self._next_timed()
            if item is None:
                return
            yield item

    def read(self, n: int) -> list[np.ndarray]:
        """The next ``n`` frames (fewer at the end of the input, an empty list after it)."""
        frames: list[np.ndarray] = []
        while len(frames) < n:
            frame = next(self, None)
            if frame is None:
                break
            frames.append(frame)
        return frames

    def read_timed(self, n: int) -> list[tuple[np.ndarray, Fraction]]:
        """The next ``n`` ``(frame, time)`` pairs, as :meth:`timed` gives them (fewer at the end)."""
        pairs: list[tuple[np.ndarray, Fraction]] = []
        while len(pairs) < n:
            item = self._next_timed()
            if item is None:
                break
            pairs.append(item)
        return pairs

    def close(self) -> None:
        """Stop the decode thread and release the file; safe to call more than once."""
        self._finished = True
        self._decoder.stop.set()
        self._join()
        while not self._decoder.queue.empty():  # drop decoded frames so their memory goes now
            self._decoder.queue.get_nowait()

    def _next_timed(self) -> _TimedFrame | None:
        """The next (frame, time) pair, or None at the end; warnings go to the caller's caller."""
        if self._finished:
            return None
        self._ensure_started()
        while True:
            item = self._decoder.queue.get()
            if isinstance(item, tuple):
                return item
            if isinstance(item, _Warning):
                warnings.warn(item.message, stacklevel=3)
                continue
            self._finished = True
            self._join()
            if isinstance(item, BaseException):
                raise item
            return None

    def _ensure_started(self) -> None:
        if self._thread is None and not self._finished:
            self._thread = threading.Thread(
                target=self._decoder.run, name=f"FrameReader({self.path.name})", daemon=True
            )
            self._thread.start()

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()
