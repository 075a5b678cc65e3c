"""Run one command as a child process and measure its own wall time and peak RSS (via wait4)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_gib: float
    stdout: str


def run_measured(cmd: list[str]) -> Measured:
    """Run ``cmd`` (HF_HUB_OFFLINE=1); exit with its stderr tail if it fails."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the max over all children
        seconds = time.perf_counter() - start
        out.seek(0), err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{err.read()[-3000:]}")
        return Measured(seconds, usage.ru_maxrss / 2**20, out.read())
