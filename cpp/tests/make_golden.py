"""Writes the golden files the C++ ctests compare against, from the Python contracts.

    .venv/bin/python cpp/tests/make_golden.py [OUT_DIR]     # default: cpp/tests/golden

* scheduler.json: svsr.contract.scheduler.step_coefficients for several scheduler configs and step
  counts; every coefficient as its float32 bit pattern (the ctest compares bits).
* frame_calls.json: svsr.contract.sweeps.frame_calls for N=4, S=3 (and a few more sizes).

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


def write(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in (("scheduler.json", scheduler_golden()), ("frame_calls.json", calls_golden())):
        path = out_dir / name
        path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "golden"
    for path in write(target):
        print(path)
