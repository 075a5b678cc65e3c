"""Upscale a whole video or frame folder in chunks: read, process, write (torch-free).

Decoding runs in FrameReader's thread and encoding in a writer thread here, so the compute in
the caller's thread never waits on I/O. Peak memory is bounded by the chunk size, not the video
length: at most one chunk of LR frames, its outputs, and the bounded I/O queues are held at once.

Chunk boundaries: each chunk is upscaled as an independent clip (its own flows and sweeps); the
noise source carries on across chunks. So frames on either side of a boundary do not guide each
other; a video that fits in one chunk gives exactly the single-clip result.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from svsr.errors import InputError
from svsr.runtime.video import FrameReader, FrameWriter, VideoInfo, output_path_for

ProcessChunk = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """[0, 1] float RGB -> uint8, rounding to nearest."""
    return (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class _ThreadedWriter:
    """Feeds a FrameWriter from a bounded queue in its own thread; errors surface in the caller."""

    def __init__(self, writer: FrameWriter, queue_size: int = 8) -> None:
        self._writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="svsr-encode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            frame = self._queue.get()
            if frame is None:
                return
            if self._error is None:
                try:
                    self._writer.write(frame)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    self._error = exc

    def write(self, frame: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(frame)

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def resolve_output(input_path: Path, output_path: str | os.PathLike[str] | None) -> Path:
    """The output path (default derived from the input); refuses to overwrite the input."""
    output = Path(output_path) if output_path is not None else output_path_for(input_path)
    if output.resolve() == input_path.resolve():
        raise InputError(f"the output path {output} is the input; choose another output path with -o.")
    return output


def upscale_video(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str] | None,
    process_chunk: ProcessChunk,
    *,
    chunk_frames: int,
    codec: str = "h264",
    crf: int = 18,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Path:
    """Upscale ``input_path`` chunk by chunk with ``process_chunk`` (LR uint8 frames -> [0, 1] float frames).

    The output appears under its final name only if every frame was written.
    """
    if chunk_frames < 1:
        raise InputError(f"the chunk size is {chunk_frames}; use at least 1 frame per chunk.")
    input_path = Path(input_path)
    output = resolve_output(input_path, output_path)
    with FrameReader(input_path) as reader:
        info: VideoInfo = reader.info
        audio = input_path if not info.is_image_sequence else None
        with FrameWriter(output, info.fps, codec=codec, crf=crf, audio_from=audio, time_base=info.time_base) as writer:
            threaded = _ThreadedWriter(writer)
            done = 0
            try:
                while True:
                    chunk = reader.read(chunk_frames)
                    if not chunk:
                        break
                    for frame in process_chunk(chunk):
                        threaded.write(to_uint8(frame))
                    done += len(chunk)
                    if on_chunk is not None:
                        on_chunk(done, info.num_frames or done)
            finally:
                threaded.finish()
    return output
