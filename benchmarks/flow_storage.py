"""Store flows or recompute them per frame-step? Times one flow-graph call against reading a stored flow.

    python benchmarks/flow_storage.py                        # tiny preset, LR 64x48
    python benchmarks/flow_storage.py --model build/ --resolution 320x180

The clip store keeps 2 flows per frame (2 x 2 x 4h x 4w float32: 14.7 MB per frame at 320x180);
`--flows recompute` runs the flow graph once per frame-step instead (S x N calls instead of 2(N-1)).
This prints the cost of each alternative per frame-step: a flow-graph call on the backend, a read
of one flow from RAM, and from a file of the work folder (page cache, and after dropping it from the
cache with posix_fadvise, a cold read).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from child_process import tiny_model


def timed(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return 1e3 * statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="build folder (default: export the tiny preset)")
    parser.add_argument("--resolution", default="64x48")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    from svsr.api import Upscaler
    from svsr.contract.graphs import sample_graph_inputs
    from svsr.runtime.sampling import FileFrameArray, FrameArray

    width, height = (int(v) for v in args.resolution.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or tiny_model(tmp / "model")
        with Upscaler.open(model, backend="auto") as upscaler:
            b = upscaler.pipeline.backend
            feeds = sample_graph_inputs("flow", height, width)
            ins = {k: b.allocate(k, v.shape) for k, v in feeds.items()}
            for k, v in feeds.items():
                b.upload(ins[k], v)
            out = {"flow": b.allocate("flow", (1, 2, 4 * height, 4 * width))}
            flow_ms = timed(lambda: (b.run("flow", ins, out), b.synchronize()), args.repeats)
            label = upscaler.label
        shape = (1, 2, 4 * height, 4 * width)
        value = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        ram = FrameArray(8, shape)
        disk = FileFrameArray(tmp / "flows.f32", 8, shape)
        for i in range(8):
            ram.write(i, value)
            disk.write(i, value)
        buf = np.empty(shape, np.float32)
        ram_ms = timed(lambda: ram.read(3, buf), args.repeats)
        cached_ms = timed(lambda: disk.read(3, buf), args.repeats)

        def cold() -> None:
            disk.flush()
            os.posix_fadvise(disk._fd, 0, 0, os.POSIX_FADV_DONTNEED)
            disk.read(5, buf)

        cold_ms = timed(cold, args.repeats)
        disk.close()
    mb = value.nbytes / 1e6
    print(f"flow storage trade-off at LR {width}x{height} ({mb:.2f} MB per flow), backend {label}")
    print("| per frame-step | ms |\n|---|---|")
    print(f"| recompute: one flow-graph call | {flow_ms:.2f} |")
    print(f"| store: read one flow from RAM | {ram_ms:.3f} |")
    print(f"| store: read one flow from the work folder (page cache) | {cached_ms:.3f} |")
    print(f"| store: read one flow from the work folder (dropped from the cache) | {cold_ms:.3f} |")
    print(f"recompute costs {flow_ms / cold_ms:.0f}x a cold read of a stored flow")
    return 0


if __name__ == "__main__":
    sys.exit(main())
