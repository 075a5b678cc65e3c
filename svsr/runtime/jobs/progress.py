"""Honest progress of a video job: frame-steps done, warm-up apart, an ETA from the steady state (torch-free).

The first frame-step of a run pays for everything before it (reading the frames, the flows, the
initial latents, session warm-up), so an ETA measured from the start is far off. :class:`StepProgress`
times that warm-up on its own, shows it apart, and measures the ETA from the frame-steps after it.
On a terminal it draws a tqdm bar and messages are written above the bar, never onto its line; on
anything else (a log file, a pipe) it writes one line per event: a message, or a completed timestep.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

__all__ = ["StepProgress", "format_seconds"]

Report = Callable[[str], None]


def format_seconds(seconds: float) -> str:
    """``0:42``, ``1:38``, ``1:02:03``."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class StepProgress:
    """Progress over ``total`` frame-steps (``frames_per_step`` of them make one timestep)."""

    def __init__(self, total: int, desc: str, *, frames_per_step: int, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total, self.desc, self.frames_per_step = total, desc, max(1, frames_per_step)
        self.n = 0
        self._clock = clock
        self._start = clock()
        self.warmup: float | None = None  # seconds until the first frame-step of this run was done
        self._steady_start: float | None = None
        self._steady_from = 0  # frame-steps done when the steady state began
        self._bar: Any = None
        if self.tty:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="frame-step", file=self.stream, dynamic_ncols=True,
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")  # fmt: skip
            self._bar.set_postfix_str("warming up", refresh=False)

    # -- counting ---------------------------------------------------------------------------------------
    def skip(self, n: int) -> None:
        """Frame-steps done by an earlier run (resumed): counted, but neither warm-up nor steady state."""
        self.n += n
        self._start = self._clock()  # warm-up is measured from here: this run's first frame-step pays for it
        if self._bar is not None:
            self._bar.update(n)

    def update(self, n: int = 1) -> None:
        """``n`` more frame-steps done."""
        now = self._clock()
        before = self.n
        self.n += n
        if self.warmup is None:
            self.warmup, self._steady_start, self._steady_from = now - self._start, now, self.n
        if self._bar is not None:
            self._bar.set_postfix_str(self.status(), refresh=False)
            self._bar.update(n)
        elif self.n // self.frames_per_step > before // self.frames_per_step or self.n >= self.total:
            self._line(f"{self.desc}: {self.n}/{self.total} frame-steps, {self.status()}")

    def reset(self, total: int) -> None:
        """Count again from 0 of ``total`` (a bar handed to the next input)."""
        self.total, self.n, self.warmup, self._steady_start, self._start = total, 0, None, None, self._clock()
        if self._bar is not None:
            self._bar.reset(total=total)

    # -- what it says ---------------------------------------------------------------------------------
    def eta(self) -> float | None:
        """Seconds left at the steady-state rate, or None while only the warm-up frame-step is done."""
        if self._steady_start is None:
            return None
        steady = self.n - self._steady_from
        if steady <= 0:
            return None
        per_step = (self._clock() - self._steady_start) / steady
        return per_step * max(0, self.total - self.n)

    def status(self) -> str:
        """``warm-up 17.0 s, ETA 1:21 (0.82 s/frame-step)``."""
        if self.warmup is None:
            return "warming up"
        eta = self.eta()
        if eta is None:
            return f"warm-up {self.warmup:.1f} s, ETA after the next frame-step"
        steady = self.n - self._steady_from
        per_step = (self._clock() - self._steady_start) / steady if self._steady_start is not None else 0.0
        return f"warm-up {self.warmup:.1f} s, ETA {format_seconds(eta)} ({per_step:.2f} s/frame-step)"

    def wrap(self, report: Report) -> Report:
        """``report``, but never onto the bar's line: tqdm clears the bar, the message is written, the bar comes back."""
        if self._bar is None:
            return report

        def above_the_bar(message: str) -> None:
            from tqdm.auto import tqdm

            with tqdm.external_write_mode(file=self.stream):
                report(message)

        return above_the_bar

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self.status(), refresh=False)
            self._bar.close()
            self._bar = None
