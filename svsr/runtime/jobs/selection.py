"""``--frames START:END``: find the frames of an input that a range selects, and the shots among them (torch-free).

The selected frames are upscaled as their own clip: scene cuts are looked for among them only, each
shot keeps its frames' indices and times in the whole input, so the output holds exactly those
frames at their original presentation times. The input is decoded only up to the range's end
(frames before an index START are skipped without converting them), so a preview of a long video
starts in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from svsr.contract.errors import InputError
from svsr.contract.frames import validate_clip
from svsr.contract.video_options import FrameRange, VideoOptions
from svsr.runtime.jobs.shots import CutDetector, Shot, shots_from_cuts
from svsr.runtime.video import FrameReader, VideoInfo


@dataclass(frozen=True)
class Selection:
    """Frames ``first`` to ``end - 1`` of an input of ``total`` frames (None: not known), shown from ``start_time`` to ``end_time``."""

    first: int
    end: int
    total: int | None
    start_time: Fraction
    end_time: Fraction

    @property
    def count(self) -> int:
        return self.end - self.first

    def sentence(self) -> str:
        """``upscaling frames 10-14 of 120 (0.40 s-0.60 s) as their own clip``."""
        which = f"frame {self.first}" if self.count == 1 else f"frames {self.first}-{self.end - 1}"
        of = f" of {self.total}" if self.total is not None else ""
        own = "its own clip" if self.count == 1 else "their own clip"
        return f"upscaling {which}{of} ({float(self.start_time):.2f} s-{float(self.end_time):.2f} s) as {own}"

    def shots(self, input_path: Path, cuts: list[int]) -> list[Shot]:
        """The shots of the selected frames, a new one at every cut (indices of the whole input)."""
        return [Shot(input_path, shot.index, shot.first + self.first, shot.last + self.first)
                for shot in shots_from_cuts(input_path, self.count, [c - self.first for c in cuts])]  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {"first": self.first, "end": self.end, "total": self.total, "start_time": str(self.start_time), "end_time": str(self.end_time)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Selection":
        return cls(int(data["first"]), int(data["end"]), None if data["total"] is None else int(data["total"]),
                   Fraction(data["start_time"]), Fraction(data["end_time"]))  # fmt: skip


def select_and_cut(input_path: Path, info: VideoInfo, options: VideoOptions) -> tuple[Selection, list[int], list[int]]:
    """The frames ``options.frames`` selects, the scene cuts among them and the cuts merged away (indices of the whole input).

    A range reaching past the input's end, or selecting no frame, is one sentence naming the input's
    frame count and duration.
    """
    wanted = options.frame_range
    assert wanted is not None
    detector = CutDetector(info.fps, options.scene_threshold, options.min_shot) if options.scene_split else None
    first: int | None = None
    start_time = last_time = Fraction(0)
    next_time: Fraction | None = None  # the time of the first frame after the range, when the input has one
    index = wanted.first_index - 1
    with FrameReader(input_path, start=wanted.first_index, fps=options.fps) as reader:
        for index, (frame, time) in enumerate(reader.timed(), start=wanted.first_index):
            if index == wanted.first_index:
                validate_clip([frame])
            if wanted.ends_before(index, time):
                next_time = time
                break
            if not wanted.selects(index, time):
                continue  # before a START time
            if first is None:
                first, start_time = index, time
            last_time = time
            if detector is not None:
                detector.add(frame)
    read_to_end = next_time is None
    if first is None or (read_to_end and wanted.end is not None and _past_end(wanted, index, last_time + 1 / info.fps)):
        raise InputError(_beyond(input_path, info, options, wanted))
    end = index + 1 if read_to_end else index
    total = end if read_to_end else None
    if total is None and info.num_frames is not None:
        total = max(info.num_frames, end)  # the container's count: the input was not decoded to its end
    selection = Selection(first, end, total, start_time, next_time if next_time is not None else last_time + 1 / info.fps)
    if detector is None:
        return selection, [], []
    return selection, [c + first for c in detector.cuts()], [c + first for c in detector.merged_cuts()]


def _past_end(wanted: FrameRange, last_index: int, duration: Fraction) -> bool:
    """Whether the range's END lies past an input whose last frame is ``last_index`` and that lasts ``duration`` seconds."""
    assert wanted.end is not None
    return wanted.end > duration if wanted.in_seconds else wanted.end > last_index + 1


def _beyond(input_path: Path, info: VideoInfo, options: VideoOptions, wanted: FrameRange) -> str:
    """The sentence for a range that reaches past the input or selects no frame of it (the input is read whole: an error path)."""
    with FrameReader(input_path, fps=options.fps) as reader:
        times = [time for _, time in reader.timed()]
    if not times:
        return f"{input_path} has no frames; give a video or folder with at least one frame."
    total, duration = len(times), times[-1] + 1 / info.fps
    has = f"{input_path.name} has {total} frame{'s' if total != 1 else ''} (0 to {total - 1}, {float(duration):.2f} s)"
    spelled = options.spell("frames", options.frames)
    past = duration if wanted.in_seconds else total
    if wanted.start is not None and wanted.start >= past:
        return f"{spelled} starts past the end of the input: {has}; start it earlier."
    if wanted.end is not None and wanted.end > past:
        end = f"{float(duration):g}s" if wanted.in_seconds else str(total)
        return f"{spelled} reaches past the end of the input: {has}; end it at {end} or leave END out."
    return f"{spelled} selects no frame: {has} and none is shown in that span; widen it."
