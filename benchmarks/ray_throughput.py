"""Throughput of svsr-run over Ray with 1 and 2 workers on this machine, and Ray's overhead per shot.

    python benchmarks/ray_throughput.py                 # tiny preset, 4 inputs of 24 frames, 2 steps

Each configuration is one whole `svsr-run` process (the child's own wall time): in-process (no
Ray), `--ray local --ray-workers 1` and `--ray local --ray-workers 2`. Ray's overhead per shot is
(1-worker time - in-process time) / shots: starting Ray, the workers, loading the build folder in
each, and moving each shot's result.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from child_process import run_measured, tiny_model


def make_inputs(folder: Path, count: int, frames: int, size: tuple[int, int]) -> list[Path]:
    from svsr.runtime.video import FrameWriter

    paths = []
    for n in range(count):
        rng = np.random.default_rng(n)
        base = rng.integers(0, 256, (size[1] + frames, size[0] + frames, 3), dtype=np.uint8)
        path = folder / f"in{n}.mkv"
        with FrameWriter(path, fps=24, codec="ffv1") as writer:
            for i in range(frames):
                writer.write(np.ascontiguousarray(base[i : i + size[1], i : i + size[0]]))
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="build folder (default: export the tiny preset)")
    parser.add_argument("--inputs", type=int, default=4)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or tiny_model(tmp / "model")
        inputs = make_inputs(tmp, args.inputs, args.frames, (48, 32))
        rows = []
        for label, extra in (("in-process", []), ("ray 1 worker", ["--ray", "local", "--ray-workers", "1"]), ("ray 2 workers", ["--ray", "local", "--ray-workers", "2"])):
            out = tmp / label.replace(" ", "_")
            cmd = [str(bin_dir / "svsr-run"), *map(str, inputs), "-o", str(out), "--model", str(model), "--steps", str(args.steps),
                   "--codec", "ffv1", "--no-scene-split", "--quiet", *extra]  # fmt: skip
            measured = run_measured(cmd)
            rows.append({"run": label, "seconds": round(measured.seconds, 1), "frames_per_second": round(args.inputs * args.frames / measured.seconds, 3)})
            print(json.dumps(rows[-1]))
    base, one, two = rows
    shots = args.inputs
    print("\n| run | seconds | frames/s |\n|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['seconds']} | {r['frames_per_second']} |")
    print(f"throughput 2 workers / 1 worker: {two['frames_per_second'] / one['frames_per_second']:.2f}x; "
          f"Ray overhead per shot: {(one['seconds'] - base['seconds']) / shots:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
