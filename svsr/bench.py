"""svsr-bench: latency per graph, per frame-step and per output frame, memory and achieved TFLOP/s.

Each backend is measured in its own child process, so every row's peak host memory is its own and
a backend's imports (torch for the reference) do not weigh on the others. Rows of one run are
compared as ratios against the reference (eager PyTorch float32: the original algorithm), twice and
labelled as such: end to end (the whole clip, where both rows ran it) and from the per-graph medians
(one frame-step = denoise + guide_decode + warp, untiled).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from svsr.contract.graphs import FLOW_GRAPH_NAMES, GRAPH_NAMES, GRAPHS, concrete_shape, sample_graph_inputs
from svsr.contract.manifest import graph_flops, load_manifest, stats_sizes
from svsr.contract.sizes import flow_scale_problem, padding_plan

# the graphs that make one frame's guidance (all frames of a sweep but the first): decode x0, then warp it
GUIDANCE_GRAPHS = ("guide_decode", "warp")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_calls(fn: Callable[[], None], warmup: int, repeats: int, sync: Callable[[], None] = lambda: None) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def _summary(times: list[float]) -> dict[str, float]:
    return {"median_ms": 1e3 * statistics.median(times), "p90_ms": 1e3 * percentile(times, 90), "calls": len(times)}


def _peak_host_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _frames(num_frames: int, height: int, width: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (height + num_frames, width + num_frames, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[i : i + height, i : i + width]) for i in range(num_frames)]


class GraphTimer:
    """Wraps a backend and adds up the wall time spent inside graph runs (a synchronous backend's compute)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.graph_seconds = 0.0

    def run(self, graph: str, inputs: Any, outputs: Any) -> None:
        start = time.perf_counter()
        self.inner.run(graph, inputs, outputs)
        self.graph_seconds += time.perf_counter() - start

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def runnable_graphs(height: int, width: int) -> list[str]:
    """The graphs that run on padded LR frames of ``height`` x ``width``: a flow graph whose RAFT input would be too small is left out."""
    too_small = {graph for scale, graph in FLOW_GRAPH_NAMES.items() if flow_scale_problem(scale, height, width)}
    return [name for name in GRAPH_NAMES if name not in too_small]


def bench_long_clip(sampler: Any, frames: int, height: int, width: int, steps: int, host_memory: int) -> dict[str, Any]:
    """A long clip through the clip store (spilled beyond ``host_memory``): frame-step time and host overhead.

    Host overhead = wall time outside graph runs (uploads, downloads, store reads/writes and spills,
    noise, scheduling) as a percentage of graph time. Only meaningful where runs are synchronous
    (ONNX Runtime); an asynchronous backend's runs return before the work is done. ``checksums``:
    the part of it spent on the store's CRC-32s, per frame-step and as a share of the frame-step
    (both from this one run, so a loaded machine scales both alike).
    """
    from svsr.contract.noise import PhiloxNoise

    from svsr.api import store_checksum_time

    timer = GraphTimer(sampler.backend)
    inner, sampler.backend = sampler.backend, timer
    try:
        seconds_before, calls_before = store_checksum_time()
        start = time.perf_counter()
        sampler.upscale(_frames(frames, height, width), num_inference_steps=steps, noise=PhiloxNoise(0), host_memory=host_memory)
        total = time.perf_counter() - start
        seconds_after, calls_after = store_checksum_time()
    finally:
        sampler.backend = inner
    checksum_seconds, checksum_calls = seconds_after - seconds_before, calls_after - calls_before
    frame_steps = frames * steps
    return {
        "frames": frames,
        "steps": steps,
        "host_memory": host_memory,
        "end_to_end_s": total,
        "graph_s": timer.graph_seconds,
        "frame_step_ms": 1e3 * total / frame_steps,
        "host_overhead_pct": 100.0 * (total - timer.graph_seconds) / timer.graph_seconds,
        "synchronous": getattr(inner, "name", "") == "ort",
        "checksums": {
            "calls": checksum_calls,
            "seconds": checksum_seconds,
            "ms_per_frame_step": 1e3 * checksum_seconds / frame_steps,
            "share_of_frame_step": checksum_seconds / total,  # a ratio within the run: seconds checksumming / seconds of the run
            "pct_of_graph_time": 100.0 * checksum_seconds / timer.graph_seconds,
        },
    }


def bench_runtime(model: Path, backend: str, precision: str, height: int, width: int, frames: int, steps: int, warmup: int, repeats: int,
                  long_clip: int = 0, host_memory: int = 16 * 2**20) -> dict[str, Any]:
    """One runtime backend (ort or trt): per-graph latency on the backend's own buffers, then end to end."""
    from svsr.api import Upscaler
    from svsr.contract.noise import NumpyNoise

    upscaler = Upscaler.open(model, backend=backend, precision=precision)
    sampler, label = upscaler.pipeline, upscaler.label  # per-graph timing needs the backend buffers
    b = sampler.backend
    plan = padding_plan(height, width)
    h, w = plan.padded_height, plan.padded_width
    stats = stats_sizes(load_manifest(model))
    graphs = {}
    for name in runnable_graphs(h, w):
        inputs = {}
        for key, value in sample_graph_inputs(name, h, w, stats=stats).items():
            inputs[key] = b.allocate(key, value.shape)
            b.upload(inputs[key], value)
        outputs = {spec.name: b.allocate(spec.name, concrete_shape(spec, 1, h, w, stats=stats)) for spec in GRAPHS[name].outputs}
        graphs[name] = _summary(time_calls(lambda: b.run(name, inputs, outputs), warmup, repeats, b.synchronize))
    clip = _frames(frames, height, width)
    sampler.upscale(clip[: min(2, frames)], num_inference_steps=1, noise=NumpyNoise(0))  # warm-up, CUDA-graph capture
    start = time.perf_counter()
    sampler.upscale(clip, num_inference_steps=steps, noise=NumpyNoise(0))
    total = time.perf_counter() - start
    long_row = bench_long_clip(sampler, long_clip, height, width, steps, host_memory) if long_clip else None
    row = {"backend": label, "precision": precision, "graphs": graphs, "end_to_end_s": total, "long_clip": long_row,
           "peak_host_mib": _peak_host_mib(), "peak_device_mib": _device_peak_mib(b)}
    upscaler.close()
    return row


def _device_peak_mib(backend: Any) -> float | None:
    peak = getattr(backend, "peak_device_bytes", None)
    return peak() / 2**20 if callable(peak) else None


def bench_reference(weights: str, height: int, width: int, frames: int, steps: int, warmup: int, repeats: int, device: str = "cpu", half: bool = False) -> dict[str, Any]:
    """Eager PyTorch: float32 reference on the CPU, or (where CUDA exists) fp16 + SDPA on the GPU."""
    from svsr.api import reference_graphs

    ref = reference_graphs(weights, height, width, steps, device=device, half=half)
    graphs = {name: _summary(time_calls(call, warmup, repeats, ref.synchronize)) for name, call in ref.calls.items()}
    clip = _frames(frames, height, width)
    start = time.perf_counter()
    if device == "cpu" and not half:
        ref.upscale(clip, steps)
        total = time.perf_counter() - start
    else:
        total = None  # the exact reference pipeline runs float32 on the CPU only; per-graph rows still count
    peak = ref.peak_device_bytes()
    label = "reference" if not half else "pytorch-fp16-sdpa"
    return {"backend": label, "precision": "fp16" if half else "fp32", "graphs": graphs, "end_to_end_s": total, "peak_host_mib": _peak_host_mib(),
            "peak_device_mib": peak / 2**20 if peak is not None else None}


def derive(row: dict[str, Any], manifest: dict[str, Any], height: int, width: int, frames: int, steps: int) -> dict[str, Any]:
    """Add per-frame-step / per-frame latencies and achieved TFLOP/s from the manifest's FLOPs."""
    plan = padding_plan(height, width)
    for name, stats in row["graphs"].items():
        flops = graph_flops(manifest["graphs"][name], plan.padded_height, plan.padded_width)
        stats["tflops"] = flops / (stats["median_ms"] / 1e3) / 1e12
    total = row.get("end_to_end_s")
    row["steps"] = steps  # the output frame time scales with it: the table says which count it measured
    row["frame_step_ms"] = 1e3 * total / (frames * steps) if total else None
    row["output_frame_ms"] = 1e3 * total / frames if total else None
    # what one untiled frame-step costs from the per-graph medians: denoise, plus the guidance (guide_decode
    # then warp) that every frame but the first of a sweep needs
    g = row["graphs"]
    guidance = sum(g[name]["median_ms"] for name in GUIDANCE_GRAPHS)
    row["frame_step_from_graphs_ms"] = g["denoise"]["median_ms"] + guidance * (frames - 1) / frames
    return row


def speedups(row: dict[str, Any], base: dict[str, Any] | None) -> dict[str, float | None]:
    """``row``'s speed-up over ``base``: end to end (None where either lacks a whole-clip time) and from the graph medians."""
    if base is None or row is base:
        return {"end_to_end": None, "from_graphs": None}
    end, base_end = row.get("end_to_end_s"), base.get("end_to_end_s")
    return {
        "end_to_end": base_end / end if end and base_end else None,
        "from_graphs": base["frame_step_from_graphs_ms"] / row["frame_step_from_graphs_ms"],
    }


def measured_graphs(rows: list[dict[str, Any]]) -> list[str]:
    """The graphs that some row measured, in the contract's order (a flow scale too big for the frames has no row)."""
    return [name for name in GRAPH_NAMES if any(name in r["graphs"] for r in rows)]


def _graph_cell(stats: dict[str, Any] | None) -> str:
    return f"{stats['median_ms']:.1f} ({stats['p90_ms']:.1f})" if stats else "-"


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    base = next((r for r in rows if r["backend"] == "reference"), None)
    names = measured_graphs(rows)
    columns = [
        "backend", "precision", "steps", *(f"{n} ms (p90)" for n in names), "frame-step ms", "output frame ms", "TFLOP/s denoise/guide_decode",
        "peak host MiB", "peak device MiB", "speed-up vs reference, end to end", "speed-up vs reference, from graph medians",
    ]  # fmt: skip
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        g = r["graphs"]
        cells = [_graph_cell(g.get(n)) for n in names]
        ratio = r.get("speedup_vs_reference") or speedups(r, base)
        end_to_end = f"{ratio['end_to_end']:.2f}x" if ratio["end_to_end"] is not None else ""
        from_graphs = f"{ratio['from_graphs']:.2f}x" if ratio["from_graphs"] is not None else ""
        fs = f"{r['frame_step_ms']:.1f}" if r["frame_step_ms"] else f"~{r['frame_step_from_graphs_ms']:.1f} (graphs)"
        of = f"{r['output_frame_ms']:.0f}" if r["output_frame_ms"] else "-"
        dev = f"{r['peak_device_mib']:.0f}" if r.get("peak_device_mib") else "-"
        tf = f"{g['denoise']['tflops']:.3f}/{g['guide_decode']['tflops']:.3f}"
        lines.append(
            f"| {r['backend']} | {r['precision']} | {r.get('steps', '-')} | " + " | ".join(cells)
            + f" | {fs} | {of} | {tf} | {r['peak_host_mib']:.0f} | {dev} | {end_to_end} | {from_graphs} |"
        )  # fmt: skip
    long_rows = [r for r in rows if r.get("long_clip")]
    if long_rows:
        lines += ["", "| long clip | frames x steps | host memory | frame-step ms | graph time s | host overhead (% of graph time) |", "|---|---|---|---|---|---|"]
        for r in long_rows:
            c = r["long_clip"]
            overhead = f"{c['host_overhead_pct']:.2f}%" if c["synchronous"] else "- (asynchronous backend)"
            lines.append(f"| {r['backend']} {r['precision']} | {c['frames']} x {c['steps']} | {c['host_memory'] / 2**20:.0f} MiB | "
                         f"{c['frame_step_ms']:.1f} | {c['graph_s']:.2f} | {overhead} |")
            # the part of the host overhead spent on the clip store's CRC-32s: per frame-step, and as a
            # share of the frame-step and of the graph time, all within this one run
            k = c.get("checksums")
            if k is not None:
                # three significant digits: the share is often far below 0.001%
                share = f"{k['pct_of_graph_time']:.3g}%" if c["synchronous"] else "-"
                lines.append(f"| {r['backend']} {r['precision']}: clip-store checksums ({k['calls']} CRC-32s) | {c['frames']} x {c['steps']} | "
                             f"{c['host_memory'] / 2**20:.0f} MiB | {k['ms_per_frame_step']:.3g} ({100 * k['share_of_frame_step']:.3g}% of the frame-step) | "
                             f"{k['seconds']:.3g} (checksums) | {share} |")
    return "\n".join(lines)


def check_plotting() -> None:
    """Refuse --plot before any measurement where matplotlib is missing (not after minutes of benchmarking)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        from svsr.contract.errors import MissingDependencyError

        raise MissingDependencyError("the bar chart needs matplotlib; install svsr[bench] or drop --plot.")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    names = measured_graphs(rows)
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(names))
    for i, r in enumerate(rows):
        ax.bar(x + i * width, [r["graphs"][n]["median_ms"] if n in r["graphs"] else np.nan for n in names], width, label=f"{r['backend']} {r['precision']}")
    ax.set_xticks(x + width * (len(rows) - 1) / 2, names, rotation=30)
    ax.set_ylabel("median latency per call (ms)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("svsr-bench: latency per graph call")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one backend in a fresh process (its own peak memory)."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        cmd = [sys.executable, "-m", "svsr.bench", json.dumps(spec), out.name]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")})
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"backend": spec["backend"], "error": tail[0]}
        return json.loads(Path(out.name).read_text())


def _child_main(spec_json: str, out_path: str) -> int:
    spec = json.loads(spec_json)
    kind = spec.pop("backend")
    if kind in ("ort", "trt"):
        row = bench_runtime(Path(spec["model"]), kind, spec["precision"], spec["height"], spec["width"], spec["frames"], spec["steps"], spec["warmup"], spec["repeats"],
                            long_clip=spec.get("long_clip", 0), host_memory=spec.get("host_memory", 16 * 2**20))
    else:
        row = bench_reference(spec["weights"], spec["height"], spec["width"], spec["frames"], spec["steps"], spec["warmup"], spec["repeats"], device=spec.get("device", "cpu"), half=kind == "torch-fp16")
    Path(out_path).write_text(json.dumps(row))
    return 0


def torch_cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def run_bench(model: Path, backends: list[str], precision: str, height: int, width: int, frames: int, steps: int, warmup: int, repeats: int, weights: str | None,
              report: Callable[[str], None] = print, long_clip: int = 0, host_memory: int = 16 * 2**20) -> tuple[list[dict[str, Any]], list[str]]:
    manifest = load_manifest(model)
    weights = weights or manifest["checkpoint"].get("source")
    rows, errors = [], []
    for backend in backends:
        spec = {"backend": backend, "model": str(model), "precision": precision if backend in ("ort", "trt") else "fp32", "height": height, "width": width, "frames": frames, "steps": steps, "warmup": warmup, "repeats": repeats, "weights": weights,
                "long_clip": long_clip, "host_memory": host_memory}
        if backend == "torch-fp16":
            spec["device"] = "cuda"
        report(f"svsr-bench: measuring {backend} ...")
        row = run_child(spec)
        if "error" in row:
            errors.append(f"{backend}: {row['error']}")
            report(f"svsr-bench: {backend} skipped: {row['error']}")
            continue
        rows.append(derive(row, manifest, height, width, frames, steps))
    base = next((r for r in rows if r["backend"] == "reference"), None)
    for row in rows:
        row["speedup_vs_reference"] = speedups(row, base)
    return rows, errors


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1], sys.argv[2]))
