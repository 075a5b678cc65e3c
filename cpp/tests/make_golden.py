"""Writes the golden files the C++ ctests compare against, from the Python contracts.

    .venv/bin/python cpp/tests/make_golden.py [OUT_DIR]     # default: cpp/tests/golden

* scheduler.json: svsr.contract.scheduler.step_coefficients for several scheduler configs, step
  counts and schedules (ddpm, ddim with several etas, dpmpp-2m); every coefficient as its float32
  bit pattern (the ctest compares bits), and the counts Python refuses (the C++ must refuse them too).
* frame_calls.json: svsr.contract.sweeps.frame_calls for N=4, S=3 (and a few more sizes).
* tiles.json: svsr.contract.tiles.plan_tiles for several frame sizes, tiles and overlaps: the tile
  positions and, per tile, an FNV-1a hash of the float32 bit patterns of the latent and the 4x
  (pixel) blend weights (small layouts' latent weights also in full).
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


# (scheduler, eta) of every config above
SCHEDULES = [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.5), ("ddim", 1.0), ("dpmpp-2m", 0.0)]

# configs that only the diffusers view of DDIM / DPM-Solver++ reads differently: keys the checkpoint
# left out (_use_default_values: the class's own defaults apply), set_alpha_to_one, leading spacing
EXTRA_CONFIGS = [
    (
        "v_defaults_left_out",
        {"num_train_timesteps": 1000, "prediction_type": "v_prediction", "timestep_spacing": "leading", "steps_offset": 1,
         "clip_sample": False, "_use_default_values": ["clip_sample", "timestep_spacing"]},
        "scaled_linear_1000",
        [1, 4, 20, 25, 50],
        [("ddim", 0.0), ("ddim", 0.3), ("dpmpp-2m", 0.0)],
    ),
    (
        "epsilon_alpha_not_one",
        {"num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False, "timestep_spacing": "trailing",
         "clip_sample": True, "clip_sample_range": 2.0},
        "linear_1000",
        [1, 3, 10, 25],
        [("ddim", 0.0), ("ddim", 0.7), ("dpmpp-2m", 0.0)],
    ),
    (
        "sample_dpm_leading",
        {"num_train_timesteps": 37, "prediction_type": "sample", "timestep_spacing": "leading", "steps_offset": 1},
        "scaled_linear_37",
        [1, 2, 5, 17, 18, 19, 30, 36, 37],
        [("ddim", 0.0), ("dpmpp-2m", 0.0)],
    ),
]


def run_golden(config: dict, acp: np.ndarray, count: int, scheduler: str, eta: float) -> dict:
    from svsr.contract.errors import InputError

    try:
        steps = step_coefficients(config, acp, count, scheduler=scheduler, eta=eta)
    except (InputError, ValueError) as refused:
        return {"num_inference_steps": count, "error": str(refused)}
    return {
        "num_inference_steps": count,
        # per step: [timestep, has_noise (0/1), the 8 coefficients as float32 bit patterns]
        "steps": [[s.timestep, int(s.has_noise), *(bits(c) for c in s.coeffs)] for s in steps],
    }


def scheduler_golden() -> dict:
    tables = {name: make() for name, make in TABLES.items()}
    cases = []
    plans = [(name, config, table, counts, SCHEDULES) for name, config, table, counts in CONFIGS] + EXTRA_CONFIGS
    for name, config, table, counts, schedules in plans:
        acp = np.asarray(tables[table], dtype=np.float32)
        for scheduler, eta in schedules:
            runs = [run_golden(config, acp, count, scheduler, eta) for count in counts]
            cases.append({"name": f"{name} {scheduler} eta={eta}", "config": config, "alphas_cumprod": table,
                          "scheduler": scheduler, "eta": eta, "runs": runs})
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


# (LR width, height, precision, CUDA graphs, flow scale) of the memory plans; 34x50 is padded to 36x52
PLAN_SIZES = [(640, 360, "auto", True, 4), (50, 34, "fp32", False, 4), (1920, 1080, "auto", True, 4), (640, 360, "auto", True, 2),
              (960, 540, "fp32", True, 1)]
# warp and blend always run in float32 (svsr/contract/precision.py): fp32 records only. The stats graphs'
# scratch is larger than their networks' at the tile would be: they see the whole frame (pooled)
PLAN_SCRATCH = {"flow.fp16": 3 << 20, "denoise.fp16": 700 << 20, "guide_decode.fp16": 90 << 20, "decode.fp16": 1000,
                "flow.fp32": 5 << 20, "denoise.fp32": 1300 << 20 | 7, "guide_decode.fp32": 180 << 20, "decode.fp32": 2000,
                "warp.fp32": 24 << 20, "blend.fp32": 0, "flow_x2.fp16": 2 << 20, "flow_x2.fp32": 3 << 20, "flow_x1.fp32": 1 << 20,
                "denoise_stats.fp16": 900 << 20, "denoise_stats.fp32": 1500 << 20, "decode_stats.fp16": 50 << 20, "decode_stats.fp32": 60 << 20}
# the GroupNorm statistics lengths of the plan manifest's checkpoint (manifest norm_stats.<graph>.size)
PLAN_STATS = {"denoise_stats": 2 * (32 * 4 + 32 * 6), "decode_stats": 2 * 32 * 9}


def plan_manifest() -> dict:
    """A manifest as svsr-export writes it (graphs from the contract, the statistics' lengths as integers), with fp16
    and fp32 engine records (except the flow graph's fp16: auto then takes fp32 for it, as the TensorRT loader does)."""
    from svsr.contract.engine_records import BuildEnvironment, cache_key, engine_key, make_record, plan_filename
    from svsr.contract.graphs import GRAPH_NAMES, GRAPHS, NORM_STATS_STRIDE, STATS_DIMS
    from svsr.contract.manifest import validate_manifest
    from svsr.contract.profiles import Profile

    def shape(spec) -> list:
        return [PLAN_STATS[d] if d in STATS_DIMS else d for d in spec.shape]

    graphs = {
        name: {
            "file": f"{name}.onnx",
            "sha256": "0" * 64,
            "inputs": [{"name": t.name, "dtype": t.dtype, "shape": shape(t)} for t in GRAPHS[name].inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype, "shape": shape(t)} for t in GRAPHS[name].outputs],
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
            profile=profile, key=ckey, device_memory_bytes=scratch, stats=PLAN_STATS,
        )
    manifest = {
        "schema_version": 3,
        "checkpoint": {"fingerprint": "f" * 16, "source": "/ckpt/tiny", "preset": "tiny"},
        "exporter": {"opset": 17, "method": "golden"},
        "graphs": graphs,
        "scheduler": {"config": CONFIGS[4][1], "alphas_cumprod": TABLES[CONFIGS[4][2]]()},
        "vae_scaling_factor": 0.18215,
        "latent_channels": 4,
        "norm_stats": {name: {"size": PLAN_STATS[name], "stride": NORM_STATS_STRIDE[name]} for name in PLAN_STATS},
        "sizes": {"min_side": 32, "pad_multiple": 4, "scale": 4},
        "engines": engines,
    }
    return validate_manifest(manifest)


def memory_plan_golden() -> dict:
    from svsr.contract.engine_records import engine_key
    from svsr.contract.sizes import padding_plan
    from svsr.runtime.sampling import choose_precision
    from svsr.runtime.sampling.frame_step import graphs_used
    from svsr.runtime.sampling.memory_plan import aligned, plan_memory
    from svsr.runtime.sampling.trt_engines import SCRATCH_ALIGNMENT

    manifest = plan_manifest()
    plans = []
    for width, height, precision, cuda_graphs, flow_scale in PLAN_SIZES:
        padding = padding_plan(height, width)
        padded_height, padded_width = padding.padded_height, padding.padded_width
        chosen = choose_precision(manifest, precision).per_graph()
        # the TensorRT scratch the engines' build records name: one area shared by the contexts of the graphs
        # whole frames run (the flow graph of the flow scale; no stats graph, no blend)
        used = graphs_used(False, flow_scale)
        scratch = aligned(max(manifest["engines"][engine_key(g, chosen[g])]["device_memory_bytes"] for g in used), SCRATCH_ALIGNMENT)
        plan = plan_memory(manifest, padded_height, padded_width, scratch_bytes=scratch, cuda_graphs=cuda_graphs)
        plans.append({
            "width": width, "height": height, "precision": precision, "cuda_graphs": cuda_graphs, "flow_scale": flow_scale,
            "padded_width": plan.width, "padded_height": plan.height, "slot_bytes": plan.slot_bytes,
            "scratch_bytes": plan.scratch_bytes, "contexts": plan.contexts, "programs": plan.programs,
            "reserve_bytes": plan.reserve_bytes, "total_bytes": plan.total_bytes,
        })
    return {"manifest": manifest, "plans": plans}


# (padded frame height, width, tile (height, width) or None, overlap)
TILE_CASES = [(36, 52, None, 16), (36, 52, (32, 32), 8), (64, 96, (32, 48), 16), (100, 180, (48, 64), 12), (40, 40, (64, 64), 16),
              (132, 68, (32, 32), 0), (92, 124, (36, 40), 17), (180, 320, (128, 128), 16)]


def fnv1a(words: np.ndarray) -> int:
    """FNV-1a (64 bit) over the little-endian bytes of uint32 words (the C++ test hashes the same way)."""
    digest = 0xCBF29CE484222325
    for byte in np.ascontiguousarray(words, dtype="<u4").tobytes():
        digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return digest


def w_size(layout) -> int:
    return layout.tile_height * layout.tile_width


def tiles_golden() -> dict:
    from svsr.contract.tiles import plan_tiles

    cases = []
    for height, width, tile, overlap in TILE_CASES:
        layout = plan_tiles(height, width, tile, overlap)
        cases.append({
            "height": height, "width": width, "tile": list(tile) if tile else None, "overlap": overlap,
            "tile_shape": list(layout.tile_shape), "layout_overlap": layout.overlap,
            "tiles": [[t.top, t.left, t.height, t.width] for t in layout.tiles],
            "weights_fnv1a": [str(fnv1a(w.reshape(-1).view(np.uint32))) for w in layout.weights(1)],
            # small layouts also in full (a failing ctest names the first differing weight)
            "weights": [w.reshape(-1).view(np.uint32).tolist() for w in layout.weights(1)] if len(layout.tiles) * w_size(layout) <= 4096 else None,
            "pixel_weights_fnv1a": [str(fnv1a(w.reshape(-1).view(np.uint32))) for w in layout.weights(4)],
        })
    return {"cases": cases}


def write(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    goldens = (("scheduler.json", scheduler_golden()), ("frame_calls.json", calls_golden()), ("memory_plan.json", memory_plan_golden()),
               ("tiles.json", tiles_golden()))
    for name, data in goldens:
        path = out_dir / name
        path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "golden"
    for path in write(target):
        print(path)
