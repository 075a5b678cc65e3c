"""Helpers of the benchmark scripts: a tiny-preset build, and one command measured as a child process (wall time, peak RSS)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def tiny_model(folder: Path) -> Path:
    """The tiny preset exported to ``folder`` (float32 graphs, no engines) by svsr-export in a child process.

    Not in this process: a measured child started from a parent that imported torch would inherit the
    parent's peak RSS (Linux keeps the high-water mark across the child's exec), spoiling its figure.
    """
    export = Path(sys.executable).parent / "svsr-export"
    subprocess.run([str(export), "--preset", "tiny", "--out", str(folder), "--quiet", "--onnx-only"], check=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return folder


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
