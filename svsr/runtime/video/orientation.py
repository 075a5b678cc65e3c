"""Turning decoded video frames upright: the display matrix (rotation and mirroring) of a video stream.

Frame folders carry their orientation in EXIF instead; :mod:`svsr.runtime.video.images` reads that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import av
import numpy as np

__all__ = ["frame_orientation", "rotate_upright", "upright_size"]

_DISPLAYMATRIX = "DISPLAYMATRIX"


def rotate_upright(
    frame: np.ndarray, rotation: int = 0, display_matrix: Sequence[int] | None = None
) -> np.ndarray:
    """Turn a decoded HxWxC frame upright.

    ``rotation`` is counter-clockwise degrees as in PyAV's ``VideoFrame.rotation``.
    ``display_matrix`` (FFmpeg's 9 int32 display matrix) takes precedence when given, because only
    it tells mirrored files apart; it is interpreted exactly like the ``ffmpeg`` CLI's autorotate.
    """
    if display_matrix is None:
        k = round(rotation / 90) % 4
        out = np.rot90(frame, k) if k else frame
        return np.ascontiguousarray(out)
    m = [int(v) for v in display_matrix]
    sx, sy = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if sx == 0 or sy == 0:
        return frame
    # FFmpeg's get_rotation(): theta = -av_display_rotation_get(matrix), normalised to [0, 360).
    theta = round(math.degrees(math.atan2(m[1] / sy, m[0] / sx)))
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        # transpose=cclock_flip is a plain transpose; transpose=clock is a clockwise turn.
        out = frame.swapaxes(0, 1) if m[3] > 0 else np.rot90(frame, -1)
    elif abs(theta - 180) < 1:
        out = frame
        if m[0] < 0:
            out = out[:, ::-1]
        if m[4] < 0:
            out = out[::-1]
    elif abs(theta - 270) < 1:
        # transpose=clock_flip is the anti-transpose; transpose=cclock a counter-clockwise turn.
        out = np.rot90(frame, 2).swapaxes(0, 1) if m[3] < 0 else np.rot90(frame, 1)
    elif abs(theta) < 1 and m[4] < 0:
        out = frame[::-1]
    else:
        out = frame  # angles that are not right-angle turns are left as decoded
    return np.ascontiguousarray(out)


def frame_orientation(frame: av.VideoFrame) -> tuple[int, list[int] | None]:
    """Counter-clockwise rotation and raw display matrix of a decoded frame, if it has one."""
    side = frame.side_data.get(_DISPLAYMATRIX)
    matrix = None
    if side is not None:
        raw = bytes(side)
        if len(raw) >= 36:
            matrix = np.frombuffer(raw[:36], dtype="<i4").tolist()
    return int(frame.rotation) % 360, matrix


def upright_size(rotation: int, matrix: list[int] | None, width: int, height: int) -> tuple[int, int]:
    """Width and height after orientation (a right-angle turn or a transpose swaps them)."""
    probe_shape = rotate_upright(np.empty((height, width, 0), np.uint8), rotation, matrix).shape
    return probe_shape[1], probe_shape[0]
