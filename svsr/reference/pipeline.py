"""The exact PyTorch StableVSR pipeline (float32, eager): the ground truth of every parity check.

It follows docs/stablevsr-algorithm.md to the letter; keep it plain rather than fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from svsr.contract.errors import InputError
from svsr.contract.frames import pad_frame, validate_clip
from svsr.contract.noise import NoiseSource
from svsr.device.noise import TorchNoise
from svsr.reference.checkpoint import Components, load_components
from svsr.reference.flow import check_flow_scale, clip_flows
from svsr.reference.warp import warp
from svsr.contract.scheduler import DEFAULT_SCHEDULER, Step, scheduler_problem, step_coefficients
from svsr.reference.schedulers import FrameSchedules
from svsr.contract.sweeps import FrameCall, frame_calls
from svsr.contract.sizes import PaddingPlan
from svsr.contract.graphs import DEFAULT_FLOW_SCALE, flow_graph

LATENT_CHANNELS = 4

# observer(graph, inputs, call): the inputs the exported graph `graph` would receive at this point of
# the run (float32 numpy arrays named as in svsr/contract/graphs.py); call is the FrameCall for
# guide_decode/warp/denoise/denoise_stats and the decode_stats call before guide_decode, None for the
# flow graph of the run's scale, decode and the decode_stats call before it. The run is untiled, so the
# networks get shared_norm 0 and zero norm_stats; the stats graphs are reported with the whole frame's
# inputs they would get in a tiled run. Calibration of the typed graphs records through it.
GraphObserver = Callable[[str, Mapping[str, np.ndarray], "FrameCall | None"], None]


def _np(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


def frames_to_tensor(frames: Sequence[np.ndarray], plan: PaddingPlan) -> torch.Tensor:
    """uint8 HxWx3 frames -> (N, 3, H', W') float32 in [-1, 1], edge-padded to a multiple of 4."""
    stacked = np.stack([pad_frame(f, plan) for f in frames])
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0


class StableVSRReference:
    """Exact StableVSR inference over a loaded checkpoint.

    >>> ref = StableVSRReference.from_pretrained("build/tiny")
    >>> out = ref.upscale(frames, num_inference_steps=50, seed=0)  # list of 4Hx4Wx3 float32 in [0, 1]
    """

    def __init__(self, components: Components) -> None:
        self.components = components
        self._stats_sizes: dict[str, int] | None = None

    @classmethod
    def from_pretrained(cls, weights: str | Path, prompt: str = "") -> "StableVSRReference":
        return cls(load_components(weights, prompt=prompt))

    # -- the building blocks, one network call each ------------------------------------------
    def flows(self, lr: torch.Tensor, flow_scale: int = DEFAULT_FLOW_SCALE) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Forward and backward flow lists (each N-1 tensors (1, 2, 4h, 4w)) of a clip of LR frames
        (N, 3, h, w) in [-1, 1], RAFT seeing them at ``flow_scale`` (4: bicubic x4, the original; 2; 1)."""
        check_flow_scale(flow_scale, int(lr.shape[2]), int(lr.shape[3]))
        c = self.components
        return clip_flows(c.flow_model, lr, c.num_flow_updates, flow_scale)

    def norm_stats_sizes(self) -> dict[str, int]:
        """Lengths of the GroupNorm statistics vectors of the exported graphs: 2 x the groups of every
        GroupNorm the TCM + UNet (``denoise_stats``) and the VAE decoder (``decode_stats``) hold.

        Every one of them runs once per call of its network; the exporter checks that against the
        calls it records, so these zeros of the untiled run have the graphs' input size.
        """
        if self._stats_sizes is None:
            c = self.components

            def groups(*networks: torch.nn.Module) -> int:
                return 2 * sum(m.num_groups for n in networks for m in n.modules() if isinstance(m, torch.nn.GroupNorm))

            self._stats_sizes = {"denoise_stats": groups(c.controlnet, c.unet), "decode_stats": groups(c.vae.decoder)}
        return self._stats_sizes

    def _untiled_norms(self, graph: str) -> dict[str, np.ndarray]:
        """The norm_stats / shared_norm inputs of an untiled call: the graph's own statistics (shared_norm 0)."""
        return {"norm_stats": np.zeros((1, self.norm_stats_sizes()[graph]), np.float32), "shared_norm": np.zeros((1,), np.float32)}

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """VAE decode of a latent (no clamping): ``vae.decode(latent / scaling_factor)``."""
        return self.components.vae.decode(latent / self.components.scaling_factor).sample

    def guidance(self, x0_prev: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Temporal Texture Guidance: the previous frame's x0, decoded and warped onto this frame."""
        return warp(self.decode_latent(x0_prev), flow)

    def predict(self, z: torch.Tensor, lr: torch.Tensor, t: torch.Tensor, guidance: torch.Tensor | None) -> torch.Tensor:
        """UNet output for one frame; with ``guidance`` the TCM's residuals are added."""
        c = self.components
        x_in = torch.cat([z, lr], dim=1)  # scale_model_input is the identity for DDPM
        embeds = c.prompt_embeds.expand(z.shape[0], -1, -1)
        if guidance is None:
            return c.unet(x_in, t, encoder_hidden_states=embeds).sample
        down, mid = c.controlnet(
            x_in, t, encoder_hidden_states=embeds, controlnet_cond=guidance, conditioning_scale=1.0, return_dict=False
        )
        return c.unet(
            x_in, t, encoder_hidden_states=embeds, down_block_additional_residuals=down, mid_block_additional_residual=mid
        ).sample

    def ddpm_step(
        self, model_output: torch.Tensor, t: torch.Tensor, sample: torch.Tensor, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``DDPMScheduler.step`` with the step noise supplied by the caller: (prev_sample, x0).

        Same operations, in the same order and dtype, as diffusers' implementation (a test checks
        equality with ``scheduler.step(generator=...)``); only the noise draw is moved out so any
        noise source can drive it.
        """
        scheduler = self.components.scheduler
        config = scheduler.config
        prev_t = scheduler.previous_timestep(t)
        alpha_prod_t = scheduler.alphas_cumprod[t]
        alpha_prod_t_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.one
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        current_beta_t = 1 - current_alpha_t
        if config.prediction_type == "epsilon":
            x0 = (sample - beta_prod_t ** (0.5) * model_output) / alpha_prod_t ** (0.5)
        elif config.prediction_type == "sample":
            x0 = model_output
        elif config.prediction_type == "v_prediction":
            x0 = (alpha_prod_t**0.5) * sample - (beta_prod_t**0.5) * model_output
        else:
            raise ValueError(f"unsupported prediction_type {config.prediction_type!r}")
        if config.clip_sample:
            x0 = x0.clamp(-config.clip_sample_range, config.clip_sample_range)
        x0_coeff = (alpha_prod_t_prev ** (0.5) * current_beta_t) / beta_prod_t
        sample_coeff = current_alpha_t ** (0.5) * beta_prod_t_prev / beta_prod_t
        prev_sample = x0_coeff * x0 + sample_coeff * sample
        if t > 0:
            if noise is None:
                raise ValueError("a step with t > 0 needs noise")
            if scheduler.variance_type == "fixed_small_log":
                prev_sample = prev_sample + scheduler._get_variance(t) * noise
            else:
                prev_sample = prev_sample + (scheduler._get_variance(t) ** 0.5) * noise
        return prev_sample, x0

    def decode_output(self, z: torch.Tensor) -> torch.Tensor:
        """Final frames: ``clamp(vae.decode(z / scaling_factor) / 2 + 0.5, 0, 1)``."""
        return (self.decode_latent(z) / 2 + 0.5).clamp(0, 1)

    # -- observing (calibration) -------------------------------------------------------------
    def _step_coefficients(self, num_inference_steps: int, scheduler: str, eta: float, timesteps: torch.Tensor) -> list:
        """The denoise graph's per-step inputs, from the same scheduler tables the manifest records."""
        ddpm = self.components.scheduler
        steps = step_coefficients(dict(ddpm.config), ddpm.alphas_cumprod.numpy(), num_inference_steps, scheduler, eta)
        if [s.timestep for s in steps] != [int(t) for t in timesteps]:
            raise RuntimeError(f"svsr.contract.scheduler {scheduler} timesteps differ from diffusers' for this scheduler config")
        return steps

    def _observe_denoise(self, observer: GraphObserver, call: FrameCall, z: torch.Tensor, lr: torch.Tensor,
                         guidance: torch.Tensor | None, step: Step, noise: torch.Tensor | None, x0_history: torch.Tensor) -> None:
        """The denoise_stats and denoise graphs' inputs: without the TCM the guidance input is zeros and tcm_scale 0."""
        h, w = z.shape[2], z.shape[3]
        network = {
            "z": _np(z),
            "lr": _np(lr),
            "guidance": _np(guidance) if guidance is not None else np.zeros((1, 3, 4 * h, 4 * w), np.float32),
            "tcm_scale": np.array([1.0 if guidance is not None else 0.0], np.float32),
            "timestep": np.array([step.timestep], np.float32),
        }
        observer("denoise_stats", dict(network), call)
        observer("denoise", {
            **network,
            "step_coeffs": step.coeffs.astype(np.float32),
            "noise": _np(noise) if noise is not None else np.zeros(tuple(z.shape), np.float32),
            "x0_history": _np(x0_history),
            **self._untiled_norms("denoise_stats"),
        }, call)

    # -- the whole clip -----------------------------------------------------------------------
    @torch.no_grad()
    def upscale(
        self,
        frames: Sequence[np.ndarray],
        num_inference_steps: int = 50,
        seed: int = 0,
        noise: NoiseSource | None = None,
        progress: bool | tqdm = True,
        trace: list[FrameCall] | None = None,
        observer: GraphObserver | None = None,
        scheduler: str = DEFAULT_SCHEDULER,
        eta: float = 0.0,
        flow_scale: int = DEFAULT_FLOW_SCALE,
    ) -> list[np.ndarray]:
        """Upscale a clip 4x. Returns 4Hx4Wx3 float32 frames in [0, 1].

        ``seed`` reproduces the original pipeline called with
        ``generator=torch.Generator("cpu").manual_seed(seed)``; ``noise`` overrides it with any
        :class:`svsr.contract.noise.NoiseSource`. ``trace`` (a list) receives every FrameCall in order;
        ``observer`` is told each exported graph's inputs as the run reaches them (see GraphObserver).
        ``scheduler`` (ddpm, ddim, dpmpp-2m) and ``eta`` (ddim's noise weight) pick the schedule
        (svsr/reference/schedulers.py: diffusers' classes, one DPM-Solver++ history per frame).
        ``flow_scale`` is the scale RAFT sees the LR frames at (4: bicubic x4, the original; 2: bicubic
        x2; 1: as they are), the flow brought to the 4x grid (svsr/reference/flow.py).
        """
        if num_inference_steps < 1:
            raise InputError(f"num_inference_steps is {num_inference_steps}; use at least 1.")
        problem = scheduler_problem(scheduler, eta)
        if problem:
            raise InputError(problem)
        plan = validate_clip(frames)
        needs_flow = len(frames) > 1  # a one-frame clip runs no flow, so no frame size is too small for a scale
        check_flow_scale(flow_scale, *((plan.padded_height, plan.padded_width) if needs_flow else ()))
        noise = noise if noise is not None else TorchNoise(seed)
        c = self.components
        num_frames = len(frames)

        lr = frames_to_tensor(frames, plan)
        if observer is not None:
            for i in range(1, num_frames):  # the flow graph's calls: frame i -> i-1, then i-1 -> i
                observer(flow_graph(flow_scale), {"frame": _np(lr[i : i + 1]), "previous": _np(lr[i - 1 : i])}, None)
                observer(flow_graph(flow_scale), {"frame": _np(lr[i - 1 : i]), "previous": _np(lr[i : i + 1])}, None)
        fwd, bwd = self.flows(lr, flow_scale) if needs_flow else ([], [])
        flow_lists = {"fwd": fwd, "bwd": bwd}
        schedules = FrameSchedules(c.scheduler, scheduler, num_frames, num_inference_steps, self.ddpm_step, eta)
        timesteps = schedules.timesteps
        latent_shape = (1, LATENT_CHANNELS, plan.padded_height, plan.padded_width)
        sigma = schedules.init_noise_sigma
        z = [torch.from_numpy(noise.initial_latent(k, latent_shape)) * sigma for k in range(num_frames)]
        step_coeffs = self._step_coefficients(num_inference_steps, scheduler, eta, timesteps) if observer is not None else None

        x0_prev: torch.Tensor | None = None
        own_bar = not hasattr(progress, "update")
        bar = tqdm(total=num_frames * len(timesteps), desc="reference", unit="frame-step", disable=not progress) if own_bar else progress
        try:
            for call in frame_calls(num_frames, len(timesteps)):
                if trace is not None:
                    trace.append(call)
                k, t = call.frame, timesteps[call.step]
                guidance = None
                if call.uses_tcm:
                    flow = flow_lists[call.direction][call.flow_index]
                    if observer is not None:
                        observer("decode_stats", {"latent": _np(x0_prev)}, call)
                        observer("guide_decode", {"x0": _np(x0_prev), **self._untiled_norms("decode_stats")}, call)
                    decoded = self.decode_latent(x0_prev)
                    if observer is not None:
                        observer("warp", {"image": _np(decoded), "flow": _np(flow)}, call)
                    guidance = warp(decoded, flow)
                step_noise = torch.from_numpy(noise.step_noise(call.step, k, latent_shape)) if schedules.draws_noise(t) else None
                if observer is not None:
                    history = schedules.history(k, z[k])
                    self._observe_denoise(observer, call, z[k], lr[k : k + 1], guidance, step_coeffs[call.step], step_noise, history)
                model_output = self.predict(z[k], lr[k : k + 1], t, guidance)
                z[k], x0_prev = schedules.step(k, model_output, t, z[k], step_noise)
                bar.update(1)
        finally:
            if own_bar:
                bar.close()

        out_h, out_w = plan.output_size
        results = []
        for k in range(num_frames):
            if observer is not None:
                observer("decode_stats", {"latent": _np(z[k])}, None)
                observer("decode", {"z": _np(z[k]), **self._untiled_norms("decode_stats")}, None)
            rgb = self.decode_output(z[k])[0, :, :out_h, :out_w]
            results.append(rgb.permute(1, 2, 0).numpy().astype(np.float32))
        return results
