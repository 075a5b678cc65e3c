"""The reference's schedules: diffusers' own scheduler classes, one step per (timestep, frame) call.

``ddpm`` keeps the reference's DDPM step (diffusers' ``DDPMScheduler.step`` with the noise supplied,
see ``StableVSRReference.ddpm_step``); ``ddim`` calls ``DDIMScheduler.step`` (made with
``from_config`` from the checkpoint's DDPM config, as the original pipeline would with it swapped in);
``dpmpp-2m`` keeps ONE ``DPMSolverMultistepScheduler`` PER FRAME, so that each frame's solver history
holds only that frame's x0 estimates (the original pipeline's single shared scheduler would mix
them across frames). Its x0 is the instance's ``model_outputs[-1]`` after the step.
"""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from svsr.contract.scheduler import ETA_SCHEDULERS, needs_history

# (model_output, t, sample, noise or None) -> (prev_sample, x0): the DDPM step of the reference
DdpmStep = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], "tuple[torch.Tensor, torch.Tensor]"]


class FrameSchedules:
    """Timesteps, noise draws and steps of one scheduler over a clip of ``num_frames`` frames."""

    def __init__(self, ddpm: DDPMScheduler, scheduler: str, num_frames: int, num_inference_steps: int,
                 ddpm_step: DdpmStep, eta: float = 0.0) -> None:
        self.name = scheduler
        self.eta = float(eta)
        self._ddpm_step = ddpm_step
        if scheduler == "ddpm":
            self._instances: list = [ddpm]
        elif scheduler == "ddim":
            self._instances = [DDIMScheduler.from_config(ddpm.config)]
        elif scheduler == "dpmpp-2m":
            self._instances = [DPMSolverMultistepScheduler.from_config(ddpm.config) for _ in range(num_frames)]
        else:
            raise ValueError(f"unknown scheduler {scheduler!r}")
        for instance in self._instances:
            instance.set_timesteps(num_inference_steps)
        self.timesteps = self._instances[0].timesteps
        self.init_noise_sigma = self._instances[0].init_noise_sigma
        # the frame's x0 of its previous step, for schedulers with a per-frame history
        self._history: list[torch.Tensor | None] = [None] * num_frames

    def draws_noise(self, t: torch.Tensor) -> bool:
        """Whether the step at ``t`` draws fresh noise (the official generator's draw order)."""
        if self.name == "ddpm":
            return bool(t > 0)
        return self.name in ETA_SCHEDULERS and self.eta > 0

    def history(self, frame: int, like: torch.Tensor) -> torch.Tensor:
        """The denoise graph's ``x0_history`` for ``frame``: its previous x0, zeros where there is none."""
        previous = self._history[frame]
        return previous if previous is not None else torch.zeros_like(like)

    def step(self, frame: int, model_output: torch.Tensor, t: torch.Tensor, sample: torch.Tensor,
             noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One scheduler step of ``frame``: (prev_sample, x0)."""
        if self.name == "ddpm":
            return self._ddpm_step(model_output, t, sample, noise)
        if self.name == "ddim":
            out = self._instances[0].step(model_output, t, sample, eta=self.eta, variance_noise=noise if self.eta > 0 else None)
            return out.prev_sample, out.pred_original_sample
        solver = self._instances[frame]
        prev_sample = solver.step(model_output, t, sample).prev_sample
        x0 = solver.model_outputs[-1]
        if needs_history(self.name):
            self._history[frame] = x0
        return prev_sample, x0
