"""StableVSR's frame-wise bidirectional sampling over the exported graphs (torch-free).

One implementation for every backend. All clip state (LR frames, flows, two latent buffers per
frame, x0, guidance) is allocated once per clip and stays in backend buffers; per timestep the host
uploads only the step's coefficients, timestep and each frame's noise (drawn in sweep order, the
official draw order), then launches the sweep; decoded frames are downloaded once at the end. Latents ping-pong between two buffers per frame: forward sweeps
(even steps) read A and write B, backward sweeps read B and write A, so each sweep direction always
touches the same addresses (what a captured CUDA graph per direction needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from svsr.frames import pad_frame, validate_clip
from svsr.graphs import GRAPHS, concrete_shape
from svsr.noise import NoiseSource, NumpyNoise
from svsr.runtime.backend import Backend, Buffer
from svsr.scheduler_math import Step, step_coefficients
from svsr.schedule import frame_calls, sweep_direction, sweep_order
from svsr.sizes import PaddingPlan


def to_model_input(frame: np.ndarray, plan: PaddingPlan) -> np.ndarray:
    """uint8 HxWx3 -> (1, 3, H', W') float32 in [-1, 1], edge-padded: the graphs' LR input convention."""
    padded = pad_frame(frame, plan)
    return (padded.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)) * np.float32(2.0) - np.float32(1.0)


@dataclass
class ClipBuffers:
    """Every backend buffer one clip needs, allocated once."""

    lr: list[Buffer]
    latents: list[tuple[Buffer, Buffer]]  # (A, B) per frame
    noise: list[Buffer]  # per frame, refilled once per step
    fwd: list[Buffer]
    bwd: list[Buffer]
    x0: Buffer
    guidance: Buffer
    tcm_off: Buffer
    tcm_on: Buffer
    timestep: Buffer
    coeffs: Buffer
    rgb: Buffer


def launch_sweep(backend: Backend, key: str, enqueue: Callable[[], None]) -> None:
    """Run one sweep's graph launches; backends that capture (TensorRT + CUDA graphs) replay instead."""
    launcher = getattr(backend, "launch_sweep", None)
    if launcher is None:
        enqueue()
    else:
        launcher(key, enqueue)


class Sampler:
    """Runs the schedule for one clip at a time on a backend, reading everything from the manifest."""

    def __init__(self, backend: Backend, manifest: Mapping[str, Any]) -> None:
        self.backend = backend
        self.manifest = manifest
        scheduler = manifest["scheduler"]
        self._scheduler_config = scheduler["config"]
        self._alphas_cumprod = np.asarray(scheduler["alphas_cumprod"], dtype=np.float32)
        self._init_sigma = np.float32(scheduler.get("init_noise_sigma", 1.0))
        self.latent_channels = int(manifest.get("latent_channels", 4))

    def steps(self, num_inference_steps: int) -> list[Step]:
        return step_coefficients(self._scheduler_config, self._alphas_cumprod, num_inference_steps)

    def allocate(self, num_frames: int, height: int, width: int) -> ClipBuffers:
        """All buffers of a clip of ``num_frames`` padded LR frames of ``height`` x ``width``."""
        b = self.backend

        def alloc(label: str, graph: str, tensor: str) -> Buffer:
            spec = next(t for t in GRAPHS[graph].inputs + GRAPHS[graph].outputs if t.name == tensor)
            return b.allocate(label, concrete_shape(spec, 1, height, width), spec.dtype)

        return ClipBuffers(
            lr=[alloc(f"lr{k}", "denoise", "lr") for k in range(num_frames)],
            latents=[(alloc(f"zA{k}", "denoise", "z"), alloc(f"zB{k}", "denoise", "z")) for k in range(num_frames)],
            noise=[alloc(f"noise{k}", "denoise", "noise") for k in range(num_frames)],
            fwd=[alloc(f"fwd{i}", "flow", "flow") for i in range(num_frames - 1)],
            bwd=[alloc(f"bwd{i}", "flow", "flow") for i in range(num_frames - 1)],
            x0=alloc("x0", "denoise", "x0"),
            guidance=alloc("guidance", "denoise", "guidance"),
            tcm_off=alloc("tcm_off", "denoise", "tcm_scale"),
            tcm_on=alloc("tcm_on", "denoise", "tcm_scale"),
            timestep=alloc("timestep", "denoise", "timestep"),
            coeffs=alloc("step_coeffs", "denoise", "step_coeffs"),
            rgb=alloc("rgb", "decode", "rgb"),
        )

    def enqueue_flows(self, buf: ClipBuffers) -> None:
        """fwd[i-1] = flow(frame i -> i-1); bwd = reversed(bwd_pair), bwd_pair[i-1] = flow(frame i-1 -> i)."""
        n = len(buf.lr)
        for i in range(1, n):
            self.backend.run("flow", {"frame": buf.lr[i], "previous": buf.lr[i - 1]}, {"flow": buf.fwd[i - 1]})
            self.backend.run("flow", {"frame": buf.lr[i - 1], "previous": buf.lr[i]}, {"flow": buf.bwd[n - 1 - i]})

    def enqueue_sweep(self, buf: ClipBuffers, step: int) -> None:
        """Every graph launch of the sweep at timestep index ``step``: no host work, so it can be captured.

        Reads and writes depend only on the sweep direction (step parity), so two captured graphs
        (forward, backward) serve every step.
        """
        flows = {"fwd": buf.fwd, "bwd": buf.bwd}
        n = len(buf.lr)
        for call in frame_calls(n, step + 1):
            if call.step != step:
                continue
            k = call.frame
            if call.uses_tcm:
                self.backend.run("guide", {"x0": buf.x0, "flow": flows[call.direction][call.flow_index]}, {"guidance": buf.guidance})
            self.backend.run(
                "denoise",
                {
                    "z": buf.latents[k][step % 2],
                    "lr": buf.lr[k],
                    "guidance": buf.guidance,
                    "tcm_scale": buf.tcm_on if call.uses_tcm else buf.tcm_off,
                    "timestep": buf.timestep,
                    "step_coeffs": buf.coeffs,
                    "noise": buf.noise[k],
                },
                {"z_prev": buf.latents[k][(step + 1) % 2], "x0": buf.x0},
            )

    def upscale(
        self,
        frames: Sequence[np.ndarray],
        num_inference_steps: int = 50,
        noise: NoiseSource | None = None,
        progress: bool | Any = False,
    ) -> list[np.ndarray]:
        """Upscale one clip 4x: HxWx3 uint8 frames -> 4Hx4Wx3 float32 in [0, 1]."""
        plan = validate_clip(frames)
        steps = self.steps(num_inference_steps)
        noise = noise if noise is not None else NumpyNoise(0)
        b, n = self.backend, len(frames)
        h, w = plan.padded_height, plan.padded_width
        buf = self.allocate(n, h, w)
        latent_shape = (1, self.latent_channels, h, w)

        for k, frame in enumerate(frames):
            b.upload(buf.lr[k], to_model_input(frame, plan))
        self.enqueue_flows(buf)
        for k in range(n):
            initial = noise.initial_latent(k, latent_shape)
            b.upload(buf.latents[k][0], initial if self._init_sigma == 1 else initial * self._init_sigma)
        b.upload(buf.tcm_on, np.ones(1, np.float32))

        own_bar = not hasattr(progress, "update")
        bar = tqdm(total=n * len(steps), desc=b.name, unit="frame-step", disable=not progress) if own_bar else progress
        try:
            for step in steps:
                b.upload(buf.timestep, np.array([step.timestep], np.float32))
                b.upload(buf.coeffs, step.coeffs)
                if step.has_noise:  # drawn in sweep order: the official draw order
                    for k in sweep_order(n, step.index):
                        b.upload(buf.noise[k], noise.step_noise(step.index, k, latent_shape))
                launch_sweep(b, sweep_direction(step.index), lambda: self.enqueue_sweep(buf, step.index))
                bar.update(n)
        finally:
            if own_bar:
                bar.close()

        final = len(steps) % 2
        out_h, out_w = plan.output_size
        results = []
        for k in range(n):
            b.run("decode", {"z": buf.latents[k][final]}, {"rgb": buf.rgb})
            rgb = b.download(buf.rgb)
            results.append(np.ascontiguousarray(rgb[0, :, :out_h, :out_w].transpose(1, 2, 0), dtype=np.float32))
        b.synchronize()
        return results
