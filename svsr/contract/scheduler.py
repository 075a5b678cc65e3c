"""DDPM timesteps and per-step coefficients from the manifest's scheduler tables (numpy, torch-free).

Mirrors diffusers' ``DDPMScheduler.set_timesteps`` and ``step`` in float32. The ``denoise`` graph
applies, with ``c = step_coeffs``::

    x0     = clamp(c[0] * z + c[1] * model_output, -c[5], c[5])
    z_prev = c[2] * x0 + c[3] * z + c[4] * noise

where, for a_t = alphas_cumprod[t], a_p = alphas_cumprod[prev_t] (1 after the last step),
b_t = 1 - a_t, b_p = 1 - a_p, alpha_t = a_t / a_p, beta_t = 1 - alpha_t:

- v_prediction: c[0] = sqrt(a_t), c[1] = -sqrt(b_t); epsilon: c[0] = 1/sqrt(a_t), c[1] = -sqrt(b_t)/sqrt(a_t);
  sample: c[0] = 0, c[1] = 1
- c[2] = sqrt(a_p) * beta_t / b_t, c[3] = sqrt(alpha_t) * b_p / b_t
- c[4] = sqrt(max(b_p / b_t * beta_t, 1e-20)) when t > 0 (fixed_small), else 0
- c[5] = clip_sample_range when clip_sample, else a huge number (no clipping)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

NO_CLIP = np.float32(3.0e38)


@dataclass(frozen=True)
class Step:
    index: int
    timestep: int
    coeffs: np.ndarray  # (6,) float32
    has_noise: bool  # t > 0: the step draws fresh noise


def timesteps(config: Mapping[str, Any], num_inference_steps: int) -> np.ndarray:
    """The scheduler's timesteps for a step count (int64, descending)."""
    total = int(config["num_train_timesteps"])
    if not 1 <= num_inference_steps <= total:
        raise ValueError(f"num_inference_steps must be in 1..{total}, got {num_inference_steps}")
    spacing = config.get("timestep_spacing", "leading")
    if spacing == "linspace":
        steps = np.linspace(0, total - 1, num_inference_steps).round()[::-1].copy().astype(np.int64)
    elif spacing == "leading":
        ratio = total // num_inference_steps
        steps = (np.arange(0, num_inference_steps) * ratio).round()[::-1].copy().astype(np.int64)
        steps += int(config.get("steps_offset", 0))
    elif spacing == "trailing":
        ratio = total / num_inference_steps
        steps = np.round(np.arange(total, 0, -ratio)).astype(np.int64) - 1
    else:
        raise ValueError(f"timestep_spacing {spacing!r} is not supported")
    return steps


def step_coefficients(config: Mapping[str, Any], alphas_cumprod: np.ndarray, num_inference_steps: int) -> list[Step]:
    """Every step's timestep and ``denoise`` coefficients for ``num_inference_steps``."""
    acp = np.asarray(alphas_cumprod, dtype=np.float32)
    one = np.float32(1.0)
    ts = timesteps(config, num_inference_steps)
    if int(ts.max()) >= len(acp):  # 'leading' spacing plus steps_offset can step past the table
        from svsr.contract.errors import InputError

        raise InputError(
            f"{num_inference_steps} steps reach timestep {int(ts.max())}, beyond the scheduler's {len(acp)} training "
            "timesteps (its steps_offset shifts them); use fewer steps."
        )
    prediction = config.get("prediction_type", "epsilon")
    variance_type = config.get("variance_type", "fixed_small")
    steps = []
    for index, t in enumerate(ts):
        prev_t = ts[index + 1] if index + 1 < len(ts) else -1
        a_t = acp[t]
        a_p = acp[prev_t] if prev_t >= 0 else one
        b_t, b_p = one - a_t, one - a_p
        alpha_t = a_t / a_p
        beta_t = one - alpha_t
        if prediction == "v_prediction":
            c_sample, c_output = np.sqrt(a_t), -np.sqrt(b_t)
        elif prediction == "epsilon":
            c_sample, c_output = one / np.sqrt(a_t), -np.sqrt(b_t) / np.sqrt(a_t)
        elif prediction == "sample":
            c_sample, c_output = np.float32(0), one
        else:
            raise ValueError(f"prediction_type {prediction!r} is not supported")
        variance = np.maximum(b_p / b_t * beta_t, np.float32(1e-20))
        if variance_type in ("fixed_small", "fixed_small_log"):
            std = np.sqrt(variance)
        elif variance_type == "fixed_large":
            std = np.sqrt(beta_t)
        else:
            raise ValueError(f"variance_type {variance_type!r} is not supported")
        clip = np.float32(config.get("clip_sample_range", 1.0)) if config.get("clip_sample") else NO_CLIP
        coeffs = np.array(
            [c_sample, c_output, np.sqrt(a_p) * beta_t / b_t, np.sqrt(alpha_t) * b_p / b_t, std if t > 0 else 0, clip],
            dtype=np.float32,
        )
        steps.append(Step(index, int(t), coeffs, bool(t > 0)))
    return steps


def steps_problem(config: Mapping[str, Any], num_inference_steps: int, where: str, *, spell=lambda name, value: f"{name}={value!r}") -> str | None:
    """Why ``num_inference_steps`` does not fit the scheduler ``config`` (of the build or checkpoint ``where``), or None.

    The one steps check: diffusers would fail deep inside for a count past the training timesteps,
    and 'leading' spacing plus ``steps_offset`` can step past the table. ``spell(name, value)`` writes
    the option as the caller's user wrote it (``num_inference_steps=1001`` or ``--steps 1001``).
    """
    steps = spell("num_inference_steps", num_inference_steps)
    total = int(config.get("num_train_timesteps", 1000))
    if num_inference_steps < 1:
        return f"{steps} is below 1; use 1 to {total}."
    if num_inference_steps > total:
        return f"{steps} is more than the {total} training timesteps of the scheduler in {where}; use 1 to {total}."
    try:
        last = int(timesteps(config, num_inference_steps).max())
    except ValueError as exc:
        return f"{steps} does not fit the scheduler in {where} ({exc}); use fewer steps."
    if last >= total:
        usable = max(s for s in range(1, total + 1) if int(timesteps(config, s).max()) < total)
        return (
            f"{steps} reaches timestep {last} with the scheduler in {where} (steps_offset "
            f"{config.get('steps_offset', 0)}), beyond its {total} training timesteps; use 1 to {usable}."
        )
    return None
