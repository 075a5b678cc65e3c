"""Frames to compare: videos or PNG/JPEG folders, read in lockstep through the video room's door.

Sizes and frame counts are checked before anything is measured (from :func:`probe`); a count a
container only estimates is checked again while reading. Every mismatch is one sentence naming both
inputs.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from svsr.contract.errors import InputError
from svsr.contract.sizes import SCALE
from svsr.runtime.video import FrameReader, VideoInfo, probe

__all__ = ["Clip", "check_clips", "frames_in_lockstep"]

Clip = tuple[Path, VideoInfo]


def _size(info: VideoInfo) -> str:
    return f"{info.width}x{info.height}"


def check_clips(output: str | os.PathLike[str], reference: str | os.PathLike[str], input: str | os.PathLike[str] | None = None,
                fps: Fraction | int | float | None = None) -> list[Clip]:  # fmt: skip
    """Probe the clips; raise InputError unless output and reference match and the input is their 4x-smaller twin."""
    clips = [(Path(p), probe(p, fps=fps)) for p in (output, reference, input) if p is not None]
    (out_path, out), (ref_path, ref) = clips[:2]
    if (out.width, out.height) != (ref.width, ref.height):
        raise InputError(f"{out_path} has {_size(out)} frames but {ref_path} has {_size(ref)}; compare clips of the same size.")
    if out.num_frames is not None and ref.num_frames is not None and out.num_frames != ref.num_frames:
        raise InputError(f"{out_path} has {out.num_frames} frames but {ref_path} has {ref.num_frames}; compare clips of the same length.")
    if input is not None:
        lr_path, lr = clips[2]
        if (SCALE * lr.width, SCALE * lr.height) != (ref.width, ref.height):
            raise InputError(
                f"{lr_path} has {_size(lr)} frames but {ref_path} has {_size(ref)}; --input must be the reference shrunk {SCALE}x "
                f"({ref.width // SCALE}x{ref.height // SCALE})."
            )
        if lr.num_frames is not None and ref.num_frames is not None and lr.num_frames != ref.num_frames:
            raise InputError(f"{lr_path} has {lr.num_frames} frames but {ref_path} has {ref.num_frames}; compare clips of the same length.")
    return clips


def frames_in_lockstep(clips: Sequence[Clip], fps: Fraction | int | float | None = None) -> Iterator[tuple[np.ndarray, ...]]:
    """One frame of every clip at a time; InputError (naming both) when one clip ends before another."""
    with ExitStack() as stack:
        readers = [stack.enter_context(FrameReader(path, fps=fps)) for path, _ in clips]
        count = 0
        while True:
            frames = [next(reader, None) for reader in readers]
            ended = [i for i, frame in enumerate(frames) if frame is None]
            if len(ended) == len(frames):
                return
            if ended:
                short, long = clips[ended[0]][0], clips[next(i for i in range(len(frames)) if i not in ended)][0]
                raise InputError(f"{short} has {count} frames but {long} has more; compare clips of the same length.")
            count += 1
            yield tuple(frames)
