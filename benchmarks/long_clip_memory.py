"""Peak RSS of svsr-run on long clips: flat once the clip store is at its --host-memory budget.

Each video is upscaled as ONE exact clip (no chunks); state beyond the budget goes to files in the
work folder, read and written with pread/pwrite so it never counts as resident memory.

    python benchmarks/long_clip_memory.py                    # tiny preset, 30, 300 and 3000 frames of 32x32
    python benchmarks/long_clip_memory.py --frames 30 300 --host-memory 16M
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from child_process import run_measured, tiny_model


def make_clip(path: Path, num_frames: int, size: int) -> None:
    from svsr.runtime.video import FrameWriter

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size * 2, size * 2, 3), dtype=np.uint8)
    with FrameWriter(path, fps=24) as writer:
        for i in range(num_frames):
            x = i % size
            writer.write(np.ascontiguousarray(base[x : x + size, x : x + size]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="build folder (default: export the tiny preset)")
    parser.add_argument("--frames", type=int, nargs="+", default=[30, 300, 3000])
    parser.add_argument("--size", type=int, default=32, help="LR frame side in px")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--host-memory", default="16M", help="svsr-run --host-memory (default 16M, so long clips spill)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or tiny_model(tmp / "model")
        rows = []
        for n in args.frames:
            clip = tmp / f"clip{n}.mp4"
            make_clip(clip, n, args.size)
            cmd = [str(bin_dir / "svsr-run"), str(clip), "-o", str(tmp / f"out{n}.mp4"), "--model", str(model), "--steps", str(args.steps), "--quiet"]
            cmd += ["--host-memory", args.host_memory]
            measured = run_measured(cmd)
            seconds, peak = measured.seconds, measured.peak_rss_gib
            rows.append({"frames": n, "seconds": round(seconds, 1), "peak_rss_gib": round(peak, 3), "host_memory": args.host_memory})
            print(json.dumps(rows[-1]))
    print("\n| frames | seconds | peak RSS GiB |\n|---|---|---|")
    for r in rows:
        print(f"| {r['frames']} | {r['seconds']} | {r['peak_rss_gib']} |")
    print(f"peak RSS ratio {rows[-1]['frames']} vs {rows[0]['frames']} frames: {rows[-1]['peak_rss_gib'] / rows[0]['peak_rss_gib']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
