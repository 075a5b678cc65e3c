"""Writes the golden files the C++ ctests compare against, from the Python contracts.

    .venv/bin/python cpp/tests/make_golden.py [OUT_DIR]     # default: cpp/tests/golden

* scheduler.json: svsr.contract.scheduler.step_coefficients for several scheduler configs and step
  counts; every coefficient as its float32 bit pattern (the ctest compares bits).
* frame_calls.json: svsr.contract.sweeps.frame_calls for N=4, S=3 (and a few more sizes).
* memory_plan.json: a manifest with engine records and the device memory plan Python's
  svsr.runtime.sampling memory plan makes from it for a few frame sizes (svsr-host --dry-run's figure).

tests/test_cpp_host.py regenerates both into a temporary folder, checks that the committed files are
current and runs the ctests against the fresh ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from svsr.contract.scheduler import step_coefficients
from svsr.contract.sweeps import frame_calls


def scaled_linear(total: int, start: float = 0.0001, end: float = 0.02) -> list[float]:
    betas = np.linspace(start**0.5, end**0.5, total, dtype=np.float32) ** 2
    return [float(a) for a in np.cumprod(np.float32(1.0) - betas, dtype=np.float32)]


def linear(total: int, start: float = 0.0001, end: float = 0.02) -> list[float]:
    betas = np.linspace(start, end, total, dtype=np.float32)
    return [float(a) for a in np.cumprod(np.float32(1.0) - betas, dtype=np.float32)]


# (name, config, alphas_cumprod, step counts); the first is StableVSR's own scheduler (the x4 upscaler's DDPM)
CONFIGS = [
    (
        "stablevsr_v_leading",
        {"num_train_timesteps": 1000, "prediction_type": "v_prediction", "variance_type": "fixed_small",
         "timestep_spacing": "leading", "steps_offset": 1, "clip_sample": False, "clip_sample_range": 1.0},
        "scaled_linear_1000",
        [1, 2, 3, 7, 25, 50, 200, 999],
    ),
    (
        "epsilon_linspace_clip",
        {"num_train_timesteps": 1000, "prediction_type": "epsilon", "variance_type": "fixed_small_log",
         "timestep_spacing": "linspace", "clip_sample": True, "clip_sample_range": 1.5},
        "linear_1000",
        [1, 2, 3, 10, 50, 333],
    ),
    (
        "sample_trailing_large",
        {"num_train_timesteps": 1000, "prediction_type": "sample", "variance_type": "fixed_large",
         "timestep_spacing": "trailing"},
        "scaled_linear_1000",
        [1, 3, 7, 50, 61, 103, 250],
    ),
    (
        "v_trailing_small_37",
        {"num_train_timesteps": 37, "prediction_type": "v_prediction", "timestep_spacing": "trailing"},
        "linear_37",
        list(range(1, 38)),
    ),
    (
        "epsilon_leading_defaults_37",
        {"num_train_timesteps": 37, "prediction_type": "epsilon"},
        "scaled_linear_37",
        [1, 2, 5, 36, 37],
    ),
]

TABLES = {
    "scaled_linear_1000": lambda: scaled_linear(1000),
    "linear_1000": lambda: linear(1000),
    "linear_37": lambda: linear(37, 0.001, 0.2),
    "scaled_linear_37": lambda: scaled_linear(37, 0.001, 0.2),
}

CALL_SIZES = [(4, 3), (1, 2), (2, 1), (5, 4)]


def bits(value: np.float32) -> int:
    return int(np.float32(value).view(np.uint32))


def scheduler_golden() -> dict:
    tables = {name: make() for name, make in TABLES.items()}
    cases = []
    for name, config, table, counts in CONFIGS:
        acp = np.asarray(tables[table], dtype=np.float32)
        runs = []
        for count in counts:
            steps = step_coefficients(config, acp, count)
            runs.append({
                "num_inference_steps": count,
                # per step: [timestep, has_noise (0/1), the 6 coefficients as float32 bit patterns]
                "steps": [[s.timestep, int(s.has_noise), *(bits(c) for c in s.coeffs)] for s in steps],
            })
        cases.append({"name": name, "config": config, "alphas_cumprod": table, "runs": runs})
    return {"tables": tables, "cases": cases}


def calls_golden() -> dict:
    out = []
    for n, s in CALL_SIZES:
        out.append({
            "num_frames": n,
            "num_steps": s,
            "calls": [
                [c.step, c.position, c.frame, c.direction, -1 if c.flow_index is None else c.flow_index]
                for c in frame_calls(n, s)
            ],
        })
    return {"sizes": out}


# (LR width, height, precision, CUDA graphs) of the memory plans; 34x50 is padded to 36x52
PLAN_SIZES = [(640, 360, "auto", True), (50, 34, "fp32", False), (1920, 1080, "auto", True)]
PLAN_SCRATCH = {"flow.fp16": 3 << 20, "denoise.fp16": 700 << 20, "guide.fp16": 90 << 20, "decode.fp16": 1000,
                "flow.fp32": 5 << 20, "denoise.fp32": 1300 << 20 | 7, "guide.fp32": 180 << 20, "decode.fp32": 2000}


def plan_manifest() -> dict:
    """A manifest as svsr-export writes it (graphs from the contract), with fp16 and fp32 engine records
    (except the flow graph's fp16: auto then takes fp32 for it, as the TensorRT loader does)."""
    from svsr.contract.engine_records import BuildEnvironment, cache_key, engine_key, make_record, plan_filename
    from svsr.contract.graphs import GRAPH_NAMES, GRAPHS
    from svsr.contract.manifest import validate_manifest
    from svsr.contract.profiles import Profile

    graphs = {
        name: {
            "file": f"{name}.onnx",
            "sha256": "0" * 64,
            "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in GRAPHS[name].inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in GRAPHS[name].outputs],
            "flops": {"per_call": 1, "lr_height": 32, "lr_width": 32},
        }
        for name in GRAPH_NAMES
    }
    env, profile = BuildEnvironment("11.4.0.106", "NVIDIA H100 80GB HBM3", "9.0"), Profile((32, 32), (360, 640), (1080, 1920))
    engines = {}
    for key, scratch in PLAN_SCRATCH.items():
        if key == "flow.fp16":
            continue
        graph, precision = key.split(".")
        ckey = cache_key("0" * 64, env, profile)
        engines[engine_key(graph, precision)] = make_record(
            graph=graph, precision=precision, plan_file=f"engines/{plan_filename(graph, precision, ckey)}", plan_sha256="1" * 64,
            plan_size=1 << 20, onnx_file=f"{graph}.onnx", onnx_sha256="0" * 64, onnx_source_sha256="0" * 64, env=env,
            profile=profile, key=ckey, device_memory_bytes=scratch,
        )
    manifest = {
        "schema_version": 1,
        "checkpoint": {"fingerprint": "f" * 16, "source": "/ckpt/tiny", "preset": "tiny"},
        "exporter": {"opset": 17, "method": "golden"},
        "graphs": graphs,
        "scheduler": {"config": CONFIGS[4][1], "alphas_cumprod": TABLES[CONFIGS[4][2]]()},
        "vae_scaling_factor": 0.18215,
        "latent_channels": 4,
        "sizes": {"min_side": 32, "pad_multiple": 4, "scale": 4},
        "engines": engines,
    }
    return validate_manifest(manifest)


def memory_plan_golden() -> dict:
    from svsr.contract.engine_records import engine_key
    from svsr.contract.sizes import padding_plan
    from svsr.runtime.sampling import choose_precision
    from svsr.runtime.sampling.memory_plan import aligned, plan_memory
    from svsr.runtime.sampling.trt_engines import SCRATCH_ALIGNMENT

    manifest = plan_manifest()
    plans = []
    for width, height, precision, cuda_graphs in PLAN_SIZES:
        padding = padding_plan(height, width)
        padded_height, padded_width = padding.padded_height, padding.padded_width
        chosen = choose_precision(manifest, precision).per_graph()
        # the TensorRT scratch the engines' build records name: one area shared by every context
        scratch = aligned(max(manifest["engines"][engine_key(g, p)]["device_memory_bytes"] for g, p in chosen.items()), SCRATCH_ALIGNMENT)
        plan = plan_memory(manifest, padded_height, padded_width, scratch_bytes=scratch, cuda_graphs=cuda_graphs)
        plans.append({
            "width": width, "height": height, "precision": precision, "cuda_graphs": cuda_graphs,
            "padded_width": plan.width, "padded_height": plan.height, "slot_bytes": plan.slot_bytes,
            "scratch_bytes": plan.scratch_bytes, "contexts": plan.contexts, "programs": plan.programs,
            "reserve_bytes": plan.reserve_bytes, "total_bytes": plan.total_bytes,
        })
    return {"manifest": manifest, "plans": plans}


def write(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    goldens = (("scheduler.json", scheduler_golden()), ("frame_calls.json", calls_golden()), ("memory_plan.json", memory_plan_golden()))
    for name, data in goldens:
        path = out_dir / name
        path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "golden"
    for path in write(target):
        print(path)
