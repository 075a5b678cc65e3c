"""DDPM, DDIM and DPM-Solver++ 2M as coefficients of the one denoise graph, against diffusers' own steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from svsr.contract.errors import InputError
from svsr.contract.scheduler import (
    DEFAULT_STEPS,
    NO_CLIP,
    SCHEDULERS,
    needs_history,
    scheduler_problem,
    scheduler_timesteps,
    step_coefficients,
    steps_problem,
)

# StableVSR's scheduler (svsr/reference/presets.py), the baseline every case below varies
STABLEVSR = dict(
    beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear", num_train_timesteps=1000,
    prediction_type="v_prediction", clip_sample=False, steps_offset=1, variance_type="fixed_small",
)
CLASSES = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpmpp-2m": DPMSolverMultistepScheduler}


def _graph_step(coeffs: np.ndarray, z, out, noise, history):
    """The denoise graph's update (svsr/contract/graphs.py) in float32 numpy."""
    c = coeffs.astype(np.float32)
    x0 = np.clip(c[0] * z + c[1] * out, -c[5], c[5])
    return c[2] * x0 + c[3] * z + c[4] * noise + c[6] * out + c[7] * history, x0


def _run_both(scheduler: str, count: int, eta: float = 0.0, **config):
    """Step diffusers' scheduler and the graph formula over recorded random model outputs; return the
    worst relative differences of (prev_sample, x0) and the steps."""
    ddpm = DDPMScheduler(**{**STABLEVSR, **config})
    theirs = ddpm if scheduler == "ddpm" else CLASSES[scheduler].from_config(ddpm.config)
    theirs.set_timesteps(count)
    steps = step_coefficients(dict(ddpm.config), ddpm.alphas_cumprod.numpy(), count, scheduler, eta)
    assert [s.timestep for s in steps] == theirs.timesteps.tolist()
    rng = np.random.default_rng(count)
    z = rng.standard_normal((1, 4, 6, 7)).astype(np.float32)
    history = np.zeros_like(z)
    worst_prev = worst_x0 = 0.0
    for step in steps:
        out = rng.standard_normal(z.shape).astype(np.float32) * 1.5  # a recorded model output
        seed = int(rng.integers(1 << 31))  # DDPM draws its own noise: the same numbers from a same-seeded generator
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed)).numpy() if step.has_noise else np.zeros_like(z)
        t, zt, ot = step.timestep, torch.from_numpy(z), torch.from_numpy(out)
        if scheduler == "ddpm":
            result = theirs.step(ot, t, zt, generator=torch.Generator().manual_seed(seed))
            want_prev, want_x0 = result.prev_sample, result.pred_original_sample
        elif scheduler == "ddim":
            result = theirs.step(ot, t, zt, eta=eta, variance_noise=torch.from_numpy(noise) if eta > 0 else None)
            want_prev, want_x0 = result.prev_sample, result.pred_original_sample
        else:
            want_prev = theirs.step(ot, t, zt).prev_sample
            want_x0 = theirs.model_outputs[-1]
        got_prev, got_x0 = _graph_step(step.coeffs, z, out, noise, history)
        want_prev, want_x0 = want_prev.numpy(), want_x0.numpy()
        assert np.isfinite(got_prev).all() and np.isfinite(got_x0).all()
        worst_prev = max(worst_prev, float(np.abs(got_prev - want_prev).max() / np.abs(want_prev).max()))
        worst_x0 = max(worst_x0, float(np.abs(got_x0 - want_x0).max() / np.abs(want_x0).max()))
        z, history = want_prev, want_x0  # continue on diffusers' trajectory: each step is compared alone
    return worst_prev, worst_x0, steps


FLOAT32_CLOSE = 1e-6  # relative to the largest value: a few float32 roundings, never a wrong coefficient


@pytest.mark.parametrize("count", [1, 2, 3, 10, 25, 50])
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_graph_formula_equals_diffusers_steps(scheduler, count):
    worst_prev, worst_x0, _ = _run_both(scheduler, count)
    assert worst_prev < FLOAT32_CLOSE and worst_x0 < FLOAT32_CLOSE


@pytest.mark.parametrize(
    "scheduler, count, eta, config",
    [
        ("ddim", 10, 0.5, {}),
        ("ddim", 7, 1.0, {"prediction_type": "epsilon", "clip_sample": True}),
        ("ddim", 7, 0.3, {"prediction_type": "sample", "clip_sample": True, "timestep_spacing": "trailing"}),
        ("ddim", 9, 0.0, {"timestep_spacing": "linspace", "steps_offset": 0}),
        ("ddpm", 8, 0.0, {"prediction_type": "epsilon", "clip_sample": True}),
        ("dpmpp-2m", 10, 0.0, {"prediction_type": "epsilon"}),
        ("dpmpp-2m", 10, 0.0, {"prediction_type": "sample", "timestep_spacing": "trailing"}),
        ("dpmpp-2m", 7, 0.0, {"timestep_spacing": "linspace"}),
    ],
)
def test_graph_formula_equals_diffusers_steps_for_other_configs(scheduler, count, eta, config):
    worst_prev, worst_x0, _ = _run_both(scheduler, count, eta, **config)
    assert worst_prev < 1e-5 and worst_x0 < 1e-5  # eta 1 with epsilon divides by small b_t: a little looser


def test_a_clipping_config_really_clips():
    """With clip_sample the x0 clamp is active (else the tests above could not see a missing clip)."""
    _, _, steps = _run_both("ddim", 4, 0.0, prediction_type="epsilon", clip_sample=True)
    assert {float(s.coeffs[5]) for s in steps} == {1.0}
    _, _, steps = _run_both("dpmpp-2m", 4)
    assert {float(s.coeffs[5]) for s in steps} == {float(NO_CLIP)}  # DPM-Solver++ has no clip_sample


def test_dpm_solver_orders_and_history():
    steps = step_coefficients(STABLEVSR, DDPMScheduler(**STABLEVSR).alphas_cumprod.numpy(), 6, "dpmpp-2m")
    # first order at the first step and at the last (final sigma zero); second order in between
    assert [s.reads_history for s in steps] == [False, True, True, True, True, False]
    assert not any(s.has_noise for s in steps) and needs_history("dpmpp-2m")
    # the last step returns the x0 estimate itself: z_prev = 1 * x0
    np.testing.assert_array_equal(steps[-1].coeffs[[2, 3, 4, 6, 7]], [1, 0, 0, 0, 0])
    # second order: x0 weight -(A + B) > 0, history weight B = 0.5 * A / r0 < 0 (A < 0, r0 > 0)
    for step in steps[1:-1]:
        assert step.coeffs[7] < 0 < step.coeffs[2]


def test_noise_draws_follow_the_scheduler():
    acp = DDPMScheduler(**STABLEVSR).alphas_cumprod.numpy()
    ddpm = step_coefficients(STABLEVSR, acp, 4, "ddpm")
    assert [s.has_noise for s in ddpm] == [s.timestep > 0 for s in ddpm]
    assert not any(s.has_noise or s.coeffs[4] for s in step_coefficients(STABLEVSR, acp, 4, "ddim", 0.0))
    noisy = step_coefficients(STABLEVSR, acp, 4, "ddim", 0.4)
    assert all(s.has_noise for s in noisy) and all(s.coeffs[4] > 0 for s in noisy[:-1])
    assert not any(needs_history(name) for name in ("ddpm", "ddim"))
    assert not any(s.reads_history for s in ddpm + noisy)


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_timesteps_equal_set_timesteps(scheduler, spacing):
    ddpm = DDPMScheduler(**{**STABLEVSR, "timestep_spacing": spacing})
    theirs = ddpm if scheduler == "ddpm" else CLASSES[scheduler].from_config(ddpm.config)
    for count in [*range(1, 40), 50, 99, 100, 250, 333, 500, 998]:
        if steps_problem(dict(ddpm.config), count, "b", scheduler=scheduler) is not None:
            continue
        theirs.set_timesteps(count)
        assert scheduler_timesteps(dict(ddpm.config), count, scheduler).tolist() == theirs.timesteps.tolist(), count


def test_keys_the_checkpoint_left_out_take_the_new_class_defaults(tmp_path):
    """from_config drops keys a json left out (DPM-Solver++ then spaces 'linspace', not DDPM's 'leading')
    and keeps keys DDPM does not know (set_alpha_to_one for DDIM)."""
    saved = {k: v for k, v in STABLEVSR.items()} | {"_class_name": "DDPMScheduler", "set_alpha_to_one": False}
    (tmp_path / "scheduler_config.json").write_text(json.dumps(saved))
    ddpm = DDPMScheduler.from_pretrained(tmp_path)
    config, acp = dict(ddpm.config), ddpm.alphas_cumprod.numpy()
    dpm = DPMSolverMultistepScheduler.from_config(ddpm.config)
    dpm.set_timesteps(10)
    assert dpm.config.timestep_spacing == "linspace" and config["timestep_spacing"] == "leading"
    assert scheduler_timesteps(config, 10, "dpmpp-2m").tolist() == dpm.timesteps.tolist()
    ddim = DDIMScheduler.from_config(ddpm.config)
    ddim.set_timesteps(10)
    last = step_coefficients(config, acp, 10, "ddim")[-1]
    assert last.timestep - 1000 // 10 < 0 and float(ddim.final_alpha_cumprod) < 1
    assert last.coeffs[2] == np.sqrt(np.float32(acp[0]))  # sqrt(a_p) with a_p = alphas_cumprod[0], not 1


def test_default_steps_and_problems_per_scheduler():
    assert set(DEFAULT_STEPS) == set(SCHEDULERS) and DEFAULT_STEPS["ddpm"] == 50
    assert all(steps_problem(STABLEVSR, DEFAULT_STEPS[s], "b", scheduler=s) is None for s in SCHEDULERS)
    leading = {**STABLEVSR, "timestep_spacing": "leading"}
    # 'leading' plus steps_offset 1 steps past the table at 1000 steps, for DDPM and DDIM alike
    for name in ("ddpm", "ddim"):
        problem = steps_problem(leading, 1000, "build", spell=lambda n, v: f"--steps {v}", scheduler=name)
        assert problem.startswith("--steps 1000 reaches timestep 1000 ") and problem.endswith("use 1 to 999.")
        assert _one_sentence(problem)
    # DPM-Solver++ spaces n+1 points: 999 steps (stride 1) reach timestep 999 + 1, 1000 steps (stride 0) repeat
    assert steps_problem(leading, 998, "build", scheduler="dpmpp-2m") is None
    assert steps_problem(leading, 999, "build", scheduler="dpmpp-2m").startswith("num_inference_steps=999 reaches timestep 1000")
    problem = steps_problem(leading, 1000, "build", scheduler="dpmpp-2m")
    assert "repeated" in problem and "dpmpp-2m scheduler in build" in problem and problem.endswith("use 1 to 998.")
    assert _one_sentence(problem)
    with pytest.raises(InputError, match="repeated or negative dpmpp-2m timesteps"):
        step_coefficients(leading, DDPMScheduler(**STABLEVSR).alphas_cumprod.numpy(), 1000, "dpmpp-2m")


def _one_sentence(text: str) -> bool:
    return text.endswith(".") and ". " not in text and "\n" not in text


@pytest.mark.parametrize(
    "scheduler, eta, words",
    [
        ("euler", 0.0, ["unknown scheduler scheduler='euler'", "ddpm, ddim, dpmpp-2m"]),
        (None, 0.0, ["unknown scheduler"]),
        ("ddim", 1.5, ["eta=1.5 is not a number from 0 to 1"]),
        ("ddim", -0.1, ["from 0 to 1"]),
        ("ddim", float("nan"), ["from 0 to 1"]),
        ("ddim", "0.5", ["from 0 to 1"]),
        ("ddpm", 0.5, ["eta=0.5 has no effect with scheduler='ddpm'", "use ddim"]),
        ("dpmpp-2m", 0.2, ["has no effect with scheduler='dpmpp-2m'"]),
    ],
)
def test_bad_scheduler_values_are_one_sentence(scheduler, eta, words):
    problem = scheduler_problem(scheduler, eta)
    assert problem is not None and _one_sentence(problem) and problem.count("; ") == 1
    for word in words:
        assert word in problem
    with pytest.raises(InputError) as refused:
        step_coefficients(STABLEVSR, DDPMScheduler(**STABLEVSR).alphas_cumprod.numpy(), 4, scheduler, eta)
    assert str(refused.value) == problem


def test_good_scheduler_values_pass():
    assert scheduler_problem("ddim", 1) is None and scheduler_problem("ddim", 0.0) is None
    assert all(scheduler_problem(name, 0.0) is None for name in SCHEDULERS)
    spelled = scheduler_problem("ddpm", 0.5, spell=lambda name, value: f"--{name} {value}")
    assert spelled.startswith("--eta 0.5 has no effect with --scheduler ddpm")


def test_unsupported_solver_configs_are_refused():
    acp = DDPMScheduler(**STABLEVSR).alphas_cumprod.numpy()
    with pytest.raises(ValueError, match="solver_order"):
        step_coefficients({**STABLEVSR, "solver_order": 3}, acp, 5, "dpmpp-2m")
    with pytest.raises(ValueError, match="thresholding"):
        step_coefficients({**STABLEVSR, "thresholding": True}, acp, 5, "ddim")
