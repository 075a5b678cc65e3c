"""Timesteps and per-step coefficients from the manifest's scheduler tables (numpy, torch-free).

Mirrors ``set_timesteps`` and ``step`` of diffusers' ``DDPMScheduler`` (the paper's, ``ddpm``),
``DDIMScheduler.from_config(ddpm_config)`` (``ddim``) and
``DPMSolverMultistepScheduler.from_config(ddpm_config)`` with its defaults (DPM-Solver++ 2M,
``dpmpp-2m``). Every step is one call of the ``denoise`` graph, which applies, with
``c = step_coeffs`` (svsr/contract/graphs.py names them)::

    x0     = clamp(c[0] * z + c[1] * model_output, -c[5], c[5])
    z_prev = c[2] * x0 + c[3] * z + c[4] * noise + c[6] * model_output + c[7] * x0_history

``x0_history`` is the same frame's x0 of the previous step (DPM-Solver++ only; a zero buffer for
the others); ``noise`` is the step noise (zeros where ``Step.has_noise`` is False).

Arithmetic: every quantity below is a float32 (numpy.float32 / C ``float``), each operation one
correctly rounded IEEE binary32 operation evaluated left to right as written (no FMA), ``sqrt`` the
correctly rounded float32 square root. The only transcendental functions (DPM-Solver++) are
``log32(x) = float32(log(double(x)))`` (``-inf`` for x = 0) and ``exp32(x) = float32(exp(double(x)))``,
with C's double ``log``/``exp``. ``acp[t]`` is ``alphas_cumprod[t]`` of the manifest (float32),
T = ``num_train_timesteps``, n = the step count, ``1`` and ``0`` are float32 constants, NO_CLIP = 3e38.

Effective config: a scheduler made with ``from_config(ddpm_config)`` takes the keys of the DDPM
config that its own ``__init__`` accepts, except those listed in ``_use_default_values`` (keys the
checkpoint's json left out), and its own defaults for the rest (``effective_config``).

Timesteps (int64, descending), ``scheduler_timesteps``:

- ddpm and ddim, by ``timestep_spacing``: linspace: ``round(linspace(0, T-1, n))`` reversed;
  leading: ``arange(n) * (T // n)`` reversed, plus ``steps_offset``; trailing:
  ``round(arange(T, 0, -T/n)) - 1`` (float64 numpy).
- dpmpp-2m (default spacing linspace): linspace: ``round(linspace(0, T-1, n+1))`` reversed, last
  dropped; leading: ``arange(n+1) * (T // (n+1))`` reversed, last dropped, plus ``steps_offset``;
  trailing: as ddpm.

DDPM (step i at t, prev_t = the next timestep, -1 after the last), a_t = acp[t],
a_p = acp[prev_t] (1 when prev_t < 0), b_t = 1 - a_t, b_p = 1 - a_p, alpha_t = a_t / a_p,
beta_t = 1 - alpha_t:

- x0 by prediction_type: v_prediction: c[0] = sqrt(a_t), c[1] = -sqrt(b_t); epsilon:
  c[0] = 1 / sqrt(a_t), c[1] = -sqrt(b_t) / sqrt(a_t); sample: c[0] = 0, c[1] = 1
- c[2] = sqrt(a_p) * beta_t / b_t, c[3] = sqrt(alpha_t) * b_p / b_t
- c[4] = sqrt(max(b_p / b_t * beta_t, 1e-20)) (fixed_small; fixed_large: sqrt(beta_t)) when t > 0, else 0
- c[5] = clip_sample_range when clip_sample, else NO_CLIP; c[6] = c[7] = 0
- has_noise = t > 0

DDIM (eta in [0, 1]; prev_t = t - T // n, diffusers' rule whatever the spacing), a_t = acp[t],
a_p = acp[prev_t] if prev_t >= 0 else (1 if set_alpha_to_one else acp[0]), b_t = 1 - a_t, b_p = 1 - a_p:

- variance = (b_p / b_t) * (1 - a_t / a_p); std = float32(eta) * sqrt(variance)
- d = sqrt(max(1 - a_p - std * std, 0))  (the weight of the predicted epsilon; diffusers gives NaN
  where rounding makes the difference negative, this gives 0)
- x0 coefficients c[0], c[1] as DDPM; c[2] = sqrt(a_p); c[4] = std if eta > 0 else 0
- epsilon (diffusers' pred_epsilon, from the unclipped output):
  v_prediction (eps = sqrt(a_t) * out + sqrt(b_t) * z): c[3] = d * sqrt(b_t), c[6] = d * sqrt(a_t);
  epsilon (eps = out): c[3] = 0, c[6] = d;
  sample (eps = (z - sqrt(a_t) * out) / sqrt(b_t)): c[3] = d / sqrt(b_t), c[6] = -(d * sqrt(a_t) / sqrt(b_t))
- c[5] as DDPM (DDIM's clip_sample / clip_sample_range); c[7] = 0
- has_noise = eta > 0 (diffusers draws noise at every step then, the last one included)

DPM-Solver++ 2M (midpoint, lower_order_final, final_sigmas_type zero), over the timesteps t_0..t_{n-1}:

- sigma_i = sqrt((1 - acp[t_i]) / acp[t_i]) for i < n, sigma_n = 0
- alpha_i = 1 / sqrt(sigma_i * sigma_i + 1), s_i = sigma_i * alpha_i, lambda_i = log32(alpha_i) - log32(s_i)
  (so lambda_n = +inf)
- step i (current i, next i+1): h = lambda_{i+1} - lambda_i, A = alpha_{i+1} * (exp32(-h) - 1),
  ratio = s_{i+1} / s_i
- x0 (diffusers' converted model output): v_prediction: c[0] = alpha_i, c[1] = -s_i; epsilon:
  c[0] = 1 / alpha_i, c[1] = -s_i / alpha_i; sample: c[0] = 0, c[1] = 1; c[5] = NO_CLIP
- first order (i = 0 and the last step i = n-1): c[2] = -A, c[3] = ratio, c[7] = 0
  (the last step gives z_prev = x0: A = -1, ratio = 0)
- second order (0 < i < n-1): h_0 = lambda_i - lambda_{i-1}, r0 = h_0 / h, B = (0.5 * A) * (1 / r0):
  c[2] = -(A + B), c[3] = ratio, c[7] = B  (from x_t = ratio*z - A*D0 - 0.5*A*D1, D0 = x0,
  D1 = (x0 - x0_history) / r0)
- c[4] = c[6] = 0; has_noise = False
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

NO_CLIP = np.float32(3.0e38)
SCHEDULERS = ("ddpm", "ddim", "dpmpp-2m")
DEFAULT_SCHEDULER = "ddpm"
# the step count a scheduler runs when the user names none (ddpm: the paper's; the others: a
# first choice, to be confirmed by benchmarks/quality.py)
DEFAULT_STEPS = {"ddpm": 50, "ddim": 25, "dpmpp-2m": 20}
# schedulers whose step reads the frame's previous x0 (one history per frame, kept in the clip store)
MULTISTEP_SCHEDULERS = ("dpmpp-2m",)
# schedulers with an eta (the weight of fresh noise per step)
ETA_SCHEDULERS = ("ddim",)

Spell = Callable[[str, Any], str]


def _spell(name: str, value: Any) -> str:
    return f"{name}={value!r}"


@dataclass(frozen=True)
class Step:
    index: int
    timestep: int
    coeffs: np.ndarray  # (NUM_STEP_COEFFS,) float32
    has_noise: bool  # the scheduler's step draws fresh noise (DDPM at t > 0, DDIM with eta > 0)

    @property
    def reads_history(self) -> bool:
        """The step's update reads the frame's previous x0 (``prev_from_history`` is not zero)."""
        return bool(self.coeffs[7] != 0)


def needs_history(scheduler: str) -> bool:
    """Whether ``scheduler`` keeps one x0 history per frame (the clip store's x0 plane, part of the checkpoint)."""
    return scheduler in MULTISTEP_SCHEDULERS


def scheduler_problem(scheduler: Any, eta: Any = 0.0, *, spell: Spell = _spell) -> str | None:
    """Why ``scheduler`` / ``eta`` cannot run, in one sentence, or None."""
    if not isinstance(scheduler, str) or scheduler not in SCHEDULERS:
        return f"unknown scheduler {spell('scheduler', scheduler)}; use one of {', '.join(SCHEDULERS)}."
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.floating, np.integer)) or not 0 <= float(eta) <= 1:
        return f"{spell('eta', eta)} is not a number from 0 to 1; use 0 (deterministic, the default) up to 1."
    if float(eta) > 0 and scheduler not in ETA_SCHEDULERS:
        return (f"{spell('eta', eta)} has no effect with {spell('scheduler', scheduler)}, which adds no eta-scaled noise; "
                f"leave eta at 0 or use {' or '.join(ETA_SCHEDULERS)}.")
    return None


# -- the configuration each scheduler class ends up with ---------------------------------------------
# __init__ defaults of the diffusers classes (0.42) for the keys that change the schedule; a key of the
# DDPM config that the class does not accept is ignored by from_config, as here.
_CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "ddim": {
        "num_train_timesteps": 1000, "timestep_spacing": "leading", "steps_offset": 0, "prediction_type": "epsilon",
        "clip_sample": True, "clip_sample_range": 1.0, "set_alpha_to_one": True, "thresholding": False,
        "rescale_betas_zero_snr": False,
    },
    "dpmpp-2m": {
        "num_train_timesteps": 1000, "timestep_spacing": "linspace", "steps_offset": 0, "prediction_type": "epsilon",
        "thresholding": False, "solver_order": 2, "algorithm_type": "dpmsolver++", "solver_type": "midpoint",
        "lower_order_final": True, "euler_at_final": False, "use_karras_sigmas": False, "use_exponential_sigmas": False,
        "use_beta_sigmas": False, "use_lu_lambdas": False, "use_flow_sigmas": False, "final_sigmas_type": "zero",
        "lambda_min_clipped": -math.inf, "variance_type": None, "rescale_betas_zero_snr": False,
        "use_dynamic_shifting": False,
    },
}
# what the formulas above implement; any other value is refused (ValueError, a checkpoint problem)
_DPM_REQUIRED = {
    "thresholding": False, "solver_order": 2, "algorithm_type": "dpmsolver++", "solver_type": "midpoint",
    "use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False, "use_lu_lambdas": False,
    "use_flow_sigmas": False, "final_sigmas_type": "zero", "rescale_betas_zero_snr": False, "use_dynamic_shifting": False,
}


def effective_config(config: Mapping[str, Any], scheduler: str) -> dict[str, Any]:
    """The config ``scheduler``'s diffusers class gets from ``from_config(config)`` (the DDPM config as is for ddpm)."""
    if scheduler == "ddpm":
        return dict(config)
    if scheduler not in _CLASS_DEFAULTS:
        raise ValueError(scheduler_problem(scheduler))
    left_out = set(config.get("_use_default_values") or ())
    resolved = dict(_CLASS_DEFAULTS[scheduler])
    resolved.update({key: config[key] for key in resolved if key in config and key not in left_out})
    if scheduler == "dpmpp-2m" and resolved["lambda_min_clipped"] is None:  # -inf written to JSON as null
        resolved["lambda_min_clipped"] = -math.inf
    return resolved


def _spaced(total: int, count: int, spacing: str, offset: int) -> np.ndarray:
    """``count`` timesteps spaced over ``total`` like DDPMScheduler.set_timesteps (float64 numpy, int64 result)."""
    if spacing == "linspace":
        return np.linspace(0, total - 1, count).round()[::-1].copy().astype(np.int64)
    if spacing == "leading":
        ratio = total // count
        steps = (np.arange(0, count) * ratio).round()[::-1].copy().astype(np.int64)
        return steps + int(offset)
    if spacing == "trailing":
        ratio = total / count
        return np.round(np.arange(total, 0, -ratio)).astype(np.int64) - 1
    raise ValueError(f"timestep_spacing {spacing!r} is not supported")


def timesteps(config: Mapping[str, Any], num_inference_steps: int) -> np.ndarray:
    """The DDPM (and DDIM) timesteps for a step count (int64, descending)."""
    total = int(config["num_train_timesteps"])
    if not 1 <= num_inference_steps <= total:
        raise ValueError(f"num_inference_steps must be in 1..{total}, got {num_inference_steps}")
    return _spaced(total, num_inference_steps, config.get("timestep_spacing", "leading"), int(config.get("steps_offset", 0)))


def scheduler_timesteps(config: Mapping[str, Any], num_inference_steps: int, scheduler: str = DEFAULT_SCHEDULER) -> np.ndarray:
    """``scheduler``'s timesteps for a step count (int64, descending), as its ``set_timesteps`` makes them."""
    if scheduler != "dpmpp-2m":
        return timesteps(effective_config(config, scheduler), num_inference_steps)
    resolved = effective_config(config, scheduler)
    total = int(resolved["num_train_timesteps"])
    if not 1 <= num_inference_steps <= total:
        raise ValueError(f"num_inference_steps must be in 1..{total}, got {num_inference_steps}")
    if resolved["lambda_min_clipped"] != -math.inf:
        raise ValueError("lambda_min_clipped is not supported")
    spacing = resolved["timestep_spacing"]
    if spacing == "trailing":
        return _spaced(total, num_inference_steps, spacing, 0)
    if spacing == "linspace":
        return np.linspace(0, total - 1, num_inference_steps + 1).round()[::-1][:-1].copy().astype(np.int64)
    if spacing == "leading":
        ratio = total // (num_inference_steps + 1)
        steps = (np.arange(0, num_inference_steps + 1) * ratio).round()[::-1][:-1].copy().astype(np.int64)
        return steps + int(resolved["steps_offset"])
    raise ValueError(f"timestep_spacing {spacing!r} is not supported")


def _x0_coeffs(prediction: str, a_t: np.float32, b_t: np.float32) -> tuple[np.float32, np.float32]:
    """x0 = c_sample * z + c_output * out of DDPM/DDIM, from a_t = acp[t] and b_t = 1 - a_t."""
    one = np.float32(1.0)
    if prediction == "v_prediction":
        return np.sqrt(a_t), -np.sqrt(b_t)
    if prediction == "epsilon":
        return one / np.sqrt(a_t), -np.sqrt(b_t) / np.sqrt(a_t)
    if prediction == "sample":
        return np.float32(0), one
    raise ValueError(f"prediction_type {prediction!r} is not supported")


def _clip(config: Mapping[str, Any]) -> np.float32:
    return np.float32(config.get("clip_sample_range", 1.0)) if config.get("clip_sample") else NO_CLIP


def _ddpm_steps(config: Mapping[str, Any], acp: np.ndarray, ts: np.ndarray) -> list[Step]:
    one = np.float32(1.0)
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
        c_sample, c_output = _x0_coeffs(prediction, a_t, b_t)
        variance = np.maximum(b_p / b_t * beta_t, np.float32(1e-20))
        if variance_type in ("fixed_small", "fixed_small_log"):
            std = np.sqrt(variance)
        elif variance_type == "fixed_large":
            std = np.sqrt(beta_t)
        else:
            raise ValueError(f"variance_type {variance_type!r} is not supported")
        coeffs = np.array(
            [c_sample, c_output, np.sqrt(a_p) * beta_t / b_t, np.sqrt(alpha_t) * b_p / b_t, std if t > 0 else 0, _clip(config), 0, 0],
            dtype=np.float32,
        )
        steps.append(Step(index, int(t), coeffs, bool(t > 0)))
    return steps


def _ddim_steps(config: Mapping[str, Any], acp: np.ndarray, ts: np.ndarray, eta: float) -> list[Step]:
    if config["thresholding"]:
        raise ValueError("DDIM with dynamic thresholding is not supported")
    one, zero = np.float32(1.0), np.float32(0.0)
    prediction = config["prediction_type"]
    final = one if config["set_alpha_to_one"] else acp[0]
    stride = int(config["num_train_timesteps"]) // len(ts)
    eta32 = np.float32(eta)
    steps = []
    for index, t in enumerate(ts):
        prev_t = int(t) - stride
        a_t = acp[t]
        a_p = acp[prev_t] if prev_t >= 0 else final
        b_t, b_p = one - a_t, one - a_p
        variance = (b_p / b_t) * (one - a_t / a_p)
        std = eta32 * np.sqrt(variance)
        d = np.sqrt(np.maximum(one - a_p - std * std, zero))
        c_sample, c_output = _x0_coeffs(prediction, a_t, b_t)
        if prediction == "v_prediction":
            from_sample, from_output = d * np.sqrt(b_t), d * np.sqrt(a_t)
        elif prediction == "epsilon":
            from_sample, from_output = zero, d
        else:  # sample (checked by _x0_coeffs)
            from_sample, from_output = d / np.sqrt(b_t), -(d * np.sqrt(a_t) / np.sqrt(b_t))
        coeffs = np.array(
            [c_sample, c_output, np.sqrt(a_p), from_sample, std if eta > 0 else 0, _clip(config), from_output, 0],
            dtype=np.float32,
        )
        steps.append(Step(index, int(t), coeffs, bool(eta > 0)))
    return steps


def _log32(x: np.float32) -> np.float32:
    return np.float32(-np.inf) if x == 0 else np.float32(math.log(float(x)))


def _exp32(x: np.float32) -> np.float32:
    return np.float32(math.exp(float(x)))


def _dpm_steps(config: Mapping[str, Any], acp: np.ndarray, ts: np.ndarray) -> list[Step]:
    wrong = {key: config[key] for key, want in _DPM_REQUIRED.items() if config[key] != want}
    if wrong or config["variance_type"] in ("learned", "learned_range"):
        raise ValueError(f"DPM-Solver++ 2M with {wrong or {'variance_type': config['variance_type']}} is not supported")
    one, zero = np.float32(1.0), np.float32(0.0)
    prediction = config["prediction_type"]
    a = acp[ts]
    sigmas = np.append(np.sqrt((one - a) / a), zero).astype(np.float32)
    alphas = one / np.sqrt(sigmas * sigmas + one)
    s = sigmas * alphas
    lambdas = [_log32(alphas[i]) - _log32(s[i]) for i in range(len(sigmas))]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        steps = []
        for index, t in enumerate(ts):
            h = lambdas[index + 1] - lambdas[index]
            big_a = alphas[index + 1] * (_exp32(-h) - one)
            ratio = s[index + 1] / s[index]
            if prediction == "v_prediction":
                c_sample, c_output = alphas[index], -s[index]
            elif prediction == "epsilon":
                c_sample, c_output = one / alphas[index], -s[index] / alphas[index]
            elif prediction == "sample":
                c_sample, c_output = zero, one
            else:
                raise ValueError(f"prediction_type {prediction!r} is not supported")
            if index == 0 or index == len(ts) - 1:  # first order: the first step, and the last (final sigma zero)
                from_x0, from_history = -big_a, zero
            else:
                r0 = (lambdas[index] - lambdas[index - 1]) / h
                big_b = (np.float32(0.5) * big_a) * (one / r0)
                from_x0, from_history = -(big_a + big_b), big_b
            coeffs = np.array([c_sample, c_output, from_x0, ratio, 0, NO_CLIP, 0, from_history], dtype=np.float32)
            steps.append(Step(index, int(t), coeffs, False))
    return steps


def step_coefficients(
    config: Mapping[str, Any],
    alphas_cumprod: np.ndarray,
    num_inference_steps: int,
    scheduler: str = DEFAULT_SCHEDULER,
    eta: float = 0.0,
) -> list[Step]:
    """Every step's timestep and ``denoise`` coefficients of ``scheduler`` for ``num_inference_steps``.

    ``config`` is the DDPM scheduler config of the manifest (the other schedulers are made from it
    as diffusers' ``from_config`` makes them); formulas in the module docstring.
    """
    from svsr.contract.errors import InputError

    problem = scheduler_problem(scheduler, eta)
    if problem:
        raise InputError(problem)
    acp = np.asarray(alphas_cumprod, dtype=np.float32)
    resolved = effective_config(config, scheduler)
    ts = scheduler_timesteps(config, num_inference_steps, scheduler)
    if int(ts.max()) >= len(acp):  # 'leading' spacing plus steps_offset can step past the table
        raise InputError(
            f"{num_inference_steps} steps reach timestep {int(ts.max())}, beyond the scheduler's {len(acp)} training "
            "timesteps (its steps_offset shifts them); use fewer steps."
        )
    if len(ts) != num_inference_steps or int(ts.min()) < 0 or bool(np.any(np.diff(ts) >= 0)):
        raise InputError(f"{num_inference_steps} steps give repeated or negative {scheduler} timesteps; use fewer steps.")
    if scheduler == "ddim":
        return _ddim_steps(resolved, acp, ts, float(eta))
    if scheduler == "dpmpp-2m":
        return _dpm_steps(resolved, acp, ts)
    return _ddpm_steps(resolved, acp, ts)


def _schedule_fault(config: Mapping[str, Any], count: int, scheduler: str) -> str | None:
    """What is wrong with ``scheduler``'s timesteps for ``count`` steps (a clause), or None."""
    total = int(config.get("num_train_timesteps", 1000))
    try:
        ts = scheduler_timesteps(config, count, scheduler)
    except ValueError as exc:
        return f"does not fit ({exc})"
    if int(ts.max()) >= total:
        return f"reaches timestep {int(ts.max())}"
    if len(ts) != count or int(ts.min()) < 0 or bool(np.any(np.diff(ts) >= 0)):
        return "gives repeated or negative timesteps"
    return None


def steps_problem(
    config: Mapping[str, Any],
    num_inference_steps: int,
    where: str,
    *,
    spell: Spell = _spell,
    scheduler: str = DEFAULT_SCHEDULER,
) -> str | None:
    """Why ``num_inference_steps`` does not fit ``scheduler`` made from the config ``config`` (of the build or
    checkpoint ``where``), or None.

    The one steps check: diffusers would fail deep inside for a count past the training timesteps,
    'leading' spacing plus ``steps_offset`` can step past the table, and DPM-Solver++'s spacing
    repeats timesteps for counts near the table's size. ``spell(name, value)`` writes the option as
    the caller's user wrote it (``num_inference_steps=1001`` or ``--steps 1001``).
    """
    steps = spell("num_inference_steps", num_inference_steps)
    total = int(config.get("num_train_timesteps", 1000))
    if num_inference_steps < 1:
        return f"{steps} is below 1; use 1 to {total}."
    if num_inference_steps > total:
        return f"{steps} is more than the {total} training timesteps of the scheduler in {where}; use 1 to {total}."
    fault = _schedule_fault(config, num_inference_steps, scheduler)
    if fault is None:
        return None
    # every count below the first faulty one works
    usable = next((count - 1 for count in range(1, total + 1) if _schedule_fault(config, count, scheduler)), total)
    fix = f"use 1 to {usable}" if usable >= 1 else "re-export with a scheduler config diffusers accepts"
    named = "the scheduler" if scheduler == DEFAULT_SCHEDULER else f"the {scheduler} scheduler"
    if fault.startswith("reaches"):
        return (f"{steps} {fault} with {named} in {where} (steps_offset {config.get('steps_offset', 0)}), "
                f"beyond its {total} training timesteps; {fix}.")
    return f"{steps} {fault} with {named} in {where}; {fix}."
