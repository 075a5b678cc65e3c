"""Honest progress (issue 22): warm-up apart, ETA from the steady state, messages never on the bar's line."""

from __future__ import annotations

import io
import re

from svsr.runtime.jobs import StepProgress


class FakeClock:
    """A test double for time.monotonic that the test advances."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTTY(io.StringIO):
    """A captured stream that says it is a terminal (tqdm draws its bar with carriage returns)."""

    def isatty(self) -> bool:
        return True


def _run(stream, clock, report_lines=()):
    """12 frame-steps (3 frames x 4 steps): the first costs 17 s (warm-up), each later one 1 s."""
    progress = StepProgress(12, "svsr-run [ort-cpu] clip.mp4", frames_per_step=3, stream=stream, clock=clock)
    say = progress.wrap(lambda message: print(message, file=stream))
    etas = []
    for k in range(12):
        clock.now += 17.0 if k == 0 else 1.0
        progress.update(1)
        etas.append(progress.eta())
        if k == 4:
            for line in report_lines:
                say(line)
    progress.close()
    return progress, etas


def test_the_eta_comes_from_the_steady_state_and_the_warm_up_is_shown_apart():
    progress, etas = _run(io.StringIO(), FakeClock())
    assert progress.warmup == 17.0
    assert etas[0] is None  # only the warm-up frame-step: no rate yet
    assert etas[1:] == [float(12 - n) for n in range(2, 13)]  # 1 s per frame-step left, not (17 + ...) / n
    assert "warm-up 17.0 s" in progress.status() and "1.00 s/frame-step" in progress.status()


def test_a_resumed_run_times_only_its_own_frame_steps():
    clock = FakeClock()
    progress = StepProgress(10, "x", frames_per_step=2, stream=io.StringIO(), clock=clock)
    clock.now += 50.0  # opening the backend, before the checkpoint is read
    progress.skip(6)  # six frame-steps done by the interrupted run
    clock.now += 5.0
    progress.update()
    clock.now += 2.0
    progress.update()
    assert progress.warmup == 5.0 and progress.eta() == 2.0 * 2


def test_non_tty_output_is_one_line_per_event():
    stream = io.StringIO()
    _run(stream, FakeClock(), report_lines=["svsr-run: resuming from step 1 of 4"])
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()  # no bar redrawn in a log
    assert lines[1] == "svsr-run: resuming from step 1 of 4"  # after frame-step 5, between the timestep lines
    steps = [line for line in lines if "frame-steps" in line]
    assert [re.search(r"(\d+)/12 frame-steps", line).group(1) for line in steps] == ["3", "6", "9", "12"]  # one per timestep
    assert "ETA 0:09 (1.00 s/frame-step)" in steps[0] and "warm-up 17.0 s" in steps[0]


def test_on_a_terminal_messages_never_share_the_bar_line():
    stream = FakeTTY()
    _run(stream, FakeClock(), report_lines=["svsr-run: resuming from step 1 of 4", "svsr-run: clip state goes to files"])
    text = stream.getvalue()
    assert "\r" in text  # a bar was drawn
    for message in ("svsr-run: resuming from step 1 of 4", "svsr-run: clip state goes to files"):
        line = next(segment for segment in text.split("\n") if message in segment)
        # the bar was cleared before the message: nothing of the bar is left on the message's line
        assert line.split("\r")[-1] == message and "frame-step" not in line.split("\r")[-1]
    final = text.rstrip("\n").split("\n")[-1].split("\r")[-1]
    assert "12/12" in final and "warm-up 17.0 s" in final
