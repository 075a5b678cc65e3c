"""The frame-wise bidirectional sweep order of StableVSR (torch-free, shared by reference and runtime).

Per timestep, one sweep visits every frame; sweeps alternate direction (forward first). The first
frame of a sweep runs without the TCM; every later frame is guided by the previous frame's x0 of
the same timestep, warped with the flow that maps the current frame onto the previous one:
forward sweeps use ``fwd[j-1]`` (frame j -> j-1), backward sweeps ``bwd[j-1]`` where
``bwd = reversed(bwd_pair)`` and ``bwd_pair[i] = flow(frame i -> frame i+1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal

Direction = Literal["fwd", "bwd"]


@dataclass(frozen=True)
class FrameCall:
    """One network call of the sampling loop."""

    step: int  # index into the scheduler's timesteps
    position: int  # j, position of the frame within this sweep
    frame: int  # k, frame index in the clip
    direction: Direction  # sweep direction, which flow list is in use
    flow_index: int | None  # index into that flow list (j - 1), None for the first frame of a sweep

    @property
    def uses_tcm(self) -> bool:
        return self.flow_index is not None

    @property
    def flow_pair(self) -> tuple[int, int] | None:
        """(frame, previous frame) that the flow maps between, or None without TCM."""
        if self.flow_index is None:
            return None
        previous = self.frame - 1 if self.direction == "fwd" else self.frame + 1
        return self.frame, previous


def sweep_direction(step: int) -> Direction:
    """Direction of the sweep at timestep index ``step``: forward, backward, forward, ..."""
    return "fwd" if step % 2 == 0 else "bwd"


def sweep_order(num_frames: int, step: int) -> list[int]:
    order = list(range(num_frames))
    return order if sweep_direction(step) == "fwd" else order[::-1]


def frame_calls(num_frames: int, num_steps: int) -> Iterator[FrameCall]:
    """Every (timestep, frame) call in execution order."""
    for step in range(num_steps):
        direction = sweep_direction(step)
        for position, frame in enumerate(sweep_order(num_frames, step)):
            yield FrameCall(step, position, frame, direction, None if position == 0 else position - 1)

