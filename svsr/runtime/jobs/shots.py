"""Scene cuts split a video into shots; each shot is upscaled as its own exact clip (torch-free).

Across a hard cut RAFT maps two unrelated pictures and the TCM would warp the wrong texture into
the new shot, so no guidance may cross a cut. Cuts are found in the LR frames with PySceneDetect's
content detector (HSV distance between consecutive frames, with its flash filter), fed the frames
we decode anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

from svsr.contract.errors import MissingDependencyError
from svsr.contract.video_options import DEFAULT_SCENE_THRESHOLD

DEFAULT_THRESHOLD = DEFAULT_SCENE_THRESHOLD  # PySceneDetect's ContentDetector default
DEFAULT_MIN_SHOT_FRAMES = 15  # and its minimum scene length


@dataclass(frozen=True)
class Shot:
    """Frames ``first..last`` (inclusive) of one input: one exact clip."""

    input: Path
    index: int
    first: int
    last: int

    @property
    def num_frames(self) -> int:
        return self.last - self.first + 1

    def as_range(self) -> list[int]:
        return [self.first, self.last]


class CutDetector:
    """Feed frames in order with :meth:`add`; :meth:`cuts` gives the first frame of every shot after the first."""

    def __init__(self, fps: Fraction, threshold: float = DEFAULT_THRESHOLD, min_shot_frames: int = DEFAULT_MIN_SHOT_FRAMES) -> None:
        try:
            from scenedetect.common import FrameTimecode
            from scenedetect.detectors import ContentDetector
        except ImportError:
            raise MissingDependencyError(
                "finding scene cuts needs PySceneDetect; install it with pip install scenedetect-headless, or pass --no-scene-split."
            ) from None
        self._timecode = FrameTimecode
        self._fps = float(fps) if fps else 24.0
        self._detector = ContentDetector(threshold=threshold, min_scene_len=min_shot_frames)
        # the same detector without a minimum shot length: the cuts only it finds are the ones merged
        self._unfiltered = ContentDetector(threshold=threshold, min_scene_len=1) if min_shot_frames > 1 else None
        self._cuts: list[int] = []
        self._all_cuts: list[int] = []
        self._count = 0

    def add(self, rgb: np.ndarray) -> None:
        """The next frame (HxWx3 uint8 RGB); PySceneDetect works on OpenCV's BGR order."""
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        at = self._timecode(self._count, fps=self._fps)
        self._cuts += [int(t.frame_num) for t in self._detector.process_frame(at, bgr)]
        if self._unfiltered is not None:
            self._all_cuts += [int(t.frame_num) for t in self._unfiltered.process_frame(at, bgr)]
        self._count += 1

    def cuts(self) -> list[int]:
        """The first frame of every shot after the first (call once, after the last frame)."""
        if self._count:
            end = self._timecode(self._count - 1, fps=self._fps)
            self._cuts += [int(t.frame_num) for t in self._detector.post_process(end)]
            if self._unfiltered is not None:
                self._all_cuts += [int(t.frame_num) for t in self._unfiltered.post_process(end)]
        return sorted({c for c in self._cuts if 0 < c < self._count})

    def merged_cuts(self) -> list[int]:
        """Cuts the minimum shot length merged away (after :meth:`cuts`): found without it, not with it."""
        kept = set(self._cuts)
        return sorted({c for c in self._all_cuts if 0 < c < self._count and c not in kept})


def shots_from_cuts(input_path: Path, num_frames: int, cuts: Iterable[int]) -> list[Shot]:
    """Shots covering frames 0..num_frames-1, a new one starting at every cut."""
    starts = [0, *sorted(c for c in set(cuts) if 0 < c < num_frames)]
    ends = [s - 1 for s in starts[1:]] + [num_frames - 1]
    return [Shot(input_path, i, a, b) for i, (a, b) in enumerate(zip(starts, ends))]
